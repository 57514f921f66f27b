"""End-to-end: ``sandbox.run(cfg)`` on composed configs, the CLI, MLflow and resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from sandbox.runner import run
from tests.conftest import TINY_TRAINER, compose, write_quality_reference


def loop_overrides(docs_file, tmp_path, eval_files, tracking="none"):
    """The full loop on a small jsonl pool: tiny model, small eval files, own quality reference."""
    return ["data_pool=jsonl", f"data_pool.path={docs_file}", "progress=false",
            f"tracking={tracking}", *write_quality_reference(tmp_path), *TINY_TRAINER, *eval_files]


def test_process_pipeline_on_own_jsonl(docs_file, tmp_path):
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "tracking=none", "progress=false"])
    metrics = run(cfg, run_dir=tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert list(ctx["steps"]) == ["load", "process"]
    n_in = sum(1 for _ in docs_file.open())
    out = ctx["steps"]["process"]["outputs"]
    assert out["num_in"] == n_in and 0 < out["num_out"] < n_in
    assert metrics["samples_in"] == n_in
    kept = pq.read_table(out["dataset"]).column("text").to_pylist()
    assert not any("<div>" in t or "spam spam spam spam spam spam" in t for t in kept)
    assert pq.read_table(out["dropped"]).num_rows + len(kept) == n_in


@pytest.mark.slow
def test_full_loop_tracked_in_mlflow(docs_file, tmp_path, eval_files, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the store is sqlite:///mlflow.db relative to where one runs
    over = loop_overrides(docs_file, tmp_path, eval_files, tracking="mlflow")
    base = run(compose(over + ["recipe=none", "refine=none"]), run_dir=tmp_path / "base")
    capsys.readouterr()
    metrics = run(compose(over), run_dir=tmp_path / "run")
    # the baseline's per-document scores come back from its tracking run: the comparison pairs
    # the same documents, on the primary metric first, and states what it could detect
    out = " ".join(capsys.readouterr().out.split())
    assert (tmp_path / "run" / "doc_scores" / "seed42.npz").is_file()
    assert "bits_per_byte *" in out and "paired bootstrap" in out, out[out.find("metric"):]
    assert "Verdict (bits_per_byte *, the primary metric" in out
    assert "With one seed, a bits_per_byte difference below" in out
    for key in ("perplexity", "token_perplexity", "bits_per_byte", "choice_logprob",
                "retention", "quality_score", "diversity", "train_loss_final"):
        assert key in metrics, key
    assert metrics["retention"] < 1.0 == base["retention"]
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert list(ctx["steps"]) == ["load", "probe", "refine", "process", "train", "evaluate_data",
                                  "evaluate_model"]
    model_dir = ctx["steps"]["train"]["outputs"]["model_dir"]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(model_dir)
    AutoTokenizer.from_pretrained(model_dir)
    assert (tmp_path / "run" / "refine" / "recipe.yaml").exists()
    assert list((tmp_path / "run" / "probe" / "plots").glob("*.png"))

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    exp = client.get_experiment_by_name("sandbox")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags["sandbox.baseline"] for r in runs] == ["true", "false"]
    r = runs[1]
    assert r.info.status == "FINISHED"
    assert r.data.params["recipe.ops.text_length_filter.min_len"] == "10"
    # in the store, metrics are grouped in sections (sandbox.tracking.names)
    assert r.data.metrics["eval/perplexity"] == pytest.approx(metrics["perplexity"])
    assert len(client.get_metric_history(r.info.run_id, "train/loss")) >= 2
    arts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "context.json", "probe", "refine", "process", "train",
            "doc_scores"} <= arts
    assert runs[0].data.tags["sandbox.comparable"] == r.data.tags["sandbox.comparable"]


@pytest.mark.slow
def test_resume_skips_finished_steps_and_reruns_changed_ones(docs_file, tmp_path, eval_files):
    over = loop_overrides(docs_file, tmp_path, eval_files)
    run_dir = tmp_path / "run"
    first = run(compose(over), run_dir=run_dir)
    ctx1 = json.loads((run_dir / "context.json").read_text())["steps"]
    again = run(compose(over + ["resume=true"]), run_dir=run_dir)
    ctx2 = json.loads((run_dir / "context.json").read_text())["steps"]
    assert ctx1 == ctx2  # nothing re-ran: identities and timings identical
    assert again["perplexity"] == first["perplexity"]
    # change only the evaluator: everything up to train is reused
    run(compose(over + ["resume=true", "evaluator.num_threads=1"]), run_dir=run_dir)
    ctx3 = json.loads((run_dir / "context.json").read_text())["steps"]
    for s in ("load", "probe", "refine", "process", "train", "evaluate_data"):
        assert ctx3[s] == ctx1[s], s
    assert ctx3["evaluate_model"]["identity"] != ctx1["evaluate_model"]["identity"]


def _cli(args, cwd, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_process_and_clear_errors(docs_file, tmp_path):
    r = _cli(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
              "tracking=none", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "process" / "processed.parquet").exists()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()

    bad = docs_file.parent / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    r = _cli(["pipeline=process", "data_pool=jsonl", f"data_pool.path={bad}", "tracking=none",
              f"hydra.run.dir={tmp_path / 'run2'}"], cwd=tmp_path)
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "line 2: malformed JSON" in out and str(bad) in out and "Traceback" not in out

    r = _cli(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
              "tracking=none", "+recipe.ops.text_lenght_filter.min_len=3",
              f"hydra.run.dir={tmp_path / 'run3'}"], cwd=tmp_path)
    assert r.returncode == 2 and "Did you mean 'text_length_filter'" in r.stdout + r.stderr


@pytest.mark.slow
def test_default_experiment_from_the_cli_on_the_real_corpus(tmp_path):
    """`python -m sandbox` as a user runs it (real corpus, built-in eval sets and quality
    reference), with a tiny model so that evaluating it on the built-in sets takes seconds."""
    r = _cli([*TINY_TRAINER, "progress=false", f"hydra.run.dir={tmp_path / 'run'}",
              f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    assert ctx["load"]["outputs"]["num_samples"] == 5000
    m = ctx["evaluate_model"]["outputs"]["metrics"]
    assert m["perplexity"] > 1 and 0 <= m["choice_accuracy"] <= 1
    assert "downstream_accuracy" not in m  # the sentiment probe is not part of the default
    assert 0 < ctx["evaluate_data"]["outputs"]["metrics"]["retention"] < 1
    assert "perplexity" in r.stdout and "No comparable baseline" in r.stdout


def test_resume_logs_into_the_same_mlflow_run(docs_file, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    over = ["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}", "progress=false",
            f"tracking.uri={uri}"]
    run(compose(over), run_dir=tmp_path / "run")
    run(compose(over + ["resume=true"]), run_dir=tmp_path / "run")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("sandbox").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert ctx["meta"]["tracking_run_id"] == runs[0].info.run_id


def test_steps_report_to_the_hook_the_run_is_given(docs_file, tmp_path, eval_files):
    """``run(cfg, report=hook)`` (what a sweep trial does): every step's ``env.report`` calls
    the hook, and the ``Pruned`` it raises stops the run."""
    from sandbox.steps.base import Pruned

    seen = []

    def hook(name, value, step):
        seen.append((name, step))
        raise Pruned(f"pruned at step {step}")

    with pytest.raises(Pruned):
        run(compose(loop_overrides(docs_file, tmp_path, eval_files)), run_dir=tmp_path / "run",
            report=hook)
    assert len(seen) == 1 and seen[0][0] == "train_loss"
