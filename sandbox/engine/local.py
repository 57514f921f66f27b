"""The local engine: a recipe's OPs over a pool file, in batches, on worker processes.

Memory. ``compute`` streams: the pool's Parquet file is cut into spans of at most ``span_rows``
rows (``pool_spans``), and each worker reads its spans from the file itself and sends back an
Arrow IPC buffer of results (``sandbox.engine.worker``). The main process only writes those
results to the result file with a ``ParquetWriter`` as they arrive, in input order; at most
``2 * num_proc`` spans are in flight, so memory is bounded by the span size, not by the pool.
Only the numeric stat columns and the integer hash codes are ever loaded whole (a few bytes per
sample per stat). Columns other than the text that an OP declares in ``input_fields()`` are read
with the text (``TextViews.fields``); selectors get the alive samples' values of theirs in
``select``.

``num_proc``: worker processes; ``None`` or ``0`` means every CPU this process may use. With
``num_proc=N`` there are N workers plus the main process, which only writes what they send.
Workers are forked where the platform allows (they inherit the OPs' preloaded kernels);
``start_method="spawn"`` works too, since a worker's job and entry points pickle.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import socket
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from rich.markup import escape

from sandbox.console import console
from sandbox.data.fingerprint import fingerprint as content_fingerprint
from sandbox.data.io import parquet_writer
from sandbox.engine.base import Engine, ProcessOutputs
from sandbox.engine.common import (POOL_FINGERPRINT_KEY, ROW_ID_COLUMN, TEXT_COLUMN, Span,
                                   build_op, cache_key, cache_path, cast_batch, has_mapper,
                                   input_fields, pool_spans, resolve_num_proc, result_metadata)
from sandbox.engine.outputs import write_outputs
from sandbox.engine.result import ComputedFile
from sandbox.engine.selection import Selection
from sandbox.engine.worker import SpanJob, SpanWorker, init_worker, run_span_to_file
from sandbox.errors import ConfigError
from sandbox.ops import OpSpec
from sandbox.utils import atomic_path

RESULT_ROW_GROUP_ROWS = 65536  # rows per row group of a result file (at least batch_size)


def default_start_method() -> str:
    """``fork`` where the platform has it (fast start, preloaded kernels shared), else
    ``spawn``."""
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


class LocalEngine(Engine):
    """Runs on ``num_proc`` worker processes of this machine (0: every CPU it may use).
    ``batch_size``: rows per OP call (a step's own batch size wins); ``span_rows``: rows a worker
    reads per task (load balance vs per-task cost); ``chunk_rows``: rows per write chunk and per
    row group of the process step's outputs; ``start_method``: how workers start (default:
    ``default_start_method()``)."""

    def __init__(self, num_proc: int | None = 0, batch_size: int = 512, span_rows: int = 2048,
                 chunk_rows: int = 16384, start_method: str | None = None):
        for name, value in (("batch_size", batch_size), ("span_rows", span_rows),
                            ("chunk_rows", chunk_rows)):
            if int(value) < 1:
                raise ConfigError(f"engine.{name}={value}: it counts rows, so it must be at "
                                  f"least 1. Set engine.{name} to a positive number.")
        methods = mp.get_all_start_methods()
        if start_method is not None and start_method not in methods:
            raise ConfigError(f"engine.start_method={start_method!r} is not available here. "
                              f"Use one of {', '.join(methods)}, or null for the default.")
        self.num_proc = num_proc
        self.batch_size, self.span_rows, self.chunk_rows = batch_size, span_rows, chunk_rows
        self.start_method = start_method or default_start_method()

    def compute(self, dataset: str | Path, specs: list[OpSpec], text_key: str = "text", *,
                batch_size: int | None = None, cache_dir: Path | None = None,
                fingerprint: str | None = None, progress: Callable[[int], Any] | None = None,
                scratch_dir: Path | None = None) -> ComputedFile:
        """``Engine.compute``, streamed through worker processes (see the module docstring)."""
        dataset = Path(dataset)
        batch_size = batch_size or self.batch_size
        pool = pq.ParquetFile(dataset)
        num_rows = pool.metadata.num_rows
        has_text = has_mapper(specs)
        pool_fingerprint = fingerprint or content_fingerprint(dataset, cache_dir)
        if cache_dir is not None:
            out = cache_path(cache_dir, pool_fingerprint, specs, text_key)
            damage = _cache_damage(out, num_rows, pool_fingerprint)
            if damage is None:
                return ComputedFile(out, num_rows, has_text, cache_hit=True)
            if damage:  # a file that is there but cannot be trusted: never read as data
                console.print(f"[yellow]warning:[/] the cached stats file {escape(str(out))} is "
                              f"damaged ({escape(damage)}); it is computed again and replaced.",
                              soft_wrap=True)
        elif scratch_dir is not None:
            out = (Path(scratch_dir) /
                   f".engine-{os.getpid()}-{cache_key(pool_fingerprint, specs, text_key)}.parquet")
        else:
            raise ValueError("LocalEngine.compute needs cache_dir or scratch_dir")
        advance = progress or (lambda k: None)
        extra = [f for f in input_fields(specs, text_key) if f in pool.schema_arrow.names]
        job = SpanJob(tuple(specs), text_key, str(dataset), (text_key, *extra), batch_size)
        workers = resolve_num_proc(self.num_proc) if num_rows > batch_size else 1
        spans = pool_spans(dataset, max(batch_size, self.span_rows))
        metadata = result_metadata(pool_fingerprint)
        with atomic_path(out) as tmp:
            writer = None
            try:
                for buf in self._results(job, spans, workers, tmp.parent):
                    for batch in pa.ipc.open_stream(buf):
                        if writer is None:
                            schema = batch.schema
                            writer = parquet_writer(tmp, schema.with_metadata(metadata),
                                                    write_page_checksum=True)
                        elif batch.schema != schema:
                            batch = cast_batch(batch, schema)
                        writer.write_batch(batch,
                                           row_group_size=max(batch_size, RESULT_ROW_GROUP_ROWS))
                        advance(batch.num_rows)
                if writer is None:  # an empty pool: row ids only
                    writer = parquet_writer(tmp, pa.schema([(ROW_ID_COLUMN, pa.int64())],
                                                           metadata=metadata))
            finally:
                if writer is not None:
                    writer.close()
        return ComputedFile(out, num_rows, has_text)

    def write(self, dataset: str | Path, computed: ComputedFile, selection: Selection,
              text_key: str, outputs: ProcessOutputs) -> None:
        """``Engine.write``, streamed in chunks of ``chunk_rows`` (``sandbox.engine.outputs``)."""
        write_outputs(dataset, computed, selection, text_key, outputs, self.chunk_rows)

    def _results(self, job: SpanJob, spans: Iterable[Span], workers: int,
                 scratch: Path) -> Iterator[pa.Buffer]:
        """The workers' result buffers, one per span, in span order (``scratch``: a folder for
        the workers' result files)."""
        if workers <= 1:
            worker = SpanWorker(job)
            yield from map(worker.run_span, spans)
            return
        if self.start_method == "fork":  # forked workers inherit what the OPs preloaded
            preload(list(job.specs), job.text_key)
        # the results come back as files beside the result file (see run_span_to_file), each
        # read through a memory map and deleted at once: at most 2 * workers exist at a time
        remove_orphan_span_folders(scratch)
        folder = Path(tempfile.mkdtemp(prefix=f"{_SPANS}{_HOST}-{os.getpid()}-", dir=scratch))
        try:
            items = ((span, str(folder / f"{i}.arrow")) for i, span in enumerate(spans))
            for path in ordered_map(run_span_to_file, items, workers, self.start_method,
                                    init_worker, (job,)):
                with pa.memory_map(path) as mapped:
                    buf = mapped.read_buffer()
                os.unlink(path)  # the mapping keeps the data until ``buf`` is gone
                yield buf
        finally:
            shutil.rmtree(folder, ignore_errors=True)


_SPANS = ".spans-"  # + host-pid-random: a run's folder of span result files
_HOST = socket.gethostname().replace("-", "_")


def remove_orphan_span_folders(scratch: Path) -> list[Path]:
    """Remove the span folders in ``scratch`` that a process of this host left behind when it
    was killed (its pid no longer runs); a folder of a live process, or of another host sharing
    the cache, stays. Returns the removed folders."""
    removed = []
    for folder in Path(scratch).glob(f"{_SPANS}{_HOST}-*"):
        try:
            os.kill(int(folder.name[len(_SPANS) + len(_HOST) + 1:].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except (ValueError, PermissionError):  # not a pid; or a live process of another user
            continue
    return removed


def _cache_damage(path: Path, num_rows: int, pool_fingerprint: str) -> str | None:
    """None when ``path`` is a complete result file of this pool; "" when there is none; else
    what is wrong with it. Its stat
    columns are read whole, with their page checksums verified (a few bytes per row), so a
    truncated or corrupted file is found here, not half-way through the selection."""
    if not path.is_file():
        return ""
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        schema = pf.schema_arrow
        if (schema.metadata or {}).get(POOL_FINGERPRINT_KEY) != pool_fingerprint.encode():
            return "written for another pool"
        if pf.metadata.num_rows != num_rows or ROW_ID_COLUMN not in schema.names:
            return f"{pf.metadata.num_rows} rows, the pool has {num_rows}"
        pf.read(columns=[n for n in schema.names if n != TEXT_COLUMN])
    except Exception as e:  # truncated (no footer), bad pages, unreadable
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
    return None


def ordered_map(fn: Callable, items: Iterable, num_proc: int, start_method: str | None = None,
                initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """``map(fn, items)`` in order, on ``num_proc`` worker processes, with at most
    ``2 * num_proc`` items in flight (``Pool.imap`` would drain ``items`` eagerly)."""
    ctx = mp.get_context(start_method or default_start_method())
    with ctx.Pool(num_proc, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


_PRELOADING: list[threading.Thread] = []  # background preload threads (preload_in_background)


def preload(specs: list[OpSpec], text_key: str) -> None:
    """``Op.preload`` of every OP, in this process: workers forked afterwards inherit it. Waits
    for any background preload first (never fork while another thread holds a lock)."""
    while _PRELOADING:
        _PRELOADING.pop().join()
    _preload_ops(specs, text_key)


def _preload_ops(specs: list[OpSpec], text_key: str) -> None:
    for spec in specs:
        build_op(spec, text_key).preload()


def preload_in_background(specs: list[OpSpec], text_key: str) -> None:
    """Start ``preload`` in a thread, so that loading compiled kernels (a millisecond from their
    extensions; ~0.5 s and more through numba) overlaps the steps before the first one that
    runs the recipe (forked workers inherit what it loaded). Errors are left for that step to
    raise."""

    def work():
        try:
            # pyarrow's first conversion (which imports pandas unless the command line ran
            # ``arrow_without_pandas``), here rather than on the critical path; and load the
            # JSON-lines kernel that exports use (its extension, or numba's first compile)
            from sandbox.data.jsonl import jsonl_bytes

            jsonl_bytes(pa.table({"text": ["a"]}))
            _preload_ops(specs, text_key)
        except Exception:  # the step that uses the OP reports it, with context
            pass

    thread = threading.Thread(target=work, name="sandbox-preload", daemon=True)
    thread.start()
    _PRELOADING.append(thread)
