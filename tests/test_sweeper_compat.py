"""The Optuna sweeper behaves as hydra-optuna-sweeper users expect: any Hydra app whose task
function returns its objective, the hydra/sweeper/sampler group (grid built from the params),
max_failure_rate, search_space and custom_search_space, a failing sweep that exits non-zero, and
a resumed study that does not replay its first trials."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from sandbox.errors import ConfigError
from sandbox.search.study import derived_seed
from sandbox.search.sweeper import OptunaSearch, SweepFailed

ROOT = Path(__file__).resolve().parent.parent

PLAIN_APP = '''
import hydra


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg) -> float:
    if cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above {cfg.fail_above}")
    return (cfg.x - 2) ** 2 + cfg.y


if __name__ == "__main__":
    main()
'''

PLAIN_CONFIG = '''
defaults:
  - override hydra/sweeper: {sweeper}
  - _self_
x: 0.0
y: 0
fail_above: 100.0
hydra:
  sweeper:
    storage: sqlite:///optuna.db
    study_name: plain
    n_trials: 4
    sampler:
      seed: 0
    params:
      x: interval(-5.0, 5.0)
      y: range(0, 2)
'''


def objective(x: float, y: float) -> float:
    return (x - 2) ** 2 + y


@pytest.fixture
def plain_app(tmp_path) -> Path:
    """A Hydra app that knows nothing of the sandbox, configured for our sweeper by its familiar
    name, as an upstream user would write it."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(PLAIN_APP)
    (app / "config.yaml").write_text(PLAIN_CONFIG.format(sweeper="optuna"))
    return app


def run_app(app: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "app.py", "--multirun", *overrides], cwd=app, env=env,
                          capture_output=True, text=True, timeout=240)


def load_study(path: Path, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{path}")


# ============================================================================ any Hydra app
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_plain_hydra_app_is_swept_on_its_return_value(plain_app, n_jobs):
    from optuna.trial import TrialState

    out = run_app(plain_app, f"hydra.sweeper.n_jobs={n_jobs}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = load_study(plain_app / "optuna.db", "plain")
    assert len(study.trials) == 4
    for t in study.trials:
        assert t.state == TrialState.COMPLETE, t.user_attrs.get("error")
        assert t.value == pytest.approx(objective(t.params["x"], t.params["y"]))
    results = yaml.safe_load(next(plain_app.glob("multirun/*/*/optimization_results.yaml"))
                             .read_text())
    assert results["best_value"] == pytest.approx(study.best_value)
    assert results["best_params"] == study.best_params
    if n_jobs > 1:  # each trial was its own process: its return value came back by the callback
        assert len(list(plain_app.glob("multirun/*/*/*/trial.log"))) == 4


def test_a_sweep_whose_trials_all_fail_exits_non_zero(plain_app):
    out = run_app(plain_app, "hydra.sweeper.n_trials=3", "fail_above=-10.0")
    assert out.returncode == 1, out.stdout[-3000:]
    assert "the sweep failed: 3 of 3 trial(s) failed (no trial completed)" in out.stdout
    assert "is above -10.0" in out.stdout  # the trials' error, in one paragraph
    assert "Traceback" not in out.stdout + out.stderr


def test_a_config_error_of_the_sweep_is_one_paragraph_and_exit_2(plain_app):
    out = run_app(plain_app, "hydra.sweeper.max_failure_rate=1.5")
    assert out.returncode == 2
    assert "hydra.sweeper.max_failure_rate=1.5" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


# ============================================================================ in-process sweeps
class FakeHydraLauncher:
    """Hydra's launcher as the sweeper calls it (``n_jobs: 1``): runs ``fn(x, y, ...)`` on a
    trial's overrides and returns a JobReturn (COMPLETED with the value, or FAILED)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def launch(self, job_overrides, initial_job_idx):
        (overrides,) = job_overrides
        values = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in overrides)}
        self.calls.append(values)
        ret = JobReturn()
        try:
            ret._return_value, ret.status = self.fn(**values), JobStatus.COMPLETED
        except Exception as e:
            ret._return_value, ret.status = e, JobStatus.FAILED
        return [ret]


def search_for(app: Path, tmp_path: Path, overrides: list[str], fn) -> OptunaSearch:
    """The sweep ``app.py --multirun OVERRIDES`` would run (the config composed by Hydra, the
    sampler group included), with trials run by ``fn``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(app), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
                                 *overrides])
    node = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    search = OptunaSearch(**{k: v for k, v in node.items() if not k.startswith("_")})
    search.config, search.launcher = cfg, FakeHydraLauncher(fn)
    search.sweep_dir = tmp_path / "sweep"
    return search


@pytest.mark.parametrize("sampler, cls", [
    ("random", "RandomSampler"), ("tpe", "TPESampler"), ("nsgaii", "NSGAIISampler"),
    ("cmaes", "CmaEsSampler"), ("qmc", "QMCSampler"), ("gp", "GPSampler"),
])
def test_every_sampler_of_the_group_runs_a_sweep(plain_app, tmp_path, sampler, cls):
    from optuna.trial import TrialState

    search = search_for(plain_app, tmp_path, [f"hydra/sweeper/sampler={sampler}",
                                              "hydra.sweeper.n_trials=5"],
                        lambda x, y: objective(x, y))
    assert search.sampler_cfg["_target_"] == f"optuna.samplers.{cls}"
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    assert study.user_attrs["sampler"] == cls
    assert len(study.trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(t.value == pytest.approx(objective(t.params["x"], t.params["y"]))
               for t in study.trials)


def test_the_grid_sampler_visits_every_point_of_the_params_once(plain_app, tmp_path):
    search = search_for(plain_app, tmp_path, [
        "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=50",
        "hydra.sweeper.params.x='range(-1.0, 1.0, 0.5)'", "hydra.sweeper.params.y='choice(0, 5)'",
        "+hydra.sweeper.params.z=7"], lambda x, y, z: objective(x, y) + z)
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    points = sorted((t.params["x"], t.params["y"]) for t in study.trials)
    assert points == sorted((x, y) for x in (-1.0, -0.5, 0.0, 0.5, 1.0) for y in (0, 5))
    assert len(study.trials) == 10  # n_trials capped at the grid's size
    assert all(call["z"] == 7 for call in search.launcher.calls)  # fixed values still apply
    # an interval of floats has no grid: a config error saying what to write instead
    continuous = search_for(plain_app, tmp_path / "c", ["hydra/sweeper/sampler=grid"],
                            lambda x, y: 0.0)
    with pytest.raises(ConfigError, match=r"params.x: the grid sampler needs a finite set"):
        continuous.sweep([])


def test_another_samplers_settings_are_dropped_but_typos_are_errors(plain_app, tmp_path):
    # a config written for TPE (n_startup_trials) run with the random sampler
    search = search_for(plain_app, tmp_path, ["hydra/sweeper/sampler=random",
                                              "+hydra.sweeper.sampler.n_startup_trials=3",
                                              "hydra.sweeper.n_trials=2"],
                        lambda x, y: objective(x, y))
    search.sweep([])
    assert len(load_study(tmp_path / "optuna.db", "plain").trials) == 2
    typo = search_for(plain_app, tmp_path / "t", ["+hydra.sweeper.sampler.n_startup_trial=3"],
                      lambda x, y: 0.0)
    with pytest.raises(ConfigError, match="TPESampler does not take n_startup_trial"):
        typo.sweep([])


def test_max_failure_rate_stops_the_sweep_and_fails_it(plain_app, tmp_path):
    from optuna.trial import TrialState

    def fails_above_zero(x, y):
        if x > 0:
            raise ValueError("x > 0")
        return objective(x, y)

    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=20",
                                              "hydra.sweeper.max_failure_rate=0.1",
                                              "hydra/sweeper/sampler=random"], fails_above_zero)
    with pytest.raises(SweepFailed, match=r"more than hydra.sweeper.max_failure_rate=0.1"):
        search.sweep([])
    trials = load_study(tmp_path / "optuna.db", "plain").trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # stopped as soon as 3 > 0.1 * 20 trials had failed, not after all 20
    assert len(failed) == 3 and len(trials) < 20
    # the default (null) runs every trial, and a sweep with completed trials succeeds
    keep_going = search_for(plain_app, tmp_path / "d", ["hydra.sweeper.n_trials=12",
                                                        "hydra/sweeper/sampler=random"],
                            fails_above_zero)
    results = keep_going.sweep([])
    assert len(results) == 12
    assert {r["state"] for r in results} == {"COMPLETE", "FAIL"}


def test_no_completed_trial_fails_the_sweep(plain_app, tmp_path):
    def always_fails(x, y):
        raise RuntimeError("out of memory")

    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=2"], always_fails)
    with pytest.raises(SweepFailed, match=r"2 of 2 trial\(s\) failed \(no trial completed\)"
                                          r".*RuntimeError: out of memory"):
        search.sweep([])


@pytest.mark.parametrize("returned, error", [
    (None, "returned None"), ("abc", "returned 'abc'"), ([1.0, 2.0], "2 value"),
    (float("nan"), "not returned by the run"),
])
def test_an_unusable_return_value_fails_the_trial_with_a_reason(plain_app, tmp_path, returned,
                                                                error):
    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=1"],
                        lambda x, y: returned)
    with pytest.raises(SweepFailed):
        search.sweep([])
    (trial,) = load_study(tmp_path / "optuna.db", "plain").trials
    assert error in trial.user_attrs["error"]


def test_two_objectives_from_a_returned_sequence(plain_app, tmp_path):
    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=3",
                                              "hydra.sweeper.direction=[minimize,maximize]"],
                        lambda x, y: (objective(x, y), x))
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    for t in study.trials:
        assert t.values == pytest.approx([objective(t.params["x"], t.params["y"]), t.params["x"]])
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert {s["trial"] for s in results["solutions"]} == {t.number for t in study.best_trials}


def suggest_lr(cfg, trial) -> None:
    """A custom_search_space function: a parameter that depends on another one."""
    if trial.params["y"] == 2:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)


def test_search_space_and_custom_search_space(plain_app, tmp_path):
    from optuna.distributions import FloatDistribution

    seen = []

    def record(x, y, w, lr=None):
        seen.append((y, lr, w))
        return objective(x, y)

    config = plain_app / "config.yaml"
    config.write_text(config.read_text() + f"""
    custom_search_space: {__name__}.suggest_lr
    search_space:  # hydra-optuna-sweeper 1.1's form
      w: {{type: float, low: 0.0, high: 1.0}}
      x: {{type: int, low: 0, high: 1}}  # params.x wins
""")
    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=8",
                                              "hydra/sweeper/sampler=random"], record)
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    for t in study.trials:
        assert ("lr" in t.params) == (t.params["y"] == 2)
        assert 0.0 <= t.params["w"] <= 1.0
        assert t.distributions["x"] == FloatDistribution(-5.0, 5.0)  # params wins
    assert {y == 2 for y, _, _ in seen} == {True, False}
    assert all((lr is not None) == (y == 2) for y, lr, _ in seen)  # passed as overrides
    bad = [("hydra.sweeper.custom_search_space=no.such.module.f", "cannot import it"),
           ("+hydra.sweeper.search_space.w.step=1", "`log: true` and `step` do not go together"),
           ("hydra.sweeper.search_space.w.type=str", "needs `type: int | float | categorical`")]
    for i, (override, error) in enumerate(bad):
        with pytest.raises(ConfigError, match=error):
            search_for(plain_app, tmp_path / f"bad{i}",
                       [override, "+hydra.sweeper.search_space.w.log=true"] if "step" in override
                       else [override], record)


def test_a_resumed_study_with_a_fixed_seed_does_not_repeat_its_trials(plain_app, tmp_path):
    over = ["hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=3"]
    search_for(plain_app, tmp_path, over + ["hydra.sweeper.n_trials=3"],
               lambda x, y: objective(x, y)).sweep([])
    search_for(plain_app, tmp_path, over + ["hydra.sweeper.n_trials=6"],
               lambda x, y: objective(x, y)).sweep([])
    trials = load_study(tmp_path / "optuna.db", "plain").trials
    first = [t.params for t in trials[:3]]
    again = [t.params for t in trials[3:]]
    assert len(again) == 3 and not any(p in first for p in again)
    # a new study still starts from the seed as written: the same first trials
    fresh = tmp_path / "fresh"
    search_for(plain_app, fresh, over + ["hydra.sweeper.n_trials=3"],
               lambda x, y: objective(x, y)).sweep([])
    assert [t.params for t in load_study(fresh / "optuna.db", "plain").trials] == first
    assert derived_seed(3, 0) == 3 and derived_seed(3, 3) != derived_seed(3, 4) != 3


def test_the_sampler_group_composes_for_the_projects_searches():
    from tests.conftest import compose

    for sampler in ("random", "tpe", "nsgaii", "cmaes", "qmc", "gp", "grid"):
        cfg = compose(["hparams_search=data_quality", f"hydra/sweeper/sampler={sampler}"],
                      return_hydra_config=True)
        assert cfg.hydra.sweeper.sampler._target_.startswith("optuna.samplers.")
        assert cfg.hydra.runtime.choices["hydra/sweeper"] == "sandbox_optuna"


def test_an_app_reporting_metrics_without_an_objective_is_a_config_error(plain_app, tmp_path):
    from optuna.trial import TrialState

    from sandbox.search.trial import write_result

    def reports_metrics(x, y):  # what `python -m sandbox` does: every metric to the result file
        write_result("ok", {"perplexity": 3.0, "retention": 0.5})
        return None

    search = search_for(plain_app, tmp_path, ["hydra.sweeper.n_trials=5"], reports_metrics)
    with pytest.raises(ConfigError, match=r"no objective: set `objective: METRIC`.*perplexity"):
        search.sweep([])
    (trial,) = load_study(tmp_path / "optuna.db", "plain").trials  # stopped at the first
    assert trial.state == TrialState.FAIL
