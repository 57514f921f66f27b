"""Finished spans kept apart until their result file is whole (datatrove's completion markers,
for stats).

A result file is written in one piece (``atomic_path``), so a run that dies before its last span
leaves no result file, and its rerun would compute every span again. A ``SpanStore`` keeps each
span's result buffer (the worker's Arrow IPC stream, exactly the bytes the result file is
written from) in a file of its own as soon as the span is done, written whole or not at all.
The folder is named after the result file's key (the pool's fingerprint and the OPs'
stat-relevant parameters, ``cache_key``), each file after its span (row group, rows, pool
offset) and the rows per OP call (the batches the buffer holds), so a rerun over the same pool
and OPs takes the finished spans as they are and computes only the others; the result file it
then writes is byte for byte the one an undisturbed run writes. Once the result file is in
place the folder is removed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa

from sandbox.engine.common import ROW_ID_COLUMN, Span
from sandbox.utils import atomic_path

SPANS_SUFFIX = ".spans"  # the folder beside a cached result file: <key>.spans/


class SpanStore:
    """The finished spans of one result file (its key's folder), for one ``batch_size``."""

    def __init__(self, folder: Path, batch_size: int):
        self.folder = Path(folder)
        self.batch_size = int(batch_size)

    def path(self, span: Span) -> Path:
        group, start, stop, first = span
        return self.folder / f"g{group}-{start}-{stop}-at{first}-b{self.batch_size}.arrow"

    def finished(self, spans: list[Span]) -> set[int]:
        """Indexes of ``spans`` whose results are kept (checked when read, ``get``)."""
        if not self.folder.is_dir():
            return set()
        names = {p.name for p in self.folder.iterdir()}
        return {i for i, span in enumerate(spans) if self.path(span).name in names}

    def get(self, span: Span) -> pa.Buffer | None:
        """The kept result buffer of ``span``, or None when it is missing or is not the span's
        rows (a damaged file is removed, to be computed again)."""
        path = self.path(span)
        try:
            data = pa.py_buffer(path.read_bytes())
            table = pa.ipc.open_stream(data).read_all()
            ids = table.column(ROW_ID_COLUMN)
            _, start, stop, first = span
            if table.num_rows != stop - start or (
                    table.num_rows and (ids[0].as_py(), ids[-1].as_py()) !=
                    (first, first + table.num_rows - 1)):
                raise ValueError(f"{table.num_rows} rows, not rows {first}..{first + stop - start}")
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - cut short or not an IPC stream: computed again
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, span: Span, buf: pa.Buffer) -> None:
        """Keep ``span``'s result buffer (whole or not at all)."""
        with atomic_path(self.path(span)) as tmp, open(tmp, "wb") as fh:
            fh.write(memoryview(buf))

    def clear(self) -> None:
        """Remove the folder (its result file is whole)."""
        shutil.rmtree(self.folder, ignore_errors=True)
