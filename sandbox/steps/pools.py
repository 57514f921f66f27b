"""Data pools: the ``pool`` step family of the bottom-up workflow (Data-Juicer's data-pool
manipulators, with equal sizes, seeds and a random control made explicit).

A *pool* is a Parquet file plus a small description, passed between steps as a dict::

    {"name": "text_length_filter.text_len.high", "dataset": ".../pools/....parquet", "size": 1666,
     "kind": "stat" | "random" | "combined" | "merged" | "duplicated" | "joined",
     "bounds": {"text_length_filter.text_len": [lo, hi]}}   # stat pools and their combinations

Every pool file has a ``__row__`` column: the row's index in the dataset the pools were built
from. Intersections and unions are taken on it, so pools built from one dataset combine exactly.

Steps (all take and return *lists of pools*, so they chain and fan out with ``for_each``):

* ``PoolConstruction``: split an analysed dataset by every stat column into quantile bins
  (``split_ratios``, default thirds: low / middle / high) or fixed counts (``split_counts``),
  plus a seeded random control pool; optionally all made equal in size.
* ``PoolDownsampling``: seeded random subset of each pool (default: the smallest pool's size).
* ``PoolDuplication``: each pool repeated ``times`` times, optionally shuffled (seeded).
* ``PoolRanking``: order evaluated pools by metric keys (mean ± std over seeds, Welch t-test of
  every pool against the random control), write a table, a plot and the top pools.
* ``PoolCombination``: intersections of every subset (size >= 2) of the top pools.
* ``PoolMerging``: union of pools (one pool).
* ``PoolCartesianJoin``: row-wise cross product of two pool sets.
* ``RecipeExport``: the best pool's bounds as a Data-Juicer recipe YAML.
* ``ToJsonl`` / ``FromJsonl`` / ``ToCocoCaption``: format conversion.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import re
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.data.io import read_parquet, read_table, write_parquet
from sandbox.engine import to_numpy
from sandbox.errors import ConfigError, DataError
from sandbox.numeric import float_column
from sandbox.ops import OpSpec, get_op_class
from sandbox.recipe import Recipe, validate
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path, safe_name
from sandbox.verdict import compare, decision_accuracy, over_seeds

ROW = "__row__"
BIN_NAMES = {2: ["low", "high"], 3: ["low", "middle", "high"]}


# ============================================================================ helpers
def _read(path: str):
    return read_parquet(path)


def _write(table, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(write_parquet(table, folder / f"{safe_name(name)}.parquet"))


def _with_rows(table):
    if ROW in table.column_names:
        return table
    return table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _rows(pool: dict) -> np.ndarray:
    t = _read(pool["dataset"])
    if ROW not in t.column_names:
        raise DataError(f"pool {pool.get('name')!r} ({pool['dataset']}) has no `{ROW}` column: "
                        f"combine only pools built by PoolConstruction from one dataset.")
    return to_numpy(t.column(ROW))


def _as_pools(pools: Any, what: str) -> list[dict]:
    if isinstance(pools, dict) and "dataset" in pools:
        pools = [pools]
    if not isinstance(pools, list) or not all(isinstance(p, dict) and "dataset" in p
                                               for p in pools):
        raise ConfigError(f"{what}: expected a list of pools ({{name, dataset, size}} dicts), "
                          f"got {type(pools).__name__}. Wire it to a pool step's `pools` output.")
    return pools


def split_positions(n: int, split_ratios: list[float] | None, split_counts: list[int] | None
                    ) -> list[int]:
    """Cut positions in a sorted order of ``n`` samples: ``[0, c1, ..., n]``."""
    if split_counts:
        cuts, acc = [], 0
        for c in split_counts:
            if int(c) <= 0:
                raise ConfigError(f"split_counts={split_counts}: counts must be > 0.")
            acc += int(c)
            cuts.append(min(acc, n))
    else:
        ratios = list(split_ratios if split_ratios is not None else [1 / 3, 2 / 3])
        if any(not 0 < r < 1 for r in ratios) or ratios != sorted(ratios):
            raise ConfigError(f"split_ratios={ratios}: give increasing quantiles in (0, 1), "
                              f"e.g. [0.333, 0.667].")
        cuts = [int(round(r * n)) for r in ratios]
    return [0, *cuts, n]


def downsample_indices(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` of ``range(n)`` chosen at random (seeded), in their original order."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


# ============================================================================ construction
class PoolConstruction(Step):
    """Split an analysed dataset into pools by each stat (Data-Juicer's data_pool_construction).

    * ``split_ratios``: increasing quantiles in (0, 1) where the sorted samples are cut
      (default ``[1/3, 2/3]``: three pools named ``<stat>.low``, ``.middle``, ``.high``; other
      splits are named ``<stat>.q0``, ``.q1``, ...).
    * ``split_counts``: fixed pool sizes in sorted order instead (the rest forms the last pool).
    * ``stats``: the stat columns to use (default: every numeric column; a list-valued stat
      counts by its mean; non-numeric columns are skipped).
    * ``random_pool``: add a seeded random control pool (always on by default), of the size of
      the smallest stat pool.
    * ``equal_size``: downsample every pool (seeded) to the smallest one, so that pools compare
      at equal size as well as equal compute.
    Ties are broken by row order (a stable sort), so the split is deterministic.
    """

    outputs = ("pools", "table", "num_pools", "size")

    def __init__(self, split_ratios: list[float] | None = None,
                 split_counts: list[int] | None = None, stats: list[str] | None = None,
                 random_pool: bool = True, equal_size: bool = True, seed: int = 42,
                 min_size: int = 1):
        if split_ratios is not None and split_counts is not None:
            raise ValueError("give split_ratios or split_counts, not both")
        self.split_ratios, self.split_counts = split_ratios, split_counts
        self.stats = list(stats) if stats else None
        self.random_pool, self.equal_size = bool(random_pool), bool(equal_size)
        self.seed, self.min_size = int(seed), int(min_size)

    def run(self, env: StepEnv, dataset: str, stats: str) -> dict[str, Any]:
        data = _with_rows(_read(dataset))
        st = _read(stats)
        n = data.num_rows
        if st.num_rows != n:
            raise DataError(f"pool: {stats} has {st.num_rows} rows but {dataset} has {n}: the stats "
                            f"must come from probing this very dataset.")
        columns = self.stats or [c for c in st.column_names if not c.startswith("__")]
        missing = [c for c in columns if c not in st.column_names]
        if missing:
            raise ConfigError(f"pool.stats names {missing}, not in {stats} (it has "
                              f"{', '.join(st.column_names)}).")
        pools: list[dict] = []
        skipped = []
        for col in columns:
            values = float_column(st.column(col).to_pylist(), list_mean=True)
            if values is None:
                skipped.append(col)
                continue
            order = np.argsort(np.where(np.isnan(values), np.inf, values), kind="stable")
            cuts = split_positions(n, self.split_ratios, self.split_counts)
            names = BIN_NAMES.get(len(cuts) - 1) or [f"q{i}" for i in range(len(cuts) - 1)]
            for b, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
                idx = np.sort(order[lo:hi])
                if len(idx) < self.min_size:
                    continue
                vals = values[order[lo:hi]]
                vals = vals[~np.isnan(vals)]
                bounds = [float(vals.min()), float(vals.max())] if vals.size else [None, None]
                op, _, stat = col.rpartition(".")
                pools.append({"name": f"{col}.{names[b]}", "kind": "stat", "op": op or col,
                              "stat": stat, "bin": names[b], "bounds": {col: bounds},
                              "_idx": idx})
        if not pools:
            raise DataError(f"pool: no numeric stat in {stats} to split by (skipped: "
                            f"{', '.join(skipped) or 'none'}).")
        smallest = min(len(p["_idx"]) for p in pools)
        if self.random_pool:
            pools.append({"name": "random", "kind": "random", "bounds": {},
                          "_idx": downsample_indices(n, smallest, self.seed)})
        if self.equal_size:
            for i, p in enumerate(pools):
                sub = downsample_indices(len(p["_idx"]), smallest, self.seed + i)
                p["_idx"] = p["_idx"][sub]
        out, rows = [], []
        for p in pools:
            idx = p.pop("_idx")
            p["dataset"] = _write(data.take(idx), env.workdir / "pools", p["name"])
            p["size"] = int(len(idx))
            out.append(p)
            rows.append({"name": p["name"], "size": p["size"], "kind": p["kind"],
                         "bounds": json.dumps(p["bounds"])})
        table = _write_csv(env.workdir / "pools.csv", rows)
        return {"pools": out, "table": table, "num_pools": len(out), "size": smallest}


# ============================================================================ manipulators
class PoolDownsampling(Step):
    """Each pool reduced to ``target_size`` samples chosen at random (seeded; kept in order).
    ``target_size`` None: the smallest pool's size. Smaller pools are left as they are."""

    outputs = ("pools",)

    def __init__(self, target_size: int | None = None, seed: int = 42):
        self.target_size, self.seed = target_size, int(seed)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        pools = _as_pools(pools, "downsample")
        k = int(self.target_size) if self.target_size else min(int(p["size"]) for p in pools)
        out = []
        for i, p in enumerate(pools):
            t = _read(p["dataset"])
            idx = downsample_indices(t.num_rows, k, self.seed + i)
            out.append(dict(p, dataset=_write(t.take(idx), env.workdir / "pools", p["name"]),
                            size=int(len(idx))))
        return {"pools": out}


class PoolDuplication(Step):
    """Each pool repeated ``times`` times (``name`` gets ``x<times>``); ``shuffle`` permutes the
    repeated rows with ``seed``."""

    outputs = ("pools",)

    def __init__(self, times: int = 2, shuffle: bool = False, seed: int = 42):
        if int(times) < 1:
            raise ValueError("duplication: times must be >= 1")
        self.times, self.shuffle, self.seed = int(times), bool(shuffle), int(seed)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        out = []
        for p in _as_pools(pools, "duplicate"):
            t = pa.concat_tables([_read(p["dataset"])] * self.times)
            if self.shuffle:
                t = t.take(np.random.default_rng(self.seed).permutation(t.num_rows))
            name = f"{p['name']}.x{self.times}"
            out.append(dict(p, name=name, dataset=_write(t, env.workdir / "pools", name),
                            size=t.num_rows, kind="duplicated", source=p["name"]))
        return {"pools": out}


class PoolCombination(Step):
    """Intersections of every subset of the top pools (Data-Juicer's data_pool_combination):
    with top pools A, B, C: A∩B, A∩C, B∩C, A∩B∩C. ``top_k`` pools from the ranked list (the
    random control and pools whose intersection is below ``min_size`` are left out);
    ``max_order`` caps the subset size. ``include_singles`` keeps the top pools themselves."""

    outputs = ("pools", "num_pools")

    def __init__(self, top_k: int = 3, max_order: int | None = None, min_size: int = 1,
                 include_singles: bool = False, exclude: list[str] | None = None,
                 keep: list[str] | None = None):
        self.top_k, self.max_order, self.min_size = int(top_k), max_order, int(min_size)
        self.include_singles = bool(include_singles)
        self.exclude = set(exclude if exclude is not None else ["random"])
        self.keep = list(keep or [])  # pools passed through as they are (e.g. the control)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        pools = _as_pools(pools, "combine")
        ranked = [p for p in pools if p["name"] not in self.exclude and p["name"] not in self.keep]
        top = ranked[:self.top_k]
        members = {p["name"]: _rows(p) for p in top}
        out = [dict(p) for p in top] if self.include_singles else []
        hi = min(len(top), int(self.max_order or len(top)))
        for r in range(2, hi + 1):
            for combo in itertools.combinations(top, r):
                common = members[combo[0]["name"]]
                for p in combo[1:]:
                    common = np.intersect1d(common, members[p["name"]])
                if len(common) < self.min_size:
                    continue
                t = _read(combo[0]["dataset"])
                rows = to_numpy(t.column(ROW))
                t = t.take(np.nonzero(np.isin(rows, common))[0])
                name = "+".join(p["name"] for p in combo)
                bounds = {}
                for p in combo:
                    bounds.update(p.get("bounds") or {})
                out.append({"name": name, "kind": "combined", "parts": [p["name"] for p in combo],
                            "bounds": bounds, "size": t.num_rows,
                            "dataset": _write(t, env.workdir / "pools", name)})
        out += [dict(p) for p in pools if p["name"] in self.keep]
        return {"pools": out, "num_pools": len(out)}


class PoolSelection(Step):
    """The first ``top_k`` pools of a (ranked) list, plus the pools named in ``keep`` (the random
    control by default) wherever they rank: e.g. the winner and its control, to scale up."""

    outputs = ("pools",)

    def __init__(self, top_k: int = 1, keep: list[str] | None = None,
                 exclude: list[str] | None = None):
        self.top_k = int(top_k)
        self.keep = list(keep if keep is not None else ["random"])
        self.exclude = set(exclude if exclude is not None else ["random"])

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        pools = _as_pools(pools, "select")
        out = [p for p in pools if p["name"] not in self.exclude][:self.top_k]
        out += [p for p in pools if p["name"] in self.keep and p not in out]
        return {"pools": out}


class PoolMerging(Step):
    """The union of the pools as one pool (rows sharing ``__row__`` kept once when ``dedup``)."""

    outputs = ("pools", "pool")

    def __init__(self, name: str = "merged", dedup: bool = True):
        self.name, self.dedup = name, bool(dedup)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        tables = [_read(p["dataset"]) for p in _as_pools(pools, "merge")]
        t = pa.concat_tables(tables, promote_options="default")
        if self.dedup and ROW in t.column_names:
            _, first = np.unique(to_numpy(t.column(ROW)), return_index=True)
            t = t.take(np.sort(first))
        pool = {"name": self.name, "kind": "merged", "size": t.num_rows,
                "parts": [p["name"] for p in pools],
                "dataset": _write(t, env.workdir / "pools", self.name)}
        return {"pools": [pool], "pool": pool}


class PoolCartesianJoin(Step):
    """Row-wise cross product of two pool sets: for every pair (a, b) of ``left`` x ``right``
    pools, a pool whose rows are every (row of a, row of b), b's columns suffixed ``_right``
    (e.g. captions x images). ``max_rows`` guards against a product that would not fit."""

    outputs = ("pools",)

    def __init__(self, suffix: str = "_right", max_rows: int = 1_000_000):
        self.suffix, self.max_rows = suffix, int(max_rows)

    def run(self, env: StepEnv, left: list, right: list) -> dict[str, Any]:
        out = []
        for a in _as_pools(left, "cartesian join (left)"):
            for b in _as_pools(right, "cartesian join (right)"):
                ta, tb = _read(a["dataset"]), _read(b["dataset"])
                if ta.num_rows * tb.num_rows > self.max_rows:
                    raise DataError(f"cartesian join {a['name']} x {b['name']}: "
                                    f"{ta.num_rows * tb.num_rows} rows > max_rows={self.max_rows}.")
                ia = np.repeat(np.arange(ta.num_rows), tb.num_rows)
                ib = np.tile(np.arange(tb.num_rows), ta.num_rows)
                cols = {c: ta.column(c).take(ia) for c in ta.column_names}
                for c in tb.column_names:
                    cols[c + self.suffix if c in cols else c] = tb.column(c).take(ib)
                name = f"{a['name']}*{b['name']}"
                t = pa.table(cols)
                out.append({"name": name, "kind": "joined", "parts": [a["name"], b["name"]],
                            "size": t.num_rows, "dataset": _write(t, env.workdir / "pools", name)})
        return {"pools": out}


# ============================================================================ ranking
class PoolRanking(Step):
    """Order evaluated pools by metric keys (Data-Juicer's pool ranking, plus statistics).

    Input ``results``: a list of dicts with ``name`` and ``metrics`` (what a ``for_each``
    evaluation step returns as ``results``); several entries with the same name (seeds) are
    aggregated to mean ± std. ``keys``: metric names, the first decides, the next break ties;
    ``descending``: one flag per key (or one for all), False = lower is better (perplexity).
    Every pool is compared with ``control`` (the random pool) on the first key by
    ``sandbox.verdict.compare`` (paired t over the seeds both ran, else Welch; needs >= 2 seeds):
    the difference with its 95% interval, p-value and verdict (``significant`` when p <
    ``alpha``). Writes ``ranking.csv``,
    ``ranking.md``, ``ranking.png``; outputs the ranked ``pools`` (the input pools in rank
    order, for a combination step), the ``best`` pool and the table rows.
    """

    outputs = ("ranking", "pools", "best", "table", "plot", "metrics")

    def __init__(self, keys: list[str] | str = "perplexity", descending: list[bool] | bool = False,
                 control: str = "random", alpha: float = 0.05, plot: bool = True,
                 metric_prefix: str = ""):
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise ValueError("ranking: give at least one metric key")
        desc = descending if isinstance(descending, list) else [descending] * len(self.keys)
        if len(desc) != len(self.keys):
            raise ValueError(f"ranking: {len(self.keys)} keys but {len(desc)} descending flags")
        self.descending = [bool(d) for d in desc]
        self.control, self.alpha, self.plot = control, float(alpha), bool(plot)
        self.metric_prefix = metric_prefix

    def run(self, env: StepEnv, results: list, pools: list | None = None) -> dict[str, Any]:
        """``pools``: the pools the results came from, when the steps between them replaced a
        pool's ``dataset`` with another file (a conversion for an outside trainer)."""
        groups: dict[str, list[dict]] = {}
        for r in results:
            if not isinstance(r, dict) or "name" not in r:
                raise ConfigError("ranking: each result needs a `name` (wire `results` to a "
                                  "for_each step over pools).")
            groups.setdefault(r["name"], []).append(r)
        rows = []
        for name, rs in groups.items():
            row: dict[str, Any] = {"pool": name, "size": rs[0].get("size"), "n_seeds": len(rs)}
            for k in self.keys:
                vals = {r.get("seed", i): float((r.get("metrics") or {}).get(k, math.nan))
                        for i, r in enumerate(rs)}
                vals = {s: v for s, v in vals.items() if not math.isnan(v)}
                if not vals:
                    raise ConfigError(f"ranking: no result for pool {name!r} has metric {k!r} "
                                      f"(it has: {', '.join((rs[0].get('metrics') or {}))}).")
                est = over_seeds(vals)
                row[k] = est.mean
                row[f"{k}_std"] = est.std if est.n > 1 else 0.0
                row[f"{k}_ci_low"], row[f"{k}_ci_high"] = est.low, est.high
                row[f"_{k}_estimate"] = est
            rows.append(row)

        def sort_key(row):
            return tuple(-row[k] if d else row[k] for k, d in zip(self.keys, self.descending))

        rows.sort(key=sort_key)
        k0 = self.keys[0]
        ctrl = next((r for r in rows if r["pool"] == self.control), None)
        for i, row in enumerate(rows, 1):
            row["rank"] = i
            if ctrl is not None and row is not ctrl:
                c = compare(row[f"_{k0}_estimate"], ctrl[f"_{k0}_estimate"],
                            higher_is_better=self.descending[0], alpha=self.alpha)
                better = (row[k0] > ctrl[k0]) if self.descending[0] else (row[k0] < ctrl[k0])
                row.update(vs_control=c.diff, vs_control_ci_low=c.low, vs_control_ci_high=c.high,
                           p_value=c.p, test=c.test, verdict=c.verdict,
                           significant=c.verdict in ("better", "worse"), beats_control=better)
            else:
                row.update(vs_control=0.0 if row is ctrl else math.nan, p_value=math.nan,
                           test="", verdict="control" if row is ctrl else "not tested",
                           significant=False, beats_control=False)
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        table = _write_csv(env.workdir / "ranking.csv", public)
        (env.workdir / "ranking.md").write_text(ranking_markdown(public, self.keys),
                                                encoding="utf-8")
        plot = self._plot(rows, env.workdir / "ranking.png") if self.plot else None
        # the input pools (one per name, pool fields only) in rank order
        by_name = {}
        for r in (pools or []) + list(results):
            by_name.setdefault(r["name"], {k: v for k, v in r.items()
                                          if k in ("name", "dataset", "size", "kind", "bounds",
                                                   "parts", "op", "stat", "bin", "source")})
        ranked = [by_name[r["pool"]] for r in rows]
        best = next((p for p in ranked if p["name"] != self.control), ranked[0])
        pre = self.metric_prefix
        metrics = {f"{pre}best/{k0}": next(r[k0] for r in rows if r["pool"] == best["name"]),
                   f"{pre}pools": float(len(rows))}
        if ctrl is not None:
            metrics[f"{pre}control/{k0}"] = ctrl[k0]
            brow = next(r for r in rows if r["pool"] == best["name"])
            metrics[f"{pre}best_beats_control"] = float(bool(brow.get("beats_control")))
            metrics[f"{pre}best_significant"] = float(bool(brow.get("significant")))
        return {"ranking": public, "pools": ranked, "best": best, "table": table,
                "plot": str(plot) if plot else None, "metrics": metrics}

    def _plot(self, rows: list[dict], path: Path) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        k = self.keys[0]
        names = [r["pool"] for r in rows]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
        colors = ["tab:gray" if n == self.control else
                  ("tab:green" if r.get("significant") and r.get("beats_control") else "tab:blue")
                  for n, r in zip(names, rows)]
        ax.barh(range(len(rows)), [r[k] for r in rows], xerr=[r[f"{k}_std"] for r in rows],
                color=colors)
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.invert_yaxis()
        ctrl = next((r for r in rows if r["pool"] == self.control), None)
        if ctrl is not None:
            ax.axvline(ctrl[k], color="tab:gray", ls="--", lw=1)
        ax.set_xlabel(f"{k} (mean ± std over seeds; green: significantly better than {self.control})")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


class DecisionAccuracy(Step):
    """Do the small setting's decisions hold at the scaled one? For every pair of pools ranked
    at both (a scaled pool ``NAME.xN`` is matched to ``NAME``), whether both order the pair the
    same way on ``key``: the share of pairs that agree is DataDecide's *decision accuracy*
    (arXiv 2504.11393), reported with a 95% Wilson interval. Inputs: the ``ranking`` rows of the
    two ranking steps."""

    outputs = ("metrics", "pairs")

    def __init__(self, key: str = "perplexity", metric_prefix: str = ""):
        self.key, self.metric_prefix = key, metric_prefix

    def run(self, env: StepEnv, small: list, large: list) -> dict[str, Any]:
        def values(rows, what):
            out = {}
            for r in rows or []:
                if not isinstance(r, dict) or "pool" not in r or self.key not in r:
                    raise ConfigError(f"decision accuracy: `{what}` must be a ranking step's "
                                      f"`ranking` rows with `pool` and `{self.key}`.")
                out[re.sub(r"\.x\d+$", "", str(r["pool"]))] = float(r[self.key])
            return out

        small_v, large_v = values(small, "small"), values(large, "large")
        metrics = decision_accuracy(small_v, large_v)
        shared = sorted(set(small_v) & set(large_v))
        pairs = [{"a": a, "b": b, "small": small_v[a] - small_v[b],
                  "large": large_v[a] - large_v[b],
                  "agree": (small_v[a] - small_v[b]) * (large_v[a] - large_v[b]) > 0}
                 for i, a in enumerate(shared) for b in shared[i + 1:]]
        _write_csv(env.workdir / "pairs.csv", pairs)
        return {"metrics": {self.metric_prefix + k: v for k, v in metrics.items()},
                "pairs": pairs}


def ranking_markdown(rows: list[dict], keys: list[str]) -> str:
    head = ["rank", "pool", "size", *(f"{k} (mean ± std)" for k in keys), "n_seeds",
            "vs_control [95% CI]", "p_value", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["rank"]), r["pool"], str(r.get("size"))]
        cells += [f"{r[k]:.4g} ± {r[f'{k}_std']:.2g}" for k in keys]
        vs = _fmt(r.get("vs_control"))
        if r.get("test"):
            vs += f" [{_fmt(r.get('vs_control_ci_low'))}, {_fmt(r.get('vs_control_ci_high'))}]"
        cells += [str(r["n_seeds"]), vs, _fmt(r.get("p_value")), r.get("verdict", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def _write_csv(path: Path, rows: list[dict]) -> str:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                        for k, v in r.items()})
    return str(path)


# ============================================================================ recipe export
class RecipeExport(Step):
    """The best pool as a Data-Juicer recipe: the recipe's mappers (and deduplicators), then,
    for every stat bound of the pool, its filter with ``min_*``/``max_*`` set to the pool's
    bounds (an open end for the lowest/highest bin). Writes ``recipe.yaml`` (``process: [...]``,
    runnable with ``recipe=dj recipe.path=...``)."""

    outputs = ("recipe", "recipe_path")

    def __init__(self, text_key: str = "text", keep_unbounded: bool = False):
        self.text_key, self.keep_unbounded = text_key, bool(keep_unbounded)

    def run(self, env: StepEnv, pool: dict, recipe: Recipe) -> dict[str, Any]:
        bounds = pool.get("bounds") or {}
        bins = {}
        for part in pool.get("parts") or [pool["name"]]:
            col, _, b = part.rpartition(".")
            bins[col] = b
        ops = []
        for spec in recipe.ops:
            cls = get_op_class(spec.name)
            ths = getattr(cls, "thresholds", {}) or {}
            if not ths:
                ops.append(spec)
                continue
            mine = {c: v for c, v in bounds.items() if c.rpartition(".")[0] == spec.key}
            if not mine:
                if self.keep_unbounded:
                    ops.append(spec)
                continue
            args = dict(spec.args)
            hints = typing.get_type_hints(get_op_class(spec.name).__init__)
            for col, (lo, hi) in mine.items():
                stat = col.rpartition(".")[2]
                b = bins.get(col, "")
                for arg, th in ths.items():
                    if th.stat != stat:
                        continue
                    integer = hints.get(arg) is int  # integer stats: exact integer bounds
                    if th.bound == "min":
                        if b in ("low", "q0") or lo is None:
                            args.pop(arg, None)
                        else:
                            args[arg] = math.ceil(lo) if integer else lo
                    elif th.bound == "max":
                        if b == "high" or hi is None:
                            args.pop(arg, None)
                        else:
                            args[arg] = math.floor(hi) if integer else hi
            ops.append(OpSpec(key=spec.key, name=spec.name, args=args))
        out = Recipe(ops=ops, text_key=self.text_key)
        path = env.workdir / "recipe.yaml"
        header = f"# Data-Juicer recipe of pool {pool['name']} (bottom-up workflow)\n"
        path.write_text(header + out.to_dj_yaml(), encoding="utf-8")
        validate(out)  # what we export must load back with recipe=dj
        return {"recipe": out, "recipe_path": str(path)}


# ============================================================================ conversion
class ToJsonl(Step):
    """Each pool as a jsonl file (Data-Juicer's and most trainers' input format);
    ``drop_row`` leaves the ``__row__`` bookkeeping column out."""

    outputs = ("pools",)

    def __init__(self, drop_row: bool = True):
        self.drop_row = bool(drop_row)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        out = []
        folder = env.workdir / "jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        for p in _as_pools(pools, "to_jsonl"):
            rows = _read(p["dataset"]).to_pylist()
            path = folder / f"{safe_name(p['name'])}.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                for r in rows:
                    if self.drop_row:
                        r.pop(ROW, None)
                    f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            out.append(dict(p, dataset=str(path)))
        return {"pools": out}


class FromJsonl(Step):
    """jsonl pools back to Parquet (what the sandbox's steps read)."""

    outputs = ("pools",)

    def __init__(self, text_key: str = "text"):
        self.text_key = text_key

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        out = []
        for p in _as_pools(pools, "from_jsonl"):
            t = read_table(p["dataset"], text_key=self.text_key)
            out.append(dict(p, dataset=_write(t, env.workdir / "pools", p["name"]),
                            size=t.num_rows))
        return {"pools": out}


class ToCocoCaption(Step):
    """Image-text pools in COCO-caption style (``{"images": [...], "annotations": [...]}``, one
    JSON file per pool): every image path of a sample (``image_key``, a list as in Data-Juicer)
    becomes an image entry and the sample's text its caption (``special_tokens`` removed)."""

    outputs = ("files",)

    def __init__(self, text_key: str = "text", image_key: str = "images",
                 special_tokens: list[str] | None = None):
        self.text_key, self.image_key = text_key, image_key
        self.special_tokens = list(special_tokens or ["<__dj__image>", "<|__dj__eoc|>"])

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        files = []
        for p in _as_pools(pools, "to_coco_caption"):
            images, anns = [], []
            for r in _read(p["dataset"]).to_pylist():
                text = str(r.get(self.text_key) or "")
                for tok in self.special_tokens:
                    text = text.replace(tok, "")
                paths = r.get(self.image_key) or []
                for path in [paths] if isinstance(paths, str) else paths:
                    images.append({"id": len(images), "file_name": path})
                    anns.append({"id": len(anns), "image_id": images[-1]["id"],
                                 "caption": " ".join(text.split())})
            f = env.workdir / f"{safe_name(p['name'])}.coco.json"
            f.write_text(json.dumps({"images": images, "annotations": anns}), encoding="utf-8")
            files.append(str(f))
        return {"files": files}
