"""The Optuna study a sweep drives: its directions, sampler and pruner (from ``hydra.sweeper``),
creating it or resuming it from its storage, and the trials a killed sweep left behind.

``n_trials`` counts finished trials (COMPLETE + PRUNED + FAIL) across resumes. Trials left RUNNING
by a sweep on this machine whose process is gone are marked FAIL (``interrupted``), do not count,
and their parameters are enqueued to be tried again first."""
from __future__ import annotations

import inspect
import math
import os
import socket
from typing import Any, Callable

from hydra.utils import get_class

from sandbox.errors import ConfigError

DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


def parse_directions(direction: Any) -> list[str]:
    """``hydra.sweeper.direction`` (one or a list) -> Optuna direction names."""
    dirs = [direction] if isinstance(direction, str) else list(direction or ["minimize"])
    try:
        return [DIRECTIONS[str(d).lower().split(".")[-1]] for d in dirs]
    except KeyError:
        raise ConfigError(f"hydra.sweeper.direction={direction}: use minimize or maximize "
                          f"(or a list of them, one per objective).") from None


def default_study_name(config) -> str:
    """``sandbox-<hparams_search option>`` (``sandbox`` without one)."""
    try:
        choice = config.hydra.runtime.choices.get("hparams_search")
    except Exception:  # a config composed without Hydra's runtime section
        choice = None
    return f"sandbox-{choice}" if choice else "sandbox"


def instantiate(node: dict | None, what: str, **extra):
    """Build ``hydra.sweeper.<what>`` (``_target_`` + arguments), adding ``extra`` arguments."""
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


def create_study(name: str, storage: str | None, directions: list[str], sampler_cfg: Any,
                 pruner_cfg: Any, constraint_count: int):
    """The study ``name`` in ``storage``: loaded when it exists, created otherwise."""
    import optuna

    def constraints_func(frozen) -> list[float]:
        values = frozen.user_attrs.get("constraints")
        return list(values) if values else [math.inf] * constraint_count

    sampler_cfg = sampler_cfg or {"_target_": "optuna.samplers.TPESampler"}
    # Optuna >= 5: trial.set_constraint (set before tell); older: the sampler's constraints_func
    modern = hasattr(optuna.trial.Trial, "set_constraint")
    extra = {"constraints_func": constraints_func} if constraint_count and not modern else {}
    sampler = instantiate(sampler_cfg, "sampler", **extra)
    pruner = instantiate(pruner_cfg, "pruner")
    try:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                   pruner=pruner, directions=directions, load_if_exists=True)
    except ValueError as e:
        raise ConfigError(f"optuna study {name} in {storage}: {e}. Use another "
                          f"hydra.sweeper.study_name.") from None


def claim(trial) -> None:
    """Mark ``trial`` as run by this process, so a later sweep knows when it was interrupted."""
    trial.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": os.getpid()})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_interrupted(study, trial_id: int, number: int) -> None:
    """Tell ``study`` that a trial ended with its sweep: FAIL, flagged ``interrupted``."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    study.tell(number, state=TrialState.FAIL)


def recover_interrupted(study, say: Callable[[str], None]) -> None:
    """Trials a killed sweep on this host left RUNNING: FAIL them and retry their params."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("sweeper")
        if not owner or owner.get("host") != host or _pid_alive(int(owner.get("pid", -1))):
            continue
        mark_interrupted(study, t._trial_id, t.number)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        say(f"trial {t.number} was interrupted (its sweep was killed): marked FAIL, its "
            f"parameters are tried again first")


def counted_trials(study) -> int:
    """Finished trials that count toward n_trials (not interrupted ones)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done)
               if not t.user_attrs.get("interrupted"))
