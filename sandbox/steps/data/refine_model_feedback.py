"""Refine from model feedback: thresholds chosen by what training on each slice of a stat does to a
model, not by the stat's distribution alone.

Method, for every stat that a filter of the recipe bounds (an argument of it written in the
recipe, as for k-sigma):

1. The probed samples with a value of that stat (``stats.parquet`` of the probe) are sorted by
   it and cut into ``bins`` bins of equal count (quantile bins; ties broken by row order).
2. For each bin, the sandbox's small model (``CausalLMTrainer``: its own BPE tokenizer and a
   small GPT-2) is trained from scratch on the bin's texts (after the recipe's mappers) at a
   small fixed token budget (``trainer``), and evaluated on held-out text (``LMEvaluator``;
   ``eval_path``, default the built-in corpus' eval split) by ``metric``: ``bits_per_byte``
   (default) or word-level ``perplexity``, both independent of each bin's tokenizer, with the
   evaluator's 95% bootstrap interval over the evaluated documents. The same is done once for a
   *baseline*: a seeded random sample of the pool of a bin's size. Equal size, equal tokens: the
   bins differ only in which samples they hold. Bins with the same rows (two stats that order
   the samples alike) are trained once.
3. A bin is *acceptable* when its loss is within ``tolerance`` (relative) of the best bin's, or
   (``or_baseline``) not worse than the baseline. The kept range is the contiguous run of
   acceptable bins around the best bin.
4. When the kept range stops before the last bin, the filter's upper-bound argument of that stat
   (``max_*``) is set to the largest value in the kept range; when it starts after the first bin,
   the lower bound (``min_*``) to the smallest, whether or not the recipe wrote that argument
   (a recipe that bounds special characters from above learns that too few hurt as well). A side where the kept range reaches the end of
   the data is left as written (an argument not in the recipe stays out of it): a stat whose
   bins all train alike moves nothing. Values are clipped to the argument's valid range and
   integer arguments rounded inwards-safe, as k-sigma does.

Each stat is judged on its own (marginal bins over the whole pool), not jointly with the others.

Cost: ``(distinct bins + 1) * seeds`` trainings at ``trainer.token_budget`` tokens plus as many
evaluations of ``evaluator.max_eval_words`` words; with the defaults (4 bins, 64K tokens, 20K
words) and the default recipe's 8 bounded stats, 33 small trainings: about 4 minutes on 2 busy
CPU cores (7 s per training and evaluation).

Writes the refined recipe exactly as ``refine=ksigma`` does (``recipe.yaml``, ``changes.csv``,
the ``recipe`` output that ``process`` reads), plus ``bins.csv``: per stat and bin its range,
size, loss and interval, and whether it was kept.
"""
from __future__ import annotations

import csv
import math
import shutil
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.data.io import read_parquet, write_parquet
from sandbox.engine import stat_column
from sandbox.errors import ConfigError, DataError
from sandbox.numeric import float_column
from sandbox.recipe import Recipe
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.data.refine import OUTPUTS, write_refined
from sandbox.tracking.base import NoTracker
from sandbox.utils import atomic_path, stable_hash

METRICS = ("bits_per_byte", "perplexity")
TABLE_FIELDS = ["column", "op", "stat", "bin", "lo", "hi", "n", "loss", "ci_low", "ci_high",
                "seed_std", "acceptable", "kept", "best"]
TRAINER_DEFAULTS = dict(token_budget=65_536, seq_len=64, batch_size=16, n_layer=2, n_embd=64,
                        n_head=2, vocab_size=1024, tokenizer_sample_chars=1_000_000,
                        log_every=1000)
EVALUATOR_DEFAULTS = dict(max_eval_words=20_000, batch_size=32, bootstrap=200)
# the steps that train and score each slice, named as in a config's `_target_` (steps of other
# rooms are never imported here): any trainer returning `model_dir` and any evaluator taking
# `model_dir` and returning `metrics[metric]` (with `eval_path`, `linear_probe`, `choice`) will do
TRAINER_CLASS = "sandbox.steps.model.train.CausalLMTrainer"
EVALUATOR_CLASS = "sandbox.steps.evaluate.lm.LMEvaluator"


def bin_cuts(n: int, k: int) -> list[int]:
    """Positions ``[0, c1, ..., n]`` that cut ``n`` sorted samples into ``k`` equal-count bins."""
    return [int(round(i * n / k)) for i in range(k + 1)]


def kept_range(losses: list[float], baseline: float | None, tolerance: float,
               or_baseline: bool = True) -> tuple[int, int, list[bool]]:
    """``(first, last, acceptable)``: the contiguous run of acceptable bins around the best one
    (lowest loss). Acceptable: loss <= best * (1 + tolerance), or <= the baseline's loss when
    ``or_baseline``. NaN losses are never acceptable."""
    arr = np.asarray(losses, dtype=np.float64)
    if not np.isfinite(arr).any():
        return 0, len(arr) - 1, [True] * len(arr)
    best_i = int(np.nanargmin(np.where(np.isfinite(arr), arr, np.inf)))
    best = arr[best_i]
    ok = []
    for v in arr:
        good = bool(np.isfinite(v) and v <= best + abs(best) * tolerance)
        if or_baseline and baseline is not None and np.isfinite(v) and v <= baseline:
            good = True
        ok.append(good)
    a = b = best_i
    while a > 0 and ok[a - 1]:
        a -= 1
    while b < len(arr) - 1 and ok[b + 1]:
        b += 1
    return a, b, ok


def bound_value(value: float, bound: str, low: float, high: float, integer: bool):
    """A kept range's edge as a threshold: clipped to the argument's range; for an integer
    argument ``min`` rounded up and ``max`` down, which keeps exactly the samples of the
    real-valued bound when the stat is an integer (as k-sigma rounds)."""
    value = min(max(float(value), low), high)
    if integer:
        value = math.ceil(value - 1e-9) if bound == "min" else math.floor(value + 1e-9)
        value = int(min(max(value, math.ceil(low)), math.floor(high)))
    return value


class ModelFeedbackRefiner(Step):
    """Thresholds from model feedback (module docstring). Parameters:

    * ``stats``, ``dataset``: the probe's stats file and the pool it describes, when not given
      as the step's inputs (the default pipelines wire ``${ctx:probe.stats}`` and
      ``${ctx:load.dataset}``).
    * ``bins``: quantile bins per stat; ``min_bin_size``: fewer bins for a stat with fewer
      than ``bins * min_bin_size`` valued samples (none below 2 bins: the stat is skipped).
    * ``metric``: ``bits_per_byte`` | ``perplexity`` (word-level), lower is better.
    * ``tolerance``: relative slack over the best bin's loss; ``or_baseline``: a bin not worse
      than the random baseline is acceptable too.
    * ``trainer``: ``CausalLMTrainer`` arguments (a small model at a small budget);
      ``evaluator``: ``LMEvaluator`` arguments (``max_eval_words``, ``bootstrap``...);
      ``trainer_class`` / ``evaluator_class``: the classes (dotted paths) that train and score
      each slice, ``CausalLMTrainer`` and ``LMEvaluator`` by default;
      ``eval_path``: the held-out text (None: the built-in corpus' eval split).
    * ``seeds``: trainings per bin (their mean is the bin's loss); ``seed``: None = the run's.
    * ``keep_models``: keep every bin's trained model folder (default: deleted once scored).
    """

    outputs = OUTPUTS + ("table", "metrics")
    reads = ("eval_path",)

    def __init__(self, stats: str | None = None, dataset: str | None = None,
                 text_key: str = "text", bins: int = 4, min_bin_size: int = 20,
                 metric: str = "bits_per_byte", tolerance: float = 0.02,
                 or_baseline: bool = True, trainer: dict | None = None,
                 evaluator: dict | None = None, eval_path: str | None = None, seeds: int = 1,
                 seed: int | None = None, keep_models: bool = False, batch_size: int = 512,
                 trainer_class: str = TRAINER_CLASS, evaluator_class: str = EVALUATOR_CLASS):
        if int(bins) < 2:
            raise ConfigError(f"refine.bins={bins}: give at least 2 bins per stat.")
        if metric not in METRICS:
            raise ConfigError(f"refine.metric={metric!r}: give one of {', '.join(METRICS)} "
                              f"(held-out loss measures that do not depend on the tokenizer).")
        if not float(tolerance) >= 0 or int(seeds) < 1 or int(min_bin_size) < 1:
            raise ConfigError("refine: tolerance must be >= 0, seeds >= 1, min_bin_size >= 1.")
        self.stats, self.dataset, self.text_key = stats, dataset, text_key
        self.bins, self.min_bin_size = int(bins), int(min_bin_size)
        self.metric, self.tolerance = metric, float(tolerance)
        self.or_baseline = bool(or_baseline)
        self.trainer = {**TRAINER_DEFAULTS, **dict(trainer or {})}
        self.evaluator = {**EVALUATOR_DEFAULTS, **dict(evaluator or {})}
        for bad in ("text_key", "seed"):
            self.trainer.pop(bad, None)
        for bad in ("text_key", "eval_path", "linear_probe", "choice", "seed"):
            self.evaluator.pop(bad, None)
        self.eval_path, self.seeds, self.seed = eval_path, int(seeds), seed
        self.keep_models, self.batch_size = bool(keep_models), int(batch_size)
        self.trainer_class, self.evaluator_class = trainer_class, evaluator_class
        self._scores: dict[str, dict] = {}

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, recipe: Recipe, summary: dict | None = None,
            stats: str | None = None, dataset: str | None = None) -> dict[str, Any]:
        from sandbox.engine.common import build_op
        from sandbox.ops import get_op_class
        from sandbox.steps.data.probe_model import pool_texts

        stats_path, dataset = stats or self.stats, dataset or self.dataset
        if not stats_path or not dataset:
            raise ConfigError(
                "refine=model_feedback needs the probe's stats file and the pool it probed, as "
                "the refine step's inputs: inputs: {recipe: ..., summary: "
                "\"${ctx:probe.summary}\", stats: \"${ctx:probe.stats}\", dataset: "
                "\"${ctx:load.dataset}\"} (conf/pipeline/default.yaml does this), or as "
                "refine.stats=FILE refine.dataset=FILE.")
        t0 = time.perf_counter()
        st = read_parquet(stats_path)
        import pyarrow.parquet as pq

        n = pq.ParquetFile(dataset).metadata.num_rows
        if st.num_rows != n:
            raise DataError(f"refine: {stats_path} has {st.num_rows} rows but {dataset} has "
                            f"{n}: the stats must come from probing this very pool.")
        texts = np.asarray(pool_texts(env, dataset, recipe, self.text_key, np.arange(n),
                                      self.batch_size), dtype=object)
        seed = env.seed if self.seed is None else int(self.seed)
        self._scores = {}
        table: list[dict] = []
        changes: list[dict] = []
        per_bin = max(1, n // self.bins)
        baseline_rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, per_bin),
                                                                    replace=False))
        baseline = self._score(env, texts, baseline_rows, "baseline", seed)
        table.append({"column": "baseline", "op": "", "stat": "", "bin": "random", "lo": "",
                      "hi": "", "n": len(baseline_rows), **self._loss_fields(baseline)})
        refined, moved_args = 0, {}
        for spec in recipe.ops:
            op = build_op(spec, self.text_key)
            cls = get_op_class(spec.name)
            hints = typing.get_type_hints(cls.__init__) if hasattr(cls, "__init__") else {}
            by_stat: dict[str, dict[str, tuple[str, Any]]] = {}
            for arg, th in getattr(op, "thresholds", {}).items():
                by_stat.setdefault(th.stat, {})[th.bound] = (arg, th)
            for stat, sides in by_stat.items():
                if not any(arg in spec.args for arg, _ in sides.values()):
                    continue  # no bound of this stat written in the recipe
                col = stat_column(spec.key, stat)
                if col not in st.column_names:
                    continue
                values = float_column(st.column(col).to_pylist())
                if values is None:
                    continue
                valid = np.flatnonzero(~np.isnan(values))
                k = min(self.bins, len(valid) // self.min_bin_size)
                if k < 2:
                    table.append({"column": col, "op": spec.key, "stat": stat, "bin": "skipped",
                                  "n": len(valid)})
                    continue
                order = valid[np.argsort(values[valid], kind="stable")]
                cuts = bin_cuts(len(order), k)
                bins = []
                for b in range(k):
                    rows = np.sort(order[cuts[b]:cuts[b + 1]])
                    v = values[rows]
                    score = self._score(env, texts, rows, f"{col}.bin{b}", seed)
                    bins.append({"lo": float(v.min()), "hi": float(v.max()), "n": len(rows),
                                 **score})
                first, last, ok = kept_range([b["loss"] for b in bins], baseline["loss"],
                                             self.tolerance, self.or_baseline)
                best = int(np.nanargmin([b["loss"] for b in bins]))
                for b, info in enumerate(bins):
                    table.append({"column": col, "op": spec.key, "stat": stat, "bin": b,
                                  "lo": info["lo"], "hi": info["hi"], "n": info["n"],
                                  **self._loss_fields(info), "acceptable": ok[b],
                                  "kept": first <= b <= last, "best": b == best})
                moved = False
                for bound, edge in (("min", first > 0), ("max", last < k - 1)):
                    if not edge or bound not in sides:
                        continue
                    arg, th = sides[bound]
                    target = bins[first]["lo"] if bound == "min" else bins[last]["hi"]
                    new = bound_value(target, bound, th.low, th.high, hints.get(arg) is int)
                    old = spec.args.get(arg, getattr(op, arg, None))
                    moved_args.setdefault(spec.key, {})[arg] = new
                    if new != old:
                        changes.append({"op": spec.key, "arg": arg, "stat": stat, "old": old,
                                        "new": new})
                        moved = True
                refined += moved
        out = write_refined(env, recipe.with_args(moved_args), changes)
        table_path = self._write_table(env.workdir / "bins.csv", table)
        env.tracker.log_artifact(table_path)
        metrics = {"trainings": float(len(self._scores) * self.seeds),
                   f"baseline_{self.metric}": baseline["loss"],
                   "stats_refined": float(refined),
                   "feedback_seconds": time.perf_counter() - t0}
        return {**out, "table": str(table_path), "metrics": metrics}

    # ------------------------------------------------------------------ one slice
    def _score(self, env: StepEnv, texts: np.ndarray, rows: np.ndarray, name: str,
               seed: int) -> dict[str, float]:
        """Train on ``texts[rows]`` (``seeds`` times) and score on the held-out text; slices with
        the same rows are trained once."""
        key = stable_hash(rows.tolist(), n=16)
        if key in self._scores:
            return self._scores[key]
        from hydra.utils import get_class

        CausalLMTrainer = get_class(self.trainer_class)
        LMEvaluator = get_class(self.evaluator_class)

        folder = env.workdir / "slices" / key
        folder.mkdir(parents=True, exist_ok=True)
        data = write_parquet(pa.table({self.text_key: pa.array(list(texts[rows]), pa.string())}),
                             folder / "pool.parquet")
        losses, lows, highs = [], [], []
        for s in range(self.seeds):
            sub = StepEnv(name=f"{env.name}:{name}", workdir=folder / f"seed{seed + s}",
                          run_dir=env.run_dir, cache_dir=env.cache_dir, seed=seed + s,
                          num_proc=env.num_proc, tracker=NoTracker(), show_progress=False,
                          engine=env.engine)  # no report_hook: a sweep trial's pruner judges
            # the trial's own training, never these slice trainings (their losses would stand
            # at the same steps as the trial's and prune it for the refiner's measurements)
            sub.workdir.mkdir(parents=True, exist_ok=True)
            try:
                trained = CausalLMTrainer(text_key=self.text_key, seed=seed + s,
                                          **self.trainer).run(sub, dataset=str(data))
            except TypeError as e:
                raise ConfigError(f"refine.trainer: {e}. See CausalLMTrainer's parameters "
                                  f"(conf/trainer/gpt2.yaml).") from None
            try:
                ev = LMEvaluator(text_key=self.text_key, eval_path=self.eval_path,
                                 linear_probe=False, choice=False, seed=seed + s,
                                 **self.evaluator).run(sub, model_dir=trained["model_dir"])
            except TypeError as e:
                raise ConfigError(f"refine.evaluator: {e}. See LMEvaluator's parameters "
                                  f"(conf/evaluator/lm.yaml).") from None
            m = ev["metrics"]
            losses.append(m[self.metric])
            lows.append(m.get(f"{self.metric}_ci_low", math.nan))
            highs.append(m.get(f"{self.metric}_ci_high", math.nan))
            if not self.keep_models:
                shutil.rmtree(trained["model_dir"], ignore_errors=True)
        score = {"loss": float(np.mean(losses)), "ci_low": float(np.mean(lows)),
                 "ci_high": float(np.mean(highs)),
                 "seed_std": float(np.std(losses, ddof=1)) if len(losses) > 1 else math.nan,
                 "slice": name}
        self._scores[key] = score
        return score

    @staticmethod
    def _loss_fields(score: dict) -> dict:
        return {k: score[k] for k in ("loss", "ci_low", "ci_high", "seed_std")}

    @staticmethod
    def _write_table(path: Path, rows: list[dict]) -> Path:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=TABLE_FIELDS, restval="")
            w.writeheader()
            w.writerows(rows)
        return path
