"""What a tracked run leaves in a real MLflow store (SQLite): the experiment's kind, the run's
name, source and group-by tags, the data pool and processed pool as dataset inputs, the recipe
as artifact + param, grouped metric names; search trials, nested runs and the baseline look-up."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from sandbox import env_vars
from sandbox.data.fingerprint import fingerprint
from sandbox.runner import run
from sandbox.tracking.mlflow_tracker import MLflowTracker
from tests.conftest import compose


def client_for(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def only_run(client):
    exp = client.get_experiment_by_name("sandbox")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return exp, runs[0]


def test_a_tracked_run_records_its_data_recipe_name_and_source(docs_file, tmp_path, capsys,
                                                              mlflow_db):
    uri = mlflow_db
    secret = "sk-live-NEVER-1234"
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "progress=false", f"tracking.uri={uri}",
                   "recipe.ops.text_length_filter.min_len=20", f"+service.api_key={secret}"],
                  return_hydra_config=True)
    run(cfg, run_dir=tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    client = client_for(uri)
    exp, r = only_run(client)

    # the UI opens a model-training experiment on its runs table
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    out = capsys.readouterr().out
    assert f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning" in out
    assert r.info.run_name == \
        "process · recipe=default · text_length_filter.min_len=20 · seed=42"
    tags = r.data.tags
    assert (tags["recipe"], tags["data_pool"], tags["trainer"], tags["baseline"]) == \
        ("default", "docs.jsonl", "none", "false")
    assert f"data_pool.path={docs_file}" in tags["mlflow.note.content"]
    assert str((tmp_path / "run").resolve()) in tags["mlflow.note.content"]
    assert tags["mlflow.source.name"].startswith("python -m sandbox pipeline=process")
    assert secret not in json.dumps(tags) + json.dumps(r.data.params) + r.info.run_name

    # the recipe: an artifact (Data-Juicer format) and a short param naming it with its digest
    recipe = Path(client.download_artifacts(r.info.run_id, "recipe.yaml", str(tmp_path)))
    digest = hashlib.sha256(recipe.read_bytes()).hexdigest()[:8]
    assert r.data.params["recipe"] == f"default@{digest}"
    assert {"text_length_filter": {"min_len": 20}} in yaml.safe_load(recipe.read_text())["process"]

    # the pool and the processed pool, as dataset inputs the runs table shows
    inputs = {d.dataset.name: d for d in r.inputs.dataset_inputs}
    assert set(inputs) == {"docs.jsonl", "docs.jsonl/process"}
    pool, processed = inputs["docs.jsonl"], inputs["docs.jsonl/process"]
    assert pool.dataset.digest == ctx["load"]["outputs"]["fingerprint"]
    assert json.loads(pool.dataset.source) == {"uri": str(docs_file)}
    assert json.loads(pool.dataset.profile)["num_rows"] == ctx["load"]["outputs"]["num_samples"]
    assert [c["name"] for c in json.loads(pool.dataset.schema)["mlflow_colspec"]][:1] == ["text"]
    processed_path = ctx["process"]["outputs"]["dataset"]
    assert processed.dataset.digest == fingerprint(processed_path)
    assert json.loads(processed.dataset.source) == {"uri": processed_path}
    assert json.loads(processed.dataset.profile)["num_rows"] == ctx["process"]["outputs"]["num_out"]
    assert {t.key: t.value for t in pool.tags}["mlflow.data.context"] == "data_pool"
    assert {t.key: t.value for t in processed.tags}["mlflow.data.context"] == "process"

    # metrics in sections
    assert {"data/samples_in", "data/samples_out", "time/process_s", "time/total_s"} <= \
        set(r.data.metrics)
    assert "samples_in" not in r.data.metrics


def test_an_existing_experiment_is_tagged_unless_someone_chose_its_kind(mlflow_db):
    uri = mlflow_db
    client = client_for(uri)
    old = client.create_experiment("sandbox")  # a store from before the tag
    chosen = client.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    MLflowTracker(uri).start("r", {}, {})
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    MLflowTracker(uri, experiment="genai").start("r", {}, {})
    assert client.get_experiment(chosen).tags["mlflow.experimentKind"] == "genai_development"


def test_a_search_trial_is_named_by_its_number_nested_and_grouped_by_its_study(mlflow_db,
                                                                              monkeypatch):
    uri = mlflow_db
    study = MLflowTracker(uri)
    study.start("study s1", {}, {"sandbox.study": "s1", "sandbox.search": "parent"})
    study_id = study.run_id
    monkeypatch.setenv(env_vars.PARENT_RUN_ID, study_id)
    monkeypatch.setenv(env_vars.RUN_TAGS, json.dumps({"sandbox.trial": "3",
                                                      "sandbox.study": "s1"}))
    trial = MLflowTracker(uri)
    trial.start("recipe=default · refine.k=2.5 · seed=42", {}, {"recipe": "default"})
    trial_id = trial.run_id
    trial.finish()
    study.finish()
    client = client_for(uri)
    got = client.get_run(trial_id)
    assert got.info.run_name == "trial 3 · recipe=default · refine.k=2.5 · seed=42"
    assert got.data.tags["sweep"] == "s1" and got.data.tags["sandbox.trial"] == "3"
    assert got.data.tags["mlflow.parentRunId"] == study_id
    assert client.get_run(study_id).data.tags["sweep"] == "s1"  # the study groups with them


def test_a_nested_run_takes_the_group_tags_and_logs_in_sections(mlflow_db):
    """What per-seed runs (seeds=N) and the bottom-up pools use: ``child``."""
    uri = mlflow_db
    parent = MLflowTracker(uri)
    parent.start("recipe=default · seeds=42,43", {}, {
        "recipe": "default", "data_pool": "web.jsonl", "trainer": "gpt2", "baseline": "false",
        "sandbox.baseline": "false", "sandbox.comparable": "abc"})
    kid = parent.child("seed 43", {"sandbox.seed": "43"})
    kid.log_metrics({"perplexity": 80.0, "train_loss": 4.2}, step=2048)
    kid.finish()
    parent.finish()
    client = client_for(uri)
    got = client.get_run(_by_name(uri, "seed 43"))
    assert got.data.tags["mlflow.parentRunId"] == _by_name(uri, "recipe=default · seeds=42,43")
    assert {k: got.data.tags[k] for k in ("recipe", "data_pool", "trainer", "baseline")} == \
        {"recipe": "default", "data_pool": "web.jsonl", "trainer": "gpt2", "baseline": "false"}
    assert "sandbox.baseline" not in got.data.tags  # never taken for the group's baseline
    assert got.data.metrics == {"eval/perplexity": 80.0, "train/loss": 4.2}
    assert [m.step for m in client.get_metric_history(got.info.run_id, "train/loss")] == [2048]


def _by_name(uri, name):
    client = client_for(uri)
    exp = client.get_experiment_by_name("sandbox")
    return next(r.info.run_id for r in client.search_runs([exp.experiment_id])
                if r.info.run_name == name)


def test_the_baseline_is_read_back_under_the_names_the_console_uses(mlflow_db):
    uri = mlflow_db
    tags = {"sandbox.baseline": "true", "sandbox.comparable": "abc"}
    base = MLflowTracker(uri)
    base.start("baseline · seed=42", {}, tags)
    base.log_metrics({"perplexity": 90.0, "perplexity_ci_low": 85.0, "retention": 1.0,
                      "time/total_s": 3.0})
    base.finish()
    this = MLflowTracker(uri)
    this.start("recipe=default · seed=42", {}, dict(tags, **{"sandbox.baseline": "false"}))
    assert this.find_baseline(dict(tags, **{"sandbox.baseline": "false"})) == {
        "perplexity": 90.0, "perplexity_ci_low": 85.0, "retention": 1.0, "time/total_s": 3.0}
    this.finish()


@pytest.mark.parametrize("uri, address", [
    ("sqlite:///mlflow.db", "http://127.0.0.1:5000/#/experiments/7/runs?workflowType="
                            "machine_learning"),
    ("http://host:5000/", "http://host:5000/#/experiments/7/runs?workflowType=machine_learning"),
])
def test_the_runs_table_address(uri, address):
    tracker = MLflowTracker(uri)
    tracker.experiment_id = "7"
    assert tracker.ui_address() == address
