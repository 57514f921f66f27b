"""Reading data pools from disk into Arrow tables, with errors that name the file and line.

Between steps, datasets are Parquet files (columnar, compressed, memory-mappable).
"""
from __future__ import annotations

import importlib.abc
import json
import logging
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sandbox.errors import DataError
from sandbox.utils import atomic_path

FORMATS = ("jsonl", "json", "parquet", "csv")


def guess_format(path: Path) -> str:
    """The data format a file's name says: its last suffix among ``FORMATS`` (or ``.ndjson``)."""
    suffixes = [s.lstrip(".") for s in path.suffixes]
    for s in reversed(suffixes):
        if s in FORMATS:
            return s
        if s == "ndjson":
            return "jsonl"
    raise DataError(
        f"cannot tell the format of {path} from its name. Set data_pool.format to one of "
        f"{', '.join(FORMATS)}."
    )


BAD_RECORD_POLICIES = ("fail", "skip")


def read_table(path: str | Path, fmt: str | None = None, text_key: str = "text",
               limit: int | None = None, on_bad_record: str = "fail",
               rejects_path: str | Path | None = None):
    """Read a data file into a ``pyarrow.Table`` and check that ``text_key`` holds strings.

    ``on_bad_record="fail"`` (default) stops at the first bad record, naming the file and line.
    ``"skip"`` leaves bad records out, and writes each one (line, reason, raw text) to
    ``rejects_path`` as jsonl so that nothing is silently lost."""
    table, rejects = read_table_with_rejects(path, fmt, text_key, limit, on_bad_record)
    if rejects and rejects_path is not None:
        write_rejects(rejects, rejects_path)
    return table


def read_table_with_rejects(path: str | Path, fmt: str | None = None, text_key: str = "text",
                            limit: int | None = None, on_bad_record: str = "fail"):
    """``(table, rejects)``; ``rejects`` is a list of ``{"line", "reason", "raw"}`` dicts."""
    if on_bad_record not in BAD_RECORD_POLICIES:
        raise DataError(f"on_bad_record={on_bad_record!r}: use one of {', '.join(BAD_RECORD_POLICIES)}.")
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"data file {path} does not exist (resolved from {Path.cwd()}). Check data_pool.path; "
            f"relative paths are relative to the directory you run from."
        )
    if path.is_dir():
        raise DataError(
            f"{path} is a directory, not a data file. For a Hugging Face dataset saved with "
            f"save_to_disk use data_pool=hf; otherwise point data_pool.path at one file."
        )
    fmt = fmt or guess_format(path)
    rejects: list[dict] = []
    if fmt == "jsonl":
        table, rejects = _read_jsonl(path, limit, text_key, on_bad_record == "skip")
    elif fmt == "json":
        table = _read_json(path)
    elif fmt == "parquet":
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path} is not a readable Parquet file: {e}") from None
    elif fmt == "csv":
        try:
            table = pcsv.read_csv(path)
        except Exception as e:
            raise DataError(f"{path} is not a readable CSV file: {e}") from None
    else:
        raise DataError(f"unknown data format {fmt!r} for {path}; use one of {', '.join(FORMATS)}.")
    if limit is not None:
        table = table.slice(0, limit)
    if on_bad_record == "skip" and fmt != "jsonl":
        table, more = _drop_null_texts(table, text_key)
        rejects += more
    if table.num_rows == 0 and rejects:
        raise DataError(
            f"{path}: every record is bad ({len(rejects)} rejected; first: line "
            f"{rejects[0]['line']}: {rejects[0]['reason']}). Fix the file or the text_key."
        )
    check_text_column(table, text_key, str(path))
    return table, rejects


def write_rejects(rejects: list[dict], path: str | Path) -> Path:
    """Write skipped records (``{"line", "reason", "raw"}``) to ``path`` as jsonl."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in rejects:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Path(path)


def _drop_null_texts(table, text_key: str):
    if text_key not in table.column_names or table.num_rows == 0:
        return table, []
    col = table.column(text_key)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return table, []  # a wrong column type is not a bad record: check_text_column explains
    bad = col.is_null()
    idx = [i for i, b in enumerate(bad.to_pylist()) if b]
    rejects = [{"line": i + 1, "reason": f"no {text_key!r} (null or missing)",
                "raw": json.dumps(table.slice(i, 1).to_pylist()[0], default=str)} for i in idx]
    return (table.filter(pc.invert(bad)) if idx else table), rejects


def check_text_column(table, text_key: str, where: str) -> None:
    """Raise a ``DataError`` naming ``where`` unless ``table`` has rows and ``text_key`` holds
    strings without nulls."""
    if table.num_rows == 0:
        raise DataError(f"{where} holds no samples. Point the data pool at a non-empty file.")
    if text_key not in table.column_names:
        raise DataError(
            f"{where} has no field {text_key!r} (fields: {', '.join(table.column_names)}). Set "
            f"text_key=FIELD to the field that holds the text."
        )
    col = table.column(text_key)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise DataError(
            f"{where}: field {text_key!r} holds {col.type}, not text. Set text_key to a text field."
        )
    if col.null_count:
        first = next(i for i, v in enumerate(col.is_null().to_pylist()) if v)
        raise DataError(
            f"{where}: record {first + 1} has no {text_key!r} (null or missing); "
            f"{col.null_count} record(s) in all. Fix or remove them."
        )


def _read_jsonl(path: Path, limit: int | None, text_key: str, skip: bool):
    """Parse line by line so an error names its line; fast enough (~0.5 s per 100k lines)."""
    rows, rejects = [], []

    def bad(lineno: int, raw: bytes, reason: str, fix: str) -> None:
        if not skip:
            raise DataError(f"{path}, line {lineno}: {reason}. {fix} (or set "
                            f"data_pool.on_bad_record=skip to skip bad records and list them in a "
                            f"rejects file).")
        rejects.append({"line": lineno, "reason": reason,
                        "raw": raw.decode("utf-8", errors="replace").rstrip("\n")})

    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if limit is not None and len(rows) >= limit:
                break
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad(lineno, raw, f"not valid UTF-8 ({e.reason} at byte {e.start})",
                    "Re-encode the file as UTF-8")
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                bad(lineno, raw, f"malformed JSON ({e.msg}, column {e.colno})",
                    "Each line must be one JSON object")
                continue
            if not isinstance(rec, dict):
                bad(lineno, raw, f"expected a JSON object, got {type(rec).__name__}",
                    "Each line must be one JSON object")
                continue
            text = rec.get(text_key)
            if not isinstance(text, str):
                what = "has no" if text is None else f"has a non-string ({type(text).__name__})"
                bad(lineno, raw, f"record {what} {text_key!r} field",
                    f"Give every record a string {text_key!r}, or set text_key to the text field")
                continue
            rows.append(rec)
    if not rows and not rejects:
        raise DataError(f"{path} holds no samples. Point the data pool at a non-empty file.")
    if not rows:
        return pa.table({text_key: pa.array([], pa.string())}), rejects
    return _from_rows(rows, path), rejects


def _from_rows(rows: list[dict], path: Path):
    """Arrow table from records. A field Arrow cannot store as one column (an ``id`` that is
    sometimes a number and sometimes a string, an integer beyond 64 bits) is kept as JSON text
    rather than dropped."""
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)
    first = rows[0].keys()
    # ``from_pylist`` takes its fields from the first record only: a field that appears later
    # (``videos`` after image-only samples in a multimodal pool) needs the column-wise path
    if all(r.keys() == first for r in rows):
        try:
            return pa.Table.from_pylist(rows)
        except errors:
            pass
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns, as_json = {}, []
    for k in keys:
        values = [r.get(k) for r in rows]
        try:
            columns[k] = pa.array(values)
        except errors:
            columns[k] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
            as_json.append(k)
    if as_json:
        logging.getLogger(__name__).warning(
            "%s: field(s) %s cannot be stored as one typed column (types differ between records, "
            "or integers beyond 64 bits); kept as JSON text.", path, ", ".join(as_json))
    return pa.table(columns)


def _read_json(path: Path):
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a valid UTF-8 JSON file: {e}.") from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{path}: expected a JSON list of objects.")
    if not doc:
        raise DataError(f"{path} holds no samples.")
    return pa.Table.from_pylist(doc)


# The run's Parquet files (pools, the stats cache, processed and dropped samples) are written
# uncompressed and without dictionary pages: on text, snappy makes writing ~5x and reading ~6x
# slower for ~35% less disk, and trying a dictionary first triples the CPU of a write; every
# later step, trial and sweep re-reads these files.
PARQUET_OPTIONS = {"compression": "none", "use_dictionary": False}


def parquet_writer(path: str | Path, schema, **options):
    """A ``pyarrow.parquet.ParquetWriter`` with the run's options (use it as a context manager);
    ``options`` add to them (``write_page_checksum=True`` for a cache file)."""
    return pq.ParquetWriter(path, schema, **PARQUET_OPTIONS, **options)


def write_parquet(table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` atomically, with the run's Parquet options."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)
    return Path(path)


def row_chunks(path: str | Path, columns: list[str] | None, size: int, lo: int = 0,
               hi: int | None = None):
    """Rows ``lo:hi`` of a Parquet file as tables of ``size`` rows (the last may be shorter),
    read one row group at a time (plain reads, not a memory map: pages of a mapped file stay in
    the process's resident set until it ends). Two files with the same number of rows give aligned
    chunks whatever their row groups; chunks are zero-copy slices."""
    pf = pq.ParquetFile(path, memory_map=False)
    meta = pf.metadata
    hi = meta.num_rows if hi is None else hi
    pending, have, start = [], 0, 0
    for group in range(meta.num_row_groups):
        end = start + meta.row_group(group).num_rows
        if end > lo and start < hi:
            a, b = max(lo, start) - start, min(hi, end) - start
            table = pf.read_row_group(group, columns=columns).slice(a, b - a)
            while table.num_rows:
                take = min(size - have, table.num_rows)
                pending.append(table.slice(0, take))
                have += take
                table = table.slice(take)
                if have == size:
                    yield pa.concat_tables(pending)
                    pending, have = [], 0
        start = end
        if start >= hi:
            break
    if have:
        yield pa.concat_tables(pending)


def arrow_without_pandas() -> None:
    """Keep pyarrow from importing pandas on its first conversion of Python objects: its check
    for pandas array-likes imports pandas once per process (~0.3 s holding the GIL, on the way
    to the first span of a process run, and ~60 MB in every worker). The check is made here with
    that import refused, so pyarrow takes pandas as absent for that check from then on;
    ``Table.to_pandas`` and ``Table.from_pandas`` still import it when called. Does nothing
    where pandas is imported already."""
    if "pandas" in sys.modules:
        return

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pandas":
                raise ImportError("pandas is not imported by this check")
            return None

    refuse = _Refuse()
    sys.meta_path.insert(0, refuse)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(refuse)


def read_parquet(path: str | Path, columns: list[str] | None = None):
    """One Parquet file as a table (memory-mapped). ``ParquetFile.read`` rather than
    ``pq.read_table``: the latter goes through the dataset API, which imports pandas (~0.2 s)."""
    return pq.ParquetFile(path, memory_map=True).read(columns=columns)
