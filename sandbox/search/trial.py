"""What a running trial sees: where to write its result, and whom to report intermediate values.

The sweeper runs a trial either in its own process (``n_jobs: 1``, through Hydra's launcher) or
as a child process (``n_jobs > 1``). Either way it sets, for the trial:

* ``SANDBOX_RESULT_FILE``: ``python -m sandbox`` writes ``{"status", "metrics", "error"}`` there
  (all metrics, so constraints can use metrics that are not objectives);
* an intermediate-value hook (``sandbox.steps.base.set_intermediate_hook``): the trainer calls
  ``env.report("train_loss", value, tokens_seen)``; the hook reports it to the Optuna trial and
  raises ``sandbox.steps.base.Pruned`` when the pruner says stop. In a child process the hook is
  rebuilt from ``SANDBOX_OPTUNA_*`` variables (the study's storage, trial id, reported name).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from sandbox import env_vars
from sandbox.steps.base import Pruned, set_intermediate_hook
from sandbox.utils import atomic_write_text


def write_result(status: str, metrics: dict[str, float] | None = None,
                 error: BaseException | None = None) -> None:
    """Write the trial's result where the sweeper asked (no-op outside a sweep)."""
    path = os.environ.get(env_vars.RESULT_FILE)
    if not path:
        return
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in (metrics or {}).items()}
    payload: dict[str, Any] = {"status": status, "metrics": clean}
    if error is not None:
        payload["error"] = f"{type(error).__name__}: {error}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), json.dumps(payload, indent=1))


def read_result(path: str | Path) -> dict[str, Any] | None:
    """The result a trial wrote, or None when it wrote none (or an unreadable one)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def make_hook(trial, prune_on: str, sign: float = 1.0) -> Callable[[str, float, int], None]:
    """A hook that reports ``prune_on`` values to ``trial`` and raises ``Pruned`` when told."""
    def hook(name: str, value: float, step: int) -> None:
        if name != prune_on or not math.isfinite(value):
            return
        trial.report(sign * float(value), int(step))
        if trial.should_prune():
            raise Pruned(f"pruned by the study's pruner at step {step} ({name}={value:.4g})")

    return hook


def install_hook_from_env() -> None:
    """In a trial's child process: report to the trial named by the environment."""
    trial_id = os.environ.get(env_vars.OPTUNA_TRIAL_ID)
    storage_url = os.environ.get(env_vars.OPTUNA_STORAGE)
    prune_on = os.environ.get(env_vars.OPTUNA_PRUNE_ON)
    if not (trial_id and storage_url and prune_on):
        return
    state: dict[str, Any] = {}

    def lazy(name: str, value: float, step: int) -> None:
        if name != prune_on:
            return
        if "hook" not in state:  # import optuna and connect only once a value arrives
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.load_study(study_name=os.environ[env_vars.OPTUNA_STUDY],
                                      storage=storage_url)
            trial = optuna.trial.Trial(study, int(trial_id))
            state["hook"] = make_hook(trial, prune_on,
                                      float(os.environ.get(env_vars.OPTUNA_SIGN, "1")))
        state["hook"](name, value, step)

    set_intermediate_hook(lazy)
