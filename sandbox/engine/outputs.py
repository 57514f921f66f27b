"""How the local engine writes the process step's outputs: streaming, in the pool's order.

The pool is read again in chunks of ``chunk_rows`` rows, side by side with the result file (the
mapped text, the stats when kept, and the row ids that prove the two line up); each chunk is
split by the keep mask into kept and dropped rows and appended to the kept file, the dropped file
(with the key of the OP that dropped each sample) and the export (its media paths relative to
its folder) as it goes. The pool is never one table of Python objects, so memory does not grow
with its size.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.data.io import parquet_writer, row_chunks
from sandbox.data.media import relativize_media
from sandbox.engine.base import ProcessOutputs
from sandbox.engine.common import FIELD_PREFIX, ROW_ID_COLUMN, TEXT_COLUMN, to_numpy
from sandbox.engine.result import ComputedFile, misaligned
from sandbox.engine.selection import Selection
from sandbox.utils import OneBehind, atomic_path

STATS_PREFIX = "__stats__."  # output columns of the stats, with ``keep_stats``


def write_outputs(dataset: str | Path, computed: ComputedFile, selection: Selection,
                  text_key: str, outputs: ProcessOutputs, chunk_rows: int) -> None:
    """Write ``outputs`` (see ``ProcessOutputs``); every file in the pool's schema, the mapped
    text in place of the original, row groups of ``chunk_rows`` rows."""
    pool = pq.ParquetFile(dataset)
    num_rows = pool.metadata.num_rows
    if computed.num_rows != num_rows or len(selection.keep) != num_rows:
        raise misaligned(computed.path, dataset, f"{computed.num_rows} result rows and "
                         f"{len(selection.keep)} selected for {num_rows} samples")
    names = selection.op_key_names()
    kept_path = outputs.kept
    export = outputs.export if kept_path is not None else None
    with contextlib.ExitStack() as stack:
        kept_writer = dropped_writer = export_writer = jsonl_file = None
        kept_tmp = stack.enter_context(atomic_path(kept_path)) if kept_path else None
        dropped_tmp = stack.enter_context(atomic_path(outputs.dropped))
        if export is not None:
            export_tmp = stack.enter_context(atomic_path(export))
            if export.suffix != ".parquet":
                jsonl_file = stack.enter_context(open(export_tmp, "wb"))
        # the export and the dropped rows of a chunk are written on threads of their own while
        # the next chunk is read, split and kept (Arrow's C++ and the compiled JSON kernel
        # release the GIL), each at most one chunk behind, so that every file is written in
        # order and memory stays bounded
        export_behind = OneBehind(stack, "export")
        dropped_behind = OneBehind(stack, "dropped")
        offset = 0
        try:
            for table in output_chunks(dataset, computed, text_key, outputs.keep_stats,
                                       chunk_rows):
                m = table.num_rows
                keep = selection.keep[offset:offset + m]
                codes = selection.dropped_code[offset:offset + m]
                offset += m
                kept = table.filter(pa.array(keep))
                dropped = table.filter(pa.array(~keep)).append_column(
                    "dropped_by", pa.array(names[codes[~keep]], type=pa.string()))
                if kept_tmp is not None:
                    if kept_writer is None:
                        kept_writer = stack.enter_context(parquet_writer(kept_tmp, kept.schema))
                        if export is not None and jsonl_file is None:
                            export_writer = stack.enter_context(
                                parquet_writer(export_tmp, kept.schema))
                    if export is not None:
                        # media paths relative to the export's folder, so it reads back alike
                        export_behind.submit(_write_export, relativize_media(kept, export.parent),
                                             export_writer, jsonl_file, chunk_rows)
                    kept_writer.write_table(kept, row_group_size=chunk_rows)
                if dropped_writer is None:
                    dropped_writer = stack.enter_context(
                        parquet_writer(dropped_tmp, dropped.schema))
                dropped_behind.submit(dropped_writer.write_table, dropped, chunk_rows)
        finally:  # both threads are done before any file closes, on an error too
            export_behind.settle()
            dropped_behind.settle()
        export_behind.result()  # an error of theirs, if any
        dropped_behind.result()
        if dropped_writer is None:  # an empty pool
            empty = pa.Table.from_batches([], pool.schema_arrow)
            pq.write_table(empty.append_column("dropped_by", pa.array([], pa.string())),
                           dropped_tmp)


def _write_export(kept: pa.Table, parquet_out, jsonl_out, chunk_rows: int) -> None:
    if parquet_out is not None:
        parquet_out.write_table(kept, row_group_size=chunk_rows)
    else:
        from sandbox.data.jsonl import jsonl_parts  # lazy: only a jsonl export needs it

        # escaping is the export's cost (~2.5 ns a byte): on two cores, as the OPs' workers
        # are done by the time the outputs are written
        for part in jsonl_parts(kept, 2):
            jsonl_out.write(part)


def output_chunks(dataset: str | Path, computed: ComputedFile, text_key: str, keep_stats: bool,
                  chunk_rows: int) -> Iterator[pa.Table]:
    """The pool as tables of ``chunk_rows`` rows, in the pool's schema, with the mapped text in
    place of the original (when a mapper ran), the fields media mappers changed in place of
    theirs (or appended, when new) and, with ``keep_stats``, the stat and hash
    columns appended as ``__stats__.<column>``. Raises ``DataError`` when a chunk of the result
    file does not carry the row ids of the pool chunk beside it."""
    schema = pq.ParquetFile(dataset).schema_arrow
    text_idx = schema.get_field_index(text_key)
    side_columns = [ROW_ID_COLUMN] + ([TEXT_COLUMN] if computed.has_text else [])
    side_columns += computed.field_names()
    if keep_stats:
        side_columns += computed.column_names()
    sides = row_chunks(computed.path, side_columns, chunk_rows)
    offset = 0
    for table in row_chunks(dataset, None, chunk_rows):
        side = next(sides, None)
        if side is None or side.num_rows != table.num_rows:
            raise misaligned(computed.path, dataset, f"the results end before offset {offset}"
                             if side is None else f"row counts differ after offset {offset}")
        computed.check_chunk(to_numpy(side.column(ROW_ID_COLUMN)), offset, dataset)
        offset += table.num_rows
        for name, col in zip(side.column_names[1:], side.columns[1:]):
            if name == TEXT_COLUMN:
                field = schema.field(text_idx)
                table = table.set_column(text_idx, field, col.cast(field.type))
            elif name.startswith(FIELD_PREFIX):  # a field a media mapper rewrote or added
                key = name[len(FIELD_PREFIX):]
                if key in table.column_names:
                    idx = table.schema.get_field_index(key)
                    table = table.set_column(idx, key, col)
                else:
                    table = table.append_column(key, col)
            else:
                table = table.append_column(STATS_PREFIX + name, col)
        yield table
