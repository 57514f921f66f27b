"""Process: apply the recipe. Writes the kept samples, the dropped ones with the OP that dropped
each (nothing is silently lost), and a retention table (samples in/out per OP)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.errors import DataError
from sandbox.steps.base import Step, StepEnv


class Process(Step):
    outputs = ("dataset", "dropped", "retention", "retention_path", "num_in", "num_out",
               "export", "metrics")

    def __init__(self, text_key: str = "text", batch_size: int = 512,
                 export_path: str | None = None, keep_stats: bool = False):
        self.text_key, self.batch_size = text_key, batch_size
        self.export_path, self.keep_stats = export_path, keep_stats

    def run(self, env: StepEnv, dataset: str, recipe: dict) -> dict[str, Any]:
        import pyarrow as pa

        from sandbox.data.io import read_parquet, write_parquet
        from sandbox.engine import compute, select
        from sandbox.recipe import load_recipe
        from sandbox.utils import file_fingerprint

        rec = load_recipe(recipe, self.text_key)
        ops = rec.build()
        table = read_parquet(dataset)
        texts = table.column(rec.text_key).to_pylist()
        n = len(texts)
        with env.progress(n, "applying recipe") as advance:
            computed = compute(texts, rec.ops, rec.text_key, env.num_proc, self.batch_size,
                               env.cache_dir, file_fingerprint(dataset), advance)
        sel = select(rec.ops, ops, computed.columns, n)

        if computed.texts is not texts:
            col = pa.array(computed.texts, type=table.schema.field(rec.text_key).type)
            table = table.set_column(table.schema.get_field_index(rec.text_key), rec.text_key, col)
        if self.keep_stats:
            for name, values in computed.columns.items():
                table = table.append_column(f"__stats__.{name}", pa.array(list(values)))
        kept = table.filter(pa.array(sel.keep))
        dropped = table.filter(pa.array(~sel.keep)).append_column(
            "dropped_by", pa.array([d for d in sel.dropped_by if d is not None], type=pa.string()))

        retention_path = env.workdir / "retention.csv"
        _write_retention(retention_path, n, sel.retention)
        dropped_path = write_parquet(dropped, env.workdir / "dropped.parquet")
        if kept.num_rows == 0:
            culprit = next((r for r in sel.retention if r["in"] > 0 and r["out"] == 0), None)
            who = (f"OP `{culprit['op']}` removed the last {culprit['in']} sample(s)"
                   if culprit else "the recipe removed every sample")
            raise DataError(
                f"processing left no samples: {who} (see {retention_path}; the dropped samples "
                f"are in {dropped_path}). Loosen that OP's thresholds or switch it off with "
                f"recipe.ops.{culprit['op'] if culprit else 'OP'}._enabled=false."
            )
        out = write_parquet(kept, env.workdir / "processed.parquet")
        export = None
        if self.export_path:
            export = str(export_table(kept, Path(self.export_path)))
        return {"dataset": str(out), "dropped": str(dropped_path), "retention": sel.retention,
                "retention_path": str(retention_path), "num_in": n, "num_out": kept.num_rows,
                "export": export,
                "metrics": {"samples_in": float(n), "samples_out": float(kept.num_rows)}}


def _write_retention(path: Path, n: int, rows: list[dict]) -> None:
    from sandbox.utils import atomic_path

    fields = ["op", "name", "kind", "in", "out", "dropped", "would_drop_alone"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def export_table(table, path: Path) -> Path:
    """Write kept samples as jsonl (``.jsonl``/``.json``) or Parquet (``.parquet``)."""
    import json

    from sandbox.data.io import write_parquet
    from sandbox.utils import atomic_path

    if path.suffix == ".parquet":
        return write_parquet(table, path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for batch in table.to_batches(max_chunksize=10000):
            for rec in batch.to_pylist():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path
