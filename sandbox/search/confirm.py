"""Re-running a search's winners with fresh seeds (``hydra.sweeper.confirm_seeds=K``).

The best of many noisy trials is biased towards luck (the winner's curse). When the search ends,
each confirmed trial (``targets``: the best one, or the ``confirm_top`` best; with several
objectives Pareto-optimal ones spread along the front) runs once more with its parameters and K
seeds the search never used (``fresh_seeds``: the config's ``seed`` + 1000, + 1001, ...), through
the launcher its trials used, as a child run of the study's MLflow run tagged
``sandbox.confirms=<trial>``:

* an app with a ``seeds`` key (``python -m sandbox``): one run with ``seeds=[s1,...,sK]``; it
  trains and evaluates once per seed and reports each metric as the mean with its interval over
  seeds (``NAME_ci_low``, ...; ``sandbox.verdict``);
* an app with only a ``seed`` key (any Hydra app): K runs, ``seed=s1`` ... ``seed=sK``; the
  values are aggregated here (mean, t interval).

Each confirmation is stored in the study's user attr ``confirmations`` (by trial number), so the
summary, ``study_summary.json`` and the parent run report it beside the searched value, and a
resumed sweep whose winner was already confirmed with the same seeds does not run it again.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from sandbox import env_vars
from sandbox.errors import ConfigError
from sandbox.search.noise import curse, feasible
from sandbox.search.trial import read_result, returned_values
from sandbox.verdict import Estimate, from_flat, over_seeds

SEED_OFFSET = 1000  # fresh seeds start this far above the config's seed
DEFAULT_TOP = 1  # confirm_top when not set, one objective: the best trial
DEFAULT_TOP_PARETO = 3  # several objectives: at most this many Pareto-optimal trials
ATTR = "confirmations"  # the study's user attr


def check_settings(confirm_seeds: Any, confirm_top: Any) -> tuple[int, int | None]:
    """``hydra.sweeper.confirm_seeds`` / ``confirm_top`` as numbers, or a ConfigError."""
    try:
        k = int(confirm_seeds or 0)
    except (TypeError, ValueError):
        k = -1
    if k < 0 or k == 1:
        raise ConfigError(f"hydra.sweeper.confirm_seeds={confirm_seeds}: give 0 (off) or a number "
                          f"of fresh seeds >= 2 (an interval over seeds needs two; 3 is a good "
                          f"start): the best trial is re-run with them when the search ends.")
    if confirm_top is None:
        return k, None
    try:
        top = int(confirm_top)
    except (TypeError, ValueError):
        top = 0
    if top < 1:
        raise ConfigError(f"hydra.sweeper.confirm_top={confirm_top}: give how many of the best "
                          f"trials to confirm (>= 1), or null (1 for one objective, up to "
                          f"{DEFAULT_TOP_PARETO} Pareto-optimal trials for several).")
    return k, top


def seed_mode(config) -> str:
    """``seeds`` when the app runs several seeds itself (the sandbox), ``seed`` when it takes
    one seed per run; a ConfigError when its config has neither key."""
    if OmegaConf.select(config, "seeds", default=None) is not None:
        return "seeds"
    if OmegaConf.select(config, "seed", default=None) is not None:
        return "seed"
    raise ConfigError("hydra.sweeper.confirm_seeds needs a `seed` key in the app's config (the "
                      "confirmation re-runs the best trial with fresh seeds: seed=1000, "
                      "seed=1001, ...), or a `seeds` key the app reads to run several seeds "
                      "itself. Add `seed: 0` to the config and use it in the task function, or "
                      "set hydra.sweeper.confirm_seeds=0.")


def fresh_seeds(config, k: int) -> list[int]:
    """K seeds the search did not use: the config's ``seed`` + ``SEED_OFFSET`` and up."""
    base = int(OmegaConf.select(config, "seed", default=0) or 0)
    return [base + SEED_OFFSET + i for i in range(k)]


def targets(study, top: int | None) -> list:
    """The trials to confirm: the ``top`` best completed feasible ones (one objective, default
    1), or up to ``top`` Pareto-optimal ones (default ``DEFAULT_TOP_PARETO``) spread evenly
    along the front by the first objective (its two ends first)."""
    from optuna.trial import TrialState

    from sandbox.search.summary import best_trials

    if len(study.directions) == 1:
        maximize = study.directions[0].name == "MAXIMIZE"
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and feasible(t)]
        # stable: among equal values the earliest trial comes first, as in study.best_trial
        done.sort(key=lambda t: -t.value if maximize else t.value)
        return done[:top or DEFAULT_TOP]
    front = sorted(best_trials(study), key=lambda t: (t.values[0], t.number))
    n = top or DEFAULT_TOP_PARETO
    if n >= len(front):
        return front
    if n == 1:
        return [front[0]]
    picks = sorted({round(i * (len(front) - 1) / (n - 1)) for i in range(n)})
    return [front[i] for i in picks]


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def estimate_record(searched: float, est: Estimate, maximize: bool) -> dict[str, Any]:
    """One objective of a confirmation, as stored (JSON: no NaN)."""
    return {"searched": _finite(searched), "mean": _finite(est.mean), "std": _finite(est.std),
            "low": _finite(est.low), "high": _finite(est.high), "n": est.n,
            "method": est.method,
            "per_seed": {str(s): float(v) for s, v in est.per_seed.items()},
            "diff": _finite(est.mean - searched), "verdict": curse(searched, est, maximize)}


def stored_estimate(record: dict[str, Any]) -> Estimate:
    """The ``Estimate`` back from ``estimate_record``."""
    def num(key):
        v = record.get(key)
        return math.nan if v is None else float(v)

    return Estimate(num("mean"), num("std"), int(record.get("n") or 1), num("low"), num("high"),
                    str(record.get("method") or "none"),
                    {int(s): float(v) for s, v in (record.get("per_seed") or {}).items()})


class Confirmer:
    """Runs the confirmations of one sweep. ``launcher``: the one the trials used (without
    pruning); ``base``: every trial's fixed overrides; ``overrides_of(params)``: a trial's
    sampled ones; ``parent_run_id``: the study's MLflow run (or None)."""

    def __init__(self, config, study, launcher, base: list[str],
                 overrides_of: Callable[[dict], list[str]], objectives: list[str],
                 directions: list[str], sweep_dir: Path, parent_run_id: str | None,
                 say: Callable[[str], None]):
        self.config, self.study, self.launcher = config, study, launcher
        self.base, self.overrides_of = base, overrides_of
        self.objectives, self.directions = objectives, directions
        self.sweep_dir, self.parent_run_id, self.say = sweep_dir, parent_run_id, say
        self.mode = seed_mode(config)

    def run(self, k: int, top: int | None) -> list[dict[str, Any]]:
        """Confirm the targets with K fresh seeds (reusing a stored confirmation with the same
        seeds); returns the records, also stored in the study."""
        seeds = fresh_seeds(self.config, k)
        stored = dict(self.study.user_attrs.get(ATTR) or {})
        records = []
        for trial in targets(self.study, top):
            old = stored.get(str(trial.number))
            if old and old.get("status") == "ok" and old.get("seeds") == seeds:
                self.say(f"trial {trial.number} was already confirmed with seeds "
                         f"{_seed_text(seeds)}: not run again")
                records.append(old)
                continue
            self.say(f"confirming trial {trial.number} with {k} fresh seeds "
                     f"({_seed_text(seeds)}): {json.dumps(trial.params)}")
            record = self.confirm(trial, seeds)
            stored[str(trial.number)] = record
            self.study.set_user_attr(ATTR, stored)
            records.append(record)
        return records

    # ------------------------------------------------------------------ one trial
    def _overrides(self, trial, seed_override: str) -> list[str]:
        """The trial's overrides without any seed setting, plus ``seed_override``."""
        keep = [o for o in self.base + self.overrides_of(dict(trial.params))
                if o.partition("=")[0].lstrip("+~") not in ("seed", "seeds")]
        return keep + [seed_override]

    def _launch(self, trial, overrides: list[str], subdir: str, tags: dict[str, str]):
        """One job: ``(metrics, error, run_dir)``."""
        results_dir = self.sweep_dir / ".trials"
        results_dir.mkdir(parents=True, exist_ok=True)
        result_file = results_dir / f"{subdir}.json"
        result_file.unlink(missing_ok=True)
        env = {env_vars.RESULT_FILE: str(result_file), env_vars.RUN_TAGS: json.dumps(tags)}
        if self.parent_run_id:
            env[env_vars.PARENT_RUN_ID] = self.parent_run_id
        run_dir, error, returned = self.launcher.launch(trial, overrides, env, subdir=subdir)
        result = read_result(result_file)
        if result is None and error is None:  # a plain Hydra app, run in this process
            result = {"status": "ok", "metrics": {}, "returned": returned}
        if result is None:
            return {}, error or "the run ended without a result", run_dir
        if result.get("status") != "ok":
            return {}, result.get("error") or error or result.get("status"), run_dir
        metrics = {k: v for k, v in (result.get("metrics") or {}).items() if v is not None}
        if not metrics:
            try:
                metrics = returned_values(result.get("returned"), self.objectives)
            except ValueError as e:
                return {}, str(e), run_dir
        missing = [o for o in self.objectives if metrics.get(o) is None]
        if missing:
            return {}, (f"objective metric(s) {missing} not returned by the confirmation run; "
                        f"it returned {', '.join(sorted(metrics)) or 'nothing'}"), run_dir
        return metrics, None, run_dir

    def _tags(self, trial, seeds: list[int], seed: int | None = None) -> dict[str, str]:
        label = f"{trial.number} confirmation" + ("" if seed is None else f" seed {seed}")
        return {"sandbox.study": self.study.study_name, "sandbox.trial": label,
                "sandbox.confirms": str(trial.number),
                "sandbox.confirm_seeds": ",".join(map(str, seeds))}

    def confirm(self, trial, seeds: list[int]) -> dict[str, Any]:
        """Run ``trial`` with ``seeds`` and return its record."""
        t0 = time.perf_counter()
        record: dict[str, Any] = {"trial": trial.number, "seeds": seeds, "mode": self.mode,
                                  "params": dict(trial.params), "status": "ok", "error": None}
        estimates: dict[str, Estimate] = {}
        if self.mode == "seeds":
            seeds_text = "[" + ",".join(map(str, seeds)) + "]"
            metrics, error, run_dir = self._launch(
                trial, self._overrides(trial, f"seeds={seeds_text}"), f"confirm_{trial.number}",
                self._tags(trial, seeds))
            record["run_dirs"] = [str(run_dir)] if run_dir else []
            if error is None:
                for name in self.objectives:
                    est = from_flat(metrics, name)
                    if not est.has_interval and len(est.per_seed) >= 2:
                        est = over_seeds(est.per_seed)
                    estimates[name] = est
                if not any(e.has_interval for e in estimates.values()):
                    record["note"] = (f"the run reported no interval for "
                                      f"{', '.join(self.objectives)}: does the app read "
                                      f"`seeds` (run once per seed, report NAME_ci_low/high)?")
        else:
            values: dict[str, dict[int, float]] = {name: {} for name in self.objectives}
            record["run_dirs"], error = [], None
            for seed in seeds:
                metrics, error, run_dir = self._launch(
                    trial, self._overrides(trial, f"seed={seed}"),
                    f"confirm_{trial.number}_seed{seed}", self._tags(trial, seeds, seed))
                if run_dir:
                    record["run_dirs"].append(str(run_dir))
                if error is not None:
                    error = f"seed {seed}: {error}"
                    break
                for name in self.objectives:
                    values[name][seed] = float(metrics[name])
            if error is None:
                estimates = {name: over_seeds(v) for name, v in values.items()}
        record["seconds"] = time.perf_counter() - t0
        if error is not None:
            record.update(status="failed", error=str(error).strip()[-2000:])
            last = str(error).strip().splitlines()[-1:] or [""]
            self.say(f"[yellow]confirmation of trial {trial.number} failed[/]: {last[0][:300]}")
            return record
        record["objectives"] = {
            name: estimate_record(float(trial.values[i]), estimates[name],
                                  self.directions[i] == "maximize")
            for i, name in enumerate(self.objectives)}
        return record


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def confirmation_lines(study, objectives: list[str]) -> list[str]:
    """The summary's sentences on the stored confirmations of the study's current targets."""
    stored = study.user_attrs.get(ATTR) or {}
    lines = []
    for key in sorted(stored, key=int):
        record = stored[key]
        head = (f"confirmed trial {record['trial']} with {len(record['seeds'])} fresh seeds "
                f"({_seed_text(record['seeds'])})")
        if record.get("status") != "ok":
            err = str(record.get("error") or "").strip().splitlines()[-1:] or [""]
            lines.append(f"{head}: [yellow]the confirmation failed[/] ({err[0][:300]})")
            continue
        parts, cursed = [], []
        for name in objectives:
            r = (record.get("objectives") or {}).get(name)
            if r is None:
                continue
            est = stored_estimate(r)
            searched = r.get("searched")
            shown = f"{name} {est.text()}"
            if est.has_interval:
                shown += f" (95% interval {est.low:.4g} to {est.high:.4g})"
            shown += f", searched {searched:.4g}" if searched is not None else ""
            parts.append(shown)
            if r.get("verdict") == "worse":
                cursed.append(f"{name} (expect about {est.mean:.4g}, not {searched:.4g})")
        line = f"{head}: {'; '.join(parts)}"
        if cursed:
            line += (f". [bold yellow]Winner's curse[/]: the confirmed value is worse than the "
                     f"searched one by more than its interval: the search picked this trial "
                     f"partly for its luck; {', '.join(cursed)}")
        elif any((record.get("objectives") or {}).get(n, {}).get("verdict") == "consistent"
                 for n in objectives):
            line += ". The searched value lies within the confirmed interval"
        if record.get("note"):
            line += f". Note: {record['note']}"
        lines.append(line)
    return lines
