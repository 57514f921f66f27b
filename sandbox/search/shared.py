"""Several sweeps on one study: workers on one or many machines that run the same
``python -m sandbox --multirun ...`` with the same ``hydra.sweeper.study_name`` and a shared
``hydra.sweeper.storage`` (PostgreSQL or MySQL across machines, SQLite on one machine).

``n_trials`` is the study's total, whoever runs the trials: a worker takes a new trial only while
the study's finished trials (not counting interrupted ones) plus its running ones, on every
worker, are fewer than ``n_trials``. Counting and taking the trial (Optuna's ``ask``) must happen
as one step, or two workers that count at the same moment both take the last trial; so they run
under ``study_lock``, a lock that lives where the study does:

* PostgreSQL: a session advisory lock (``pg_advisory_lock``), released by the server if the
  worker's connection drops;
* MySQL / MariaDB: ``GET_LOCK``, likewise tied to the connection;
* SQLite: an exclusive ``flock`` on a file in the temp dir named after the database and study
  (SQLite is shared by processes of one machine only).

The study also lists the sweeps running on it (user attr ``sandbox.active_sweeps``: host and
pid), so that a worker started beside others with the same fixed ``sampler.seed`` draws its own
points (``sandbox.search.study.derived_seed``) instead of repeating theirs.

Any other storage (in memory) has one worker by construction and takes no lock. The same lock
guards the other read-then-write steps of a sweep's start: retrying trials a killed worker left
behind (each retried once, not once per worker) and creating the study's MLflow parent run (one
per study, not one per worker). ``storage_lock`` guards the very first step, creating Optuna's
tables in an empty database, which workers started together would otherwise all try at once."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Iterator


def _rdb(study):
    """The study's ``RDBStorage`` (Optuna wraps it in a cache), or None for another storage."""
    from optuna.storages import RDBStorage

    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory(engine, acquire: str, release: str, key) -> Iterator[None]:
    """A lock held by one database connection of ``engine`` (not Optuna's own, so Optuna's
    queries inside the block are not blocked by it)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text(acquire), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text(release), {"k": key})
            conn.commit()


def _lock(engine, name: str):
    """The lock called ``name`` in the database ``engine`` points to (see the module's
    docstring), or a no-op for a database that offers none."""
    dialect = engine.dialect.name
    digest = hashlib.sha256(f"sandbox-sweep:{name}".encode()).digest()
    if dialect == "postgresql":
        return _advisory(engine, "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)",
                         int.from_bytes(digest[:8], "big", signed=True))
    if dialect in ("mysql", "mariadb"):  # lock names are at most 64 characters
        return _advisory(engine, "SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)",
                         "sandbox-" + digest.hex()[:40])
    database = engine.url.database
    if dialect == "sqlite" and database not in (None, "", ":memory:"):
        where = hashlib.sha256(f"{Path(database).resolve()}:{name}".encode()).hexdigest()
        return _flock(Path(tempfile.gettempdir()) / f"sandbox-sweep-{where[:24]}.lock")
    return contextlib.nullcontext()


@contextlib.contextmanager
def study_lock(study) -> Iterator[None]:
    """Hold the study's lock (see the module's docstring) for the block."""
    rdb = _rdb(study)
    with _lock(rdb.engine, f"study:{study.study_name}") if rdb is not None else \
            contextlib.nullcontext():
        yield


@contextlib.contextmanager
def storage_lock(url: str | None) -> Iterator[None]:
    """Hold a lock on the storage at ``url`` (a database URL) for the block: workers that start
    together on an empty database would otherwise all create Optuna's tables at once, and all
    but one fail."""
    if not url or "://" not in str(url):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(str(url), poolclass=NullPool)
    except Exception:  # a bad URL or a missing driver: Optuna reports it in its own words
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.callback(engine.dispose)
        try:
            stack.enter_context(_lock(engine, "storage"))
        except Exception:  # the server cannot be reached: likewise
            pass
        yield


def taken_trials(study) -> int:
    """Trials that fill ``n_trials``: finished ones that count (``counted_trials``) plus those
    running now, on any worker."""
    from optuna.trial import TrialState

    from sandbox.search.study import counted_trials

    running = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                  if not t.user_attrs.get("interrupted"))
    return counted_trials(study) + running


ACTIVE = "sandbox.active_sweeps"


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def register_sweep(study) -> int:
    """Add this process to the study's running sweeps (under ``study_lock``); return how many
    others run now. A sweep of this host whose process is gone no longer counts; one of another
    host counts until it ends (a killed one only changes the seeds later workers derive)."""
    from sandbox.search.study import pid_alive

    me, host = _me(), socket.gethostname()
    others = [s for s in study.user_attrs.get(ACTIVE) or [] if isinstance(s, dict) and s != me
              and (s.get("host") != host or pid_alive(int(s.get("pid", -1))))]
    study.set_user_attr(ACTIVE, [*others, me])
    return len(others)


def unregister_sweep(study) -> None:
    """Take this process off the study's running sweeps (when its sweep ends)."""
    with study_lock(study):
        active = study.user_attrs.get(ACTIVE) or []
        if _me() in active:
            study.set_user_attr(ACTIVE, [s for s in active if s != _me()])
