"""The Optuna study a sweep drives: its directions, sampler and pruner (from ``hydra.sweeper``),
creating it or resuming it from its storage, and the trials a killed sweep left behind.

``n_trials`` counts finished trials (COMPLETE + PRUNED + FAIL) across resumes. Trials left RUNNING
by a sweep on this machine whose process is gone are marked FAIL (``interrupted``), do not count,
and their parameters are enqueued to be tried again first. A study in a database also gets
Optuna's heartbeats: every sweep records one for each of its running trials every
``heartbeat_s`` seconds, and a trial whose heartbeat is older than ``grace_s`` (its sweep was
killed, on this machine or another) is failed by the next sweep that looks
(``fail_stale_trials``) and retried the same way.

The sampler (``hydra/sweeper/sampler=...`` plus ``hydra.sweeper.sampler`` keys) is built once the
study is loaded: a fixed ``seed`` is used as written for a new study, and mixed with the number of
trials already stored for a resumed one, so that running the same sweep again explores new points
instead of repeating the first trials' parameters. The grid sampler's grid is built from the
search space unless ``search_space`` is given."""
from __future__ import annotations

import hashlib
import inspect
import math
import os
import socket
import time
import warnings
from typing import Any, Callable

from hydra.utils import get_class

from sandbox.errors import ConfigError, SandboxError
from sandbox.search.shared import _rdb, register_sweep, storage_lock, study_lock

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
    """``<job name>-<hparams_search option>`` (``sandbox-thresholds``); the job name alone
    without one (another Hydra app: its script's name)."""
    try:
        choice = config.hydra.runtime.choices.get("hparams_search")
    except Exception:  # a config composed without Hydra's runtime section
        choice = None
    try:
        job = str(config.hydra.job.name or "sandbox")
    except Exception:
        job = "sandbox"
    return f"{job}-{choice}" if choice else job


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
    add_extra(node, extra, cls, inspect.signature(cls.__init__).parameters, what)
    try:
        return cls(**node)
    except TypeError as e:
        raise ConfigError(f"hydra.sweeper.{what}: {e}") from None


def add_extra(node: dict, extra: dict, cls, accepted, what: str) -> None:
    """Add the sweeper's own arguments (``constraints_func``) to ``node``, or say that ``cls``
    cannot take them."""
    for k, v in extra.items():
        if k not in accepted:
            raise ConfigError(
                f"hydra.sweeper.{what}: {cls.__name__} does not take `{k}`"
                + (" (constraints need a sampler that supports them: TPESampler, "
                   "NSGAIISampler, NSGAIIISampler, GPSampler)" if k == "constraints_func"
                   else "") + ".")
        node[k] = v


# the classes of the hydra/sweeper/sampler group: an argument one of them takes is dropped (with a
# note) when another is picked, so `hydra/sweeper/sampler=random` works on a config written for TPE
GROUP_SAMPLERS = ("RandomSampler", "TPESampler", "NSGAIISampler", "CmaEsSampler", "QMCSampler",
                  "GPSampler", "GridSampler")
GRID_TARGET = "optuna.samplers.GridSampler"


def derived_seed(seed: int, stored_trials: int, concurrent: int = 0) -> int:
    """``seed`` for a new study; for one holding ``stored_trials`` trials, a seed mixed from both
    (so a resumed sweep does not replay the first trials' parameters); with ``concurrent`` other
    sweeps running on the study (workers started together see the same stored trials), mixed
    with that count too, so that each worker samples its own points."""
    if stored_trials <= 0 and concurrent <= 0:
        return int(seed)
    key = f"{int(seed)}:{int(stored_trials)}" + (f":{int(concurrent)}" if concurrent > 0 else "")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _sampler_arguments(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def build_sampler(sampler_cfg: Any, distributions: dict[str, Any], stored_trials: int,
                  say: Callable[[str], None], concurrent: int = 0, **extra):
    """``hydra.sweeper.sampler`` -> an Optuna sampler (see the module's docstring); ``extra``:
    arguments the sweeper adds (``constraints_func``); ``concurrent``: other sweeps running on
    the study now. Returns (sampler, grid size or None)."""
    import optuna

    from sandbox.search.space import grid_values

    node = dict(sampler_cfg or {"_target_": "optuna.samplers.TPESampler"})
    node.pop("_partial_", None)  # hydra-optuna-sweeper's grid config is a partial
    target = str(node.get("_target_") or "")
    if not target:
        raise ConfigError("hydra.sweeper.sampler needs `_target_` (an Optuna sampler class), or "
                          "pick one: hydra/sweeper/sampler=random|tpe|nsgaii|cmaes|qmc|gp|grid.")
    try:
        cls = get_class(target)
    except Exception as e:
        raise ConfigError(f"hydra.sweeper.sampler._target_={target}: {e}") from None
    accepted = _sampler_arguments(cls)
    known = set().union(*(_sampler_arguments(getattr(optuna.samplers, n))
                          for n in GROUP_SAMPLERS if hasattr(optuna.samplers, n)))
    given = set(node) - {"_target_"}
    foreign = sorted(k for k in given - accepted if k in known)
    unknown = sorted(given - accepted - known)
    if unknown:
        raise ConfigError(f"hydra.sweeper.sampler: {cls.__name__} does not take "
                          f"{', '.join(unknown)}. It takes: {', '.join(sorted(accepted))}.")
    if foreign:
        say(f"hydra.sweeper.sampler: {', '.join(foreign)} not taken by {cls.__name__} "
            f"(another sampler's setting): ignored")
        for k in foreign:
            node.pop(k)
    grid_size = None
    if issubclass(cls, optuna.samplers.GridSampler):
        if node.get("search_space") is None:
            node["search_space"] = {name: grid_values(name, d) for name, d in distributions.items()}
        grid_size = math.prod(len(v) for v in node["search_space"].values())
    if node.get("seed") is not None and "seed" in accepted:
        seed = derived_seed(node["seed"], stored_trials, concurrent)
        if seed != node["seed"]:
            why = (f"{concurrent} other sweep(s) run on the study now" if concurrent else
                   f"the study already holds {stored_trials} trial(s)")
            say(f"sampler seed {node['seed']} -> {seed}: {why}, and the same seed would repeat "
                f"their parameters")
        node["seed"] = seed
    add_extra(node, extra, cls, accepted, "sampler")
    node.pop("_target_")
    try:
        return cls(**node), grid_size
    except (TypeError, ValueError, ImportError) as e:
        raise ConfigError(f"hydra.sweeper.sampler ({cls.__name__}): {e}") from None


def create_study(name: str, storage: str | None, directions: list[str], sampler_cfg: Any,
                 pruner_cfg: Any, constraint_count: int, distributions: dict[str, Any] | None = None,
                 say: Callable[[str], None] = lambda msg: None,
                 heartbeat: tuple[int, int] | None = None, stale: list | None = None):
    """The study ``name`` in ``storage``: loaded when it exists, created otherwise; its sampler
    is built for the trials it already holds. Returns (study, grid size or None).

    ``heartbeat``: (interval, grace period) in seconds for a database storage; a trial that
    goes stale is retried (``retry_interrupted``) and appended to ``stale``."""
    import optuna

    def constraints_func(frozen) -> list[float]:
        values = frozen.user_attrs.get("constraints")
        return list(values) if values else [math.inf] * constraint_count

    # Optuna >= 5: trial.set_constraint (set before tell); older: the sampler's constraints_func
    modern = hasattr(optuna.trial.Trial, "set_constraint")
    extra = {"constraints_func": constraints_func} if constraint_count and not modern else {}
    pruner = instantiate(pruner_cfg, "pruner")

    try:
        with storage_lock(storage):  # other workers may be creating it right now
            backend = storage
            if storage and heartbeat is not None:
                found = [] if stale is None else stale

                def on_stale(study, frozen) -> None:
                    retry_interrupted(study, frozen)
                    found.append(frozen)

                backend = optuna.storages.RDBStorage(
                    storage, heartbeat_interval=int(heartbeat[0]), grace_period=int(heartbeat[1]),
                    heartbeat_stale_trial_callback=on_stale,
                    # connections a restarted database dropped are replaced, not used
                    engine_kwargs={"pool_pre_ping": True})
            study = optuna.create_study(study_name=name, storage=backend, pruner=pruner,
                                        sampler=optuna.samplers.RandomSampler(),  # replaced below
                                        directions=directions, load_if_exists=True)
    except ValueError as e:
        raise ConfigError(f"optuna study {name} in {storage}: {e}. Use another "
                          f"hydra.sweeper.study_name.") from None
    except ImportError:  # Optuna's words name no package
        raise ConfigError(
            f"hydra.sweeper.storage={storage}: the database driver for this URL is not "
            f"installed. For postgresql://... run `pip install 'psycopg[binary]'` (MySQL: "
            f"`pip install pymysql` and a mysql+pymysql://... URL).") from None

    with study_lock(study):
        concurrent = register_sweep(study) if storage else 0
        stored = len(study.get_trials(deepcopy=False))
    study.sampler, grid_size = build_sampler(sampler_cfg, distributions or {}, stored, say,
                                             concurrent, **extra)
    return study, grid_size


DB_RETRY_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # ~30 s for a database to come back


def with_retries(work: Callable[[], Any], storage: str | None,
                 say: Callable[[str], None] = lambda msg: None) -> Any:
    """``work()``, tried again with growing waits while the study's database does not answer
    (restarting, a dropped connection); a ``SandboxError`` once it has been silent for ~30 s.
    Trials already told are in the database, so a later run of the same command resumes."""
    import optuna
    import sqlalchemy.exc

    down = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
            optuna.exceptions.StorageInternalError)
    for wait in (*DB_RETRY_WAITS, None):
        try:
            return work()
        except down as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if wait is None:
                raise SandboxError(
                    f"the study's database hydra.sweeper.storage={storage} did not answer for "
                    f"{sum(DB_RETRY_WAITS):.0f}s ({type(e).__name__}: {why}); the sweep "
                    f"stopped. Every finished trial is stored: once the database is back, run "
                    f"the same command again and the study resumes.") from None
            say(f"[yellow]the study's database did not answer ({why}); trying again in "
                f"{wait:g}s[/]")
            time.sleep(wait)


def tell(study, trial, *args, **kwargs) -> None:
    """``study.tell``. The grid sampler calls ``study.stop()`` once every point has been asked,
    which Optuna refuses outside ``study.optimize``; the trial is stored before that, and the
    sweeper stops at the grid's size anyway, so that refusal is ignored."""
    import optuna

    try:
        study.tell(trial, *args, **kwargs)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # told by an earlier try whose answer the database dropped
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def claim(trial) -> None:
    """Mark ``trial`` as run by this process, so a later sweep knows when it was interrupted."""
    trial.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": os.getpid()})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def retry_interrupted(study, frozen) -> None:
    """Enqueue the parameters of a trial that failed because its sweep died, to be tried
    first; the retry's ``retry_of`` names it, so it no longer counts (``interrupted_numbers``)."""
    study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number},
                        skip_if_exists=False)


def interrupted_numbers(trials) -> set[int]:
    """The trials that ended with their sweep: flagged ``interrupted`` (a sweep of this host
    found its process gone), or failed by their stale heartbeat and retried (Optuna refuses a
    user attr on a finished trial, so their retry's ``retry_of`` says it)."""
    return {t.number for t in trials if t.user_attrs.get("interrupted")} | \
        {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def fail_stale_trials(study) -> None:
    """Optuna's ``fail_stale_trials``: trials whose heartbeat is older than the grace period
    are failed, and the storage's callback (``create_study``'s ``on_stale``) retries each."""
    import optuna

    with warnings.catch_warnings():  # experimental since Optuna 2.9, and still as it was
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def record_heartbeat(study, trial) -> None:
    """Optuna's heartbeat for ``trial``, where the study's storage keeps them."""
    rdb = _rdb(study)
    if rdb is not None and rdb.get_heartbeat_interval() is not None:
        rdb.record_heartbeat(trial._trial_id)


def mark_interrupted(study, trial_id: int, number: int) -> None:
    """Tell ``study`` that a trial ended with its sweep: FAIL, flagged ``interrupted``."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial_id, "interrupted", True)
    tell(study, number, state=TrialState.FAIL)


def recover_interrupted(study, say: Callable[[str], None]) -> None:
    """Trials a killed sweep on this host left RUNNING: FAIL them and retry their params."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("sweeper")
        if not owner or owner.get("host") != host or pid_alive(int(owner.get("pid", -1))):
            continue
        mark_interrupted(study, t._trial_id, t.number)
        retry_interrupted(study, t)
        say(f"trial {t.number} was interrupted (its sweep was killed): marked FAIL, its "
            f"parameters are tried again first")


def counted_trials(study) -> int:
    """Finished trials that count toward n_trials (not interrupted ones)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    gone = interrupted_numbers(trials)
    return sum(1 for t in trials if t.state in done and t.number not in gone)
