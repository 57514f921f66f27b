"""Running one trial with its overrides, and telling the sweep how it went: ``(run dir, error,
return value)``; the trial's metrics come back through its result file (``sandbox.search.trial``),
and an app that writes none (any Hydra app) through its task function's return value.

* ``InProcessLauncher`` (``n_jobs: 1``): the trial runs through Hydra's launcher: in this
  process with Hydra's basic launcher, or where another launcher puts it (``hydra/launcher=ray``:
  a Ray task on the cluster), which gets the trial's environment as ``hydra.job.env_set``
  overrides. A trial run elsewhere cannot be pruned (the pruner's hook lives in this process);
  when its result file is not readable from here (another node, no shared ``hydra.sweep.dir``)
  the objective comes from the task function's return value.
* ``SubprocessLauncher`` (``n_jobs > 1``): the trial is its own ``python -m sandbox`` process
  group (``sandbox.programs``), started as this sweep was, with its output in
  ``<sweep dir>/<trial number>/trial.log``; a Hydra callback in the child
  (``sandbox.search.trial.ResultCallback``) writes its return value to the result file. When the sweep stops (Ctrl-C, or another trial's
  thread failed) the group gets SIGINT, so the trial ends as after a Ctrl-C, and SIGKILL if it
  has not ended ``STOP_GRACE_SECONDS`` later.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from sandbox import env_vars
from sandbox.programs import run_program
from sandbox.search.space import format_value
from sandbox.search.trial import make_hook, reporting_to

STOP_GRACE_SECONDS = 10.0


class TrialCancelled(Exception):
    """The sweep stopped while the trial ran; the trial has no outcome."""


class InProcessLauncher:
    """Trials in this process (Hydra's launcher), reporting to the pruner directly when
    ``prune_on`` is set (``sign``: -1 turns a maximised value into a minimised one)."""

    def __init__(self, hydra_launcher, prune_on: str | None, sign: float):
        self.hydra_launcher, self.prune_on, self.sign = hydra_launcher, prune_on, sign

    def launch(self, trial, overrides: list[str], env: dict[str, str],
               subdir: str | None = None):
        """Run ``trial``'s job; ``subdir``: its run dir's name under the sweep dir instead of the
        trial's number (a confirmation run of a finished trial)."""
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        hook = make_hook(trial, self.prune_on, self.sign) if self.prune_on else None
        error, run_dir, returned = None, None, None
        if subdir:
            overrides = [*overrides, f"hydra.sweep.subdir={format_value(subdir)}"]
        if runs_elsewhere(self.hydra_launcher):
            overrides = [*overrides, *env_overrides(env)]
        try:
            with reporting_to(hook):  # the run that Hydra's launcher starts reports to `trial`
                rets = self.hydra_launcher.launch([overrides], initial_job_idx=trial.number)
            ret = rets[0] if rets else None
            if ret is not None:
                try:
                    run_dir = ret.hydra_cfg.hydra.runtime.output_dir
                except Exception:  # the job failed before Hydra filled in its runtime
                    run_dir = None
                raw = getattr(ret, "_return_value", None)
                if isinstance(raw, BaseException):
                    error = f"{type(raw).__name__}: {raw}"
                else:
                    returned = raw
        except Exception as e:  # an invalid override fails before the job starts
            error = f"{type(e).__name__}: {e}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return run_dir, error, returned


def runs_elsewhere(hydra_launcher) -> bool:
    """Whether ``hydra_launcher`` is a launcher plugin (``hydra/launcher=ray``, joblib, submitit,
    ...: classes of the ``hydra_plugins`` namespace), which runs jobs in other processes that do
    not see this process's environment. Hydra's basic launcher runs them here."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return not isinstance(hydra_launcher, BasicLauncher) and \
        type(hydra_launcher).__module__.startswith("hydra_plugins.")


def env_overrides(env: dict[str, str]) -> list[str]:
    """``env`` as ``hydra.job.env_set`` overrides: Hydra sets them around the task function
    wherever the launcher runs it (a Ray worker on another node included)."""
    return [f"++hydra.job.env_set.{k}={format_value(str(v))}" for k, v in env.items()]


def trial_command(overrides: list[str], run_dir: Path) -> list[str]:
    """``python -m sandbox`` as this sweep was started (same interpreter and options, without
    ``--multirun`` and the sweep's own overrides), with the trial's overrides and run dir."""
    n_user = len(sys.argv) - 1
    prefix = list(sys.orig_argv[1:len(sys.orig_argv) - n_user]) if n_user else \
        list(sys.orig_argv[1:])
    return [sys.executable, *prefix, *overrides, f"hydra.run.dir={format_value(str(run_dir))}"]


class SubprocessLauncher:
    """Trials as child processes under ``sweep_dir``. With ``prune_on`` set, the child reports to
    its trial in ``storage`` itself (``sandbox.search.trial.hook_from_env``). ``stop``
    is the sweep's event: once set, running trials are stopped and raise ``TrialCancelled``.
    ``extra`` overrides go to every trial (``OptunaSearch._child_overrides``)."""

    def __init__(self, sweep_dir: Path, storage: str, study_name: str, prune_on: str | None,
                 sign: float, stop: threading.Event, extra: list[str] = ()):
        self.sweep_dir, self.storage, self.study_name = sweep_dir, storage, study_name
        self.prune_on, self.sign, self.stop = prune_on, sign, stop
        self.extra = list(extra)

    def launch(self, trial, overrides: list[str], env: dict[str, str],
               subdir: str | None = None):
        run_dir = self.sweep_dir / (subdir or str(trial.number))
        run_dir.mkdir(parents=True, exist_ok=True)
        child_env = {**env, env_vars.SWEEP_PID: str(os.getpid())}  # see trial.end_with_sweep
        if self.prune_on:
            child_env.update({
                env_vars.OPTUNA_STORAGE: str(self.storage), env_vars.OPTUNA_STUDY: self.study_name,
                env_vars.OPTUNA_TRIAL_ID: str(trial._trial_id),
                env_vars.OPTUNA_PRUNE_ON: self.prune_on, env_vars.OPTUNA_SIGN: str(self.sign)})
        result = run_program(trial_command([*overrides, *self.extra], run_dir),
                             log_path=run_dir / "trial.log",
                             env=child_env, cancel=self.stop, stop_signal=signal.SIGINT,
                             grace=STOP_GRACE_SECONDS)
        if result.cancelled:
            raise TrialCancelled(f"trial {trial.number}")
        return run_dir, None if result.ok else str(result.error()), None
