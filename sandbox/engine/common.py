"""What every engine, and the steps that read an engine's results, share.

A result file (one per recipe and pool) holds one row per pool sample: ``ROW_ID_COLUMN`` (the
sample's offset in the pool file), a column per filter stat (``stat_column``), a column per
deduplicator hash (``hash_column``), when a mapper changed the text, ``TEXT_COLUMN``, and a
column per sample field a media mapper rewrote or added (``field_column``). Its
Parquet key-value metadata records the pool's fingerprint. Results depend only on the pool and
on the OPs' stat-relevant parameters, never on thresholds, so they are cached under
``cache_path`` and shared by probe, process and every sweep trial.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.ops import Mapper, Op, OpSpec, get_op_class
from sandbox.utils import stable_hash

TEXT_COLUMN = "__text__"  # the text after every mapper
ROW_ID_COLUMN = "__row_id__"  # int64: the row's offset in the pool file
POOL_FINGERPRINT_KEY = b"sandbox.pool_fingerprint"  # result file metadata: the pool it describes
FIELD_PREFIX = "__field__."  # a sample field a mapper rewrote or added (``field_column``)
ENGINE_VERSION = 3  # bump when the stats or the result file layout change (cache keys change)


def stat_column(key: str, stat: str) -> str:
    """The result column of stat ``stat`` of the OP under recipe key ``key``."""
    return f"{key}.{stat}"


def hash_column(key: str) -> str:
    """The result column of the hashes of the deduplicator under recipe key ``key``."""
    return f"{key}.hash"


def field_column(name: str) -> str:
    """The result column of sample field ``name`` as the mappers left it (media mappers)."""
    return FIELD_PREFIX + name


def is_stat_or_hash(name: str) -> bool:
    """True for a result file's stat and hash columns (not the text, the row id or a field)."""
    return name not in (TEXT_COLUMN, ROW_ID_COLUMN) and not name.startswith(FIELD_PREFIX)


def row_ids(start: int, stop: int) -> pa.Array:
    """The row ids ``start..stop-1`` as an int64 Arrow array."""
    return pa.array(np.arange(start, stop, dtype=np.int64))


# A span of the pool file: (row group, first row in it, end row in it, pool offset of the first)
Span = tuple[int, int, int, int]


def pool_spans(path: str | Path, span_rows: int) -> Iterator[Span]:
    """The pool file cut into spans of at most ``span_rows`` rows, in file order, never across a
    row group (a reader then decodes each row group once)."""
    meta = pq.ParquetFile(path).metadata
    first = 0
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        for start in range(0, rows, span_rows):
            yield group, start, min(rows, start + span_rows), first + start
        first += rows


def result_metadata(pool_fingerprint: str) -> dict[bytes, bytes]:
    """Parquet key-value metadata of a result file of the pool with this fingerprint."""
    return {POOL_FINGERPRINT_KEY: pool_fingerprint.encode()}


def cast_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A result batch in the schema of the first one (a column's inferred type can vary by
    batch, e.g. all-null in one)."""
    return pa.Table.from_batches([batch]).cast(schema).to_batches()[0]


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


def build_op(spec: OpSpec, text_key: str) -> Op:
    """The OP a recipe entry describes."""
    return get_op_class(spec.name)(text_key=text_key, **spec.args)


def input_fields(specs: list[OpSpec], text_key: str) -> list[str]:
    """Sample columns besides the text that the recipe's OPs read (``Op.input_fields``)."""
    out: list[str] = []
    for spec in specs:
        for name in build_op(spec, text_key).input_fields():
            if name != text_key and name not in out:
                out.append(name)
    return out


def has_mapper(specs: list[OpSpec]) -> bool:
    """True when an OP of the recipe edits the text (the result file then holds it)."""
    return any(issubclass(get_op_class(s.name), Mapper) for s in specs)


def cache_key(fingerprint: str, specs: list[OpSpec], text_key: str) -> str:
    """Key of the results of these OPs on the pool with this fingerprint: OP names and their
    stat-relevant parameters only, so a threshold change keeps the key."""
    parts = [[s.key, s.name, build_op(s, text_key).stat_config()] for s in specs]
    return stable_hash([ENGINE_VERSION, fingerprint, text_key, parts], n=24)


def cache_path(cache_dir: Path, fingerprint: str, specs: list[OpSpec], text_key: str) -> Path:
    """Where the cached result file of ``cache_key`` lives under ``cache_dir``."""
    return Path(cache_dir) / "stats" / f"{cache_key(fingerprint, specs, text_key)}.parquet"


def to_numpy(col) -> np.ndarray:
    """An Arrow (chunked) array as numpy, chunk by chunk: ``ChunkedArray.to_numpy`` goes through
    pandas, whose import alone costs ~0.2 s."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col.to_numpy(zero_copy_only=False)


def hash_codes(col) -> np.ndarray:
    """Integer codes of a hash column: equal hashes get equal codes (vectorised, in Arrow)."""
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


def object_array(col) -> np.ndarray:
    """A 1-D object array of a column's values (lists stay lists, never a 2-D array)."""
    values = col.to_pylist()
    out = np.empty(len(values), dtype=object)
    if values and isinstance(values[0], list):  # a slice assignment would broadcast the lists
        for i, value in enumerate(values):
            out[i] = value
    else:
        out[:] = values
    return out
