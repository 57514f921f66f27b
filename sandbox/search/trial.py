"""What a running trial sees: where to write its result, and whom to report intermediate values.

The sweeper runs a trial either in its own process (``n_jobs: 1``, through Hydra's launcher) or
as a child process (``n_jobs > 1``). Either way it sets, for the trial:

* ``SANDBOX_RESULT_FILE``: ``python -m sandbox`` writes ``{"status", "metrics", "error"}`` there
  (all metrics, so constraints can use metrics that are not objectives); in a child process of
  any other Hydra app, ``ResultCallback`` writes ``{"status", "returned"}`` (the task function's
  return value), which ``returned_values`` turns into the objective values;
* an intermediate-value hook (``make_hook``): the trainer calls
  ``env.report("train_loss", value, tokens_seen)``; the hook reports it to the Optuna trial and
  raises ``sandbox.steps.base.Pruned`` when the pruner says stop. ``python -m sandbox`` asks
  ``trial_hook()`` for it and passes it to the run (``sandbox.run(cfg, report=hook)``), which
  gives it to every step's ``StepEnv``. In this process the sweep sets it around the trial's
  launch (``reporting_to``: Hydra's launcher, not the sweep, calls the run); in a child process
  it is rebuilt from ``SANDBOX_OPTUNA_*`` variables (the study's storage, trial id, reported
  name).

A trial in a child process ends with its sweep (``end_with_sweep``): it runs in a process group
of its own, so a sweep killed with SIGKILL, which cannot stop it, would otherwise leave it
running to its end with no one to record it (its trial is retried anyway).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback

from sandbox import env_vars
from sandbox.steps.base import Pruned, ReportHook
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


def _jsonable(value: Any) -> Any:
    """A return value as JSON: numbers (numpy's too) as floats, sequences and mappings of them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return repr(value)
    return number if math.isfinite(number) else None


class ResultCallback(Callback):
    """In a trial's child process: when the app wrote no result (it is not the sandbox), write
    what its task function returned, or its error."""

    def on_job_end(self, config, job_return, **kwargs) -> None:
        path = os.environ.get(env_vars.RESULT_FILE)
        if not path or Path(path).exists():
            return
        if job_return.status == JobStatus.COMPLETED:
            payload = {"status": "ok", "metrics": {},
                       "returned": _jsonable(job_return._return_value)}
        else:
            error = job_return._return_value
            payload = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(path), json.dumps(payload, indent=1))


def returned_values(returned: Any, objectives: list[str]) -> dict[str, float]:
    """A task function's return value -> ``{objective name: value}``: a number (one
    objective), a sequence with one number per objective, or a mapping holding the objectives'
    names. ValueError says what was wrong."""
    expect = ("return a number" if len(objectives) == 1 else
              f"return {len(objectives)} numbers, one per hydra.sweeper.direction")
    if returned is None:
        raise ValueError(f"the task function returned None: {expect} (or set `objective:` to "
                         f"the metric names in a returned dict)")
    if isinstance(returned, dict):
        missing = [o for o in objectives if o not in returned]
        if missing:
            raise ValueError(f"the task function returned a dict without {missing}: set "
                             f"`objective:` in the config to its key(s) ({', '.join(returned)})")
        items = dict(returned)
    elif isinstance(returned, (list, tuple)):
        if len(returned) != len(objectives):
            raise ValueError(f"the task function returned {len(returned)} value(s) for "
                             f"{len(objectives)} direction(s): {expect}")
        items = dict(zip(objectives, returned))
    else:
        if len(objectives) != 1:
            raise ValueError(f"the task function returned one value for {len(objectives)} "
                             f"directions: {expect}")
        items = {objectives[0]: returned}
    out: dict[str, float] = {}
    for name, value in items.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            if name in objectives:
                raise ValueError(f"the task function returned {value!r} for {name}: {expect}") \
                    from None
            continue
        if math.isfinite(number):
            out[name] = number
    return out


def read_result(path: str | Path) -> dict[str, Any] | None:
    """The result a trial wrote, or None when it wrote none (or an unreadable one)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


# the hook of the trial that this process's sweep is launching in this thread (``reporting_to``)
_LAUNCHING: contextvars.ContextVar[ReportHook | None] = contextvars.ContextVar(
    "sandbox_trial_hook", default=None)


@contextlib.contextmanager
def reporting_to(hook: ReportHook | None):
    """Around the launch of a trial that runs in this process: ``trial_hook()`` returns ``hook``
    to the run that the launcher starts."""
    token = _LAUNCHING.set(hook)
    try:
        yield
    finally:
        _LAUNCHING.reset(token)


def trial_hook() -> ReportHook | None:
    """The hook for the trial this process runs: the one its sweep set around the launch
    (``reporting_to``), else, in a trial's child process, one reporting to the trial that the
    environment names (``hook_from_env``); None outside a sweep or without pruning."""
    return _LAUNCHING.get() or hook_from_env()


def make_hook(trial, prune_on: str, sign: float = 1.0) -> Callable[[str, float, int], None]:
    """A hook that reports ``prune_on`` values to ``trial`` and raises ``Pruned`` when told."""
    def hook(name: str, value: float, step: int) -> None:
        if name != prune_on or not math.isfinite(value):
            return
        trial.report(sign * float(value), int(step))
        if trial.should_prune():
            raise Pruned(f"pruned by the study's pruner at step {step} ({name}={value:.4g})")

    return hook


def hook_from_env() -> ReportHook | None:
    """In a trial's child process: a hook reporting to the trial named by the environment
    (None when it names none)."""
    trial_id = os.environ.get(env_vars.OPTUNA_TRIAL_ID)
    storage_url = os.environ.get(env_vars.OPTUNA_STORAGE)
    prune_on = os.environ.get(env_vars.OPTUNA_PRUNE_ON)
    if not (trial_id and storage_url and prune_on):
        return None
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

    return lazy


PARENT_CHECK_SECONDS = 1.0


def end_with_sweep() -> None:
    """In a trial's process started by a sweep (``SANDBOX_SWEEP_PID``): a daemon thread that
    SIGKILLs this process's group (the trial and what it started) once the sweep is gone, i.e.
    once this process's parent is no longer that sweep. The variable is taken out of the
    environment, so that processes the trial starts do not watch a parent they do not have."""
    sweep = os.environ.pop(env_vars.SWEEP_PID, None)
    if not sweep or not sweep.isdigit() or os.getppid() != int(sweep):
        return

    def watch() -> None:
        while os.getppid() == int(sweep):
            time.sleep(PARENT_CHECK_SECONDS)
        if os.getpgrp() == os.getpid():  # the leader of its own group, as the sweep starts it
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="end-with-sweep", daemon=True).start()
