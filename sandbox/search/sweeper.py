"""The ask-and-tell loop behind ``hydra/sweeper=optuna`` (registered by
``hydra_plugins.sandbox_optuna``).

For each trial: ask the study for parameters (``hydra.sweeper.params`` -> distributions), run the
experiment with them as overrides, read its metrics, tell the study the objective value(s)
(``objective:`` in the config names the metric(s)), with constraint values when
``hydra.sweeper.constraints`` is set. A trial that fails or whose config is invalid is told FAIL
(its error in the trial's user attrs and its MLflow run) and the study goes on.

* **Storage and resume.** The study lives in ``hydra.sweeper.storage`` (default
  ``sqlite:///optuna.db`` in the directory you run from; any Optuna storage URL works). The same
  command again loads it: ``n_trials`` is the **total** number of finished trials the study should
  reach (COMPLETE + PRUNED + FAIL), so a re-run only runs what is missing, numbered after the
  stored trials. Trials left RUNNING by a killed sweep on this machine are marked FAIL
  (``interrupted``), do not count, and their parameters are tried again first.
* **Parallel trials.** ``n_jobs: 1`` runs trials in this process through Hydra's launcher.
  ``n_jobs > 1`` keeps ``n_jobs`` trials running, each as its own ``python -m sandbox`` process
  (log in its run dir, ``trial.log``); a new trial is asked for as soon as one finishes.
  ``threads_per_trial`` (``auto``: cores / n_jobs) sets ``trainer.num_threads`` and ``num_proc``
  of parallel trials unless you set them.
* **Pruning.** With a ``pruner``, the trainer's ``train_loss`` (``prune_on``) is reported at each
  logging step and a trial the pruner stops is told PRUNED (single objective only).
* **MLflow.** One parent run per study (kept across resumes), one child run per trial, tagged
  with the trial number; the parent gets the summary (``sandbox.search.summary``).
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError
from sandbox.search.constraints import parse_constraints
from sandbox.search.space import format_value, parse_space, split_cli

DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OptunaSearch:
    def __init__(self, direction: Any = "minimize", study_name: str | None = None,
                 storage: str | None = "sqlite:///optuna.db", n_trials: int = 20,
                 n_jobs: int = 1, sampler: Any = None, pruner: Any = None,
                 params: Any = None, constraints: Any = None, prune_on: str = "train_loss",
                 threads_per_trial: Any = "auto", plots: bool = True, **unknown: Any):
        if unknown:
            raise ConfigError(f"hydra.sweeper has unknown key(s) {sorted(unknown)}. It takes: "
                              "direction, study_name, storage, n_trials, n_jobs, sampler, pruner, "
                              "params, constraints, prune_on, threads_per_trial, plots.")
        direction = _plain(direction)
        dirs = [direction] if isinstance(direction, str) else list(direction or ["minimize"])
        try:
            self.directions = [DIRECTIONS[str(d).lower().split(".")[-1]] for d in dirs]
        except KeyError:
            raise ConfigError(f"hydra.sweeper.direction={direction}: use minimize or maximize "
                              f"(or a list of them, one per objective).") from None
        self.study_name = study_name
        self.storage = storage or None
        self.n_trials = int(n_trials)
        self.n_jobs = max(1, int(n_jobs))
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner)
        self.params = _plain(params) or {}
        self.constraints = parse_constraints(_plain(constraints))
        self.prune_on = prune_on
        self.threads_per_trial = threads_per_trial
        self.plots = bool(plots)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ hydra
    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # ------------------------------------------------------------------ building blocks
    def objectives(self) -> list[str]:
        obj = _plain(self.config.get("objective"))
        names = [obj] if isinstance(obj, str) else list(obj or [])
        if not names:
            raise ConfigError("the search has no objective: set `objective: METRIC` (or a list, "
                              "one per hydra.sweeper.direction) in the hparams_search config.")
        if len(names) != len(self.directions):
            raise ConfigError(f"objective={names} has {len(names)} metric(s) but "
                              f"hydra.sweeper.direction has {len(self.directions)}: give one "
                              f"direction per objective.")
        return [str(n) for n in names]

    def _instantiate(self, node: dict | None, what: str, **extra):
        from hydra.utils import get_class

        if not node:
            return None
        node = dict(node)
        target = node.pop("_target_", None)
        if not target:
            raise ConfigError(f"hydra.sweeper.{what} needs `_target_` (an Optuna class).")
        try:
            cls = get_class(target)
        except Exception as e:
            raise ConfigError(f"hydra.sweeper.{what}._target_={target}: {e}") from None
        import inspect

        accepted = inspect.signature(cls.__init__).parameters
        for k, v in extra.items():
            if k not in accepted:
                raise ConfigError(
                    f"hydra.sweeper.{what}: {cls.__name__} does not take `{k}`"
                    + (" (constraints need a sampler that supports them: TPESampler, "
                       "NSGAIISampler, NSGAIIISampler, GPSampler)" if k == "constraints_func"
                       else "") + ".")
            node[k] = v
        try:
            return cls(**node)
        except TypeError as e:
            raise ConfigError(f"hydra.sweeper.{what}: {e}") from None

    def _study_name(self) -> str:
        if self.study_name:
            return str(self.study_name)
        try:
            choice = self.config.hydra.runtime.choices.get("hparams_search")
        except Exception:
            choice = None
        return f"sandbox-{choice}" if choice else "sandbox"

    def _create_study(self):
        import optuna

        constraint_count = len(self.constraints)

        def constraints_func(frozen) -> list[float]:
            values = frozen.user_attrs.get("constraints")
            return list(values) if values else [math.inf] * constraint_count

        sampler_cfg = self.sampler_cfg or {"_target_": "optuna.samplers.TPESampler"}
        # Optuna >= 5: trial.set_constraint (set before tell); older: the sampler's constraints_func
        modern = hasattr(optuna.trial.Trial, "set_constraint")
        extra = {"constraints_func": constraints_func} if self.constraints and not modern else {}
        sampler = self._instantiate(sampler_cfg, "sampler", **extra)
        pruner = self._instantiate(self.pruner_cfg, "pruner")
        try:
            return optuna.create_study(
                study_name=self._study_name(), storage=self.storage, sampler=sampler,
                pruner=pruner, directions=self.directions, load_if_exists=True)
        except ValueError as e:
            raise ConfigError(f"optuna study {self._study_name()} in {self.storage}: {e}. Use "
                              f"another hydra.sweeper.study_name.") from None

    def _recover_interrupted(self, study) -> None:
        """Trials a killed sweep on this host left RUNNING: FAIL them and retry their params."""
        from optuna.trial import TrialState

        host = socket.gethostname()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get("sweeper")
            if not owner or owner.get("host") != host or _pid_alive(int(owner.get("pid", -1))):
                continue
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)
            self._print(f"trial {t.number} was interrupted (its sweep was killed): marked "
                        f"FAIL, its parameters are tried again first")

    @staticmethod
    def counted(study) -> int:
        """Finished trials that count toward n_trials (not interrupted ones)."""
        from optuna.trial import TrialState

        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return sum(1 for t in study.get_trials(deepcopy=False, states=done)
                   if not t.user_attrs.get("interrupted"))

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
            from omegaconf import OmegaConf

            for key in ("trainer.num_threads", "num_proc"):
                if key not in taken and OmegaConf.select(self.config, key) is not None:
                    base.append(f"{key}={per}")
        return base

    def _print(self, msg: str) -> None:
        from sandbox.console import console

        console.print(f"[bold magenta]{'search':>15}[/] {msg}", soft_wrap=True)

    # ------------------------------------------------------------------ the loop
    def sweep(self, arguments: list[str]) -> list:
        import optuna

        from sandbox.search import summary

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objectives = self.objectives()
        fixed_cli, sweep_cli = split_cli(list(arguments))
        space = parse_space(self.params, sweep_cli)
        for arg in sweep_cli:  # sweeps given only on the command line
            name = arg.partition("=")[0].lstrip("+~")
            if name not in space.distributions:
                extra = parse_space({arg.partition("=")[0]: arg.partition("=")[2]})
                space.distributions.update(extra.distributions)
                space.keys.update(extra.keys)
        if not space.distributions:
            raise ConfigError("the search space is empty: write hydra.sweeper.params in the "
                              "hparams_search config (e.g. refine.k: interval(1.0, 4.0)).")
        if self.n_jobs > 1 and self.storage is None:
            raise ConfigError("hydra.sweeper.n_jobs > 1 needs a storage (trials run in their own "
                              "processes): set hydra.sweeper.storage, e.g. sqlite:///optuna.db.")
        prune = self.pruner_cfg is not None and len(objectives) == 1
        sign = 1.0 if self.directions[0] == "minimize" else -1.0
        base = self._base_overrides(fixed_cli, space)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")

        study = self._create_study()
        study.set_user_attr("objectives", objectives)
        self._recover_interrupted(study)
        remaining = max(0, self.n_trials - self.counted(study))
        parent = summary.ParentRun.open(self.config, study, self._study_name(), space,
                                        objectives, self.directions, self.constraints)
        self._print(
            f"study `{study.study_name}` ({self.storage or 'in memory'}): "
            f"{len(study.trials)} stored trial(s), running {remaining} more "
            f"(n_trials={self.n_trials} in total), {self.n_jobs} at a time; "
            f"{' and '.join(f'{d} {o}' for d, o in zip(self.directions, objectives))}"
            + (f" subject to {', '.join(map(str, self.constraints))}" if self.constraints else ""))

        state = {"launched": 0, "running": {}}
        results: list = []

        def worker() -> None:
            while True:
                with self._lock:
                    if state["launched"] >= remaining:
                        return
                    state["launched"] += 1
                    trial = study.ask(space.distributions)
                    trial.set_user_attr("sweeper", {"host": socket.gethostname(),
                                                    "pid": os.getpid()})
                    state["running"][trial.number] = trial
                try:
                    ret = self._run_trial(study, trial, space, base, objectives, parent, prune,
                                          sign)
                    if ret is not None:
                        results.append(ret)
                finally:
                    with self._lock:
                        state["running"].pop(trial.number, None)

        status = "FAILED"
        try:
            if self.n_jobs == 1:
                worker()
            else:
                threads = [threading.Thread(target=worker, name=f"trial-slot-{i}", daemon=True)
                           for i in range(self.n_jobs)]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():
                        t.join(0.5)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            from optuna.trial import TrialState

            with self._lock:
                for number, trial in list(state["running"].items()):
                    study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
                    study.tell(trial, state=TrialState.FAIL)
            if parent is not None:
                parent.finish(study, status)
            summary.print_summary(study, objectives, self._print)
        return results

    # ------------------------------------------------------------------ one trial
    def _run_trial(self, study, trial, space, base, objectives, parent, prune, sign):
        from optuna.trial import TrialState

        from sandbox.search.trial import read_result

        params = dict(trial.params)
        overrides = base + space.overrides(params)
        results_dir = self.sweep_dir / ".trials"
        results_dir.mkdir(parents=True, exist_ok=True)
        result_file = results_dir / f"{trial.number}.json"
        result_file.unlink(missing_ok=True)
        tags = {"sandbox.trial": str(trial.number), "sandbox.study": study.study_name}
        env = {"SANDBOX_RESULT_FILE": str(result_file),
               "SANDBOX_RUN_TAGS": json.dumps(tags)}
        if parent is not None:
            env["SANDBOX_PARENT_RUN_ID"] = parent.run_id
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        self._print(f"trial {trial.number} started: {shown}")
        t0 = time.perf_counter()
        if self.n_jobs == 1:
            run_dir, error = self._launch_in_process(trial, overrides, env, prune, sign)
        else:
            run_dir, error = self._launch_subprocess(study, trial, overrides, env, prune, sign)
        seconds = time.perf_counter() - t0
        result = read_result(result_file)
        values, state = None, TrialState.FAIL
        metrics = (result or {}).get("metrics") or {}
        if result is None:
            error = error or "the trial ended without a result (crashed before it started?)"
        elif result.get("status") == "pruned":
            state, error = TrialState.PRUNED, None
        elif result.get("status") != "ok":
            error = result.get("error") or error or "failed"
        else:
            missing = [o for o in objectives if metrics.get(o) is None]
            if missing:
                error = (f"objective metric(s) {missing} not returned by the run (or not finite). "
                         f"It returned: {', '.join(sorted(metrics))}.")
            else:
                values, state, error = [float(metrics[o]) for o in objectives], \
                    TrialState.COMPLETE, None
        with self._lock:
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
                study.tell(trial, values if len(values) > 1 else values[0])
            else:
                study.tell(trial, state=state)
        shown_values = ", ".join(f"{o}={v:.4g}" for o, v in zip(objectives, values or []))
        self._print(f"trial {trial.number} {state.name} in {seconds:.0f}s"
                    + (f": {shown_values}" if values else "")
                    + (f" ({str(error).strip().splitlines()[-1][:300]})" if error else ""))
        if parent is not None:
            parent.record_trial(trial.number, state.name, params, error)
        return {"number": trial.number, "state": state.name, "values": values}

    def _launch_in_process(self, trial, overrides, env, prune, sign):
        from sandbox.search.trial import make_hook
        from sandbox.steps.base import set_intermediate_hook

        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        previous = set_intermediate_hook(make_hook(trial, self.prune_on, sign) if prune else None)
        error, run_dir = None, None
        try:
            rets = self.launcher.launch([overrides], initial_job_idx=trial.number)
            ret = rets[0] if rets else None
            if ret is not None:
                try:
                    run_dir = ret.hydra_cfg.hydra.runtime.output_dir
                except Exception:
                    run_dir = None
                raw = getattr(ret, "_return_value", None)
                if isinstance(raw, BaseException):
                    error = f"{type(raw).__name__}: {raw}"
        except Exception as e:  # an invalid override fails before the job starts
            error = f"{type(e).__name__}: {e}"
        finally:
            set_intermediate_hook(previous)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return run_dir, error

    def _launch_subprocess(self, study, trial, overrides, env, prune, sign):
        from sandbox.search import trial as trial_env

        run_dir = self.sweep_dir / str(trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        n_user = len(sys.argv) - 1
        prefix = list(sys.orig_argv[1:len(sys.orig_argv) - n_user]) if n_user else \
            list(sys.orig_argv[1:])
        cmd = [sys.executable, *prefix, *overrides, f"hydra.run.dir={format_value(str(run_dir))}",
               "progress=false"]
        child_env = dict(os.environ, **env)
        if prune:
            child_env.update({
                trial_env.STORAGE_ENV: str(self.storage), trial_env.STUDY_ENV: study.study_name,
                trial_env.TRIAL_ENV: str(trial._trial_id), trial_env.PRUNE_ON_ENV: self.prune_on,
                trial_env.SIGN_ENV: str(sign)})
        log_path = run_dir / "trial.log"
        with open(log_path, "w") as log:
            log.write(" ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                  stdin=subprocess.DEVNULL)
        error = None
        if proc.returncode != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
            error = f"exit status {proc.returncode}; {log_path}:\n" + "\n".join(tail)
        return run_dir, error
