"""Process: apply the recipe. Writes the kept samples, the dropped ones with the OP that dropped
each (nothing is silently lost), and a retention table (samples in/out per OP).

The step only orchestrates: the engine computes the stats (or reads them from the cache),
selects (one keep mask) and writes the outputs its own way (the local engine streams them in
chunks, so memory does not grow with the pool's size)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.engine import ProcessOutputs, engine_for
from sandbox.errors import DataError
from sandbox.recipe import Recipe
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path


class Process(Step):
    outputs = ("dataset", "dropped", "retention", "retention_path", "num_in", "num_out",
               "export", "metrics")

    def __init__(self, text_key: str = "text", batch_size: int = 512,
                 export_path: str | None = None, keep_stats: bool = False):
        self.text_key, self.batch_size = text_key, batch_size
        self.export_path, self.keep_stats = export_path, keep_stats

    def run(self, env: StepEnv, dataset: str, recipe: Recipe) -> dict[str, Any]:
        engine = engine_for(env)
        ops, computed, n = engine.compute_recipe(env, dataset, recipe, self.batch_size,
                                                 "applying recipe")
        sel = engine.select(recipe.ops, ops, computed, n, fields=dataset)
        num_out = int(np.count_nonzero(sel.keep))

        retention_path = env.workdir / "retention.csv"
        _write_retention(retention_path, n, sel.retention)
        dropped_path = env.workdir / "dropped.parquet"
        out = env.workdir / "processed.parquet"
        export = Path(self.export_path) if self.export_path and num_out else None
        engine.write(dataset, computed, sel, recipe.text_key, ProcessOutputs(
            dropped=dropped_path, kept=out if num_out else None, export=export,
            keep_stats=self.keep_stats))
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


def _write_retention(path: Path, n: int, rows: list[dict]) -> None:
    fields = ["op", "name", "kind", "in", "out", "dropped", "would_drop_alone"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
