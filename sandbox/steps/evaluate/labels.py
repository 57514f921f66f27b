"""Label evaluators with Data-Juicer's semantics: ``evaluator=accuracy`` and ``evaluator=mse``.

Both compare a field of a *predicted* dataset with a field of a *ground-truth* dataset, row by
row (the i-th row of one with the i-th row of the other):

* ``predicted_dataset_path``: a pool file (jsonl/json/parquet/csv) or a list of them; in a
  pipeline it is usually wired to the infer step: ``inputs: {predicted_dataset_path:
  "${ctx:infer.dataset}"}``.
* ``ground_truth_dataset_path``: the same (one per predicted file); None: the ground truth is in
  the predicted file itself (Data-Juicer's default).
* ``predicted_label_key`` / ``ground_truth_label_key`` (accuracy), ``predicted_value_key`` /
  ``ground_truth_value_key`` (mse): field names; a dotted key (``meta.score``) reaches into
  nested fields, as Data-Juicer's ``nested_query`` does (the whole dotted key is tried at each
  level first, so a flat field literally named ``meta.score`` also works).

Accuracy counts ``str(pred) == str(gt)``. MSE casts both with ``float``; a row where either does
not parse (or is missing, or not finite) is a *format error*: counted and skipped.
With several predicted files, each is scored and the best is reported, as Data-Juicer does
(highest accuracy, lowest MSE); every file's result is in ``results`` and ``report``.

Metrics: ``accuracy`` or ``mse`` (the best file's), its 95% bootstrap interval over rows
(``*_ci_low``/``*_ci_high``, ``sandbox.verdict``), ``n`` (rows scored), ``format_errors`` (mse),
``missing_predictions`` / ``missing_ground_truth`` (accuracy), ``best_index``.

Where this differs from Data-Juicer on purpose: a missing file is an error (Data-Juicer drops
it silently); files of different lengths are an error (``zip`` would cut the longer one);
MSE with no parsable row is an error naming the keys (Data-Juicer divides by zero); a missing
value is a format error rather than a crash (``float(None)`` raises ``TypeError``, which
Data-Juicer does not catch); in accuracy, rows without a ground truth are skipped and counted
(Data-Juicer compares them as the string ``"None"``), and a missing prediction is a miss.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.rows import nested_query
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.evaluate.common import as_list, read_rows
from sandbox.utils import atomic_write_json
from sandbox.verdict import bootstrap_interval


class _LabelEvaluator(Step):
    outputs = ("metrics", "results", "report")
    reads = ("predicted_dataset_path", "ground_truth_dataset_path")
    metric = ""  # "accuracy" | "mse"
    higher_is_better = True

    def __init__(self, predicted_dataset_path: Any = None, ground_truth_dataset_path: Any = None,
                 pred_key: str | None = None, gt_key: str | None = None, bootstrap: int = 1000,
                 seed: int = 0):
        self.predicted_dataset_path = predicted_dataset_path
        self.ground_truth_dataset_path = ground_truth_dataset_path
        self.pred_key, self.gt_key = pred_key, gt_key
        self.bootstrap, self.seed = int(bootstrap), int(seed)

    def _pairs(self, predicted: Any, ground_truth: Any) -> list[tuple[str, str]]:
        preds = as_list(predicted if predicted is not None else self.predicted_dataset_path)
        gts = as_list(ground_truth if ground_truth is not None else self.ground_truth_dataset_path)
        if not preds:
            raise ConfigError(f"evaluator={self.metric}: give predicted_dataset_path (a file or a "
                              f"list), or wire it: inputs: {{predicted_dataset_path: "
                              f"\"${{ctx:infer.dataset}}\"}}.")
        if gts and len(gts) != len(preds):
            raise ConfigError(f"evaluator={self.metric}: {len(preds)} predicted file(s) but "
                              f"{len(gts)} ground-truth file(s); give one per predicted file, or "
                              f"none when the ground truth is in the predicted files.")
        pairs = list(zip(preds, gts or preds))
        for p in {x for pair in pairs for x in pair}:
            if not Path(p).is_file():
                raise DataError(f"evaluator={self.metric}: {p} does not exist. Check "
                                f"predicted_dataset_path / ground_truth_dataset_path.")
        for name, key in (("predicted", self.pred_key), ("ground_truth", self.gt_key)):
            if not key:
                raise ConfigError(f"evaluator={self.metric}: set evaluator.{name}_"
                                  f"{'label' if self.metric == 'accuracy' else 'value'}_key to "
                                  f"the field that holds it (dotted keys reach nested fields).")
        return pairs

    def run(self, env: StepEnv, predicted_dataset_path: Any = None,
            ground_truth_dataset_path: Any = None, **unknown) -> dict[str, Any]:
        if unknown:
            raise ConfigError(
                f"evaluator={self.metric} compares datasets: its inputs are predicted_dataset_path "
                f"and ground_truth_dataset_path, not {', '.join(sorted(unknown))}. Use it after an "
                f"infer step (inputs: {{predicted_dataset_path: \"${{ctx:infer.dataset}}\"}}), "
                f"not as the model evaluator of the training pipeline."
            )
        results = []
        for pred_path, gt_path in self._pairs(predicted_dataset_path, ground_truth_dataset_path):
            pred_rows = read_rows(pred_path)
            gt_rows = pred_rows if gt_path == pred_path else read_rows(gt_path)
            if len(pred_rows) != len(gt_rows):
                raise DataError(f"evaluator={self.metric}: {pred_path} has {len(pred_rows)} rows "
                                f"but {gt_path} has {len(gt_rows)}; rows are compared one to one.")
            result = {"pred_path": pred_path, "gt_path": gt_path}
            result.update(self.score(pred_rows, gt_rows, pred_path))
            results.append(result)
        values = [r[self.metric] for r in results]
        best = int(np.argmax(values) if self.higher_is_better else np.argmin(values))
        metrics = {k: float(v) for k, v in results[best].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and not (isinstance(v, float) and math.isnan(v))}
        metrics["best_index"] = float(best)
        report = atomic_write_json(env.workdir / f"{self.metric}.json",
                                   {"best_index": best, "results": results})
        return {"metrics": metrics, "results": results, "report": str(report)}

    def interval(self, values: np.ndarray) -> dict[str, float]:
        if self.bootstrap <= 0 or len(values) < 2:
            return {}
        lo, hi = bootstrap_interval(np.mean, (values,), n_boot=self.bootstrap, seed=self.seed)
        return {f"{self.metric}_ci_low": lo, f"{self.metric}_ci_high": hi}

    def score(self, pred_rows: list[dict], gt_rows: list[dict], where: str) -> dict:
        raise NotImplementedError  # pragma: no cover - abstract


class AccuracyEvaluator(_LabelEvaluator):
    """``evaluator=accuracy``: the share of rows whose ``str(prediction) == str(truth)``."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, predicted_dataset_path: Any = None, ground_truth_dataset_path: Any = None,
                 predicted_label_key: str | None = None, ground_truth_label_key: str | None = None,
                 bootstrap: int = 1000, seed: int = 0):
        super().__init__(predicted_dataset_path, ground_truth_dataset_path, predicted_label_key,
                         ground_truth_label_key, bootstrap, seed)

    def score(self, pred_rows, gt_rows, where) -> dict:
        hits, missing_pred, missing_gt = [], 0, 0
        for p_row, g_row in zip(pred_rows, gt_rows):
            gt = nested_query(g_row, self.gt_key)
            if gt is None:
                missing_gt += 1
                continue
            pred = nested_query(p_row, self.pred_key)
            if pred is None:
                missing_pred += 1
                hits.append(0.0)
                continue
            hits.append(1.0 if str(pred) == str(gt) else 0.0)
        if not hits:
            raise DataError(f"evaluator=accuracy: no row of {where} has a ground truth under "
                            f"{self.gt_key!r}; check evaluator.ground_truth_label_key.")
        h = np.asarray(hits)
        return {"accuracy": float(h.mean()), **self.interval(h), "n": len(hits),
                "missing_predictions": missing_pred, "missing_ground_truth": missing_gt}


class MSEEvaluator(_LabelEvaluator):
    """``evaluator=mse``: mean of ``(float(prediction) - float(truth))**2`` over the rows where
    both parse; the others are counted as ``format_errors``."""

    metric = "mse"
    higher_is_better = False

    def __init__(self, predicted_dataset_path: Any = None, ground_truth_dataset_path: Any = None,
                 predicted_value_key: str | None = None, ground_truth_value_key: str | None = None,
                 bootstrap: int = 1000, seed: int = 0):
        super().__init__(predicted_dataset_path, ground_truth_dataset_path, predicted_value_key,
                         ground_truth_value_key, bootstrap, seed)

    def score(self, pred_rows, gt_rows, where) -> dict:
        errors, fmt_err, first_bad = [], 0, None
        for i, (p_row, g_row) in enumerate(zip(pred_rows, gt_rows)):
            raw = (nested_query(p_row, self.pred_key), nested_query(g_row, self.gt_key))
            try:
                pred, gt = float(raw[0]), float(raw[1])
            except (TypeError, ValueError):
                pred = gt = math.nan
            if not (math.isfinite(pred) and math.isfinite(gt)):
                fmt_err += 1
                if first_bad is None:
                    first_bad = (i, raw)
                continue
            errors.append((pred - gt) ** 2)
        if not errors:
            i, (p, g) = first_bad if first_bad else (0, (None, None))
            raise DataError(
                f"evaluator=mse: no row of {where} has numbers under both {self.pred_key!r} and "
                f"{self.gt_key!r} ({fmt_err} format error(s); row {i}: predicted {str(p)[:80]!r}, "
                f"truth {str(g)[:80]!r}). Check evaluator.predicted_value_key / "
                f"ground_truth_value_key, or parse the model's answers into numbers first."
            )
        e = np.asarray(errors)
        return {"mse": float(e.mean()), **self.interval(e), "n": len(errors),
                "format_errors": fmt_err}
