"""The data engine: run a recipe's OPs over a pool, in batches, on several processes.

Two phases, kept apart on purpose:

1. ``compute`` / ``compute_file``: mappers edit the text, filters compute stats,
   deduplicators compute hashes, for *every* sample (nothing is dropped). This never looks at
   thresholds, so its result is cached by (input fingerprint, the OPs' names and stat-relevant
   parameters): probe and process share it, and a threshold change or a sweep trial re-uses it.
2. ``select``: thresholds turn stats into masks, OP by OP in recipe order, and deduplicators keep
   the first alive sample of each hash. Vectorised (numpy masks; dedup is one ``np.unique`` over
   integer hash codes of the alive rows), and it records which OP dropped each sample.

Because mappers and stats are per-sample, computing every stat on every sample and masking
afterwards keeps exactly the samples that applying the OPs one after the other would keep.

Memory. ``compute_file`` streams: the pool's Parquet file is cut into spans of at most
``SPAN_ROWS`` rows (never across a row group), and each worker reads its spans from the file itself
(only the columns the OPs need), runs the OPs on them ``batch_size`` rows at a time, and sends back an Arrow IPC buffer of results (stats, hashes, and the mapped text when a
mapper ran). The main process only writes those results to the cache file with a
``ParquetWriter`` as they arrive, in input order; at most ``2 * num_proc`` spans are in flight, so
memory is bounded by the span size, not by the pool. Only the numeric stat columns and the
integer hash codes are ever loaded whole (a few bytes per sample per stat). Columns other than
the text that an OP declares in ``input_fields()`` are read with the text (``TextViews.fields``);
selectors get the alive samples' values of theirs in ``select``.

``num_proc``: worker processes (forked); ``None`` or ``0`` means every CPU this process may use.
With ``num_proc=N`` there are N workers plus the main process, which only writes what they send.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from sandbox.ops import Deduplicator, Filter, Mapper, Op, OpSpec, Selector, TextViews
from sandbox.utils import stable_hash

TEXT_COLUMN = "__text__"
ENGINE_VERSION = 2  # bump when stat/cache layout changes
SPAN_ROWS = 2048  # rows a worker reads and processes per task (load balance vs per-task cost)


def stat_column(key: str, stat: str) -> str:
    return f"{key}.{stat}"


def hash_column(key: str) -> str:
    return f"{key}.hash"


def default_num_proc() -> int:
    """Processes to use when the config does not say: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_num_proc(num_proc) -> int:
    """``num_proc`` as given; ``None``/``0``/negative: every CPU this process may use."""
    if num_proc is None or int(num_proc) <= 0:
        return default_num_proc()
    return int(num_proc)


@dataclass
class Computed:
    texts: list[str]  # text after all mappers
    columns: dict[str, np.ndarray]  # stat and hash columns, one value per sample
    cache_hit: bool = False


# ---------------------------------------------------------------- per-batch work (workers)
_WORKER_OPS: list[tuple[str, Op]] = []
_WORKER_MAPS = False
_WORKER_SOURCE: "_Source | None" = None


@dataclass
class _Source:
    """Where a worker reads its spans: a Parquet file, the columns to read (text first), and the
    batch size the OPs run at. The open file and the last row group read stay per worker."""

    path: str
    columns: list[str]
    batch_size: int
    _file: Any = None
    _group: tuple[int, Any] | None = None

    def read(self, group: int, start: int, stop: int):
        import pyarrow.parquet as pq

        if self._file is None:  # opened in the worker, after the fork; read, not mapped, so
            self._file = pq.ParquetFile(self.path, memory_map=False)  # memory stays bounded
        if self._group is None or self._group[0] != group:
            self._group = (group, self._file.read_row_group(group, columns=self.columns))
        return self._group[1].slice(start, stop - start)


def _init_worker(specs: list[OpSpec], text_key: str, source: _Source | None = None) -> None:
    from sandbox.ops import get_op_class

    global _WORKER_OPS, _WORKER_MAPS, _WORKER_SOURCE
    _WORKER_OPS = [(s.key, get_op_class(s.name)(text_key=text_key, **s.args)) for s in specs]
    _WORKER_MAPS = any(isinstance(op, Mapper) for _, op in _WORKER_OPS)
    _WORKER_SOURCE = source


_PRELOADING: list = []  # background preload threads (``preload_in_background``)


def preload(specs: list[OpSpec], text_key: str) -> None:
    """``Op.preload`` of every OP, in this process: workers forked afterwards inherit it. Waits
    for any background preload first (never fork while another thread holds a lock)."""
    while _PRELOADING:
        _PRELOADING.pop().join()
    _preload_ops(specs, text_key)


def _preload_ops(specs: list[OpSpec], text_key: str) -> None:
    from sandbox.ops import get_op_class

    for s in specs:
        get_op_class(s.name)(text_key=text_key, **s.args).preload()


def preload_in_background(specs: list[OpSpec], text_key: str) -> None:
    """Start ``preload`` in a thread, so that loading compiled kernels (~0.5 s) overlaps the
    steps before the first one that runs the recipe (forked workers inherit what it loaded).
    Errors are left for that step to raise."""
    import threading

    def work():
        try:
            import pyarrow as pa

            # pyarrow imports pandas on its first conversion (~0.2 s); do it here too, so that
            # neither the main process nor every worker pays it on the critical path; and load
            # the JSON-lines kernel that exports use
            from sandbox.data.jsonl import jsonl_bytes

            jsonl_bytes(pa.table({"text": ["a"]}))
            _preload_ops(specs, text_key)
        except Exception:  # the step that uses the OP reports it, with context
            pass

    thread = threading.Thread(target=work, name="sandbox-preload", daemon=True)
    thread.start()
    _PRELOADING.append(thread)


def input_fields(specs: list[OpSpec], text_key: str) -> list[str]:
    """Sample columns besides the text that the recipe's OPs read (``Op.input_fields``)."""
    from sandbox.ops import get_op_class

    out: list[str] = []
    for s in specs:
        op = get_op_class(s.name)(text_key=text_key, **s.args)
        for f in op.input_fields():
            if f != text_key and f not in out:
                out.append(f)
    return out


def _run_batch(texts: list[str], fields: dict[str, list] | None = None
               ) -> tuple[list[str], dict[str, Any]]:
    cols: dict[str, Any] = {}
    views = TextViews(texts, fields)
    for key, op in _WORKER_OPS:
        if isinstance(op, Mapper):
            texts = op.process_batch(views.texts)
            views = TextViews(texts, fields)  # derived views are stale once the text changed
        elif isinstance(op, Filter):
            for stat, values in op.compute_stats_batch(views).items():
                cols[stat_column(key, stat)] = values
        elif isinstance(op, Deduplicator):
            cols[hash_column(key)] = op.hash_batch(views)
    return views.texts, cols


def _to_ipc(batch) -> Any:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def _from_ipc(buf):
    import pyarrow as pa

    return pa.ipc.open_stream(buf).read_next_batch()


def _result_batch(texts: list[str], cols: dict[str, Any], n: int):
    import pyarrow as pa

    arrays, names = [], []
    if _WORKER_MAPS:
        arrays.append(pa.array(texts, type=pa.large_string()))
        names.append(TEXT_COLUMN)
    for k, v in cols.items():
        arrays.append(pa.array(v) if not isinstance(v, np.ndarray) or v.dtype != object
                      else pa.array(list(v)))
        names.append(k)
    if not arrays:
        arrays, names = [pa.nulls(n, pa.int8())], ["__n__"]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _run_ipc(buf) -> Any:
    """Worker entry: an IPC buffer holding one text column in, an IPC buffer of results out."""
    batch = _from_ipc(buf)
    texts = batch.column(0).to_pylist()
    fields = {batch.schema.names[i]: batch.column(i).to_pylist()
              for i in range(1, batch.num_columns)} or None
    out_texts, cols = _run_batch(texts, fields) if fields else _run_batch(texts)
    return _to_ipc(_result_batch(out_texts, cols, len(texts)))


def _run_span(span: tuple[int, int, int]) -> Any:
    """Worker entry: rows ``start:stop`` of row group ``group`` of the source file in, one IPC
    stream of result batches (one per ``batch_size`` rows) out."""
    import pyarrow as pa

    src = _WORKER_SOURCE
    table = src.read(*span)
    batches = []
    for lo in range(0, table.num_rows, src.batch_size):
        part = table.slice(lo, src.batch_size)
        texts = part.column(0).to_pylist()
        fields = {name: part.column(i).to_pylist()
                  for i, name in enumerate(part.column_names) if i} or None
        out_texts, cols = _run_batch(texts, fields) if fields else _run_batch(texts)
        batches.append(_result_batch(out_texts, cols, len(texts)))
    schema = batches[0].schema
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as w:
        for rb in batches:
            w.write_batch(rb if rb.schema == schema else _cast(rb, schema))
    return sink.getvalue()


def _cast(rb, schema):
    """A result batch in the schema of the first one (a column's inferred type can vary by
    batch, e.g. all-null in one)."""
    import pyarrow as pa

    return pa.Table.from_batches([rb]).cast(schema).to_batches()[0]


def _spans(path: Path, span_rows: int) -> Iterator[tuple[int, int, int]]:
    """``(row group, start, stop)`` spans of at most ``span_rows`` rows, in file order."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        for start in range(0, rows, span_rows):
            yield group, start, min(rows, start + span_rows)


# ---------------------------------------------------------------- cache keys and files
def cache_key(fingerprint: str, specs: list[OpSpec], text_key: str) -> str:
    from sandbox.ops import get_op_class

    parts = []
    for s in specs:
        op = get_op_class(s.name)(text_key=text_key, **s.args)
        parts.append([s.key, s.name, op.stat_config()])
    return stable_hash([ENGINE_VERSION, fingerprint, text_key, parts], n=24)


def cache_path(cache_dir: Path, fingerprint: str, specs: list[OpSpec], text_key: str) -> Path:
    return Path(cache_dir) / "stats" / f"{cache_key(fingerprint, specs, text_key)}.parquet"


def _has_mapper(specs: list[OpSpec]) -> bool:
    from sandbox.ops import get_op_class

    return any(issubclass(get_op_class(s.name), Mapper) for s in specs)


def _num_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None


# ---------------------------------------------------------------- parallel batch map
def _map_ordered(fn: Callable, items: Iterator, num_proc: int, specs: list[OpSpec],
                 text_key: str, source: _Source | None = None) -> Iterator:
    """``map(fn, items)`` in order, on ``num_proc`` forked workers, with at most
    ``2 * num_proc`` items in flight (``Pool.imap`` would drain ``items`` eagerly)."""
    if num_proc <= 1:
        _init_worker(specs, text_key, source)
        for it in items:
            yield fn(it)
        return
    preload(specs, text_key)
    ctx = mp.get_context("fork")
    with ctx.Pool(num_proc, initializer=_init_worker,
                  initargs=(specs, text_key, source)) as pool:
        pending: deque = deque()
        for it in items:
            pending.append(pool.apply_async(fn, (it,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# ---------------------------------------------------------------- compute: streaming (files)
@dataclass
class ComputedFile:
    """The result of ``compute_file``: a Parquet file aligned row by row with the input."""

    path: Path  # stat/hash columns, plus TEXT_COLUMN when a mapper changed the text
    num_rows: int
    has_text: bool
    cache_hit: bool = False
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def column_names(self) -> list[str]:
        import pyarrow.parquet as pq

        return [n for n in pq.ParquetFile(self.path).schema_arrow.names
                if n not in (TEXT_COLUMN, "__n__")]

    def columns(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Stat columns as numpy arrays; hash columns as int64 codes (equal hash = equal code)."""
        from sandbox.data.io import read_parquet

        names = self.column_names() if names is None else names
        missing = [n for n in names if n not in self._columns]
        if missing:
            table = read_parquet(self.path, columns=missing)
            for n in missing:
                col = table.column(n)
                if n.endswith(".hash"):
                    self._columns[n] = hash_codes(col)
                else:
                    self._columns[n] = to_numpy(col)
        return {n: self._columns[n] for n in names}

    def raw(self, name: str) -> np.ndarray:
        """A column's values as a 1-D object array (signatures of near-duplicate OPs)."""
        from sandbox.data.io import read_parquet

        return _objects(read_parquet(self.path, columns=[name]).column(name))

    def text_batches(self, batch_size: int) -> Iterator:
        """The mapped text, as Arrow arrays of ``batch_size`` rows (None when no mapper ran)."""
        from sandbox.data.io import row_chunks

        for chunk in row_chunks(self.path, [TEXT_COLUMN], batch_size):
            yield chunk.column(0).combine_chunks()


def to_numpy(col) -> np.ndarray:
    """An Arrow (chunked) array as numpy, chunk by chunk: ``ChunkedArray.to_numpy`` goes through
    pandas, whose import alone costs ~0.2 s."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks != 1:
            col = col.combine_chunks()
        else:
            col = col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def hash_codes(col) -> np.ndarray:
    """Integer codes of a hash column: equal hashes get equal codes (vectorised, in Arrow)."""
    import pyarrow as pa

    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iu":
            return col.astype(np.int64, copy=False)
        col = pa.array(list(col)) if col.dtype == object else pa.array(col)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_integer(col.type) and col.null_count == 0:
        return col.to_numpy().astype(np.int64, copy=False)
    enc = col.dictionary_encode()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def compute_file(dataset: str | Path, specs: list[OpSpec], text_key: str = "text",
                 num_proc: int = 1, batch_size: int = 512, cache_dir: Path | None = None,
                 fingerprint: str | None = None, progress=None,
                 scratch_dir: Path | None = None) -> ComputedFile:
    """Run every OP on every sample of a Parquet file, streaming; results go to a Parquet file
    (the cache entry when ``cache_dir`` and ``fingerprint`` are given, else ``scratch_dir``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.data.io import parquet_writer
    from sandbox.utils import atomic_path

    dataset = Path(dataset)
    src = pq.ParquetFile(dataset, memory_map=True)
    n = src.metadata.num_rows
    has_text = _has_mapper(specs)
    if cache_dir is not None and fingerprint is not None:
        out = cache_path(cache_dir, fingerprint, specs, text_key)
        if out.exists() and _num_rows(out) == n:
            return ComputedFile(out, n, has_text, cache_hit=True)
    else:
        if scratch_dir is None:
            raise ValueError("compute_file needs cache_dir+fingerprint or scratch_dir")
        out = Path(scratch_dir) / f".engine-{os.getpid()}-{cache_key('scratch', specs, text_key)}.parquet"

    advance = progress or (lambda k=1: None)
    extra = [f for f in input_fields(specs, text_key) if f in src.schema_arrow.names]
    source = _Source(str(dataset), [text_key, *extra], batch_size)
    workers = resolve_num_proc(num_proc) if n > batch_size else 1
    with atomic_path(out) as tmp:
        writer = None
        try:
            for buf in _map_ordered(_run_span, _spans(dataset, max(batch_size, SPAN_ROWS)),
                                    workers, specs, text_key, source):
                for rb in pa.ipc.open_stream(buf):
                    if writer is None:
                        writer = parquet_writer(tmp, rb.schema)
                        schema = rb.schema
                    elif rb.schema != schema:
                        rb = _cast(rb, schema)
                    writer.write_batch(rb, row_group_size=max(batch_size, 65536))
                    advance(rb.num_rows)
            if writer is None:  # an empty pool
                pq.write_table(pa.table({"__n__": pa.nulls(0, pa.int8())}), tmp)
        finally:
            if writer is not None:
                writer.close()
    return ComputedFile(out, n, has_text)


# ---------------------------------------------------------------- compute: in memory (lists)
def compute(texts: list[str], specs: list[OpSpec], text_key: str = "text", num_proc: int = 1,
            batch_size: int = 512, cache_dir: Path | None = None, fingerprint: str | None = None,
            progress=None, fields: dict[str, list] | None = None) -> Computed:
    """Run every OP on every sample of an in-memory list (small pools, tests); cached when
    ``cache_dir`` and ``fingerprint`` are given. Same batches and workers as ``compute_file``."""
    import pyarrow as pa

    cache_file = None
    if cache_dir is not None and fingerprint is not None:
        cache_file = cache_path(cache_dir, fingerprint, specs, text_key)
        if cache_file.exists() and _num_rows(cache_file) == len(texts):
            got = _load_cache(cache_file, texts)
            if got is not None:
                return got
    advance = progress or (lambda k=1: None)
    fields = {k: v for k, v in (fields or {}).items() if k in input_fields(specs, text_key)}
    chunks = (_to_ipc(pa.record_batch(
        [pa.array(texts[i:i + batch_size], type=pa.large_string())]
        + [pa.array(v[i:i + batch_size]) for v in fields.values()], names=["t", *fields]))
        for i in range(0, len(texts), batch_size))
    workers = resolve_num_proc(num_proc) if len(texts) > batch_size else 1
    batches = []
    for buf in _map_ordered(_run_ipc, chunks, workers, specs, text_key):
        rb = _from_ipc(buf)
        batches.append(rb)
        advance(rb.num_rows)
    table = pa.Table.from_batches(batches) if batches else None
    out_texts = (table.column(TEXT_COLUMN).to_pylist() if table is not None
                 and TEXT_COLUMN in table.column_names else list(texts))
    columns = {}
    for name in (table.column_names if table is not None else []):
        if name in (TEXT_COLUMN, "__n__"):
            continue
        col = table.column(name)
        columns[name] = _objects(col) if name.endswith(".hash") else to_numpy(col)
    if cache_file is not None:
        from sandbox.data.io import write_parquet

        write_parquet(table if table is not None else pa.table({"__n__": pa.nulls(0, pa.int8())}),
                      cache_file)
    return Computed(out_texts, columns)


def _load_cache(path: Path, texts: list[str]) -> Computed | None:
    from sandbox.data.io import read_parquet

    try:
        table = read_parquet(path)
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    if table.num_rows != len(texts):
        return None
    names = table.column_names
    out_texts = table.column(TEXT_COLUMN).to_pylist() if TEXT_COLUMN in names else list(texts)
    cols = {}
    for n in names:
        if n in (TEXT_COLUMN, "__n__"):
            continue
        col = table.column(n)
        cols[n] = _objects(col) if n.endswith(".hash") else to_numpy(col)
    return Computed(out_texts, cols, cache_hit=True)


def _objects(col) -> np.ndarray:
    """A 1-D object array of a column's values (lists stay lists, never a 2-D array)."""
    values = col.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = values if not values or not isinstance(values[0], list) else [None] * len(values)
    if values and isinstance(values[0], list):
        for i, v in enumerate(values):
            out[i] = v
    return out


# ---------------------------------------------------------------- select (thresholds, dedup)
@dataclass
class Selection:
    keep: np.ndarray  # bool per sample
    dropped_code: np.ndarray  # int16 per sample: index into ``op_keys`` of the dropping OP, or -1
    op_keys: list[str]
    retention: list[dict[str, Any]]  # one row per OP: samples in/out

    @property
    def dropped_by(self) -> np.ndarray:
        """Object per sample: key of the OP that dropped it, or None."""
        names = np.array(list(self.op_keys) + [None], dtype=object)
        return names[self.dropped_code]  # -1 picks the trailing None


def first_alive(codes: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Bool mask: the alive samples that are the first alive sample of their hash code."""
    idx = np.flatnonzero(alive)
    keep = np.zeros(len(alive), dtype=bool)
    if idx.size:
        _, first = np.unique(codes[idx], return_index=True)  # first occurrence (stable)
        keep[idx[first]] = True
    return keep


def select(specs: list[OpSpec], ops: list[Op], columns, n: int, fields=None) -> Selection:
    """Apply thresholds, deduplication and selectors. ``columns`` is a dict of arrays or a
    ``ComputedFile`` (only the columns the OPs need are loaded). ``fields`` gives selectors the
    sample columns they read: a dict of lists, or the path of the pool's Parquet file (only
    those columns are read). Selectors keep their selected samples; the order of the output
    stays the pool's order."""
    if isinstance(columns, ComputedFile):
        cf, needed, raw = columns, [], {}
        for spec, op in zip(specs, ops):
            if isinstance(op, Filter):
                needed += [stat_column(spec.key, s) for s in op.stat_keys]
            elif isinstance(op, Deduplicator):
                if _exact(op):
                    needed.append(hash_column(spec.key))
                else:  # a near-duplicate OP decides over its raw signatures
                    raw[hash_column(spec.key)] = cf.raw(hash_column(spec.key))
        columns = dict(cf.columns(needed)) | raw
    alive = np.ones(n, dtype=bool)
    dropped = np.full(n, -1, dtype=np.int16)
    rows = []
    for i, (spec, op) in enumerate(zip(specs, ops)):
        before = int(np.count_nonzero(alive))
        alone = 0
        if isinstance(op, Filter):
            stats = {s: columns[stat_column(spec.key, s)] for s in op.stat_keys}
            passed = np.asarray(op.keep(stats), dtype=bool)
            alone = int(n - np.count_nonzero(passed))
            newly = alive & ~passed
        elif isinstance(op, Deduplicator) and _exact(op):
            codes = hash_codes(columns[hash_column(spec.key)])
            newly = alive & ~first_alive(codes, alive)
            alone = int(n - np.unique(codes).size)
        elif isinstance(op, Deduplicator):
            hashes = columns[hash_column(spec.key)]
            newly = alive & ~np.asarray(op.keep_mask(hashes, alive.copy()), dtype=bool)
            alone = int(n - np.count_nonzero(op.keep_mask(hashes, np.ones(n, dtype=bool))))
        elif isinstance(op, Selector):
            idx = np.flatnonzero(alive)
            values = _selector_fields(op, fields, idx)
            chosen = np.asarray(op.select(values, len(idx)), dtype=np.int64)
            stay = np.zeros(n, dtype=bool)
            stay[idx[chosen]] = True
            newly = alive & ~stay
            alone = 0
        else:
            newly = np.zeros(n, dtype=bool)
        dropped[newly] = i
        alive &= ~newly
        rows.append({"op": spec.key, "name": spec.name, "kind": op.kind, "in": before,
                     "out": int(np.count_nonzero(alive)), "dropped": int(np.count_nonzero(newly)),
                     "would_drop_alone": alone})
    return Selection(alive, dropped, [s.key for s in specs], rows)


def _selector_fields(op, fields, idx: np.ndarray) -> dict[str, list]:
    names = list(op.input_fields())
    if not names:
        return {}
    if fields is None:
        raise ValueError(f"{op.name} reads {names}: pass the pool (fields=) to select()")
    if isinstance(fields, (str, Path)):
        from sandbox.data.io import read_parquet

        table = read_parquet(fields, columns=names).take(idx)
        return {k: table.column(k).to_pylist() for k in names}
    return {k: [fields[k][i] for i in idx] for k in names}


def _exact(op: Deduplicator) -> bool:
    """True when the OP keeps the base class's exact first-of-each-hash rule (vectorised here)."""
    return getattr(type(op), "keep_mask", None) is getattr(Deduplicator, "keep_mask", None)


def compute_recipe(env, dataset: str, recipe: dict, text_key: str, batch_size: int,
                   description: str):
    """What probe and process share: load and build the recipe, then run it over the pool file
    with a progress bar (cached). Returns ``(recipe, ops, computed, num_rows)``."""
    import pyarrow.parquet as pq

    from sandbox.data.fingerprint import fingerprint
    from sandbox.recipe import load_recipe

    rec = load_recipe(recipe, text_key)
    ops = rec.build()
    n = pq.ParquetFile(dataset).metadata.num_rows
    with env.progress(n, description) as advance:
        computed = compute_file(dataset, rec.ops, rec.text_key, env.num_proc, batch_size,
                                env.cache_dir, fingerprint(dataset, env.cache_dir), advance,
                                scratch_dir=env.workdir)
    return rec, ops, computed, n
