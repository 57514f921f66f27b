"""Reading pool files row by row: every row of a parquet, jsonl, json or csv file as a dict
(``iter_rows``, ``count_rows``), the records of a file to convert with their positions for error
messages (``read_records``), and Data-Juicer's lookup of a dotted field in a row
(``nested_query``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from sandbox.errors import DataError


def count_rows(path: Path) -> int:
    fmt = _format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    return len(_read_small(path, fmt))


def iter_rows(path: Path) -> Iterator[dict]:
    """The rows of a pool file as dicts, in order, without holding a big file in memory."""
    fmt = _format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}, line {lineno}: malformed JSON ({e.msg}). Each line "
                                    f"must be one JSON object.") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}, line {lineno}: expected a JSON object.")
                yield row
    else:
        yield from _read_small(path, fmt)


def _format(path: Path) -> str:
    from sandbox.data.io import guess_format

    if not path.is_file():
        raise DataError(f"infer: the input pool {path} does not exist (or is not a file).")
    return guess_format(path)


def _read_small(path: Path, fmt: str) -> list[dict]:
    if fmt == "json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc = [doc] if isinstance(doc, dict) else doc
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise DataError(f"{path}: expected a JSON list of objects.")
        return doc
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path).to_pylist()


def read_records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(position, record)`` for every record of a jsonl, json (an array, or one object) or
    parquet file; the position ("line 7", "record 3") names it in errors and skip lists. A line
    that is not JSON stops the conversion: it means a broken file, not a record to skip."""
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        import pyarrow.parquet as pq

        i = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                i += 1
                yield f"record {i}", rec
    elif ".jsonl" in suffixes or ".ndjson" in suffixes:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}, line {lineno}: malformed JSON ({e.msg}, column "
                                    f"{e.colno}). Each line must be one JSON object.") from None
    elif ".json" in suffixes:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}). A .json pool "
                            f"is one JSON array of records.") from None
        for i, rec in enumerate(doc if isinstance(doc, list) else [doc], 1):
            yield f"record {i}", rec
    else:
        raise DataError(f"{path}: cannot tell its format from its name; use .jsonl, .json or "
                        f".parquet.")


def nested_query(obj: Any, key: str) -> Any:
    """Data-Juicer's lookup of ``key`` in a sample: at each level the rest of the dotted key as
    one field first, then one level deeper by its first part; a list maps the lookup over its
    items. None when absent."""
    parts = key.split(".")
    cur = obj
    for i in range(len(parts)):
        rest = ".".join(parts[i:])
        if isinstance(cur, list):
            return [nested_query(x, rest) for x in cur]
        if not isinstance(cur, dict):
            return None
        if cur.get(rest) is not None:
            return cur[rest]
        if parts[i] not in cur:
            return None
        cur = cur[parts[i]]
    return None
