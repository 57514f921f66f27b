"""Recipe search (``hydra/sweeper=optuna``): search spaces, constraints, pruning hooks, and real
``python -m sandbox --multirun`` sweeps on a tiny data-only pipeline (single and multi objective,
failed trials, parallel trials, MLflow parent/child runs, resume after SIGKILL)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sandbox.errors import ConfigError
from sandbox.search.constraints import parse_constraint, parse_constraints
from sandbox.search.space import format_value, parse_space, split_cli
from tests.conftest import SENTENCES

ROOT = Path(__file__).resolve().parent.parent


# ============================================================================ search spaces
@pytest.mark.parametrize("text, expected", [
    ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
    ("interval(1.0, 10.0)", FloatDistribution(1.0, 10.0)),
    ("interval(1, 10)", IntDistribution(1, 10)),  # integer bounds: integers
    ("tag(int, interval(1.0, 10.0))", IntDistribution(1, 10)),
    ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("tag(log, interval(1000, 20000))", IntDistribution(1000, 20000, log=True)),
    ("range(1, 3)", IntDistribution(1, 3)),  # b included, as in hydra-optuna-sweeper
    ("range(0, 600, 20)", IntDistribution(0, 600, step=20)),
    ("range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.5, step=0.1)),
    ("tag(log, range(1, 64))", IntDistribution(1, 64, log=True)),
    ("choice(none, ksigma)", CategoricalDistribution(("none", "ksigma"))),
    ("choice(true, false)", CategoricalDistribution((True, False))),
    ("choice(1, 2.5, 'a b')", CategoricalDistribution((1, 2.5, "a b"))),
])
def test_every_syntax_gives_the_right_distribution(text, expected):
    space = parse_space({"a.b": text})
    assert space.distributions == {"a.b": expected}
    assert space.fixed == []


def test_lists_fixed_values_prefixes_and_cli_overrides():
    space = parse_space({"x": [1, 2, 3], "y": 0.5, "z": "abc", "++r.ops.f._enabled": "choice(true,false)",
                         "k": "interval(0.0, 1.0)"},
                        cli_overrides=["k=interval(2.0,3.0)"])
    assert space.distributions["x"] == CategoricalDistribution((1, 2, 3))
    assert space.distributions["k"] == FloatDistribution(2.0, 3.0)  # the command line wins
    assert space.distributions["r.ops.f._enabled"] == CategoricalDistribution((True, False))
    assert sorted(space.fixed) == ["y=0.5", "z=abc"]
    assert space.overrides({"r.ops.f._enabled": False, "k": 2.5}) == \
        ["++r.ops.f._enabled=false", "k=2.5"]
    fixed, sweep = split_cli(["a=1", "b=interval(0,1)", "hparams_search=thresholds",
                              "c=choice(1,2)"])
    assert fixed == ["a=1", "hparams_search=thresholds"]
    assert sweep == ["b=interval(0,1)", "c=choice(1,2)"]


@pytest.mark.parametrize("text", ["interval(1.0)", "interval(2.0, 1.0)", "tag(log, interval(0.0, 1.0))",
                                  "tag(foo, interval(0.0, 1.0))", "tag(log, choice(1, 2))",
                                  "range(5, 1)", "interval(0.1, 0.5"])
def test_bad_spaces_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_space({"a": text})


@pytest.mark.parametrize("text", ["tag(log, range(1, 64, 4))", "tag(log, range(0.1, 1.0, 0.1))",
                                  "tag(log, range(1.0, 64.0, 1.0))"])
def test_a_log_range_with_a_step_is_a_config_error_not_a_dropped_step(text):
    with pytest.raises(ConfigError, match="a log scale cannot have a step"):
        parse_space({"a": text})
    # without the step, or with the integer step 1 that a log IntDistribution has anyway: fine
    assert parse_space({"a": "tag(log, range(1, 64, 1))"}).distributions["a"] == \
        IntDistribution(1, 64, log=True)


@pytest.mark.parametrize("value", ["none", "ksigma", "a b", "it's", "true", 3, 2.5e-7, True, None,
                                   "/tmp/x-1/y.z"])
def test_values_survive_the_override_grammar(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([f"k={format_value(value)}"])[0].value()
    assert parsed == value or (value == "none" and parsed == "none")


# ============================================================================ constraints
def test_constraints_are_parsed_not_evaluated():
    c = parse_constraint("retention >= 0.3")
    assert (c.metric, c.op, c.bound) == ("retention", ">=", 0.3)
    assert c.value({"retention": 0.5}) == pytest.approx(-0.2)  # feasible: <= 0
    assert c.value({"retention": 0.1}) == pytest.approx(0.2)
    assert c.value({}) == math.inf
    c = parse_constraint("time/total_s<1.2e2")
    assert (c.metric, c.op, c.bound) == ("time/total_s", "<=", 120.0)
    assert c.value({"time/total_s": 100}) == pytest.approx(-20)
    assert [str(x) for x in parse_constraints("a > 1")] == ["a >= 1"]
    for bad in ["retention >= __import__('os').system('true')", "retention == 0.3", "0.3 <= x",
                "retention >= 0.3 and 1", "open('x') < 1"]:
        with pytest.raises(ConfigError):
            parse_constraint(bad)


# ============================================================================ pruning hook
def test_steps_report_to_the_trial_and_stop_when_pruned(tmp_path):
    from sandbox.search.trial import make_hook, reporting_to, trial_hook
    from sandbox.steps.base import Pruned, StepEnv

    class FakeTrial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    env = StepEnv(name="train", workdir=tmp_path, run_dir=tmp_path, cache_dir=tmp_path)
    env.report("train_loss", 5.0, 100)  # nobody listens: a no-op
    trial = FakeTrial()
    hook = make_hook(trial, "train_loss", sign=-1.0)
    assert trial_hook() is None
    with reporting_to(hook):  # what the in-process launcher does around a trial's run
        assert trial_hook() is hook
    assert trial_hook() is None
    env = StepEnv(name="train", workdir=tmp_path, run_dir=tmp_path, cache_dir=tmp_path,
                  report_hook=hook)  # what the runner builds from run(..., report=hook)
    env.report("other", 1.0, 10)  # not the pruned-on value
    env.report("train_loss", 5.0, 100)
    with pytest.raises(Pruned):
        env.report("train_loss", 4.0, 200)
    assert trial.reported == [(100, -5.0), (200, -4.0)]


def test_the_plugin_is_registered_with_hydra():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "OptunaSweeper" in names
    from tests.conftest import compose

    cfg = compose(["hparams_search=thresholds"], return_hydra_config=True)
    assert cfg.objective == "bits_per_byte"
    assert cfg.refine._target_.endswith("NoRefine")
    # the project's searches use the plugin's own name; `optuna` is the familiar alias
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "sandbox_optuna"
    for name in ("sandbox_optuna", "optuna"):
        alias = compose([f"hydra/sweeper={name}"], return_hydra_config=True).hydra.sweeper
        assert alias._target_ == "hydra_plugins.sandbox_optuna.optuna_sweeper.OptunaSweeper"
        assert alias.sampler._target_ == "optuna.samplers.TPESampler"  # the group's default


# ============================================================================ stopping a sweep
def _parallel_search(tmp_path, monkeypatch, fail_trial: int | None = None):
    """A 2-job sweep whose trials are `sh` processes (each with a background child) that run until
    stopped; trial ``fail_trial``'s thread raises once the other trial's process runs."""
    from omegaconf import OmegaConf

    from sandbox.search import launch
    from sandbox.search.sweeper import OptunaSearch

    monkeypatch.setattr(launch, "trial_command", lambda overrides, run_dir: [
        "sh", "-c", "echo $$; sleep 1000 & sleep 1000"])
    real_launch = launch.SubprocessLauncher.launch

    def launch_or_fail(self, trial, overrides, env):
        if trial.number == fail_trial:
            _wait_for_trial_pids(tmp_path, 1)
            raise RuntimeError("the storage went away")
        return real_launch(self, trial, overrides, env)

    monkeypatch.setattr(launch.SubprocessLauncher, "launch", launch_or_fail)
    search = OptunaSearch(storage=f"sqlite:///{tmp_path / 'optuna.db'}", n_trials=4, n_jobs=2,
                          study_name="stop", params={"x": "interval(0.0, 1.0)"})
    search.config = OmegaConf.create({"objective": "score"})
    search.sweep_dir = tmp_path / "multirun"
    return search


def _wait_for_trial_pids(tmp_path, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = sorted((tmp_path / "multirun").glob("*/trial.log"))
        pids = [int(lines[1]) for lines in (log.read_text().splitlines() for log in logs)
                if len(lines) > 1]
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    pytest.fail(f"{count} trial process(es) did not start")


def _interrupted_trials(tmp_path) -> list[int]:
    study = load(tmp_path, "stop")
    return [t.number for t in study.trials if t.user_attrs.get("interrupted")]


def test_ctrl_c_stops_every_running_trial_process(tmp_path, monkeypatch, python_sigint):
    import _thread
    import threading

    from tests.test_programs import assert_group_gone

    search = _parallel_search(tmp_path, monkeypatch)
    pids: list[int] = []

    def interrupt_when_both_run():
        pids.extend(_wait_for_trial_pids(tmp_path, 2))
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        search.sweep([])
    assert len(pids) == 2
    for pid in pids:
        assert_group_gone(pid)
    assert sorted(_interrupted_trials(tmp_path)) == [0, 1]


def test_a_failed_trial_thread_stops_the_other_trials(tmp_path, monkeypatch):
    from tests.test_programs import assert_group_gone

    search = _parallel_search(tmp_path, monkeypatch, fail_trial=0)
    with pytest.raises(RuntimeError, match="the storage went away"):
        search.sweep([])
    (pid,) = _wait_for_trial_pids(tmp_path, 1)
    assert_group_gone(pid)
    assert _interrupted_trials(tmp_path) == [1]  # the failed one is left for a resume


# ============================================================================ real sweeps
@pytest.fixture
def tiny(tmp_path, docs_file, mlflow_db):
    ref = tmp_path / "reference.jsonl"
    ref.write_text("".join(json.dumps({"text": s, "label": 1}) + "\n" for s in SENTENCES) +
                   "".join(json.dumps({"text": t, "label": 0}) + "\n"
                           for t in ["$$$ ### %%%", "click here buy now", "<div></div> ok"] * 3))
    return [
        "hparams_search=data_quality", "data_pool=jsonl", f"data_pool.path={docs_file}",
        f"cache_dir={tmp_path / 'cache'}", "progress=false", "num_proc=1",
        f"data_evaluator.reference_path={ref}",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
        f"tracking.uri={mlflow_db}",
        "hydra.sweeper.sampler.seed=0", "hydra.sweeper.constraints=[]",
    ]


def sweep(tmp_path, overrides, check=True, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), SANDBOX_PARENT_RUN_ID="")
    env.pop("SANDBOX_PARENT_RUN_ID")
    cmd = [sys.executable, "-m", "sandbox", "--multirun", *overrides,
           f"hydra.sweep.dir={tmp_path / 'multirun'}/{len(list(tmp_path.glob('multirun*')))}"]
    if kw.pop("popen", False):
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def load(tmp_path, name):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def runs(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sandbox")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow
def test_single_objective_sweep_with_failed_trials_tracked_in_mlflow(tmp_path, tiny):
    from optuna.trial import TrialState

    # refine.k=-1 is rejected by the refiner: those trials fail, the study goes on
    sweep(tmp_path, tiny + ["hydra.sweeper.n_trials=4", "hydra.sweeper.study_name=single",
                            "refine.k=choice(-1.0, 1.0, 2.0)",
                            "hydra.sweeper.sampler.n_startup_trials=10"])
    study = load(tmp_path, "single")
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert study.directions[0].name == "MAXIMIZE"
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed and complete  # with sampler seed 0: k = 1, 1, 2, -1
    assert all(t.params["refine.k"] == -1.0 for t in failed)
    assert all(t.params["refine.k"] > 0 for t in complete)
    assert all("refine.k must be >= 0" in t.user_attrs["error"] for t in failed)
    for t in complete:
        assert t.value == pytest.approx(t.user_attrs["metrics"]["quality_score"])
        assert "retention" in t.user_attrs["metrics"]
        # each in-process trial's own sandbox.log has its step lines (and not the others')
        log = (Path(t.user_attrs["run_dir"]) / "sandbox.log").read_text()
        assert "probe running" in log and "done in" in log and "search trial" not in log

    client, all_runs = runs(tmp_path)
    parents = [r for r in all_runs if r.data.tags.get("sandbox.search") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["sandbox.trial"]) for r in children) == [0, 1, 2, 3]
    by_trial = {int(r.data.tags["sandbox.trial"]): r for r in children}
    for t in trials:
        run = by_trial[t.number]
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.data.params["optuna.refine.k"] == str(t.params["refine.k"])
        assert run.data.params["refine.k"] == str(t.params["refine.k"])  # the config as params
        if t.state == TrialState.FAIL:
            assert run.info.status == "FAILED" and "refine.k" in run.data.tags["optuna.error"]
        else:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["data/quality_score"] == pytest.approx(t.value)
    best = study.best_trial
    assert parent.data.tags["sandbox.best_trials"] == str(best.number)
    assert parent.data.metrics["best_quality_score"] == pytest.approx(best.value)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study_summary.json", "best_recipe.yaml", "plots"} <= arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.html" in plots
    recipe = Path(client.download_artifacts(parent.info.run_id, "best_recipe.yaml",
                                            str(tmp_path)))
    import yaml

    assert "process" in yaml.safe_load(recipe.read_text())
    assert parent.info.status == "FINISHED"


@pytest.mark.slow
def test_multi_objective_parallel_sweep_with_a_constraint(tmp_path, tiny):
    from optuna.trial import TrialState

    sweep(tmp_path, tiny + [
        "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra.sweeper.study_name=multi",
        "objective=[quality_score,retention]", "hydra.sweeper.direction=[maximize,maximize]",
        "hydra.sweeper.constraints=['retention >= 0.5']"])
    study = load(tmp_path, "multi")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete, [t.user_attrs.get("error") for t in study.trials]
    for t in complete:
        m = t.user_attrs["metrics"]
        assert t.values == pytest.approx([m["quality_score"], m["retention"]])
        assert t.user_attrs["constraints"] == pytest.approx([0.5 - m["retention"]])
        assert (Path(t.user_attrs["run_dir"]) / "trial.log").is_file()  # its own process
    pareto = {t.number for t in study.best_trials}
    assert pareto and all(t.user_attrs["constraints"][0] <= 0 for t in study.best_trials)
    client, all_runs = runs(tmp_path)
    parent = next(r for r in all_runs if r.data.tags.get("sandbox.search") == "parent")
    assert parent.data.metrics["pareto_size"] == len(pareto)
    assert set(parent.data.tags["sandbox.best_trials"].split(",")) == {str(n) for n in pareto}
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")}
    assert arts == {f"pareto/trial_{n}_recipe.yaml" for n in pareto}


@pytest.mark.slow
def test_resume_after_a_killed_sweep_continues_numbering(tmp_path, tiny):
    import optuna
    from optuna.trial import TrialState

    over = tiny + ["hydra.sweeper.n_trials=5", "hydra.sweeper.study_name=resume"]
    proc = sweep(tmp_path, over, popen=True)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            time.sleep(0.3)
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                trials = optuna.load_study(study_name="resume", storage=storage).trials
            except Exception:
                continue
            if sum(t.state == TrialState.COMPLETE for t in trials) >= 2 and \
                    any(t.state == TrialState.RUNNING for t in trials):
                break
        else:
            pytest.fail("the sweep did not reach two complete trials in time")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = optuna.load_study(study_name="resume", storage=storage).trials
    running = [t for t in before if t.state == TrialState.RUNNING]
    assert len(running) == 1

    out = sweep(tmp_path, over)
    assert "interrupted" in out.stdout
    study = optuna.load_study(study_name="resume", storage=storage)
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))  # numbering continues
    killed = trials[running[0].number]
    assert killed.state == TrialState.FAIL and killed.user_attrs["interrupted"]
    counted = [t for t in trials if t.state != TrialState.RUNNING and
               not t.user_attrs.get("interrupted")]
    assert len(counted) == 5  # n_trials is the study's total
    assert len(trials) == 6
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params  # tried again, first
    assert retry[0].number == len(before)

    # the same command once more: nothing left to do
    out = sweep(tmp_path, over)
    assert len(load(tmp_path, "resume").trials) == 6
    client, all_runs = runs(tmp_path)
    parents = [r for r in all_runs if r.data.tags.get("sandbox.search") == "parent"]
    assert len(parents) == 1  # the resumed study keeps its parent run
