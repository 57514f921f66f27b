"""What a tracked run records about itself, without a store: grouped metric names, the run's
name, command line and tags, its recipe (artifact + digest), and its data as an MLflow dataset."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.recipe import load_recipe
from sandbox.runner import resolved_config
from sandbox.runner.plan import plan_recipe
from sandbox.tracking import NoTracker
from sandbox.tracking.names import short_name, tracked_name
from sandbox.tracking.run_info import describe_run
from tests.conftest import compose


@pytest.mark.parametrize("name, tracked", [
    ("perplexity", "eval/perplexity"),
    ("downstream_accuracy", "eval/downstream_accuracy"),
    ("eval_loss", "eval/loss"),
    ("retention", "data/retention"),
    ("retention/wiki_noisy", "data/retention/wiki_noisy"),
    ("quality_score", "data/quality_score"),
    ("samples_out", "data/samples_out"),
    ("train_loss", "train/loss"),
    ("lr", "train/lr"),
    ("train_loss_final", "train/loss_final"),
    ("train_seconds", "time/train_loop_s"),
    ("time/train_s", "time/train_s"),
    # a metric's companions (intervals, per-seed values) follow it
    ("perplexity_ci_low", "eval/perplexity_ci_low"),
    ("train_loss_final_std", "train/loss_final_std"),
    ("perplexity.seed43", "eval/perplexity.seed43"),
    # a multi-pipeline experiment's metrics keep the pipeline as their section
    ("single_op/best/perplexity", "single_op/best/perplexity"),
    ("n_seeds", "n_seeds"),
    # a new evaluator's metrics still land in a section
    ("downstream_recall", "eval/downstream_recall"),
    ("judge_seconds", "time/judge_s"),
])
def test_metrics_are_logged_in_sections_and_read_back_under_their_own_names(name, tracked):
    assert tracked_name(name) == tracked
    if name != "judge_seconds":  # only the named timings come back (`time/judge_s` stays)
        assert short_name(tracked) == name


def describe(overrides, step_keys=("load", "probe", "refine", "process", "train")):
    cfg = compose(overrides, return_hydra_config=True)
    return describe_run(resolved_config(cfg), list(step_keys), "/tmp/some/run", plan_recipe(cfg))


def test_run_is_named_by_its_recipe_overrides_and_seed_with_the_command_as_source():
    secret = "sk-live-NEVER-1234"
    info = describe(["refine.k=3", "trainer.num_threads=1", "data_pool=jsonl",
                     "data_pool.path=/data/web.jsonl", "tracking.uri=sqlite:////x/mlflow.db",
                     "recipe.ops.text_length_filter.min_len=200", f"+service.api_key={secret}"])
    # recipe-shaping overrides first; threads, tracking, the pool (own column), secrets left out
    assert info.name == "recipe=default · refine.k=3 · text_length_filter.min_len=200 · seed=42"
    assert info.tags["recipe"] == "default" and info.tags["data_pool"] == "web.jsonl"
    assert info.tags["trainer"] == "gpt2" and info.tags["baseline"] == "false"
    assert info.tags["sandbox.baseline"] == "false"  # what the baseline look-up reads
    assert info.command == ("python -m sandbox refine.k=3 trainer.num_threads=1 data_pool=jsonl "
                            "data_pool.path=/data/web.jsonl tracking.uri=sqlite:////x/mlflow.db "
                            "recipe.ops.text_length_filter.min_len=200 '+service.api_key=***'")
    assert info.command in info.tags["mlflow.note.content"]
    assert "/tmp/some/run" in info.tags["mlflow.note.content"]
    # the UI shows a source after its last "/": paths are cut to their file name there
    assert info.tags["mlflow.source.name"].startswith("python -m sandbox refine.k=3")
    assert "data_pool.path=web.jsonl" in info.tags["mlflow.source.name"]
    assert secret not in json.dumps(info.tags) + info.name


def test_baseline_experiment_and_seeds_in_the_name():
    assert describe(["recipe=none", "refine=none"]).name == "baseline · seed=42"
    assert describe(["recipe=none", "refine=none"]).tags["baseline"] == "true"
    info = describe(["experiment=bottom_up", "seeds=3", "seed=7"])
    assert info.name == "bottom_up · recipe=default · seeds=7,8,9"
    # a pipeline without training says so, whatever trainer the config holds
    assert describe(["pipeline=process"], ["load", "process"]).tags["trainer"] == "none"
    assert describe(["pipeline=process"], ["load", "process"]).name.startswith("process · ")


def test_without_hydra_a_run_is_named_from_its_config():
    info = describe_run(resolved_config(compose(["recipe=none", "refine=none"])), ["load"],
                        "/tmp/run")
    assert info.name == "baseline · seed=42" and info.command is None
    assert info.tags["mlflow.source.name"] == "sandbox.run"
    assert info.tags["data_pool"] == "DefaultCorpusPool"


def test_recipe_artifact_is_the_recipe_in_data_juicer_format_and_the_param_its_digest(tmp_path):
    info = describe(["recipe.ops.text_length_filter.min_len=200"])
    name, digest = info.params["recipe"].split("@")
    assert name == "default"
    assert digest == hashlib.sha256(info.recipe_yaml.encode()).hexdigest()[:8]
    # the artifact runs as a Data-Juicer recipe and holds the run's thresholds
    f = tmp_path / "recipe.yaml"
    f.write_text(info.recipe_yaml)
    ops = {s.name: s.args for s in load_recipe({"path": str(f)}).ops}
    assert ops["text_length_filter"] == {"min_len": 200}
    assert "process" in yaml.safe_load(info.recipe_yaml)
    # same recipe, same digest; another threshold, another digest
    assert describe(["recipe.ops.text_length_filter.min_len=200", "refine.k=1"]) \
        .params["recipe"] == info.params["recipe"]
    assert describe(["recipe.ops.text_length_filter.min_len=100"]).params["recipe"] \
        != info.params["recipe"]


def test_a_pool_as_an_mlflow_dataset_has_its_digest_rows_schema_and_source(tmp_path):
    from mlflow.types.schema import Schema

    from sandbox.tracking.datasets import parquet_dataset

    table = pa.table({"text": ["a", "b", "c"], "id": pa.array([1, 2, 3], pa.int64()),
                      "score": [0.5, 0.25, 1.0], "images": [["x.png"], [], ["y.png", "z.png"]],
                      "meta": [{"lang": "en"}, {"lang": "fr"}, {"lang": "de"}]})
    path = tmp_path / "pool.parquet"
    pq.write_table(table, path)
    ds = parquet_dataset(path, "web.jsonl", "x3abc", source=tmp_path / "web.jsonl")
    assert (ds.name, ds.digest, ds.source_type) == ("web.jsonl", "x3abc", "local")
    assert json.loads(ds.source) == {"uri": str(tmp_path / "web.jsonl")}
    assert json.loads(ds.profile)["num_rows"] == 3
    cols = json.loads(ds.schema)["mlflow_colspec"]
    assert [c["name"] for c in cols] == ["text", "id", "score", "images", "meta"]
    assert [c["type"] for c in cols] == ["string", "long", "double", "array", "object"]
    Schema.from_json(json.dumps(cols))  # MLflow reads it back: the types are its own


def test_no_tracker_offers_the_same_calls_including_a_nested_run():
    tracker = NoTracker()
    kid = tracker.child("seed 43", {"sandbox.seed": "43"})
    assert isinstance(kid, NoTracker) and kid is not tracker
    kid.log_metrics({"perplexity": 1.0})
    kid.log_outputs("load", {"dataset": "/nowhere.parquet"})
    tracker.log_text("process: []", "recipe.yaml")
    kid.finish()
    assert tracker.find_baseline({"sandbox.baseline": "false"}) is None


def test_a_relative_sqlite_store_stays_the_same_file_after_the_folder_changes(tmp_path,
                                                                               monkeypatch):
    """MLflow caches stores by URI string: a relative sqlite URI is made absolute when the
    tracker is built, so a later change of folder cannot send runs to another file."""
    from sandbox.tracking.mlflow_tracker import MLflowTracker, absolute_sqlite

    monkeypatch.chdir(tmp_path)
    assert MLflowTracker("sqlite:///runs/mlflow.db").uri == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert absolute_sqlite("sqlite:///m.db?timeout=5") == f"sqlite:///{tmp_path}/m.db?timeout=5"
    for unchanged in ("sqlite:////abs/m.db", "sqlite:///:memory:", "http://127.0.0.1:5000",
                      "postgresql://u@h/db", "file:./mlruns"):
        assert absolute_sqlite(unchanged) == unchanged
