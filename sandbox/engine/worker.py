"""What runs in the local engine's worker processes: a recipe's OPs over spans of the pool file.

A ``SpanJob`` says what to run (the OP specs, the pool file, the columns to read, the batch
size). It holds names and numbers only, so it pickles under any start method. Each worker
process builds one ``SpanWorker`` from it in the pool initializer (``init_worker``) and keeps it
in a slot of its own; ``run_span_to_file`` is the entry point the pool calls. With a single process the
engine drives a ``SpanWorker`` directly, so the parent never depends on that slot.

A worker reads its span from the file itself (only the columns the OPs need), runs the OPs on it
``batch_size`` rows at a time, and returns one Arrow IPC stream of result batches (row ids,
stats, hashes, and the mapped text when a mapper ran).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.engine.common import (ROW_ID_COLUMN, TEXT_COLUMN, Span, build_op, cast_batch,
                                   field_column, hash_column, row_ids, stat_column)
from sandbox.ops import Deduplicator, Filter, Mapper, OpSpec, TextViews


@dataclass(frozen=True)
class SpanJob:
    """One recipe over one pool file, as every worker of a run receives it."""

    specs: tuple[OpSpec, ...]
    text_key: str
    path: str  # the pool's Parquet file
    columns: tuple[str, ...]  # the text first, then the other fields the OPs read
    batch_size: int  # rows per OP call


class SpanWorker:
    """A worker's state: the built OPs, the open pool file and the last row group read."""

    def __init__(self, job: SpanJob):
        self.job = job
        self.ops = [(spec.key, build_op(spec, job.text_key)) for spec in job.specs]
        self.maps_text = any(isinstance(op, Mapper) for _, op in self.ops)
        self._file = None  # opened on first read: in the worker process, after it started
        self._group: tuple[int, pa.Table] | None = None

    def read(self, group: int, start: int, stop: int) -> pa.Table:
        """Rows ``start:stop`` of row group ``group`` (consecutive spans share a row group)."""
        if self._file is None:  # read, not memory-mapped, so that memory stays bounded
            self._file = pq.ParquetFile(self.job.path, memory_map=False)
        if self._group is None or self._group[0] != group:
            self._group = (group, self._file.read_row_group(group, columns=list(self.job.columns)))
        return self._group[1].slice(start, stop - start)

    def run_batch(self, texts: list[str], fields: dict[str, list] | None = None
                  ) -> tuple[list[str], dict[str, Any]]:
        """Every OP on one batch: the text after the mappers, and the stat and hash columns
        (and the fields media mappers changed, as ``field_column``s)."""
        cols: dict[str, Any] = {}
        views = TextViews(texts, fields)
        for key, op in self.ops:
            if isinstance(op, Mapper):
                if op.output_fields():  # a media mapper: new files, new field values
                    texts, changed = op.process_fields(views)
                    fields = {**(fields or {}), **changed}
                    for name, values in changed.items():
                        cols.pop(field_column(name), None)  # the last mapper's values win
                        cols[field_column(name)] = values
                else:
                    texts = op.process_batch(views.texts)
                views = TextViews(texts, fields)  # derived views are stale once the text changed
            elif isinstance(op, Filter):
                for stat, values in op.compute_stats_batch(views).items():
                    cols[stat_column(key, stat)] = values
            elif isinstance(op, Deduplicator):
                cols[hash_column(key)] = op.hash_batch(views)
        return views.texts, cols

    def result_batch(self, texts: list[str], cols: dict[str, Any], first_row_id: int
                     ) -> pa.RecordBatch:
        """One batch of the result file: row ids, then the mapped text (when a mapper ran), then
        the stat and hash columns."""
        arrays = [row_ids(first_row_id, first_row_id + len(texts))]
        names = [ROW_ID_COLUMN]
        if self.maps_text:
            arrays.append(pa.array(texts, type=pa.large_string()))
            names.append(TEXT_COLUMN)
        for name, values in cols.items():
            is_objects = isinstance(values, np.ndarray) and values.dtype == object
            arrays.append(pa.array(list(values)) if is_objects else pa.array(values))
            names.append(name)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def run_span(self, span: Span) -> pa.Buffer:
        """A span of the pool in, one IPC stream of result batches (one per ``batch_size`` rows)
        out."""
        sink = pa.BufferOutputStream()
        self.write_span(span, sink)
        return sink.getvalue()

    def write_span(self, span: Span, sink) -> None:
        """``run_span``'s IPC stream, written to ``sink`` (an Arrow output stream or path)."""
        group, start, stop, first_row_id = span
        table = self.read(group, start, stop)
        size = self.job.batch_size
        batches = []
        for lo in range(0, table.num_rows, size):
            part = table.slice(lo, size)
            texts = part.column(0).to_pylist()
            fields = {name: part.column(i).to_pylist()
                      for i, name in enumerate(part.column_names) if i} or None
            out_texts, cols = self.run_batch(texts, fields)
            batches.append(self.result_batch(out_texts, cols, first_row_id + lo))
        schema = batches[0].schema
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch if batch.schema == schema else cast_batch(batch, schema))


# The worker process's state. Set only by ``init_worker``, which the pool runs in each worker.
_WORKER: SpanWorker | None = None


def init_worker(job: SpanJob) -> None:
    """Pool initializer: build this worker process's ``SpanWorker``."""
    global _WORKER
    _WORKER = SpanWorker(job)


def run_span_to_file(item: tuple[Span, str]) -> str:
    """Pool entry point: the span's IPC stream written to the file ``item[1]``, whose path is
    what goes back to the parent. A result through the pool's pipe is pickled, sent, received
    and unpickled, four copies of the stream (the mapped text of every row, when a mapper ran:
    ~1.5 CPU-s per 100k documents); through a file it is written once and memory-mapped."""
    span, path = item
    with pa.OSFile(path, "wb") as sink:
        _WORKER.write_span(span, sink)
    return path
