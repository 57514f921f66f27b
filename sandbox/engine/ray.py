"""The Ray engine: the local engine's per-span work, scheduled on a Ray cluster.

What runs where. The driver (this process) cuts the pool file into an explicit list of spans of
row ids (``pool_spans``: row group, first row, end row, pool offset), exactly as the local engine
does. Ray runs the *same* per-span function as the local engine's worker processes
(``sandbox.engine.worker.SpanWorker.run_span``: the same OP classes, the same compiled kernels)
on its workers, one span per task, and hands back one Arrow IPC buffer of per-row results per
span. The driver writes those buffers to the result file in span order, so the result file is
the one the local engine writes, byte for byte, whatever the number of workers or the order in
which spans finish. Selection (below) and writing the outputs give the local engine's kept set,
order, dropped table, retention table and exported bytes, and the stats cache (keyed by the
pool's fingerprint and the OPs' parameters, not by the engine) is shared by both engines.

Deterministic dedup, distributed. Every row's id is its offset in the pool file. Thresholds and
selectors run on the driver over the stat columns (a few bytes per row); exact and MinHash
deduplicators run as a Ray shuffle (``sandbox.engine.shuffle``): map tasks read their piece of the
result file and send each row's keys (its hash; its MinHash bands) to a partition chosen by the
key's hash, reduce tasks group equal keys and return star edges to each group's smallest row id,
and one union-find over those edges joins groups across partitions. The kept row of every group is
its smallest row id, exactly what selection on one machine keeps (``first_alive``, ``lsh_keep``),
whatever the shard layout or arrival order (Data-Juicer's Ray dedup keeps whichever copy reaches
its dedup actor first). ``dedup: driver`` runs them on the driver instead, as the local engine
does (the benchmark compares both).

Ray Data or Ray tasks (``scheduler``). ``data`` (the default) runs
``ray.data.from_items(spans).map_batches(fn, batch_size=1)`` with ``preserve_order``: Ray Data
streams the results back with backpressure (the object store holds a bounded number of span
results), re-runs the tasks of a worker that died and spreads them over the cluster. ``tasks``
runs one plain Ray task per span with at most ``num_proc`` in flight. Both call the same
function; the spans are always ours, never Ray Data's read splitting (its Parquet reader leaves a
small pool in one block). On warm workers a Ray Data pass costs ~0.1 s more than the local
engine's and ~30 ms per span on a busy 2-core machine, plain tasks ~2 ms per span
(``bench/ray_engine.py`` measures both); at the default 8192-row spans (~1 s of work each) the
difference is a few percent.

Where the files must be. Workers open the pool file themselves, by its path, so on a cluster of
several machines the pool and ``cache_dir`` must live on storage every node mounts at the same
path, and every node must have this package installed (or ship it with ``runtime_env``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
from rich.markup import escape

from sandbox.console import console
from sandbox.data.fingerprint import fingerprint as content_fingerprint
from sandbox.engine.common import Span, cache_key, cache_path
from sandbox.engine.local import LocalEngine
from sandbox.engine.result import ComputedFile
from sandbox.engine.selection import Selection, select
from sandbox.engine.shuffle import ShuffleDedup, shuffles
from sandbox.engine.spans import SPANS_SUFFIX, SpanStore
from sandbox.engine.worker import SpanJob, SpanWorker
from sandbox.errors import ConfigError, DataError, SandboxError
from sandbox.ops import Op, OpSpec

INSTALL = 'pip install "ray[data,client]==2.60.0"'
SCHEDULERS = ("data", "tasks")
DEDUP_MODES = ("shuffle", "driver")
LOCAL_ADDRESSES = (None, "", "local")
OOM_RETRIES = 2  # runs of a span after Ray's memory monitor killed its worker (local instance)


def import_ray():
    """The ``ray`` module, or one paragraph saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra)
    except ImportError as exc:
        raise ConfigError(
            f"engine=ray needs the `ray` package with its Data library, which is not installed "
            f"here ({exc}). Install it into this environment with `{INSTALL}` (about 600 MB; the "
            f"`client` extra is only needed for ray:// addresses), or run on this machine's "
            f"processes with engine=local.") from None
    return ray


class RayEngine(LocalEngine):
    """Runs the recipe's OPs on a Ray cluster; identical results to ``LocalEngine``.

    ``address``: None starts a private local Ray instance with ``num_cpus`` CPUs (None: every
    CPU) and ``object_store_memory`` bytes of object store (None: Ray's default); ``auto`` joins
    the cluster this machine belongs to (``ray start --head`` ran here); ``HOST:PORT`` joins the
    cluster whose head listens there; ``ray://HOST:10001`` connects through Ray Client. When Ray
    is already initialised in this process that instance is used as it is. ``num_proc``: spans
    processed at once (0: every CPU of the cluster). ``scheduler``: ``data`` (Ray Data) or
    ``tasks`` (plain Ray tasks); see the module docstring. ``runtime_env``: passed to
    ``ray.init`` (e.g. ``{working_dir: ., pip: [...]}`` for nodes without this package).
    ``batch_size``, ``span_rows``, ``chunk_rows``: as for ``LocalEngine`` (a span is one Ray
    task, so spans are larger by default). ``dedup``: ``shuffle`` (exact and MinHash dedup as a
    Ray shuffle, ``sandbox.engine.shuffle``) or ``driver`` (on the driver, as the local engine);
    ``shuffle_rows``: result rows per map task; ``shuffle_partitions``: reduce tasks (0: one
    per span processed at once, more when each would get over ~128 MB of records)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 num_proc: int | None = 0, scheduler: str = "data", batch_size: int = 512,
                 span_rows: int = 8192, chunk_rows: int = 16384,
                 object_store_memory: int | None = None,
                 runtime_env: dict[str, Any] | None = None, dedup: str = "shuffle",
                 shuffle_rows: int = 65536, shuffle_partitions: int = 0):
        super().__init__(num_proc=num_proc, batch_size=batch_size, span_rows=span_rows,
                         chunk_rows=chunk_rows)
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"engine.scheduler={scheduler!r} is not a Ray scheduler. Use "
                              f"`data` (Ray Data) or `tasks` (plain Ray tasks).")
        if dedup not in DEDUP_MODES:
            raise ConfigError(f"engine.dedup={dedup!r} is not a way to deduplicate on Ray. Use "
                              f"`shuffle` (on the workers) or `driver` (in this process).")
        if int(shuffle_rows) < 1 or int(shuffle_partitions) < 0:
            raise ConfigError(f"engine.shuffle_rows={shuffle_rows}, engine.shuffle_partitions="
                              f"{shuffle_partitions}: rows per map task must be at least 1 and "
                              f"reduce tasks at least 0 (0: one per worker).")
        self.dedup = dedup
        self.shuffle_rows, self.shuffle_partitions = int(shuffle_rows), int(shuffle_partitions)
        self.last_shuffle: ShuffleDedup | None = None  # the last select's shuffle (its counts)
        if num_cpus is not None and int(num_cpus) < 1:
            raise ConfigError(f"engine.num_cpus={num_cpus}: a local Ray instance needs at least "
                              f"one CPU. Set engine.num_cpus to a positive number, or null for "
                              f"every CPU of this machine.")
        self.address = None if address in LOCAL_ADDRESSES else str(address)
        self.num_cpus = None if num_cpus is None else int(num_cpus)
        self.scheduler = scheduler
        self.object_store_memory = object_store_memory
        self.runtime_env = dict(runtime_env) if runtime_env else None
        self.startup_seconds = 0.0  # how long connecting to (or starting) Ray took in this process
        self._store: SpanStore | None = None  # the finished spans of the running compute
        self.last_spans = {"kept": 0, "computed": 0}  # of the last compute's spans

    # -------------------------------------------------------------------------- connecting
    def connect(self):
        """The ``ray`` module, initialised: the instance this process already has, a new local
        one (``address`` None) or the cluster at ``address``."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if self.runtime_env:
            kwargs["runtime_env"] = self.runtime_env
        if self.address is None:
            # a task that Ray's memory monitor kills is retried without end by default (its
            # own counter, not max_retries): a span too big for memory would never fail
            kwargs.update(num_cpus=self.num_cpus, include_dashboard=False,
                          _system_config={"task_oom_retries": OOM_RETRIES})
            if self.object_store_memory:
                kwargs["object_store_memory"] = int(self.object_store_memory)
            try:
                ray.init(**kwargs)
            except Exception as exc:  # one of Ray's processes died or hung while starting
                with contextlib.suppress(Exception):
                    ray.shutdown()  # what did start goes down with the failed start
                why = (str(exc).strip().splitlines() or ["no details"])[0][:300]
                logs = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "session_latest"
                raise ConfigError(
                    f"engine=ray: the local Ray instance did not start ({type(exc).__name__}: "
                    f"{why}); nothing was computed. One of Ray's own processes died or hung "
                    f"while it started: its logs are in {logs / 'logs'}. Run again (a start-up "
                    f"race clears by itself), give Ray less (engine.num_cpus, "
                    f"engine.object_store_memory), or run with engine=local.") from None
        else:
            try:
                reachable(self.address)
                ray.init(address=self.address, **kwargs)
            except Exception as exc:  # ConnectionError, TimeoutError, ValueError, RuntimeError
                why = (str(exc).strip().splitlines() or ["no details"])[0][:300]
                raise ConfigError(
                    f"engine.address={self.address}: could not connect to a Ray cluster there "
                    f"({type(exc).__name__}: {why}). "
                    f"Start one first (`ray start --head` on the head node, then "
                    f"`ray start --address=HEAD:6379` on the others), check that this machine "
                    f"reaches it (HOST:PORT of the head's GCS, `auto` on a node of the cluster, or "
                    f"ray://HOST:10001 for Ray Client, which needs `{INSTALL}`), or leave "
                    f"engine.address=null to start a local instance.") from None
        self.startup_seconds = time.perf_counter() - start
        return ray

    def workers(self, ray) -> int:
        """Spans processed at once: ``num_proc``, or every CPU of the cluster when it is 0."""
        if self.num_proc is not None and int(self.num_proc) > 0:
            return int(self.num_proc)
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    # -------------------------------------------------------------------------- selecting
    def select(self, specs: list[OpSpec], ops: list[Op], computed: ComputedFile, num_rows: int,
               fields: str | Path | None = None) -> Selection:
        """``Engine.select``, with exact and MinHash dedup shuffled across the cluster (unless
        ``dedup`` is ``driver``, or the recipe has neither)."""
        if self.dedup == "driver" or not any(map(shuffles, ops)):
            return super().select(specs, ops, computed, num_rows, fields)
        ray = self.connect()
        self.last_shuffle = ShuffleDedup(ray, computed, self.shuffle_rows, self.shuffle_partitions,
                                         least_partitions=self.workers(ray))
        try:
            return ClusterWatch(ray, local=self.address is None).call(
                lambda: select(specs, ops, computed, num_rows, fields=fields,
                               dedup=self.last_shuffle))
        except ClusterGone as gone:
            raise self._gone(ray, gone, "deduplicated the rows",
                             f"The stats are computed and kept in {computed.path}: the same "
                             f"command with resume=true (the same hydra.run.dir) starts from "
                             f"them") from None
        except Exception as exc:
            cause = _sandbox_cause(exc)
            if cause is not None:
                raise cause from None
            raise

    def _gone(self, ray, gone: ClusterGone, doing: str, kept: str) -> SandboxError:
        """The paragraph for a cluster that went away while this engine ``doing``; this
        process lets go of it first (else Ray ends the process 60 s after the cluster went)."""
        with contextlib.suppress(Exception):
            # Ray Data's threads still wait on the dead cluster; once this driver is shut down,
            # their next Ray call would start a new local instance (Ray's auto-init)
            from ray._private import auto_init_hook

            auto_init_hook.enable_auto_connect = False
        # ... and Ray Data's metrics thread would print a traceback per update it cannot send
        logging.getLogger("ray.data._internal.stats").setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = ("the local Ray instance this run started (its processes died or were killed)"
                 if self.address is None else f"the Ray cluster at engine.address={self.address}")
        back = ("" if self.address is None else
                " once the cluster is back (`ray start --head` on its head node)")
        return SandboxError(
            f"engine=ray: {where} went away while it {doing} ({gone}); no result was written "
            f"under its final name. {kept}{back}. To stay off Ray, run with engine=local.")

    # -------------------------------------------------------------------------- computing
    def compute(self, dataset: str | Path, specs: list[OpSpec], text_key: str = "text", *,
                batch_size: int | None = None, cache_dir: Path | None = None,
                fingerprint: str | None = None, progress: Callable[[int], Any] | None = None,
                scratch_dir: Path | None = None) -> ComputedFile:
        """``LocalEngine.compute`` on Ray, with every finished span kept apart until the result
        file is whole (``sandbox.engine.spans``): a rerun after the cluster went away computes
        only the spans that were not finished."""
        fingerprint = fingerprint or content_fingerprint(dataset, cache_dir)
        if cache_dir is not None:
            folder = cache_path(cache_dir, fingerprint, specs, text_key).with_suffix(SPANS_SUFFIX)
        elif scratch_dir is not None:  # a run dir's step folder: resume=true finds it there
            folder = Path(scratch_dir) / f".{cache_key(fingerprint, specs, text_key)}{SPANS_SUFFIX}"
        else:
            folder = None
        self._store = None if folder is None else SpanStore(folder, batch_size or self.batch_size)
        try:
            computed = super().compute(dataset, specs, text_key, batch_size=batch_size,
                                       cache_dir=cache_dir, fingerprint=fingerprint,
                                       progress=progress, scratch_dir=scratch_dir)
        finally:
            store, self._store = self._store, None
        if store is not None:
            store.clear()
        return computed

    def _results(self, job: SpanJob, spans: Iterable[Span], workers: int,
                 scratch: Path | None = None) -> Iterator[pa.Buffer]:
        """The result buffers of the spans, in span order: the ones an earlier run finished
        from the span store, the others computed on Ray (``workers``, the local engine's
        process count, is replaced by ``self.workers``; results come through Ray's object
        store, not ``scratch``)."""
        ray = self.connect()
        manifest = list(spans)
        store = self._store
        kept = store.finished(manifest) if store is not None else set()
        todo = [i for i in range(len(manifest)) if i not in kept]
        self.last_spans = {"kept": len(kept), "computed": len(todo)}
        if kept:
            console.print(f"engine=ray: {len(kept)} of {len(manifest)} spans were finished by an "
                          f"earlier run (kept in {escape(str(store.folder))}); computing the "
                          f"other {len(todo)}.", soft_wrap=True)
        if not manifest:
            return
        width = self.workers(ray)
        missing = [manifest[i] for i in todo]
        watch = ClusterWatch(ray, local=self.address is None)
        pairs = (_data_results(ray, job, missing, width) if self.scheduler == "data"
                 else _task_results(ray, job, missing, width, watch.stopped)
                 ) if missing else iter(())
        watched = watch.pairs(pairs, 2 * width)
        received: set[int] = set()
        watched = _storing(watched, store, missing, received)
        try:
            computed = _in_order(watched, len(missing))
            for i, span in enumerate(manifest):
                if i not in kept:
                    yield next(computed)
                    continue
                buf = store.get(span)
                if buf is None:  # damaged, or removed by a run that finished these stats
                    self.last_spans["kept"] -= 1
                    self.last_spans["computed"] += 1
                    buf = next(_in_order(_task_results(ray, job, [span], 1), 1))
                    store.put(span, buf)
                yield buf
            for _ in computed:  # the end of the ordered stream (checks that it is complete)
                pass
        except ClusterGone as gone:
            if store is not None:
                done = len(store.finished(manifest))
                kept_now = (f"{done} of {len(manifest)} spans were finished and are kept in "
                            f"{store.folder}: the same command with resume=true (the same "
                            f"hydra.run.dir) computes only the other {len(manifest) - done}")
            else:
                kept_now = "Run the same command again with resume=true"
            raise self._gone(ray, gone, "computed the stats", kept_now) from None
        except Exception as exc:
            cause = _sandbox_cause(exc)
            if cause is not None:
                raise cause from None
            if _out_of_memory(exc):
                index = getattr(exc, "sandbox_span", None)
                if index is None:  # Ray Data: the earliest span not back yet (order is kept)
                    index = min(set(range(len(missing))) - received, default=0)
                raise self._oom_error(exc, job, missing[index]) from None
            raise

    def _oom_error(self, exc: BaseException, job: SpanJob, span: Span) -> SandboxError:
        """The paragraph for a span whose Ray worker ran out of memory (every retry of it)."""
        _, start, stop, first = span
        why = (str(exc).strip().splitlines() or ["no details"])[0][:300]
        size = max(job.batch_size, int(self.span_rows))
        return DataError(
            f"engine=ray: the Ray worker computing the span of rows {first}.."
            f"{first + stop - start - 1} of the pool {job.path} ran out of memory on every try "
            f"(Ray: {why}). Lower engine.span_rows (rows per task, now {size}; a span is "
            f"never smaller than the rows per OP call, engine.batch_size or the step's own "
            f"batch_size, now {job.batch_size}), run fewer spans at once per node "
            f"(engine.num_proc), or give the workers more memory. The spans finished before "
            f"it are kept: resume=true continues from them.")


def _out_of_memory(exc: BaseException) -> bool:
    """True when Ray's memory monitor (or the kernel's OOM killer, as Ray reports it) ended the
    task behind ``exc``, as far as Ray's wrapping shows."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("ray"):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__
    return False


def reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ``ConnectionError`` unless a TCP connection to ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``) opens within ``timeout`` seconds: ``ray.init`` itself retries an
    unreachable head for minutes. ``auto`` is left to Ray (it reads the local cluster's address
    file and fails at once without one)."""
    if address == "auto":
        return
    rest = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ConnectionError(f"{address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


# ------------------------------------------------------------------------------ on the workers
# The worker process's SpanWorker (built OPs, open pool file, loaded kernels), kept between
# tasks: Ray reuses worker processes, so a job's OPs are built once per worker, not per span.
_CACHED: tuple[SpanJob, tuple, SpanWorker] | None = None


def span_worker(job: SpanJob) -> SpanWorker:
    """This worker process's ``SpanWorker`` for ``job`` (built on first use, and again when
    the pool file at that path was replaced: a cached worker holds the old file open)."""
    global _CACHED
    try:
        st = os.stat(job.path)
    except OSError:
        raise DataError(
            f"engine=ray: the Ray worker on {socket.gethostname()} cannot read the pool file "
            f"{job.path}. Workers open the pool by its path, so on a cluster of several "
            f"machines put the data (and cache_dir) on storage every node mounts at the same "
            f"path, or run with engine=local.") from None
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if _CACHED is None or _CACHED[0] != job or _CACHED[1] != stamp:
        # no Op.preload here: it exists for forked workers, and would also load kernels that
        # only selection uses (on the driver); a worker loads what its spans use, on first use
        _CACHED = (job, stamp, SpanWorker(job))
    return _CACHED[2]


def run_span(job: SpanJob, span: Span) -> pa.Buffer:
    """``SpanWorker.run_span`` of this worker process; after a row group's last span the worker
    lets go of that row group (a Ray worker outlives the run, idle, with what it holds)."""
    worker = span_worker(job)
    buf = worker.run_span(span)
    group, _, stop, _ = span
    if stop >= worker._file.metadata.row_group(group).num_rows:
        worker._group = None
    return buf


def run_span_task(job: SpanJob, index: int, span: Span) -> tuple[int, pa.Buffer]:
    """One span (the ``tasks`` scheduler's task): its index and its result buffer."""
    return index, run_span(job, span)


def run_span_rows(batch: pa.Table, job: SpanJob) -> pa.Table:
    """The ``data`` scheduler's ``map_batches`` function: rows of span descriptors in, rows of
    (index, result buffer, error) out. A ``SandboxError`` (a one-paragraph error for the user)
    comes back pickled in ``error``: Ray Data would re-raise it as its own UserCodeException,
    which does not carry the original."""
    index = batch.column("index").to_pylist()
    try:
        buffers = [run_span(job, span) for span in zip(
            *(batch.column(c).to_pylist() for c in ("group", "start", "stop", "first")))]
    except SandboxError as exc:
        return pa.table({"index": pa.array(index[:1], pa.int64()),
                         "ipc": pa.array([b""], pa.large_binary()),
                         "error": pa.array([pickle.dumps(exc)], pa.binary())})
    offsets = np.zeros(len(buffers) + 1, dtype=np.int64)
    np.cumsum([b.size for b in buffers], out=offsets[1:])
    data = buffers[0] if len(buffers) == 1 else pa.py_buffer(b"".join(b.to_pybytes()
                                                                        for b in buffers))
    ipc = pa.Array.from_buffers(pa.large_binary(), len(buffers),
                                [None, pa.py_buffer(offsets.tobytes()), data])
    return pa.table({"index": pa.array(index, pa.int64()), "ipc": ipc,
                     "error": pa.nulls(len(buffers), pa.binary())})


# ------------------------------------------------------------------------------ on the driver
def _task_results(ray, job: SpanJob, manifest: list[Span], width: int,
                  stopped: threading.Event | None = None) -> Iterator[tuple[int, pa.Buffer]]:
    """(index, buffer) as tasks finish, with at most ``width`` tasks running and no task
    started more than ``4 * width`` spans ahead of the earliest unfinished one (so the results
    waiting for an earlier span stay bounded). Ends early once ``stopped`` is set (it waits a
    second at a time: a wait that never returns, on a cluster that went away, would keep this
    process from shutting Ray down)."""
    remote = ray.remote(num_cpus=1, max_retries=3)(run_span_task)
    job_ref = ray.put(job)
    running: dict = {}  # object ref -> span index
    following = 0  # the next span to start
    while True:
        earliest = min(running.values(), default=following)
        while (following < len(manifest) and len(running) < width
               and following - earliest < 4 * width):
            running[remote.remote(job_ref, following, manifest[following])] = following
            following += 1
        if not running:
            return
        ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        if stopped is not None and stopped.is_set():
            return
        if not ready:
            continue
        index = running.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:
            exc.sandbox_span = index  # which span failed (out of memory: named to the user)
            raise
        yield result


def _data_results(ray, job: SpanJob, manifest: list[Span], width: int
                  ) -> Iterator[tuple[int, pa.Buffer]]:
    """(index, buffer) in span order, from a Ray Data pass over the span descriptors."""
    items = [{"index": i, "group": g, "start": a, "stop": b, "first": f}
             for i, (g, a, b, f) in enumerate(manifest)]
    with _data_context(ray):
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            run_span_rows, fn_kwargs={"job": job}, batch_size=1, batch_format="pyarrow",
            compute=ray.data.TaskPoolStrategy(size=min(width, len(items))), num_cpus=1)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                     prefetch_batches=width):
            ipc, errors = batch.column("ipc"), batch.column("error")
            for k, index in enumerate(batch.column("index").to_pylist()):
                if errors[k].is_valid:
                    raise pickle.loads(errors[k].as_py())
                yield index, ipc[k].as_buffer()


@contextlib.contextmanager
def _data_context(ray):
    """Ray Data's settings for one pass (order kept, no progress bars or start-up banner),
    restored afterwards."""
    with warnings.catch_warnings():  # Ray Data's own use of its deprecated settings
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.")
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
                 ctx.print_on_execution_start)
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # its start-up lines, and the warning that we switched its progress bars off; and the
        # tracebacks it logs when a task fails: the failure reaches the driver, which reports it
        quiet = [(logging.getLogger(name), level) for name, level in
                 (("ray.data", logging.WARNING), ("ray.data._internal.progress", logging.ERROR),
                  ("ray.data._internal.execution.streaming_executor_state", logging.CRITICAL),
                  ("ray.data.exceptions", logging.CRITICAL))]
        levels = [logger.level for logger, _ in quiet]
        for logger, level in quiet:
            logger.setLevel(max(logger.level, level))
        try:
            yield ctx
        finally:
            (ctx.execution_options.preserve_order, ctx.enable_progress_bars,
             ctx.print_on_execution_start) = saved
            for (logger, _), level in zip(quiet, levels):
                logger.setLevel(level)


def _in_order(pairs: Iterator[tuple[int, pa.Buffer]], count: int) -> Iterator[pa.Buffer]:
    """The buffers of ``pairs`` by index 0..count-1, whatever order they come in."""
    waiting: dict[int, pa.Buffer] = {}
    following = 0
    for index, buf in pairs:
        waiting[index] = buf
        while following in waiting:
            yield waiting.pop(following)
            following += 1
    if following != count:
        raise RuntimeError(f"the Ray engine got results for {following} of {count} spans")


class ClusterGone(Exception):
    """The cluster's GCS server stopped answering (``ClusterWatch``)."""

    def __init__(self, address: str, seconds: float):
        super().__init__(f"the GCS server at {address} has not answered for {seconds:.0f}s")
        self.address, self.seconds = address, seconds


class ClusterWatch:
    """Results of a pass over the spans, taken from a thread of their own while this one checks
    that the cluster is still there.

    When every process of a Ray cluster dies (its GCS server and raylets), a driver's waits do
    not fail: Ray's core worker retries the GCS for 60 s and then ends the whole process with
    its own message. So while no result comes, this checks every second that the GCS server
    still takes connections, and raises ``ClusterGone`` once it has not for ``gone_after``
    seconds: for a local instance a GCS server that died never comes back; a cluster's may be
    restarted (GCS fault tolerance), so it gets longer."""

    def __init__(self, ray, local: bool):
        self.address = _gcs_address(ray)
        self.gone_after = 3.0 if local else 20.0
        self.stopped = threading.Event()  # set once the results are no longer read

    def answers(self) -> bool:
        if self.address is None:
            return True
        host, _, port = self.address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return True
        except OSError:
            return False

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, run in a thread of its own while this one watches the cluster."""
        return next(self.pairs((fn() for _ in range(1)), 1))

    def pairs(self, pairs: Iterator, limit: int) -> Iterator:
        """``pairs``, as they come; at most ``limit`` wait in between."""
        results: queue.Queue = queue.Queue(maxsize=max(1, limit))
        stop = self.stopped

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        def pump():
            try:
                for pair in pairs:
                    if not put(("pair", pair)):
                        return
                put(("end", None))
            except BaseException as exc:  # noqa: BLE001 - raised in the reading thread
                put(("error", exc))

        threading.Thread(target=pump, name="sandbox-ray-results", daemon=True).start()
        silent_since = None  # when the GCS server last failed to answer, while nothing came
        try:
            while True:
                try:
                    kind, item = results.get(timeout=1.0)
                except queue.Empty:
                    if self.answers():
                        silent_since = None
                    elif silent_since is None:
                        silent_since = time.monotonic()
                    elif time.monotonic() - silent_since >= self.gone_after:
                        raise ClusterGone(self.address, time.monotonic() - silent_since) from None
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()


def _gcs_address(ray) -> str | None:
    """``HOST:PORT`` of the GCS server of the cluster this driver is connected to (None through
    Ray Client, where the driver runs on the cluster)."""
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - Ray Client, or an older Ray
        return None


def _storing(pairs: Iterator[tuple[int, pa.Buffer]], store: SpanStore | None,
             spans: list[Span], received: set[int]) -> Iterator[tuple[int, pa.Buffer]]:
    """``pairs``, each span's buffer kept in ``store`` (if any) as it arrives, whatever its
    order, and its index noted in ``received``."""
    for index, buf in pairs:
        if store is not None:
            store.put(spans[index], buf)
        received.add(index)
        yield index, buf


def _sandbox_cause(exc: BaseException) -> SandboxError | None:
    """The ``ConfigError``/``DataError`` an OP raised on a Ray worker, from Ray's wrapping."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SandboxError) and type(exc).__module__.startswith("sandbox"):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None
