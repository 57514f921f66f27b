"""Sweeps and the winner's curse: ``hydra.sweeper.confirm_seeds`` re-runs the best trial(s) with
fresh seeds and reports the confirmed value beside the searched one, and the study summary counts
the trials within noise of the best. Checked on tiny Hydra apps whose metrics are known functions
of their parameters and seed, so every number has a known answer; one slow end-to-end sweep of
``python -m sandbox`` checks the MLflow side."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from sandbox.errors import ConfigError
from sandbox.search.confirm import check_settings, fresh_seeds, seed_mode, targets
from sandbox.search.noise import UNKNOWN, curse, within_noise
from sandbox.verdict import Estimate

ROOT = Path(__file__).resolve().parent.parent

# The trial's value is a known function of its parameters and seed: a bowl around x=2, a
# deterministic seed effect of -0.1, 0 or +0.1, and `luck` that only the search's seed (0) gets
# when y=1: the search's winner is lucky, and fresh seeds (>= 1000) take the luck away.
SEED_APP = '''
import hydra


def value(x, y, seed, luck):
    return (x - 2) ** 2 + (luck if (y == 1 and seed < 1000) else 0.0) + 0.1 * ((seed % 3) - 1)


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg):
    if cfg.seed >= cfg.fail_from_seed:
        raise RuntimeError(f"seed {cfg.seed} crashed")
    v = value(cfg.x, cfg.y, cfg.seed, cfg.luck)
    if cfg.width > 0:  # the trial reports an interval of half-width `width` around its value
        return {"loss": v, "loss_ci_low": v - cfg.width, "loss_ci_high": v + cfg.width}
    return v


if __name__ == "__main__":
    main()
'''

# The same function in an app that runs several seeds itself (`seeds`, as `python -m sandbox`
# does) and reports the mean with its interval and per-seed values (sandbox.verdict's names).
SEEDS_APP = '''
import hydra
from omegaconf import OmegaConf

from sandbox.verdict import flat, over_seeds


def value(x, y, seed, luck):
    return (x - 2) ** 2 + (luck if (y == 1 and seed < 1000) else 0.0) + 0.1 * ((seed % 3) - 1)


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg):
    seeds = OmegaConf.to_container(cfg.seeds) if OmegaConf.is_config(cfg.seeds) else cfg.seeds
    seeds = seeds if isinstance(seeds, list) else [cfg.seed + i for i in range(seeds)]
    per_seed = {s: value(cfg.x, cfg.y, s, cfg.luck) for s in seeds}
    if len(seeds) == 1:
        return {"loss": per_seed[seeds[0]]}
    return {**flat("loss", over_seeds(per_seed)), "n_seeds": float(len(seeds))}


if __name__ == "__main__":
    main()
'''

CONFIG = '''
defaults:
  - override hydra/sweeper: sandbox_optuna
  - _self_
x: 0.0
y: 0
seed: 0
luck: -5.0
width: 0.0
fail_from_seed: 1000000
hydra:
  sweeper:
    storage: sqlite:///optuna.db
    study_name: confirm
    n_trials: 6
    sampler:
      seed: 0
    params:
      x: interval(-5.0, 5.0)
      y: range(0, 1)
'''


def value(x, y, seed, luck=-5.0):
    return (x - 2) ** 2 + (luck if (y == 1 and seed < 1000) else 0.0) + 0.1 * ((seed % 3) - 1)


def t_interval(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def make_app(tmp_path: Path, source: str, extra_config: str = "") -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(source)
    (app / "config.yaml").write_text(CONFIG + extra_config)
    return app


def run_app(app: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sweep_dir = app / "multirun" / str(len(list((app / "multirun").glob("*"))) if
                                       (app / "multirun").exists() else 0)
    return subprocess.run([sys.executable, "app.py", "--multirun", *overrides,
                           f"hydra.sweep.dir={sweep_dir}"], cwd=app, env=env,
                          capture_output=True, text=True, timeout=240)


def load_study(app: Path):
    import optuna

    return optuna.load_study(study_name="confirm", storage=f"sqlite:///{app / 'optuna.db'}")


def summary_of(app: Path, sweep: int = 0) -> dict:
    return json.loads((app / "multirun" / str(sweep) / "study_summary.json").read_text())


# ============================================================================ confirm_seeds
@pytest.mark.parametrize("luck, verdict", [(-5.0, "worse"), (0.0, "consistent")])
def test_the_best_trial_is_confirmed_with_fresh_seeds(tmp_path, luck, verdict):
    app = make_app(tmp_path, SEED_APP)
    out = run_app(app, "hydra.sweeper.confirm_seeds=3", f"luck={luck}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = load_study(app)
    best = study.best_trial
    x, y = best.params["x"], best.params["y"]
    assert best.value == pytest.approx(value(x, y, 0, luck))  # searched with the config's seed
    # re-run once per fresh seed (the config's seed + 1000, ...), each in its own run dir
    seeds = [1000, 1001, 1002]
    for s in seeds:
        assert (app / "multirun" / "0" / f"confirm_{best.number}_seed{s}").is_dir()
    (record,) = summary_of(app)["confirmations"]
    assert record["trial"] == best.number and record["seeds"] == seeds
    assert record["status"] == "ok" and record["params"] == best.params
    confirmed = record["objectives"]["objective"]
    per_seed = [value(x, y, s, luck) for s in seeds]
    assert [confirmed["per_seed"][str(s)] for s in seeds] == pytest.approx(per_seed)
    mean, low, high = t_interval(per_seed)
    assert (confirmed["mean"], confirmed["low"], confirmed["high"]) == \
        pytest.approx((mean, low, high))
    assert confirmed["searched"] == pytest.approx(best.value)
    assert confirmed["verdict"] == verdict
    # beside the searched value in the console, saying plainly when the winner did not hold up
    line = next(ln for ln in out.stdout.splitlines() if f"confirmed trial {best.number}" in ln)
    assert f"objective {mean:.4g} ±" in line and f"searched {best.value:.4g}" in line
    assert ("Winner's curse" in line) == (verdict == "worse")
    if verdict == "worse":  # the luck (-5) was in the search only
        assert y == 1 and mean - best.value == pytest.approx(5.1)
        assert f"expect about {mean:.4g}, not {best.value:.4g}" in line
    # and in hydra-optuna-sweeper's results file
    results = yaml.safe_load((app / "multirun" / "0" / "optimization_results.yaml").read_text())
    assert results["confirmed"]["value"] == pytest.approx(mean)
    assert results["confirmed"]["verdict"] == verdict
    # the trials report no intervals: the within-noise count is unknown, not zero
    noise = summary_of(app)["within_noise"]["objective"]
    assert noise["count"] is None and noise["text"] == UNKNOWN
    assert f"within noise: {UNKNOWN}" in out.stdout

    if verdict == "worse":  # the same command again: nothing to search, nothing to confirm
        again = run_app(app, "hydra.sweeper.confirm_seeds=3", f"luck={luck}")
        assert again.returncode == 0, again.stdout[-3000:]
        assert "already confirmed" in again.stdout
        assert not list((app / "multirun" / "1").glob("confirm_*"))
        assert len(load_study(app).trials) == 6
        assert summary_of(app, 1)["confirmations"] == [record]


def test_a_failed_confirmation_is_reported_and_the_search_stands(tmp_path):
    app = make_app(tmp_path, SEED_APP)
    out = run_app(app, "hydra.sweeper.confirm_seeds=2", "fail_from_seed=1001")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    best = load_study(app).best_trial
    (record,) = summary_of(app)["confirmations"]
    assert record["trial"] == best.number and record["status"] == "failed"
    assert "seed 1001" in record["error"] and "crashed" in record["error"]
    assert "objectives" not in record
    assert f"confirmation of trial {best.number} failed" in out.stdout
    assert f"confirmed trial {best.number} with 2 fresh seeds (1000, 1001): the confirmation " \
           f"failed" in out.stdout
    results = yaml.safe_load((app / "multirun" / "0" / "optimization_results.yaml").read_text())
    assert results["best_trial"] == best.number and "confirmed" not in results


def test_an_app_that_reads_seeds_is_confirmed_in_one_run_per_trial(tmp_path):
    """`python -m sandbox`'s way: one run with `seeds=[...]` reporting the mean and interval;
    two parallel trial processes and confirm_top=2: the two best trials, each its own process."""
    app = make_app(tmp_path, SEEDS_APP, "seeds: 1\n")
    out = run_app(app, "+objective=loss", "hydra.sweeper.confirm_seeds=4",
                  "hydra.sweeper.confirm_top=2", "hydra.sweeper.n_jobs=2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = load_study(app)
    ranked = sorted(study.trials, key=lambda t: (t.value, t.number))[:2]
    records = {r["trial"]: r for r in summary_of(app)["confirmations"]}
    assert sorted(records) == sorted(t.number for t in ranked)
    seeds = [1000, 1001, 1002, 1003]
    for t in ranked:
        run_dir = app / "multirun" / "0" / f"confirm_{t.number}"
        assert (run_dir / "trial.log").is_file()  # one process for all four seeds
        assert "seeds=[1000,1001,1002,1003]" in (run_dir / "trial.log").read_text()
        r = records[t.number]
        assert r["mode"] == "seeds" and r["seeds"] == seeds
        per_seed = [value(t.params["x"], t.params["y"], s) for s in seeds]
        mean, low, high = t_interval(per_seed)
        loss = r["objectives"]["loss"]
        assert (loss["mean"], loss["low"], loss["high"]) == pytest.approx((mean, low, high))
        assert [loss["per_seed"][str(s)] for s in seeds] == pytest.approx(per_seed)
        assert loss["n"] == 4 and loss["method"] == "seeds"


def test_confirmation_settings_are_checked_before_the_search(tmp_path):
    app = make_app(tmp_path, SEED_APP)
    out = run_app(app, "hydra.sweeper.confirm_seeds=3", "~seed")  # an app with no seed to set
    assert out.returncode == 2, out.stdout[-3000:]
    assert "hydra.sweeper.confirm_seeds needs a `seed` key" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not (app / "multirun" / "0" / "0").exists()  # no trial ran
    for bad, message in [((1, None), "confirm_seeds=1"), ((-2, None), "confirm_seeds=-2"),
                         (("many", None), "confirm_seeds=many"), ((3, 0), "confirm_top=0")]:
        with pytest.raises(ConfigError, match=message):
            check_settings(*bad)
    assert check_settings(0, None) == (0, None) and check_settings(3, 2) == (3, 2)


def test_fresh_seeds_and_how_the_app_is_seeded():
    from omegaconf import OmegaConf

    assert fresh_seeds(OmegaConf.create({"seed": 42, "seeds": 1}), 3) == [1042, 1043, 1044]
    assert fresh_seeds(OmegaConf.create({"seeds": 1}), 2) == [1000, 1001]
    assert seed_mode(OmegaConf.create({"seed": 42, "seeds": 3})) == "seeds"
    assert seed_mode(OmegaConf.create({"seed": 42})) == "seed"
    with pytest.raises(ConfigError, match="needs a `seed` key"):
        seed_mode(OmegaConf.create({"x": 1}))


# ============================================================================ within noise
def test_the_summary_counts_the_trials_within_noise_of_the_best(tmp_path):
    """Every trial reports the interval value ± 0.5; by the z test on two such intervals a trial
    is within noise of the best exactly when its value is less than 0.5 * sqrt(2) above it."""
    app = make_app(tmp_path, SEED_APP)
    out = run_app(app, "+objective=loss", "width=0.5", "hydra.sweeper.n_trials=12")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = load_study(app)
    best = study.best_trial
    gaps = {t.number: t.value - best.value for t in study.trials if t.number != best.number}
    assert all(abs(g - 0.5 * math.sqrt(2)) > 1e-3 for g in gaps.values())  # no borderline case
    expected = sorted(n for n, g in gaps.items() if g < 0.5 * math.sqrt(2))
    noise = summary_of(app)["within_noise"]["loss"]
    assert noise["best_trial"] == best.number
    assert sorted(noise["within"]) == expected and noise["count"] == len(expected)
    assert noise["others"] == 11 and noise["untested"] == []
    assert f"within noise: {len(expected)} of 11 other completed trial(s)" in out.stdout


class _Trials:
    """An in-memory study filled with finished trials of known values and metrics."""

    def __init__(self, directions=("minimize",)):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(directions=list(directions))

    def add(self, values, metrics=None, constraints=None):
        import optuna
        from optuna.distributions import FloatDistribution

        attrs = {"metrics": metrics or {}}
        if constraints is not None:
            attrs["constraints"] = constraints
        values = values if isinstance(values, list) else [values]
        self.study.add_trial(optuna.trial.create_trial(
            values=values, params={"x": 0.0}, distributions={"x": FloatDistribution(-1, 1)},
            user_attrs=attrs))
        return self


def test_within_noise_by_interval_by_paired_seeds_and_unknown():
    from sandbox.search.summary import best_trials

    def bootstrap(v, half):
        return {"loss": v, "loss_ci_low": v - half, "loss_ci_high": v + half}

    # intervals of half-width 1.96 (se 1 each): within noise when the gap < 1.96 * sqrt(2) = 2.77
    s = _Trials().add(10.0, bootstrap(10.0, 1.96)).add(12.0, bootstrap(12.0, 1.96)) \
        .add(13.5, bootstrap(13.5, 1.96)).add(11.0).add(10.5, bootstrap(10.5, 1.96),
                                                          constraints=[0.2]).study
    (entry,) = within_noise(s, ["loss"], best_trials(s)).values()
    assert entry["best_trial"] == 0 and entry["within"] == [1]  # 13.5 is 3.5 away: significant
    assert entry["untested"] == [3]  # no interval; trial 4 is infeasible: not counted
    assert entry["others"] == 3 and entry["count"] == 1
    assert "1 of 2 other completed trial(s)" in entry["text"]
    assert "1 more report no interval" in entry["text"]

    # the same three seeds everywhere: a paired t test over seeds. Differences 0.1, 0.2, 0.3
    # (t = 3.46, df 2, p = 0.074) are noise; 0.9, 1.0, 1.1 (t = 17.3, p = 0.003) are not
    def seeds(values):
        out = {f"loss.seed{s}": v for s, v in zip((1, 2, 3), values)}
        return {"loss": sum(values) / 3, "n_seeds": 3.0, **out}

    s = _Trials().add(1.0, seeds([1.0, 1.0, 1.0])).add(1.2, seeds([1.1, 1.2, 1.3])) \
        .add(2.0, seeds([1.9, 2.0, 2.1])).study
    (entry,) = within_noise(s, ["loss"], best_trials(s)).values()
    assert entry["within"] == [1] and entry["count"] == 1 and entry["methods"] == ["seeds"]

    # nobody reports an interval: unknown, not "0 within noise"
    s = _Trials().add(1.0).add(2.0).study
    (entry,) = within_noise(s, ["loss"], best_trials(s)).values()
    assert entry["count"] is None and entry["text"] == UNKNOWN


def test_within_noise_per_objective_for_a_pareto_front():
    from sandbox.search.summary import best_trials

    def m(a, b):
        return {"ppl": a, "ppl_ci_low": a - 1.96, "ppl_ci_high": a + 1.96,
                "keep": b, "keep_ci_low": b - 0.0196, "keep_ci_high": b + 0.0196}

    s = _Trials(("minimize", "maximize")).add([10.0, 0.5], m(10.0, 0.5)) \
        .add([11.0, 0.9], m(11.0, 0.9)).add([20.0, 0.89], m(20.0, 0.89)).study
    noise = within_noise(s, ["ppl", "keep"], best_trials(s))
    assert noise["ppl"]["best_trial"] == 0 and noise["ppl"]["within"] == [1]
    assert noise["keep"]["best_trial"] == 1 and noise["keep"]["within"] == [2]


# ============================================================================ pieces
def test_which_trials_are_confirmed():
    s = _Trials().add(3.0).add(1.0).add(2.0).add(0.5, constraints=[1.0]).study
    assert [t.number for t in targets(s, None)] == [1]  # the best feasible trial
    assert [t.number for t in targets(s, 2)] == [1, 2]
    # a front of five: confirm_top=3 takes both ends and the middle; the default is 3
    front = _Trials(("minimize", "maximize"))
    for a, b in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (5, 1)]:
        front.add([float(a), float(b)])
    assert [t.values[0] for t in targets(front.study, 3)] == [1.0, 3.0, 5.0]
    assert len(targets(front.study, None)) == 3
    assert [t.values[0] for t in targets(front.study, 9)] == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("searched, low, high, maximize, verdict", [
    (1.0, 1.5, 2.5, False, "worse"), (3.0, 1.5, 2.5, False, "better"),
    (2.0, 1.5, 2.5, False, "consistent"), (3.0, 1.5, 2.5, True, "worse"),
    (1.0, 1.5, 2.5, True, "better"), (2.0, math.nan, math.nan, False, "no interval"),
])
def test_the_winners_curse_is_named_only_beyond_the_interval(searched, low, high, maximize,
                                                             verdict):
    assert curse(searched, Estimate(2.0, 0.5, 3, low, high, "seeds"), maximize) == verdict


# ============================================================================ end to end
@pytest.mark.slow
def test_a_sandbox_search_confirms_its_best_trial_in_mlflow(tmp_path, docs_file):
    from mlflow.tracking import MlflowClient

    from tests.conftest import TINY_TRAINER, write_eval_files, write_quality_reference

    over = ["hparams_search=trainer", "data_pool=jsonl", f"data_pool.path={docs_file}",
            "progress=false", "num_proc=1", f"cache_dir={tmp_path / 'cache'}",
            *write_quality_reference(tmp_path), *write_eval_files(tmp_path),
            *[o for o in TINY_TRAINER if not o.startswith("trainer.n_layer=")],  # searched
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=null",
            "hydra.sweeper.confirm_seeds=2", f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SANDBOX_PARENT_RUN_ID", None)
    out = subprocess.run([sys.executable, "-m", "sandbox", "--multirun", *over], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="trainer", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    best = study.best_trial
    # a single-seed trial reports its held-out bits_per_byte with a bootstrap interval
    assert "bits_per_byte_ci_low" in best.user_attrs["metrics"]
    summary = json.loads((tmp_path / "multirun" / "study_summary.json").read_text())
    noise = summary["within_noise"]["bits_per_byte"]
    assert noise["count"] in (0, 1) and noise["methods"] == ["bootstrap"]
    (record,) = summary["confirmations"]
    assert record["trial"] == best.number and record["seeds"] == [1042, 1043]  # seed 42 + 1000
    confirmed = record["objectives"]["bits_per_byte"]
    assert confirmed["n"] == 2 and confirmed["method"] == "seeds"
    assert sorted(confirmed["per_seed"]) == ["1042", "1043"]
    assert confirmed["low"] < confirmed["mean"] < confirmed["high"]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sandbox")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("sandbox.search") == "parent")
    (confirmation,) = [r for r in runs if r.data.tags.get("sandbox.confirms") == str(best.number)]
    assert confirmation.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert confirmation.info.run_name.startswith(f"trial {best.number} confirmation")
    assert confirmation.data.metrics["eval/bits_per_byte"] == pytest.approx(confirmed["mean"])
    metrics = parent.data.metrics
    assert metrics["confirmed_bits_per_byte"] == pytest.approx(confirmed["mean"])
    assert metrics["confirmed_bits_per_byte_ci_low"] == pytest.approx(confirmed["low"])
    assert metrics["confirmed_bits_per_byte_ci_high"] == pytest.approx(confirmed["high"])
    assert metrics["confirmed_bits_per_byte.seed1042"] == pytest.approx(confirmed["per_seed"]["1042"])
    assert metrics["trials_within_noise"] == noise["count"]
    assert parent.data.tags["sandbox.confirmed_trials"] == str(best.number)
    assert parent.data.tags["sandbox.winners_curse"] == \
        (f"trial {best.number}: perplexity" if confirmed["verdict"] == "worse" else "none")
    assert f"confirmed trial {best.number} with 2 fresh seeds (1042, 1043)" in out.stdout
