"""Writing tables as JSON lines, fast: exactly the text ``json.dumps(row, ensure_ascii=False)``
writes for each row, one per line, UTF-8 encoded.

String columns never become Python strings: their UTF-8 bytes are escaped straight from the Arrow
buffers by a compiled kernel. With ``ensure_ascii=False`` JSON escapes only ``"``, ``\\`` and the
control characters below U+0020, and in UTF-8 those bytes never occur inside a multi-byte
character, so escaping bytes is escaping characters. Other columns (numbers, lists, nulls) go
through ``json.dumps`` value by value."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from sandbox.jit import njit

_SHORT = np.zeros(256, dtype=np.uint8)  # the letter of a two-character escape, or 0
for _c, _e in {'"': '"', "\\": "\\", "\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f"}.items():
    _SHORT[ord(_c)] = ord(_e)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@njit(cache=True, nogil=True)
def _escaped_size(buf, start, end, short):
    size = 0
    for i in range(start, end):
        b = buf[i]
        if short[b]:
            size += 2
        elif b < 32:
            size += 6
        else:
            size += 1
    return size


@njit(cache=True, nogil=True,
      export="u1[::1](u1[::1], i8[:, ::1], i8[:, ::1], b1[::1], u1[::1], i8[::1], u1[::1], u1[::1])")
def _rows(buf, starts, ends, quoted, keys, key_offsets, short, hexdigits):
    """The JSON lines of ``nrows`` rows: value (r, c) is ``buf[starts[r, c]:ends[r, c]]``, a
    string's UTF-8 bytes to quote and escape where ``quoted[c]``, else JSON text as it is;
    ``keys`` holds each column's ``"name": ``.

    Escapes are rare, so the rows are written in one pass into room for them as they are plus
    an eighth, not sized by a pass of their own first. Before each value the room left is
    checked against its worst case (6 bytes a byte for a string); a value that may not fit is
    sized exactly, and the buffer grows when even that does not fit."""
    nrows, ncols = starts.shape
    raw = 0
    for r in range(nrows):
        for c in range(ncols):
            raw += ends[r, c] - starts[r, c]
    per_row = 3 + 4 * ncols + key_offsets[ncols]  # {, }, newline, separators, quotes, keys
    out = np.empty(raw + raw // 8 + nrows * per_row + 16, dtype=np.uint8)
    o = 0
    for r in range(nrows):
        out[o] = 123  # {
        o += 1
        for c in range(ncols):
            start, end = starts[r, c], ends[r, c]
            worst = 6 * (end - start) if quoted[c] else end - start
            if o + worst + per_row > out.size:
                exact = _escaped_size(buf, start, end, short) if quoted[c] else end - start
                if o + exact + per_row > out.size:
                    grown = np.empty(max(2 * out.size, o + exact + per_row + raw // 8),
                                     dtype=np.uint8)
                    grown[:o] = out[:o]
                    out = grown
            if c:
                out[o] = 44  # ,
                out[o + 1] = 32
                o += 2
            for i in range(key_offsets[c], key_offsets[c + 1]):
                out[o] = keys[i]
                o += 1
            if not quoted[c]:
                for i in range(start, end):
                    out[o] = buf[i]
                    o += 1
                continue
            out[o] = 34  # "
            o += 1
            for i in range(start, end):
                b = buf[i]
                e = short[b]
                if e:
                    out[o] = 92  # backslash
                    out[o + 1] = e
                    o += 2
                elif b < 32:
                    out[o] = 92
                    out[o + 1] = 117  # u
                    out[o + 2] = 48
                    out[o + 3] = 48
                    out[o + 4] = hexdigits[b >> 4]
                    out[o + 5] = hexdigits[b & 15]
                    o += 6
                else:
                    out[o] = b
                    o += 1
            out[o] = 34
            o += 1
        out[o] = 125  # }
        out[o + 1] = 10
        o += 2
    return out[:o]


def _string_values(col) -> tuple[np.ndarray, np.ndarray] | None:
    """``(utf-8 bytes, offsets)`` of a string column without nulls, from its Arrow buffers."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) \
            or col.null_count:
        return None
    _, offsets, data = col.buffers()
    width = np.int64 if pa.types.is_large_string(col.type) else np.int32
    offsets = np.frombuffer(offsets, dtype=width)[col.offset:col.offset + len(col) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64)


def _json_values(col) -> tuple[np.ndarray, np.ndarray]:
    """``(bytes, offsets)`` of ``json.dumps(value, ensure_ascii=False)`` per value."""
    encoded = [json.dumps(v, ensure_ascii=False).encode() for v in col.to_pylist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def jsonl_bytes(table) -> memoryview:
    """The rows of an Arrow table as JSON lines (UTF-8, a bytes-like view for ``write``),
    exactly as ``json.dumps(row, ensure_ascii=False) + "\\n"`` per row."""
    if table.num_rows == 0:
        return memoryview(b"")
    bufs, starts, ends, quoted, keys = [], [], [], [], []
    base = 0
    for name, col in zip(table.column_names, table.columns):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        values = _string_values(col)
        quoted.append(values is not None)
        data, offsets = values if values is not None else _json_values(col)
        bufs.append(data)
        starts.append(offsets[:-1] + base)
        ends.append(offsets[1:] + base)
        base += data.size
        keys.append((json.dumps(name, ensure_ascii=False) + ": ").encode())
    key_offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in keys], out=key_offsets[1:])
    buf = np.concatenate(bufs) if len(bufs) > 1 else bufs[0]
    out = _rows(buf, np.stack(starts, axis=1), np.stack(ends, axis=1),
                np.array(quoted, dtype=np.bool_), np.frombuffer(b"".join(keys), dtype=np.uint8),
                key_offsets, _SHORT, _HEX)
    return memoryview(out)


def jsonl_parts(table, parts: int):
    """``jsonl_bytes`` of ``table`` as up to ``parts`` views of consecutive row ranges (their
    concatenation is ``jsonl_bytes(table)``), computed at once on that many threads: the kernel
    releases the GIL, so a large table is escaped on several cores."""
    rows = table.num_rows
    parts = max(1, min(parts, rows // 1024))  # small tables: one piece, no thread
    if parts == 1:
        return [jsonl_bytes(table)]
    bounds = [rows * i // parts for i in range(parts + 1)]
    with ThreadPoolExecutor(parts - 1, thread_name_prefix="jsonl") as pool:
        rest = [pool.submit(jsonl_bytes, table.slice(lo, hi - lo))
                for lo, hi in zip(bounds[1:-1], bounds[2:])]
        first = jsonl_bytes(table.slice(0, bounds[1]))
        return [first] + [f.result() for f in rest]
