"""Accuracy and MSE evaluators (Data-Juicer's semantics): hand-checked values, dotted keys,
separate ground-truth files, format errors, the best of several files, and the errors that
replace Data-Juicer's silent drops and division by zero."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import run
from sandbox.cache import cache_root
from sandbox.data.rows import nested_query
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import StepEnv
from sandbox.steps.evaluate.labels import AccuracyEvaluator, MSEEvaluator
from tests.conftest import compose


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def env(tmp_path: Path) -> StepEnv:
    (tmp_path / "eval").mkdir(exist_ok=True)
    return StepEnv(name="evaluate", workdir=tmp_path / "eval", run_dir=tmp_path,
                   cache_dir=cache_root(), show_progress=False)


def test_nested_query_like_data_juicer():
    row = {"meta": {"score": 3, "tags": {"a": 1}}, "meta.flat": "x", "list": [{"v": 1}, {"v": 2}]}
    assert nested_query(row, "meta.score") == 3
    assert nested_query(row, "meta.tags.a") == 1
    assert nested_query(row, "meta.flat") == "x"  # a flat field named with a dot
    assert nested_query(row, "list.v") == [1, 2]  # a list maps the lookup over its items
    assert nested_query(row, "meta.missing") is None and nested_query(row, "nope") is None


def test_accuracy_hand_checked_with_dotted_keys(tmp_path):
    rows = [{"response": "A", "truth": {"label": "A"}},
            {"response": "B", "truth": {"label": "C"}},
            {"response": 1, "truth": {"label": "1"}},     # str(1) == "1": a hit
            {"response": None, "truth": {"label": "D"}},  # no prediction: a miss
            {"response": "E", "truth": {}}]               # no truth: skipped
    path = write(tmp_path / "p.jsonl", rows)
    ev = AccuracyEvaluator(predicted_label_key="response", ground_truth_label_key="truth.label",
                           bootstrap=200)
    out = ev.run(env(tmp_path), predicted_dataset_path=path)
    m = out["metrics"]
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["n"] == 4 and m["missing_predictions"] == 1 and m["missing_ground_truth"] == 1
    assert 0.0 <= m["accuracy_ci_low"] <= 0.5 <= m["accuracy_ci_high"] <= 1.0
    report = json.loads(Path(out["report"]).read_text())
    assert report["results"][0]["pred_path"] == path == report["results"][0]["gt_path"]


def test_mse_hand_checked_format_errors_and_separate_truth(tmp_path):
    preds = write(tmp_path / "pred.jsonl", [{"out": {"v": "1.5"}}, {"out": {"v": "abc"}},
                                            {"out": {"v": 4}}, {"out": {"v": None}},
                                            {"out": {"v": "nan"}}])
    truth = write(tmp_path / "gt.jsonl", [{"y": 1}, {"y": 2}, {"y": 2}, {"y": 5}, {"y": 1}])
    ev = MSEEvaluator(predicted_value_key="out.v", ground_truth_value_key="y", bootstrap=0)
    m = ev.run(env(tmp_path), predicted_dataset_path=preds,
               ground_truth_dataset_path=truth)["metrics"]
    # (1.5-1)^2 = 0.25, (4-2)^2 = 4 -> mean 2.125; "abc", None and "nan" are format errors
    assert m["mse"] == pytest.approx(2.125)
    assert m["n"] == 2 and m["format_errors"] == 3
    assert "mse_ci_low" not in m  # bootstrap=0: no interval


def test_best_of_several_files(tmp_path):
    truth = write(tmp_path / "gt.jsonl", [{"y": 1}, {"y": 2}])
    bad = write(tmp_path / "bad.jsonl", [{"p": 3}, {"p": 2}])    # mse 2.0
    good = write(tmp_path / "good.jsonl", [{"p": 1}, {"p": 2.5}])  # mse 0.125
    out = MSEEvaluator(predicted_dataset_path=[bad, good], ground_truth_dataset_path=[truth, truth],
                       predicted_value_key="p", ground_truth_value_key="y",
                       bootstrap=0).run(env(tmp_path))
    assert [r["mse"] for r in out["results"]] == [2.0, 0.125]
    assert out["metrics"]["mse"] == 0.125 and out["metrics"]["best_index"] == 1
    acc = AccuracyEvaluator(predicted_dataset_path=[bad, good],
                            ground_truth_dataset_path=[truth, truth], predicted_label_key="p",
                            ground_truth_label_key="y", bootstrap=0).run(env(tmp_path))
    assert [r["accuracy"] for r in acc["results"]] == [0.5, 0.5]
    assert acc["metrics"]["best_index"] == 0  # ties: the first, like max()


def test_nothing_parses_is_a_clear_error_not_a_division_by_zero(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"response": "four", "y": 4}, {"response": "", "y": 1}])
    ev = MSEEvaluator(predicted_value_key="response", ground_truth_value_key="y")
    with pytest.raises(DataError, match=r"no row .* numbers .*2 format error.*'four'"):
        ev.run(env(tmp_path), predicted_dataset_path=path)


def test_errors_missing_file_lengths_keys(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"p": 1}])
    b = write(tmp_path / "b.jsonl", [{"y": 1}, {"y": 2}])
    with pytest.raises(DataError, match="does not exist"):
        AccuracyEvaluator(predicted_label_key="p", ground_truth_label_key="y").run(
            env(tmp_path), predicted_dataset_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="1 rows but .* has 2"):
        AccuracyEvaluator(predicted_label_key="p", ground_truth_label_key="y").run(
            env(tmp_path), predicted_dataset_path=a, ground_truth_dataset_path=b)
    with pytest.raises(ConfigError, match="ground_truth_value_key"):
        MSEEvaluator(predicted_value_key="p").run(env(tmp_path), predicted_dataset_path=a)
    with pytest.raises(ConfigError, match="predicted_dataset_path"):
        MSEEvaluator(predicted_value_key="p", ground_truth_value_key="y").run(env(tmp_path))
    with pytest.raises(DataError, match="no row .* has a ground truth"):
        AccuracyEvaluator(predicted_label_key="p", ground_truth_label_key="zzz").run(
            env(tmp_path), predicted_dataset_path=a)
    with pytest.raises(ConfigError, match="compares datasets.*model_dir"):
        AccuracyEvaluator(predicted_label_key="p", ground_truth_label_key="y").run(
            env(tmp_path), model_dir="/x")


def test_evaluators_in_a_pipeline(tmp_path):
    """`evaluator=accuracy` / `evaluator=mse` from their YAML, as a step reading a pool that an
    earlier step wrote (here the loader's Parquet pool holds predictions and truth)."""
    data = write(tmp_path / "d.jsonl", [{"text": "a", "response": "x", "answer": "x"},
                                        {"text": "b", "response": "3", "answer": "y"}])
    for option, key, expected in (("accuracy", "ground_truth_label_key", 0.5),
                                  ("mse", "ground_truth_value_key", None)):
        cfg = compose(["pipeline=probe", f"evaluator={option}", "data_pool=jsonl",
                       f"data_pool.path={data}", "tracking=none", f"evaluator.{key}=answer",
                       "~pipeline.steps.probe", "+pipeline.steps.evaluate.component=${evaluator}",
                       '+pipeline.steps.evaluate.inputs={predicted_dataset_path: '
                       '"${ctx:load.dataset}"}'])
        if option == "mse":
            with pytest.raises(DataError, match="no row"):
                run(cfg, run_dir=tmp_path / option)
            continue
        metrics = run(cfg, run_dir=tmp_path / option)
        assert metrics["accuracy"] == expected and metrics["n"] == 2
