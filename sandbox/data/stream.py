"""Streaming conversion of big data files into the run's ``pool.parquet``.

``sandbox.data.io.read_table`` is the reference reader (it builds one in-memory table and its
errors name the file and line). For files too big to hold comfortably in memory, ``to_parquet``
streams instead: jsonl through pyarrow's block-wise JSON reader (C++, a few MB at a time),
Parquet through its record batches; each block is written with a ``ParquetWriter`` as it comes,
so memory stays at a few blocks whatever the file's size. When the fast reader rejects the file,
the file is scanned line by line to raise the same ``DataError`` that ``io`` raises (file, line,
what is wrong); if every line parses (records whose fields change type between blocks), the
reference reader takes over.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from sandbox.data.io import parquet_writer, read_table, write_parquet
from sandbox.data.media import resolve_media
from sandbox.errors import DataError
from sandbox.utils import OneBehind, atomic_path

VERSION = 1  # bump when to_parquet's output can change: it is part of the pool's fingerprint
STREAM_MIN_BYTES = 64 << 20  # smaller files take the reference (in-memory) path
BLOCK_BYTES = 8 << 20  # jsonl bytes parsed per block
ROW_GROUP_ROWS = 16384  # rows per Parquet row group of pool.parquet (bounded reads downstream)


def should_stream(path: str | Path, fmt: str) -> bool:
    """Whether ``path`` is a jsonl/parquet file big enough (``STREAM_MIN_BYTES``) to stream."""
    p = Path(path)
    return fmt in ("jsonl", "parquet") and p.is_file() and p.stat().st_size >= STREAM_MIN_BYTES


def _check_batch(batch, text_key: str, where: str, first_row: int) -> None:
    if text_key not in batch.schema.names:
        raise DataError(
            f"{where} has no field {text_key!r} (fields: {', '.join(batch.schema.names)}). Set "
            f"text_key=FIELD to the field that holds the text."
        )
    col = batch.column(batch.schema.get_field_index(text_key))
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if pa.types.is_null(col.type):
            raise DataError(f"{where}: record {first_row + 1} has no {text_key!r} (null or "
                            f"missing). Fix or remove it.")
        raise DataError(
            f"{where}: field {text_key!r} holds {col.type}, not text. Set text_key to a text field."
        )
    if col.null_count:
        first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"{where}: record {first_row + first + 1} has no {text_key!r} (null or missing). "
            f"Fix or remove it."
        )


def _locate_jsonl_error(path: Path) -> None:
    """Raise io's DataError for the first bad line of a jsonl file (if any line is bad)."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: not valid UTF-8 ({e.reason} at byte {e.start}). "
                    f"Re-encode the file as UTF-8."
                ) from None
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: malformed JSON ({e.msg}, column {e.colno}). Each line "
                    f"must be one JSON object."
                ) from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}, line {lineno}: expected a JSON object, got "
                                f"{type(rec).__name__}.")


def _batches(path: Path, fmt: str):
    if fmt == "jsonl":
        reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=BLOCK_BYTES))
        for batch in reader:
            yield batch
    else:
        try:
            pf = pq.ParquetFile(path, memory_map=False)
        except Exception as e:
            raise DataError(f"{path} is not a readable Parquet file: {e}") from None
        yield from pf.iter_batches(batch_size=ROW_GROUP_ROWS)


def to_parquet(path: str | Path, fmt: str, dst: str | Path, text_key: str = "text",
               limit: int | None = None, media_dir: str | Path | None = None) -> int:
    """Stream a jsonl/parquet file into ``dst`` (Parquet); returns the number of rows written.

    With ``media_dir``, relative media paths are made absolute against it (``resolve_media``)."""
    path = Path(path)
    rows = 0
    try:
        with atomic_path(dst) as tmp, ExitStack() as stack:
            writer = None
            # a block is written on a thread of its own while the next one is parsed
            behind = OneBehind(stack, "pool-writer")
            try:
                for batch in _batches(path, fmt):
                    if limit is not None and rows + batch.num_rows > limit:
                        batch = batch.slice(0, limit - rows)
                    if batch.num_rows == 0:
                        if limit is not None and rows >= limit:
                            break
                        continue
                    _check_batch(batch, text_key, str(path), rows)
                    block = pa.Table.from_batches([batch])
                    if writer is None:
                        schema = block.schema
                        writer = parquet_writer(tmp, schema)
                    elif block.schema != schema:
                        block = block.cast(schema)
                    if media_dir is not None:
                        block = resolve_media(block, media_dir)
                    behind.submit(writer.write_table, block, ROW_GROUP_ROWS)
                    rows += block.num_rows
                    if limit is not None and rows >= limit:
                        break
            finally:
                behind.settle()
                if writer is not None:
                    writer.close()
            behind.result()
            if rows == 0:
                raise DataError(f"{path} holds no samples. Point the data pool at a non-empty file.")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        if fmt == "jsonl":
            _locate_jsonl_error(path)  # raises io's DataError for a bad line
            # every line parses: fields change type between blocks; take the reference reader
            table = read_table(path, fmt, text_key, limit)
            if media_dir is not None:
                table = resolve_media(table, media_dir)
            write_parquet(table, dst)
            return table.num_rows
        raise DataError(f"{path} is not a readable Parquet file: {e}") from None
    return rows
