"""Streaming conversion of big data files into the run's ``pool.parquet``.

``sandbox.data.io.read_table`` is the reference reader (it builds one in-memory table and its
errors name the file and line). For files too big to hold comfortably in memory, ``to_parquet``
streams instead: jsonl through pyarrow's block-wise JSON reader (C++, a few MB at a time),
Parquet through its record batches; each block is written with a ``ParquetWriter`` as it comes,
so memory stays at a few blocks whatever the file's size. When the fast reader rejects the file,
the file is scanned line by line to raise the same ``DataError`` that ``io`` raises (file, line,
what is wrong); if every line parses (records whose fields change type between blocks), the
reference reader takes over.

``read_ahead`` starts that parse early, on a thread, a bounded number of blocks ahead: the
command line starts it for the file its overrides name before the config is composed, and for
the run's data pool once it is, so that the file is parsed while the rest of the run's code is
imported and set up (the parser releases the GIL; importing holds it).
"""
from __future__ import annotations

import json
import queue
import threading
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from sandbox.data.io import (arrow_without_pandas, guess_format, parquet_writer, read_table,
                             write_parquet)
from sandbox.data.media import resolve_media
from sandbox.errors import DataError
from sandbox.utils import OneBehind, atomic_path

VERSION = 1  # bump when to_parquet's output can change: it is part of the pool's fingerprint
STREAM_MIN_BYTES = 64 << 20  # smaller files take the reference (in-memory) path
BLOCK_BYTES = 8 << 20  # jsonl bytes parsed per block
ROW_GROUP_ROWS = 16384  # rows per Parquet row group of pool.parquet (bounded reads downstream)
READ_AHEAD_BLOCKS = 32  # blocks ``read_ahead`` may parse before they are taken (256 MB of jsonl)


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


def _batches(path: Path, fmt: str, use_threads: bool = True):
    if fmt == "jsonl":
        reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=BLOCK_BYTES,
                                                                use_threads=use_threads))
        for batch in reader:
            yield batch
    else:
        try:
            pf = pq.ParquetFile(path, memory_map=False)
        except Exception as e:
            raise DataError(f"{path} is not a readable Parquet file: {e}") from None
        yield from pf.iter_batches(batch_size=ROW_GROUP_ROWS)


_END = object()
_AHEAD: dict[tuple, "_ReadAhead"] = {}  # file key -> its read-ahead, until to_parquet takes it


def _file_key(path: str | Path, fmt: str) -> tuple:
    """Which file, in which version: a read-ahead serves only the file as it was when started."""
    st = Path(path).stat()
    return str(Path(path).resolve()), fmt, st.st_size, st.st_mtime_ns


class _ReadAhead:
    """``_batches(path, fmt)`` on a daemon thread, at most ``blocks`` batches ahead of the one
    iteration that takes it. The parser's error is raised there, in the place the plain loop
    raises it. When the iteration stops early (a ``limit``), or never comes, the thread stops
    at the next block: memory stays at ``blocks`` blocks. A file that fits in them is parsed on
    one core (the run's set-up has the other one, and the parse is done before it is); a bigger
    one on all of them, as the plain loop does."""

    def __init__(self, path: str | Path, fmt: str, blocks: int):
        self._threads = Path(path).stat().st_size > blocks * BLOCK_BYTES
        self._queue: queue.Queue = queue.Queue(blocks)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._parse, args=(path, fmt), name="read-ahead",
                                       daemon=True)
        self.thread.start()

    def _parse(self, path, fmt) -> None:
        try:
            for batch in _batches(Path(path), fmt, use_threads=self._threads):
                if not self._put(batch):
                    break
            else:
                self._put(_END)
        except BaseException as e:  # for the iteration to raise
            self._put(e)
        if self._stop.is_set():  # taken and left early: what was put meanwhile goes too
            self._drain()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def cancel(self) -> None:
        """Stop parsing (at the next block) and free what was parsed."""
        self._stop.set()
        self._drain()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            self._drain()  # free the blocks parsed ahead


def read_ahead(path: str | Path, fmt: str, blocks: int = READ_AHEAD_BLOCKS) -> bool:
    """Start parsing ``path`` for the ``to_parquet`` that will convert it, when it is a file
    that ``to_parquet`` streams; returns whether it started. At most one per file."""
    if not should_stream(path, fmt):
        return False
    key = _file_key(path, fmt)
    if key not in _AHEAD:
        _AHEAD[key] = _ReadAhead(path, fmt, blocks)
    return True


def read_ahead_pool(data_pool) -> bool:
    """``read_ahead`` of the file a run's ``data_pool`` config will stream (a ``FilePool``
    that fails on bad records), else nothing: anything the config gets wrong is for the load
    step to report, in its own words. Any other read-ahead (one started from the command line
    before the config was composed, ``read_ahead_from_overrides``) is stopped."""
    key = None
    try:
        if str(data_pool.get("_target_", "")).endswith("load.FilePool") \
                and data_pool.get("on_bad_record", "fail") == "fail":
            path = Path(str(data_pool.get("path")))
            fmt = data_pool.get("format") or guess_format(path)
            if read_ahead(path, fmt):
                key = _file_key(path, fmt)
    except Exception:
        pass
    stop_read_aheads(keep=key)
    return key is not None


def read_ahead_from_overrides(overrides: list[str]) -> bool:
    """``read_ahead`` of the file that a single run's command line names as its pool
    (``data_pool.path=FILE``, and ``data_pool.format=`` if given), before Hydra has composed
    the config: composing it and the imports before the runner take ~0.3 s on one core, which
    the parse then overlaps too. A guess from the overrides alone, so ``read_ahead_pool``
    settles it once the config is composed: a file the run's pool does not stream is not parsed
    further. Not for flags (``--multirun``, ``--cfg``, ...), a resumed run, or a path that
    sweeps or interpolates."""
    values = {}
    for arg in overrides:
        if arg.startswith("-") or arg.replace(" ", "") == "resume=true":
            return False
        name, eq, value = arg.lstrip("+").partition("=")
        if eq and name in ("data_pool.path", "data_pool.format"):
            values[name] = value.strip("'\"")
    path = values.get("data_pool.path")
    if not path or any(c in path for c in ",[]{}()$*"):
        return False
    arrow_without_pandas()  # before anything converts (as main() does for every run)
    try:
        return read_ahead(path, values.get("data_pool.format") or guess_format(Path(path)))
    except Exception:  # a missing file or unknown format: the load step says so
        return False


def stop_read_aheads(keep: tuple | None = None) -> None:
    """Stop every read-ahead but the one of file key ``keep``."""
    for key in [k for k in _AHEAD if k != keep]:
        _AHEAD.pop(key).cancel()


def _blocks(path: Path, fmt: str):
    """``_batches(path, fmt)``, from its read-ahead when one was started for this file."""
    try:
        ahead = _AHEAD.pop(_file_key(path, fmt), None)
    except OSError:
        ahead = None
    return iter(ahead) if ahead is not None else _batches(path, fmt)


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
                for batch in _blocks(path, fmt):
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
