"""The compute ledger: a run's per-step CPU, wall and GPU seconds (``sandbox.runner.compute``)
and a search's sum of them, with what pruning and reuse saved (``sandbox.search.compute``)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sandbox.runner import run
from sandbox.runner.compute import Clock, Ledger, on_cuda, per_decision
from sandbox.search.compute import ledger_line, ledger_metrics, search_ledger
from tests.conftest import compose


def process_cfg(docs_file, *extra):
    return compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                    "tracking=none", "progress=false", *extra])


def test_a_runs_ledger_totals_are_the_sums_of_its_step_times(docs_file, tmp_path):
    metrics = run(process_cfg(docs_file), run_dir=tmp_path / "run")
    steps = ["load", "process"]
    for s in steps:
        assert metrics[f"compute/{s}_cpu_s"] > 0
        # the wall seconds the ledger keeps are the step times the run reports
        assert metrics[f"compute/{s}_wall_s"] == pytest.approx(metrics[f"time/{s}_s"])
    assert metrics["compute/total_cpu_s"] == pytest.approx(
        sum(metrics[f"compute/{s}_cpu_s"] for s in steps))
    assert metrics["compute/total_wall_s"] == pytest.approx(
        sum(metrics[f"time/{s}_s"] for s in steps))
    assert metrics["compute/total_wall_s"] <= metrics["time/total_s"]
    assert metrics["compute/total_gpu_s"] == 0.0  # no step has a CUDA device
    assert metrics["compute/reused_steps"] == 0.0
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert ctx["steps"]["process"]["cpu_seconds"] == pytest.approx(
        metrics["compute/process_cpu_s"], abs=1e-3)

    # resumed unchanged: every step is reused, at the cost its first run recorded
    again = run(process_cfg(docs_file, "resume=true"), run_dir=tmp_path / "run")
    assert again["compute/reused_steps"] == 2.0
    assert again["compute/reused_cpu_s"] == pytest.approx(
        sum(ctx["steps"][s]["cpu_seconds"] for s in steps), abs=2e-3)
    assert again["compute/total_cpu_s"] == 0.0


def test_a_stopped_run_keeps_what_it_spent(docs_file, tmp_path, monkeypatch):
    from sandbox.steps.base import Pruned
    from sandbox.steps.data import process

    def stop(self, env, *args, **kwargs):
        sum(i * i for i in range(200_000))  # some CPU work before the pruner stops it
        raise Pruned("pruned at step 1")

    monkeypatch.setattr(process.Process, "run", stop)
    with pytest.raises(Pruned) as info:
        run(process_cfg(docs_file), run_dir=tmp_path / "run")
    spent = info.value.compute_ledger
    assert spent["compute/process_cpu_s"] > 0
    assert spent["compute/total_cpu_s"] == pytest.approx(
        spent["compute/load_cpu_s"] + spent["compute/process_cpu_s"])


def test_clock_counts_cpu_of_child_processes():
    import subprocess
    import sys

    clock = Clock().start()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    clock.stop()
    assert clock.cpu > 0.05  # the child's CPU time, though this process only waited


def test_gpu_seconds_are_the_wall_time_of_steps_on_cuda():
    ledger = Ledger()
    ledger.spent("train", Clock(wall=3.0, cpu=2.0), cuda=True)
    ledger.spent("train", Clock(wall=1.0, cpu=1.0), cuda=True)  # a second seed
    ledger.spent("evaluate", Clock(wall=0.5, cpu=0.5))
    m = ledger.metrics()
    assert m["compute/train_gpu_s"] == 4.0 and "compute/evaluate_gpu_s" not in m
    assert (m["compute/total_cpu_s"], m["compute/total_wall_s"], m["compute/total_gpu_s"]) == \
        (3.5, 4.5, 4.0)
    assert on_cuda(SimpleNamespace(device="cuda:1"))
    assert not on_cuda(SimpleNamespace(device="cpu")) and not on_cuda(object())


def trial(number, state, cpu=None, reused=0, reused_cpu=0.0):
    metrics = {} if cpu is None else {"compute/total_cpu_s": cpu, "compute/total_wall_s": cpu * 2,
                                      "compute/total_gpu_s": 0.0,
                                      "compute/reused_steps": reused,
                                      "compute/reused_cpu_s": reused_cpu}
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state),
                           user_attrs={"metrics": metrics})


def test_a_searchs_ledger_counts_what_pruning_and_reuse_saved():
    trials = [trial(0, "COMPLETE", 10.0), trial(1, "COMPLETE", 12.0, reused=2, reused_cpu=3.0),
              trial(2, "COMPLETE", 14.0), trial(3, "PRUNED", 4.0), trial(4, "PRUNED", 2.0),
              trial(5, "FAIL", 1.0), trial(6, "COMPLETE")]  # 6: no ledger (an older trial)
    noise = {"perplexity": {"count": 1, "others": 2, "untested": []}}  # 1 within, 1 decided
    ledger = search_ledger(trials, noise)
    assert ledger["total_cpu_s"] == 43.0 and ledger["total_wall_s"] == 86.0
    assert ledger["by_state"] == {"COMPLETE": 36.0, "PRUNED": 6.0, "FAIL": 1.0}
    assert ledger["full_trial_cpu_s"] == 12.0  # the median completed trial
    assert ledger["pruning"] == {"trials": 2, "spent_cpu_s": 6.0, "full_cost_cpu_s": 24.0,
                                 "saved_cpu_s": 18.0}
    assert ledger["reuse"] == {"steps": 2, "saved_cpu_s": 3.0}
    assert ledger["decided_comparisons"] == 1 and ledger["cpu_s_per_decision"] == 43.0
    assert ledger["trials_without_ledger"] == 1
    m = ledger_metrics(ledger)
    assert m["compute/pruning_saved_cpu_s"] == 18.0 and m["compute/total_cpu_s"] == 43.0
    line = ledger_line(ledger)
    assert "43.0 CPU-s" in line and "pruning saved 18.0" in line and "per decided" in line
    # no interval to test with: no decided comparison, and no compute per decision
    unknown = search_ledger(trials, {"perplexity": {"count": None, "others": 2,
                                                    "untested": [0, 1]}})
    assert unknown["cpu_s_per_decision"] is None
    # an app that is not the sandbox reports no ledger: no line about it
    assert ledger_line(search_ledger([trial(0, "COMPLETE"), trial(1, "PRUNED")])) is None


def test_compute_per_decided_pair():
    assert per_decision({"scale/decided_pairs": 4.0, "scale/decision_pairs": 10.0}, 20.0) == \
        {"compute/cpu_s_per_decided_pair": 5.0}
    assert per_decision({"scale/decided_pairs": 0.0}, 20.0) == {}  # nothing decided
    assert per_decision({"a/decided_pairs": 1.0, "b/decided_pairs": 2.0}, 20.0) == {}  # which?
