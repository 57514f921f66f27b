"""Process: apply the recipe. Writes the kept samples, the dropped ones with the OP that dropped
each (nothing is silently lost), and a retention table (samples in/out per OP).

Streaming: the engine computes stats (or reads them from the cache), ``select`` turns them into
one keep mask, and the pool is then read again in chunks, each chunk split into kept and dropped
rows and appended to ``processed.parquet``, ``dropped.parquet`` and the export file as it goes.
The pool is never one table of Python objects, so memory does not grow with its size."""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.errors import DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path

CHUNK_ROWS = 16384  # rows per write chunk (and per Parquet row group of the outputs)


class Process(Step):
    outputs = ("dataset", "dropped", "retention", "retention_path", "num_in", "num_out",
               "export", "metrics")

    def __init__(self, text_key: str = "text", batch_size: int = 512,
                 export_path: str | None = None, keep_stats: bool = False):
        self.text_key, self.batch_size = text_key, batch_size
        self.export_path, self.keep_stats = export_path, keep_stats

    def run(self, env: StepEnv, dataset: str, recipe: dict) -> dict[str, Any]:
        from sandbox.engine import compute_recipe, select

        rec, ops, computed, n = compute_recipe(env, dataset, recipe, self.text_key,
                                               self.batch_size, "applying recipe")
        sel = select(rec.ops, ops, computed, n, fields=dataset)
        num_out = int(np.count_nonzero(sel.keep))

        retention_path = env.workdir / "retention.csv"
        _write_retention(retention_path, n, sel.retention)
        dropped_path = env.workdir / "dropped.parquet"
        out = env.workdir / "processed.parquet"
        export = Path(self.export_path) if self.export_path and num_out else None
        self._write(dataset, computed, sel, rec.text_key, out if num_out else None, dropped_path,
                    export)
        if num_out == 0:
            culprit = next((r for r in sel.retention if r["in"] > 0 and r["out"] == 0), None)
            who = (f"OP `{culprit['op']}` removed the last {culprit['in']} sample(s)"
                   if culprit else "the recipe removed every sample")
            raise DataError(
                f"processing left no samples: {who} (see {retention_path}; the dropped samples "
                f"are in {dropped_path}). Loosen that OP's thresholds or switch it off with "
                f"++recipe.ops.{culprit['op'] if culprit else 'OP'}._enabled=false."
            )
        return {"dataset": str(out), "dropped": str(dropped_path), "retention": sel.retention,
                "retention_path": str(retention_path), "num_in": n, "num_out": num_out,
                "export": str(export) if export else None,
                "metrics": {"samples_in": float(n), "samples_out": float(num_out)}}

    def _write(self, dataset, computed, sel, text_key: str, kept_path: Path | None,
               dropped_path: Path, export: Path | None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from sandbox.data.io import parquet_writer
        from sandbox.data.jsonl import jsonl_bytes

        schema = pq.ParquetFile(dataset).schema_arrow
        names = np.array(list(sel.op_keys) + [None], dtype=object)
        with contextlib.ExitStack() as stack:
            kw, dw, xw, ex = None, None, None, None
            kept_tmp = stack.enter_context(atomic_path(kept_path)) if kept_path else None
            dropped_tmp = stack.enter_context(atomic_path(dropped_path))
            if export is not None and kept_path is not None:
                export_tmp = stack.enter_context(atomic_path(export))
                if export.suffix != ".parquet":
                    ex = stack.enter_context(open(export_tmp, "wb"))
            offset = 0
            for table in _output_chunks(self, dataset, computed, text_key):
                m = table.num_rows
                keep = sel.keep[offset:offset + m]
                codes = sel.dropped_code[offset:offset + m]
                offset += m
                kept = table.filter(pa.array(keep))
                dropped = table.filter(pa.array(~keep)).append_column(
                    "dropped_by", pa.array(names[codes[~keep]], type=pa.string()))
                if kept_tmp is not None:
                    if kw is None:
                        kw = stack.enter_context(parquet_writer(kept_tmp, kept.schema))
                        if export is not None and ex is None:
                            xw = stack.enter_context(parquet_writer(export_tmp, kept.schema))
                    kw.write_table(kept, row_group_size=CHUNK_ROWS)
                    if xw is not None:
                        xw.write_table(kept, row_group_size=CHUNK_ROWS)
                    if ex is not None:
                        ex.write(jsonl_bytes(kept))
                if dw is None:
                    dw = stack.enter_context(parquet_writer(dropped_tmp, dropped.schema))
                dw.write_table(dropped, row_group_size=CHUNK_ROWS)
            if dw is None:  # an empty pool
                empty = pa.Table.from_batches([], schema)
                pq.write_table(empty.append_column("dropped_by", pa.array([], pa.string())),
                               dropped_tmp)


def _output_chunks(step: Process, dataset, computed, text_key: str):
    """The pool as tables of CHUNK_ROWS rows, in the pool's schema, with the mapped text in
    place of the original (when a mapper ran) and, with ``keep_stats``, the stats appended as
    ``__stats__.<column>``."""
    import pyarrow.parquet as pq

    from sandbox.data.io import row_chunks
    from sandbox.engine import TEXT_COLUMN

    schema = pq.ParquetFile(dataset).schema_arrow
    text_idx = schema.get_field_index(text_key)
    extra = [TEXT_COLUMN] if computed.has_text else []
    if step.keep_stats:
        extra += computed.column_names()
    aux = row_chunks(computed.path, extra, CHUNK_ROWS) if extra else None
    for table in row_chunks(dataset, None, CHUNK_ROWS):
        if aux is not None:
            side = next(aux)
            for name, col in zip(side.column_names, side.columns):
                if name == TEXT_COLUMN:
                    field = schema.field(text_idx)
                    table = table.set_column(text_idx, field, col.cast(field.type))
                else:
                    table = table.append_column(f"__stats__.{name}", col)
        yield table


def _write_retention(path: Path, n: int, rows: list[dict]) -> None:
    fields = ["op", "name", "kind", "in", "out", "dropped", "would_drop_alone"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
