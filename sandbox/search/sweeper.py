"""The ask-and-tell loop behind ``hydra/sweeper=optuna`` (registered by
``hydra_plugins.sandbox_optuna``); the study is made in ``sandbox.search.study``, trials are run
by ``sandbox.search.launch``.

For each trial: ask the study for parameters (``hydra.sweeper.params`` -> distributions), run the
experiment with them as overrides, read its metrics, tell the study the objective value(s)
(``objective:`` in the config names the metric(s)), with constraint values when
``hydra.sweeper.constraints`` is set. A trial that fails or whose config is invalid is told FAIL
(its error in the trial's user attrs and its MLflow run) and the study goes on.

* **Any Hydra app.** Without ``objective:`` in the config, the values are what the task function
  returns (a number, or one per direction), as with hydra-optuna-sweeper; ``python -m sandbox``
  also writes all its metrics to a result file, which wins. ``custom_search_space`` names a
  function ``f(cfg, trial)`` that suggests more parameters; ``search_space`` is
  hydra-optuna-sweeper 1.1's way of writing distributions. The best parameters also go to
  ``<sweep dir>/optimization_results.yaml``, as hydra-optuna-sweeper writes them.
* **A failing sweep fails.** When no trial of this sweep completed, or more than
  ``max_failure_rate`` of them failed, the sweep raises ``SweepFailed`` at the end (the command
  exits non-zero); with ``max_failure_rate`` set it also stops starting trials as soon as the rate
  can no longer be met. The default (null) runs every trial, as before.

* **Storage and resume.** The study lives in ``hydra.sweeper.storage`` (default
  ``sqlite:///optuna.db`` in the directory you run from; any Optuna storage URL works). The same
  command again loads it: ``n_trials`` is the **total** number of finished trials the study should
  reach (COMPLETE + PRUNED + FAIL), so a re-run only runs what is missing, numbered after the
  stored trials. Trials left RUNNING by a killed sweep on this machine are marked FAIL
  (``interrupted``), do not count, and their parameters are tried again first. A killed sweep
  on another machine is found by Optuna's heartbeats: each sweep records one for its running
  trials every ``heartbeat_s`` seconds; a trial silent for ``grace_s`` is failed the same way
  by a sweep still running on the study (which waits for the others' trials before it ends),
  and its MLflow run ends KILLED.
* **Several workers, one study.** The same command on several machines (or several times on
  one), with the same ``study_name`` and a shared storage (``postgresql://...``), shares the work
  out: ``n_trials`` counts the trials of every worker, and a worker asks for a trial only while
  fewer are finished or running, under a lock held in the storage itself
  (``sandbox.search.shared``), so none is run twice and none beyond ``n_trials``. Each worker
  ends when no trial is left to take; the last one to end prints the complete summary.
* **Parallel trials.** ``n_jobs: 1`` runs trials in this process through Hydra's launcher.
  ``n_jobs > 1`` keeps ``n_jobs`` trials running, each as its own ``python -m sandbox`` process
  (log in its run dir, ``trial.log``); a new trial is asked for as soon as one finishes. Ctrl-C,
  or a trial thread that fails, stops the running trials' processes (and their children).
  ``threads_per_trial`` (``auto``: cores / n_jobs) sets ``trainer.num_threads`` and ``num_proc``
  of parallel trials unless you set them.
* **Pruning.** With a ``pruner``, the trainer's ``train_loss`` (``prune_on``) is reported at each
  logging step and a trial the pruner stops is told PRUNED (single objective only).
* **Token budget as a fidelity.** ``fidelity: {key: trainer.token_budget, rungs: [...]}`` runs
  each trial rung by rung, reporting the objective at each rung to the pruner (successive halving
  by default, or Hyperband), and a promoted rung continues the last one's checkpoint; where the
  rungs kept per-document scores, a trial is pruned only when the paired comparison with the
  pruner's cutoff says it is worse (``sandbox.search.fidelity``).
* **MLflow.** One parent run per study (kept across resumes), one child run per trial, tagged
  with the trial number; the parent gets the summary (``sandbox.search.summary``).
* **Noise.** The summary (console, ``<sweep dir>/study_summary.json``, the parent run) counts
  the completed trials within noise of the best (``sandbox.search.noise``: no significant
  difference by their reported intervals). ``confirm_seeds=K`` re-runs the best trial(s) with K
  fresh seeds when the search ends (``sandbox.search.confirm``) and reports the confirmed value
  beside the searched one, saying so when the winner's value does not hold up.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.utils import get_method
from omegaconf import OmegaConf

from sandbox import env_vars
from sandbox.console import console
from sandbox.errors import ConfigError, SandboxError
from sandbox.search import summary
from sandbox.search.confirm import Confirmer, check_settings, seed_mode
from sandbox.search.constraints import parse_constraints
from sandbox.search.fidelity import (DOC_SCORES_ATTR, Fidelity, add_ledgers, checkpoint_of,
                                      paired_rung_decision)
from sandbox.search.launch import InProcessLauncher, SubprocessLauncher, TrialCancelled
from sandbox.search.shared import study_lock, taken_trials, unregister_sweep
from sandbox.search.space import (distributions_from_search_space, format_value, parse_space,
                                  split_cli)
from sandbox.search.study import (claim, counted_trials, create_study, default_study_name,
                                  fail_stale_trials, mark_interrupted, parse_directions,
                                  record_heartbeat, recover_interrupted, tell, with_retries)
from sandbox.search.trial import read_result, returned_values


WAIT_SECONDS = 2.0  # how often a sweep with nothing to take looks at the others' trials
TRIAL_HYDRA_OVERRIDES = ("hydra.searchpath",)  # passed from a sweep's command line to its trials


class SweepFailed(SandboxError):
    """The sweep ran, but no trial completed or too many failed (``max_failure_rate``)."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _say(msg: str) -> None:
    console.print(f"[bold magenta]{'search':>15}[/] {msg}", soft_wrap=True)


class OptunaSearch:
    """The sweep: ``hydra.sweeper`` keys in, one study run to ``n_trials`` finished trials."""

    def __init__(self, direction: Any = "minimize", study_name: str | None = None,
                 storage: str | None = "sqlite:///optuna.db", n_trials: int = 20,
                 n_jobs: int = 1, sampler: Any = None, pruner: Any = None,
                 params: Any = None, constraints: Any = None, prune_on: str = "train_loss",
                 threads_per_trial: Any = "auto", plots: bool = True,
                 max_failure_rate: float | None = None, search_space: Any = None,
                 custom_search_space: str | None = None, confirm_seeds: int = 0,
                 confirm_top: int | None = None, fidelity: Any = None, heartbeat_s: int = 30,
                 grace_s: int = 120, **unknown: Any):
        if unknown:
            raise ConfigError(f"hydra.sweeper has unknown key(s) {sorted(unknown)}. It takes: "
                              "direction, study_name, storage, n_trials, n_jobs, sampler, pruner, "
                              "params, search_space, custom_search_space, constraints, "
                              "max_failure_rate, prune_on, threads_per_trial, plots, "
                              "confirm_seeds, confirm_top, fidelity, heartbeat_s, grace_s.")
        if int(heartbeat_s) < 1 or int(grace_s) <= int(heartbeat_s):
            raise ConfigError(f"hydra.sweeper.heartbeat_s={heartbeat_s}, grace_s={grace_s}: a "
                              f"sweep records a heartbeat every heartbeat_s seconds (at least "
                              f"1), and a trial silent for grace_s is taken as dead, so grace_s "
                              f"must be longer (e.g. heartbeat_s=30 grace_s=120).")
        self.heartbeat = (int(heartbeat_s), int(grace_s))
        self.confirm_seeds, self.confirm_top = check_settings(confirm_seeds, confirm_top)
        if max_failure_rate is not None and not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate}: give a share "
                              f"of trials between 0 and 1 (0.25: fail the sweep when more than a "
                              f"quarter of its trials fail), or null to run every trial.")
        self.max_failure_rate = None if max_failure_rate is None else float(max_failure_rate)
        self.uses_return_value = False  # set by objectives()
        self.search_space = distributions_from_search_space(_plain(search_space))
        self.custom_search_space = None
        if custom_search_space:
            try:
                self.custom_search_space = get_method(str(custom_search_space))
            except Exception as e:
                raise ConfigError(f"hydra.sweeper.custom_search_space={custom_search_space}: "
                                  f"cannot import it ({e}). Give the dotted path of a function "
                                  f"f(cfg, trial) that calls trial.suggest_*.") from None
        self.directions = parse_directions(_plain(direction))
        self.study_name = study_name
        self.storage = storage or None
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner)
        self.fidelity = Fidelity.parse(_plain(fidelity))
        if self.fidelity is not None and self.pruner_cfg is None:
            self.pruner_cfg = self.fidelity.default_pruner()
        self.params = _plain(params) or {}
        self.constraints = parse_constraints(_plain(constraints))
        self.prune_on = prune_on
        self.threads_per_trial = threads_per_trial
        self.plots = bool(plots)
        self._lock = threading.Lock()  # the study is shared by the trial threads

    # ------------------------------------------------------------------ hydra
    def setup(self, *, hydra_context, task_function, config) -> None:
        """Hydra hands over the composed config and the launcher for in-process trials."""
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # ------------------------------------------------------------------ building blocks
    def objectives(self) -> list[str]:
        """The metric names of ``objective:``, one per direction. Without ``objective:`` (any
        Hydra app) the task function's return value is the objective: ``objective`` (one
        direction) or ``objective_0``, ``objective_1``, ... name its values."""
        obj = _plain(self.config.get("objective"))
        names = [obj] if isinstance(obj, str) else list(obj or [])
        self.uses_return_value = not names
        if not names:
            return ["objective"] if len(self.directions) == 1 else \
                [f"objective_{i}" for i in range(len(self.directions))]
        if len(names) != len(self.directions):
            raise ConfigError(f"objective={names} has {len(names)} metric(s) but "
                              f"hydra.sweeper.direction has {len(self.directions)}: give one "
                              f"direction per objective.")
        return [str(n) for n in names]

    def _study_name(self) -> str:
        return str(self.study_name) if self.study_name else default_study_name(self.config)

    def _space(self, sweep_cli: list[str]):
        """``hydra.sweeper.params`` plus the command line's sweeps (these win), plus
        ``search_space`` entries for keys neither gives."""
        space = parse_space(self.params, sweep_cli)
        fixed_keys = {o.partition("=")[0].lstrip("+~") for o in space.fixed}
        for name, dist in self.search_space.items():
            if name not in space.distributions and name not in fixed_keys:
                space.distributions[name] = dist
                space.keys[name] = name
        for arg in sweep_cli:  # sweeps given only on the command line
            name = arg.partition("=")[0].lstrip("+~")
            if name not in space.distributions:
                extra = parse_space({arg.partition("=")[0]: arg.partition("=")[2]})
                space.distributions.update(extra.distributions)
                space.keys.update(extra.keys)
        if not space.distributions and self.custom_search_space is None:
            raise ConfigError("the search space is empty: write hydra.sweeper.params in the "
                              "hparams_search config (e.g. refine.k: interval(1.0, 4.0)).")
        return space

    def _base_overrides(self, fixed_cli: list[str], space) -> list[str]:
        cli_keys = {a.partition("=")[0].lstrip("+~") for a in fixed_cli}
        base = [o for o in space.fixed if o.partition("=")[0].lstrip("+~") not in cli_keys]
        base += fixed_cli
        if self.n_jobs > 1 and self.threads_per_trial not in (None, False, "none"):
            if self.threads_per_trial == "auto":
                try:
                    cores = len(os.sched_getaffinity(0))
                except AttributeError:
                    cores = os.cpu_count() or 1
                per = max(1, cores // self.n_jobs)
            else:
                per = int(self.threads_per_trial)
            taken = cli_keys | {o.partition("=")[0].lstrip("+~") for o in base} | \
                set(space.distributions)
            for key in ("trainer.num_threads", "num_proc"):
                if key not in taken and OmegaConf.select(self.config, key) is not None:
                    base.append(f"{key}={per}")
        return base

    # ------------------------------------------------------------------ the loop
    def sweep(self, arguments: list[str]) -> list:
        """Run the missing trials (``arguments``: the command line's overrides)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objectives = self.objectives()
        fixed_cli, sweep_cli = split_cli(list(arguments))
        space = self._space(sweep_cli)
        if self.n_jobs > 1 and self.storage is None:
            raise ConfigError("hydra.sweeper.n_jobs > 1 needs a storage (trials run in their own "
                              "processes): set hydra.sweeper.storage, e.g. sqlite:///optuna.db.")
        if self.confirm_seeds:
            seed_mode(self.config)  # a config the confirmation cannot seed fails before the search
        if self.fidelity is not None and len(objectives) != 1:
            raise ConfigError("hydra.sweeper.fidelity promotes trials on one objective: give one "
                              "direction and one `objective:` metric, or drop the fidelity.")
        # with a fidelity the pruner decides at the rungs, not at the trainer's logging steps
        prune_on = self.prune_on if self.pruner_cfg is not None and len(objectives) == 1 \
            and self.fidelity is None else None
        sign = 1.0 if self.directions[0] == "minimize" else -1.0
        base = self._base_overrides(fixed_cli, space)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")

        stale: list = []  # trials of dead sweeps that this one failed (their heartbeats stopped)
        study, grid_size = create_study(self._study_name(), self.storage, self.directions,
                                        self.sampler_cfg, self.pruner_cfg, len(self.constraints),
                                        space.distributions, _say, self.heartbeat, stale)
        target = self.n_trials
        if grid_size is not None and grid_size < target:
            _say(f"the grid has {grid_size} point(s): n_trials={self.n_trials} capped to it")
            target = grid_size
        with study_lock(study):  # other sweeps may share the study (sandbox.search.shared)
            study.set_user_attr("objectives", objectives)
            study.set_user_attr("sampler", type(study.sampler).__name__)  # of the latest sweep
            recover_interrupted(study, _say)
            fail_stale_trials(study)
            others = taken_trials(study) - counted_trials(study)  # running in other sweeps
            remaining = max(0, target - counted_trials(study) - others)
            parent = summary.ParentRun.open(self.config, study, self._study_name(), space,
                                            objectives, self.directions, self.constraints)
        _say(f"study `{study.study_name}` ({self.storage or 'in memory'}): "
             f"{len(study.trials)} stored trial(s)"
             + (f" ({others} running in other sweeps)" if others else "")
             + f", running {'up to ' if others else ''}{remaining} more "
             f"(n_trials={target} in total), {self.n_jobs} at a time; "
             f"{' and '.join(f'{d} {o}' for d, o in zip(self.directions, objectives))}"
             + (f" subject to {', '.join(map(str, self.constraints))}" if self.constraints
                else ""))

        stop = threading.Event()  # set on Ctrl-C or a failed trial thread: running trials stop
        enough = threading.Event()  # too many failures for max_failure_rate: start no more
        if self.n_jobs == 1:
            launcher = InProcessLauncher(self.launcher, prune_on, sign)
        else:
            launcher = SubprocessLauncher(self.sweep_dir, self.storage, study.study_name,
                                          prune_on, sign, stop, self._child_overrides())
        launched = 0
        running: dict[int, Any] = {}  # trial number -> trial, while it runs
        results: list = []
        failures: list[BaseException] = []
        beating = threading.Event()  # set when the sweep ends
        heartbeats = threading.Thread(target=self._beat, args=(study, running, beating),
                                      name="trial-heartbeats", daemon=True)
        heartbeats.start()

        # a trial asked for whose claim the database cut short: `with_retries` runs `take`
        # again, which claims this one instead of asking for another (that one would stay
        # RUNNING, unclaimed and without heartbeats, for ever: a trial too many)
        asked: list = []

        def take():
            """(a new trial or None, whether to wait for other sweeps' trials); trials of dead
            sweeps found on the way are retried, and this sweep may run that many more."""
            nonlocal remaining
            with study_lock(study):  # count and take the trial as one step
                if not asked:
                    remaining += self._retry_stale(study, stale, parent)
                    if not (launched < remaining and taken_trials(study) < target):
                        return None, self._others_running(study, running)
                    with warnings.catch_warnings():  # `_beat` records them instead
                        warnings.filterwarnings("ignore", "Heartbeat of storage")
                        asked.append(study.ask(space.distributions))
                trial = asked[0]
                claim(trial)
                record_heartbeat(study, trial)
                asked.clear()
                return trial, False

        def worker() -> None:
            nonlocal launched
            while not stop.is_set() and not enough.is_set():
                with self._lock:  # a restarting database: tried again until it answers
                    trial, wait = with_retries(take, self.storage, _say)
                    if trial is None and not wait:
                        return  # the study has its n_trials, or other sweeps run the rest
                    if trial is not None:
                        launched += 1
                        running[trial.number] = trial
                if trial is None:  # another sweep's trial may still end, or go stale
                    stop.wait(min(self.heartbeat[0], WAIT_SECONDS))
                    continue
                try:
                    outcome = self._run_trial(launcher, study, trial, space, base, objectives,
                                              parent)
                except TrialCancelled:
                    return  # stays in `running`: marked interrupted when the sweep ends
                except BaseException:
                    # e.g. Ctrl-C in an in-process trial: it stays RUNNING in the storage and the
                    # next sweep retries it
                    with self._lock:
                        running.pop(trial.number, None)
                    raise
                with self._lock:
                    running.pop(trial.number, None)
                    results.append(outcome)
                    self._check_failure_rate(results, remaining, enough)

        def thread_worker() -> None:
            try:
                worker()
            except BaseException as e:  # stop the others; the sweep raises it
                failures.append(e)
                stop.set()

        status = "FAILED"
        try:
            if self.n_jobs == 1:
                worker()
            else:
                threads = [threading.Thread(target=thread_worker, name=f"trial-slot-{i}",
                                            daemon=True) for i in range(self.n_jobs)]
                for t in threads:
                    t.start()
                try:
                    for t in threads:
                        while t.is_alive():
                            t.join(0.5)
                finally:  # Ctrl-C: the threads stop their trials' processes, then end
                    stop.set()
                    for t in threads:
                        t.join()
                if failures:
                    raise failures[0]
            self._write_optimization_results(study, objectives)
            self._raise_if_failed(results)
            if self.confirm_seeds:
                self._confirm(study, space, base, objectives, parent, sign)
                self._write_optimization_results(study, objectives)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            beating.set()
            try:
                with self._lock:
                    for trial in running.values():
                        mark_interrupted(study, trial._trial_id, trial.number)
                if parent is not None:
                    parent.finish(study, status)
                summary.print_summary(study, objectives, _say)
                self._leave(study)
                summary.write_study_summary(study, objectives, self.sweep_dir)
            except Exception as e:
                if status == "FINISHED":
                    raise
                # the sweep is failing already (its database gone, say): its own error is the
                # one to see; its running trials stay RUNNING, and the next sweep retries them
                _say(f"[yellow]the study could not be wrapped up ({type(e).__name__}: "
                     f"{(str(e).strip().splitlines() or [''])[0][:200]})[/]")
        return results

    def _beat(self, study, running: dict, stop: threading.Event) -> None:
        """Optuna's heartbeat for every running trial of this sweep, until the sweep ends."""
        while not stop.wait(self.heartbeat[0]):
            with self._lock:
                trials = list(running.values())
            for trial in trials:
                try:
                    record_heartbeat(study, trial)
                except Exception as e:  # the database restarting: the next beat tries again
                    _say(f"[yellow]could not record trial {trial.number}'s heartbeat: {e}[/]")

    def _retry_stale(self, study, stale: list, parent) -> int:
        """Fail the trials whose sweep stopped beating (under ``study_lock``), end their MLflow
        runs KILLED; return how many were enqueued again."""
        fail_stale_trials(study)
        found, stale[:] = list(stale), []
        for frozen in found:
            _say(f"trial {frozen.number} sent no heartbeat for {self.heartbeat[1]}s (its sweep "
                 f"was killed): marked FAIL, its parameters are tried again first")
            if parent is not None:
                parent.record_trial(frozen.number, "FAIL", frozen.params,
                                    "its sweep stopped sending heartbeats (killed)")
        return len(found)

    def _others_running(self, study, running: dict) -> bool:
        """Whether another sweep runs a trial of the study that can still end or go stale
        (only a storage with heartbeats finds a dead sweep's trial)."""
        from optuna.trial import TrialState

        if not self.storage:
            return False
        return any(t.number not in running and not t.user_attrs.get("interrupted")
                   for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def _leave(self, study) -> None:
        """Take this sweep off the study's running sweeps, and say when others still run
        (``sandbox.search.shared``). A storage that went away here changes nothing that matters:
        later workers only derive other seeds."""
        if not self.storage:
            return
        try:
            unregister_sweep(study)
            others = taken_trials(study) - counted_trials(study)
        except Exception as e:
            _say(f"could not update the study's running sweeps: {type(e).__name__}: {e}")
            return
        if others:
            _say(f"{others} trial(s) still running in other sweeps on this study: the last "
                 f"sweep to end writes the complete summary")

    # ------------------------------------------------------------------ confirmation
    def _confirm(self, study, space, base, objectives, parent, sign: float) -> None:
        """Re-run the best trial(s) with ``confirm_seeds`` fresh seeds (``sandbox.search.confirm``),
        through the launcher the trials used, without pruning."""
        if not summary.best_trials(study):
            return
        if self.n_jobs == 1:
            launcher = InProcessLauncher(self.launcher, None, sign)
        else:  # a fresh stop event: the trials' one is set once their threads have ended
            launcher = SubprocessLauncher(self.sweep_dir, self.storage, study.study_name, None,
                                          sign, threading.Event(), self._child_overrides())
        Confirmer(self.config, study, launcher, base, space.overrides, objectives,
                  self.directions, self.sweep_dir, parent.run_id if parent is not None else None,
                  _say).run(self.confirm_seeds, self.confirm_top)

    # ------------------------------------------------------------------ failures
    def _check_failure_rate(self, results: list, planned: int, enough: threading.Event) -> None:
        """Stop starting trials once more than ``max_failure_rate`` of the ``planned`` ones
        have failed: the sweep will fail whatever the others do."""
        if self.max_failure_rate is None or enough.is_set():
            return
        failed = sum(r["state"] == "FAIL" for r in results)
        if failed > self.max_failure_rate * planned:
            enough.set()
            _say(f"{failed} of {planned} planned trial(s) failed, more than "
                 f"max_failure_rate={self.max_failure_rate:g} allows: no more trials are started")

    def _raise_if_failed(self, results: list) -> None:
        """``SweepFailed`` when trials ran but none completed, or too many failed."""
        failed = [r for r in results if r["state"] == "FAIL"]
        if not failed:
            return
        done = len(results)
        completed = sum(r["state"] == "COMPLETE" for r in results)
        rate = len(failed) / done
        too_many = self.max_failure_rate is not None and rate > self.max_failure_rate
        if completed and not too_many:
            return
        first = str(failed[0].get("error") or "").strip().splitlines()
        reason = ("no trial completed" if not completed else
                  f"{rate:.0%} of the trials failed, more than "
                  f"hydra.sweeper.max_failure_rate={self.max_failure_rate:g}")
        raise SweepFailed(
            f"the sweep failed: {len(failed)} of {done} trial(s) failed ({reason}). Trial "
            f"{failed[0]['number']}: {first[-1][:500] if first else 'no error recorded'}. Each "
            f"trial's error is in its run dir and in the study (user attr `error`); fix the "
            f"cause and run the same command again"
            + (": the study resumes." if self.storage else "."))

    def _write_optimization_results(self, study, objectives: list[str]) -> None:
        """``<sweep dir>/optimization_results.yaml``, as hydra-optuna-sweeper writes it."""
        best = summary.best_trials(study)
        if not best:
            return
        if len(self.directions) == 1:
            out = {"name": "optuna", "best_params": dict(best[0].params),
                   "best_value": float(best[0].value), "best_trial": best[0].number,
                   "objective": objectives[0]}
            confirmed = summary.confirmation_of(study, best[0].number, objectives[0])
            if confirmed is not None:  # hydra.sweeper.confirm_seeds: the value with fresh seeds
                out["confirmed"] = confirmed
        else:
            out = {"name": "optuna", "objectives": objectives,
                   "solutions": [{"params": dict(t.params), "values": [float(v) for v in t.values],
                                  "trial": t.number} for t in best]}
        OmegaConf.save(OmegaConf.create(out), self.sweep_dir / "optimization_results.yaml")

    def _child_overrides(self) -> list[str]:
        """Overrides of every trial run as its own process: no progress bars (the sandbox), and
        a callback that writes the trial's return value when the app writes no result (any
        Hydra app)."""
        extra = ["+hydra.callbacks.sandbox_trial_result._target_="
                 "sandbox.search.trial.ResultCallback"]
        if OmegaConf.select(self.config, "progress") is not None:
            extra.append("progress=false")
        # the sweep's own command-line overrides of Hydra that a trial composes with (a
        # search or config group outside conf/); the rest concern the sweep, not a run
        hydra_cli = OmegaConf.select(self.config, "hydra.overrides.hydra", default=None) or []
        extra += [o for o in hydra_cli
                  if o.partition("=")[0].lstrip("+~") in TRIAL_HYDRA_OVERRIDES]
        return extra

    # ------------------------------------------------------------------ one trial
    def _run_trial(self, launcher, study, trial, space, base, objectives, parent):
        from optuna.trial import TrialState

        if self.custom_search_space is not None:
            try:  # define-by-run: the user's function suggests more parameters on the trial
                self.custom_search_space(self.config, trial)
            except Exception as e:
                with self._lock:
                    trial.set_user_attr("error", f"custom_search_space: {type(e).__name__}: {e}")
                    tell(study, trial, state=TrialState.FAIL)
                _say(f"trial {trial.number} FAIL: hydra.sweeper.custom_search_space raised "
                     f"{type(e).__name__}: {e}")
                return {"number": trial.number, "state": "FAIL", "values": None,
                        "error": f"custom_search_space: {type(e).__name__}: {e}"}
        params = dict(trial.params)
        overrides = base + space.overrides(params)
        results_dir = self.sweep_dir / ".trials"
        results_dir.mkdir(parents=True, exist_ok=True)
        result_file = results_dir / f"{trial.number}.json"
        result_file.unlink(missing_ok=True)
        tags = {"sandbox.trial": str(trial.number), "sandbox.study": study.study_name}
        env = {env_vars.RESULT_FILE: str(result_file), env_vars.RUN_TAGS: json.dumps(tags)}
        if parent is not None:
            env[env_vars.PARENT_RUN_ID] = parent.run_id
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        _say(f"trial {trial.number} started: {shown}")
        t0 = time.perf_counter()
        if self.fidelity is None:
            run_dir, error, returned = launcher.launch(trial, overrides, env)
            result = read_result(result_file)
            if result is None and error is None:  # a plain Hydra app, run in this process
                result = {"status": "ok", "metrics": {}, "returned": returned}
        else:
            run_dir, error, result = self._run_rungs(launcher, study, trial, overrides, env,
                                                     result_file, objectives)
        seconds = time.perf_counter() - t0
        values, state = None, TrialState.FAIL
        metrics = (result or {}).get("metrics") or {}
        if self.uses_return_value and metrics:
            # the app reports named metrics (the sandbox does) but the config picks none: every
            # trial would fail the same way, so stop here
            message = (f"the search has no objective: set `objective: METRIC` (or a list, one "
                       f"per hydra.sweeper.direction) in the hparams_search config; the run "
                       f"reports {', '.join(sorted(metrics))}.")
            with self._lock:
                trial.set_user_attr("error", message)
                tell(study, trial, state=TrialState.FAIL)
            raise ConfigError(message)
        if result is not None and result.get("status") == "ok" and not metrics:
            try:
                metrics = returned_values(result.get("returned"), objectives)
            except ValueError as e:
                error = str(e)
        if result is None:
            error = error or "the trial ended without a result (crashed before it started?)"
        elif result.get("status") == "pruned":
            state, error = TrialState.PRUNED, None
        elif result.get("status") != "ok":
            error = result.get("error") or error or "failed"
        elif error:
            pass  # the return value was not usable
        else:
            missing = [o for o in objectives if metrics.get(o) is None]
            if missing:
                error = (f"objective metric(s) {missing} not returned by the run (or not finite). "
                         f"It returned: {', '.join(sorted(metrics))}.")
            else:
                values, state, error = [float(metrics[o]) for o in objectives], \
                    TrialState.COMPLETE, None
        def record() -> None:
            trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if v is not None})
            trial.set_user_attr("seconds", seconds)
            if run_dir:
                trial.set_user_attr("run_dir", str(run_dir))
            if error:
                trial.set_user_attr("error", str(error)[-2000:])
            if self.constraints and state == TrialState.COMPLETE:
                values_c = [c.value(metrics) for c in self.constraints]
                trial.set_user_attr("constraints", values_c)
                if hasattr(trial, "set_constraint"):
                    for c, v in zip(self.constraints, values_c):
                        trial.set_constraint(str(c), v)
            if state == TrialState.COMPLETE:
                tell(study, trial, values if len(values) > 1 else values[0])
            else:
                tell(study, trial, state=state)

        with self._lock:  # a restarting database: tried again until it answers
            with_retries(record, self.storage, _say)
        shown_values = ", ".join(f"{o}={v:.4g}" for o, v in zip(objectives, values or []))
        _say(f"trial {trial.number} {state.name} in {seconds:.0f}s"
             + (f": {shown_values}" if values else "")
             + (f" ({str(error).strip().splitlines()[-1][:300]})" if error else ""))
        if parent is not None:
            parent.record_trial(trial.number, state.name, params, error)
        return {"number": trial.number, "state": state.name, "values": values, "error": error}

    def _paired_rung(self, study, trial, i: int, rung, value: float, folder, metric: str,
                     sign: float):
        """The rung decision of ``paired_rung_decision`` for ``trial`` (None: the pruner's own
        ranking of the reported values stands)."""
        from sandbox.runner import doc_scores

        ours = doc_scores.load(folder) if folder is not None and folder.is_dir() else {}
        if not ours:
            return None
        peers = []
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or int(rung) not in t.intermediate_values:
                continue
            path = t.user_attrs.get(DOC_SCORES_ATTR.format(i))
            peers.append((t.number, sign * float(t.intermediate_values[int(rung)]),
                          doc_scores.load(Path(path)) if path else {}))
        eta = getattr(study.pruner, "_reduction_factor", None) or \
            self.fidelity.default_pruner()["reduction_factor"]
        return paired_rung_decision(value, ours, peers, metric, int(eta), sign < 0)

    def _run_rungs(self, launcher, study, trial, overrides, env, result_file, objectives):
        """``hydra.sweeper.fidelity``: run ``trial`` rung by rung (``sandbox.search.fidelity``),
        each rung continuing the last one's checkpoint, until the pruner stops it or the last
        rung ends. Returns (run dir, error, result) of its last rung, with the ledger summed
        over its rungs."""
        fid = self.fidelity
        sign = 1.0 if self.directions[0] == "minimize" else -1.0
        checkpoint, ledger = None, {}
        run_dir = error = result = None
        for i, rung in enumerate(fid.rungs):
            result_file.unlink(missing_ok=True)
            run_dir, error, returned = launcher.launch(
                trial, overrides + fid.overrides(i, checkpoint), env,
                subdir=f"{trial.number}_rung{i}")
            result = read_result(result_file)
            if result is None and error is None:  # a plain Hydra app, run in this process
                result = {"status": "ok", "metrics": {}, "returned": returned}
            if result is None or result.get("status") != "ok":
                break
            metrics = result.get("metrics") or {}
            add_ledgers(ledger, metrics)
            if not metrics:
                try:
                    metrics = returned_values(result.get("returned"), objectives)
                except ValueError:
                    break  # the caller reports it
            value = metrics.get(objectives[0])
            if value is None:
                break
            folder = Path(run_dir) / "doc_scores" if run_dir else None  # runner.doc_scores
            why = ""
            with self._lock:
                trial.report(sign * float(value), int(rung))
                if folder is not None and folder.is_dir():
                    trial.set_user_attr(DOC_SCORES_ATTR.format(i), str(folder))
                stop = i + 1 < len(fid.rungs) and trial.should_prune()
                if stop:  # the paired per-document comparison decides where it can
                    decision = self._paired_rung(study, trial, i, rung, float(value), folder,
                                                 objectives[0], sign)
                    if decision is not None:
                        stop, why = decision.prune, f" ({decision.why})"
            _say(f"trial {trial.number} rung {i} ({fid.key}={rung}): "
                 f"{objectives[0]}={float(value):.4g}" + ("; pruned" if stop else
                                                          "; promoted" if why else "") + why)
            if stop:
                result = dict(result, status="pruned")
                break
            checkpoint = checkpoint_of(run_dir)
        if result is not None and ledger:
            result["metrics"] = {**(result.get("metrics") or {}), **ledger}
        return run_dir, error, result
