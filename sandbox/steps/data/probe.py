"""Probe: the stats of every filter in the recipe, on every sample (stats-only mode).

Mappers run first (in recipe order) so each filter sees the text it would see when the recipe is
applied; nothing is dropped. Writes ``summary.csv`` (count, mean, std, min, max, quantiles per
stat), ``stats.parquet`` (one column per stat) and one histogram per stat with the recipe's
thresholds drawn on it."""
from __future__ import annotations

import csv
import math
import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.data.io import write_parquet
from sandbox.engine import engine_for, resolve_num_proc, stat_column
from sandbox.numeric import float_column
from sandbox.recipe import Recipe
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path


class Probe(Step):
    outputs = ("stats", "summary", "summary_path", "plots")

    def __init__(self, text_key: str = "text", quantiles: list[float] | None = None,
                 plots: bool = True, batch_size: int = 512):
        self.text_key = text_key
        self.quantiles = list(quantiles or [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
        self.plots = plots
        self.batch_size = batch_size

    def run(self, env: StepEnv, dataset: str, recipe: Recipe) -> dict[str, Any]:
        ops, computed, _ = engine_for(env).compute_recipe(
            env, dataset, recipe, self.batch_size, "computing stats")
        rows, thresholds, names = [], {}, []
        for spec, op in zip(recipe.ops, ops):
            for stat in getattr(op, "stat_keys", ()):
                names.append((spec.key, stat, op, stat_column(spec.key, stat)))
        stat_cols = computed.columns([c for *_, c in names])
        numeric = {}
        for key, stat, op, col in names:
            values = float_column(stat_cols[col])
            if values is None:  # e.g. language labels, per-image lists: stored, not summarised
                rows.append({"op": key, "stat": stat, "column": col, "count": len(stat_cols[col]),
                             "numeric": False})
                continue
            numeric[col] = values
            rows.append(describe(values, self.quantiles) |
                        {"column": col, "op": key, "stat": stat})
            thresholds[col] = {arg: getattr(op, arg) for arg, th in op.thresholds.items()
                               if th.stat == stat}
        table = pa.table({c: pa.array(list(v)) if getattr(v, "dtype", None) == object else v
                          for c, v in stat_cols.items()}) if stat_cols else pa.table({"__n__": [0] * 0})
        stats_path = write_parquet(table, env.workdir / "stats.parquet")
        summary_path = env.workdir / "summary.csv"
        write_csv(summary_path, rows)
        plots_dir = env.workdir / "plots"
        if self.plots and rows:
            plot_histograms(numeric, thresholds, plots_dir, resolve_num_proc(env.num_proc))
        summary = {r["column"]: {k: v for k, v in r.items() if k != "column"} for r in rows}
        return {"stats": str(stats_path), "summary": summary, "summary_path": str(summary_path),
                "plots": str(plots_dir)}


def describe(values: np.ndarray, quantiles: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"count": 0}
    out = {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
           "min": float(v.min()), "max": float(v.max())}
    for q, val in zip(quantiles, np.quantile(v, quantiles)):
        out[f"q{q:g}"] = float(val)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))  # numeric rows first define order
    fields = ["op", "stat", "column"] + [k for k in keys if k not in ("op", "stat", "column")]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


_PLOT_JOBS: list = []  # (column, values, thresholds, path): read by forked plotting workers


def plot_histograms(columns: dict[str, np.ndarray], thresholds: dict[str, dict[str, Any]],
                    out_dir: Path, num_proc: int = 1) -> list[Path]:
    """One histogram PNG per stat (log counts, the recipe's thresholds as dashed lines),
    rendered by up to ``num_proc`` forked processes (matplotlib is single-threaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (imported once here, inherited by the workers)

    out_dir.mkdir(parents=True, exist_ok=True)
    _PLOT_JOBS[:] = [(col, values, thresholds.get(col) or {}, out_dir / f"{col}.png")
                     for col, values in columns.items()]
    try:
        workers = min(num_proc, len(_PLOT_JOBS))
        if workers > 1:
            with mp.get_context("fork").Pool(workers) as pool:
                pool.map(_plot_one, range(len(_PLOT_JOBS)), chunksize=1)
        else:
            for i in range(len(_PLOT_JOBS)):
                _plot_one(i)
        return [job[3] for job in _PLOT_JOBS]
    finally:
        _PLOT_JOBS.clear()


def _plot_one(i: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    col, values, thresholds, path = _PLOT_JOBS[i]
    v = np.asarray(values, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    shown = {a: t for a, t in thresholds.items()
             if t is not None and math.isfinite(t) and abs(t) < 1e15}
    for t in shown.values():  # widen the range a bit so a threshold just outside shows
        if lo - (hi - lo) * 0.25 <= t <= hi + (hi - lo) * 0.25:
            lo, hi = min(lo, t), max(hi, t)
    ax.hist(v, bins=60, range=(lo, hi if hi > lo else lo + 1), color="#4c72b0")
    drawn = [ax.axvline(t, color="#c44e52", linestyle="--", label=f"{arg}={t:g}")
             for arg, t in shown.items() if lo <= t <= hi]
    ax.set_yscale("log")
    # plain tick labels (1, 10, 100): the default 10^k labels go through mathtext, ~0.1 s a plot
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_title(col)
    ax.set_xlabel(col.split(".")[-1])
    ax.set_ylabel("samples")
    if drawn:
        ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.15, top=0.9)  # tight_layout costs a draw
    fig.savefig(path, dpi=90)
    plt.close(fig)
