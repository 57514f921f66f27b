"""Building pools: quantile splits of an analysed dataset (``PoolConstruction``) and the
manipulators over lists of pools (downsampling, duplication, combination, selection, merging,
cartesian join). The pool format is described in ``sandbox.steps.pools``."""
from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.engine import to_numpy
from sandbox.errors import ConfigError, DataError
from sandbox.numeric import float_column
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import (ROW, as_pools, read_pool, pool_rows, with_rows, write_pool,
                                        write_csv)
from sandbox.steps.pools.surrogate import objective_by_pool, rank_candidates
from sandbox.utils import stable_hash

BIN_NAMES = {2: ["low", "high"], 3: ["low", "middle", "high"]}
METHODS = ("exhaustive", "surrogate", "sequential")  # PoolCombination's (bottom_up.combine)


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


def pool_seed(seed: int, name: str) -> int:
    """The subsample seed of the pool called ``name``: from its name, not its place in the list,
    so that one pool is cut the same way whatever other pools a run holds beside it."""
    return int(stable_hash([int(seed), str(name)], 12), 16)


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
    * ``equal_size``: downsample every pool (seeded by ``seed`` and the pool's name) to the
      smallest one, so that pools compare at equal size as well as equal compute.
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
        data = with_rows(read_pool(dataset))
        st = read_pool(stats)
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
            for p in pools:
                sub = downsample_indices(len(p["_idx"]), smallest, pool_seed(self.seed, p["name"]))
                p["_idx"] = p["_idx"][sub]
        out, rows = [], []
        for p in pools:
            idx = p.pop("_idx")
            p["dataset"] = write_pool(data.take(idx), env.workdir / "pools", p["name"])
            p["size"] = int(len(idx))
            out.append(p)
            rows.append({"name": p["name"], "size": p["size"], "kind": p["kind"],
                         "bounds": json.dumps(p["bounds"])})
        table = write_csv(env.workdir / "pools.csv", rows)
        return {"pools": out, "table": table, "num_pools": len(out), "size": smallest}


# ============================================================================ manipulators
class PoolDownsampling(Step):
    """Each pool reduced to ``target_size`` samples chosen at random (seeded by ``seed`` and the
    pool's name, so a pool's subsample does not depend on the list it is in; kept in order).
    Without ``target_size``: the input ``size`` when given (``PoolCombination``'s), else the
    smallest pool's size. Smaller pools are left as they are."""

    outputs = ("pools",)

    def __init__(self, target_size: int | None = None, seed: int = 42):
        self.target_size, self.seed = target_size, int(seed)

    def run(self, env: StepEnv, pools: list, size: int | None = None) -> dict[str, Any]:
        pools = as_pools(pools, "downsample")
        k = int(self.target_size or size or min(int(p["size"]) for p in pools))
        out = []
        for p in pools:
            t = read_pool(p["dataset"])
            idx = downsample_indices(t.num_rows, k, pool_seed(self.seed, p["name"]))
            out.append(dict(p, dataset=write_pool(t.take(idx), env.workdir / "pools", p["name"]),
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
        for p in as_pools(pools, "duplicate"):
            t = pa.concat_tables([read_pool(p["dataset"])] * self.times)
            if self.shuffle:
                t = t.take(np.random.default_rng(self.seed).permutation(t.num_rows))
            name = f"{p['name']}.x{self.times}"
            out.append(dict(p, name=name, dataset=write_pool(t, env.workdir / "pools", name),
                            size=t.num_rows, kind="duplicated", source=p["name"]))
        return {"pools": out}


class PoolCombination(Step):
    """Intersections of every subset of the top pools (Data-Juicer's data_pool_combination):
    with top pools A, B, C: A∩B, A∩C, B∩C, A∩B∩C. ``top_k`` pools from the ranked list (the
    random control and pools whose intersection is below ``min_size`` are left out);
    ``max_order`` caps the subset size. ``include_singles`` keeps the top pools themselves.

    ``method``: ``exhaustive`` (the above) or ``surrogate`` (``sandbox.steps.pools.surrogate``):
    the candidates are the intersections of the top ``candidate_k`` pools (more than
    ``top_k``), a regression (``model``: ``additive`` | ``linear`` | ``gbm``) fitted on the
    trained pools' ``key`` values (inputs ``ranking``: their ``PoolRanking`` rows, ``stats``:
    the stats table they were cut from) scores every candidate, and only its ``train_top`` best
    are kept (``candidates.csv`` lists each candidate's features and prediction). ``sequential``
    (``PoolSequentialSearch``): only the top ``candidate_k`` single pools (and ``keep``) are
    passed on to be trained, and every intersection of them is written out as output
    ``candidates``, for the search step that trains them one at a time, the predicted best
    first; ``top_k`` and ``include_singles`` do not apply (the single pools are what the
    model is fitted on).

    Output ``size``: the size the pools are equalised to (``PoolDownsampling``'s input ``size``):
    the smallest pool exhaustive search over the same candidates would train, so that the
    surrogate's pools are measured at the size, and on the subsamples, that exhaustive search
    would measure them (the smallest of a few picked intersections is larger, and at a few
    hundred documents the size changes which pool wins)."""

    outputs = ("pools", "num_pools", "metrics", "size", "candidates")

    def __init__(self, top_k: int = 3, max_order: int | None = None, min_size: int = 1,
                 include_singles: bool = False, exclude: list[str] | None = None,
                 keep: list[str] | None = None, method: str = "exhaustive",
                 candidate_k: int | None = 6, train_top: int = 3, model: str = "additive",
                 key: str = "bits_per_byte", descending: bool = False, seed: int = 0):
        self.top_k, self.max_order, self.min_size = int(top_k), max_order, int(min_size)
        self.include_singles = bool(include_singles)
        self.exclude = set(exclude if exclude is not None else ["random"])
        self.keep = list(keep or [])  # pools passed through as they are (e.g. the control)
        if method not in METHODS:
            raise ConfigError(f"combine method={method!r} (bottom_up.combine): give exhaustive "
                              f"(every intersection of the top_k pools), surrogate (a "
                              f"regression fitted on the single-OP pools picks the train_top of "
                              f"the candidate_k pools' intersections) or sequential (the "
                              f"candidate_k pools trained at the combination size, then the "
                              f"predicted best intersection, refitted after each).")
        if method != "exhaustive" and candidate_k is not None and int(candidate_k) < 2:
            raise ConfigError(f"combine candidate_k={candidate_k} "
                              f"(bottom_up.surrogate.candidate_k): give the number of top "
                              f"single-OP pools whose intersections are candidates, >= 2.")
        if method != "exhaustive" and int(train_top) < 1:
            raise ConfigError(f"combine train_top={train_top} (bottom_up.surrogate.train_top): "
                              f"give the number of combinations to train, >= 1.")
        self.method, self.candidate_k, self.train_top = method, candidate_k, int(train_top)
        self.model, self.key, self.descending = model, key, bool(descending)
        self.seed = int(seed)

    def run(self, env: StepEnv, pools: list, ranking: list | None = None,
            stats: str | None = None) -> dict[str, Any]:
        pools = as_pools(pools, "combine")
        ranked = [p for p in pools if p["name"] not in self.exclude and p["name"] not in self.keep]
        top = ranked[:self.top_k]
        out = [dict(p) for p in top] if self.include_singles else []
        metrics: dict[str, float] = {}
        if self.method == "sequential":
            return self._sequential(env, pools, ranked)
        if self.method == "exhaustive":
            combos = self._intersections(top)
            sizes = [len(c[2]) for c in combos]
        else:
            if ranking is None or stats is None:
                raise ConfigError("combine method=surrogate needs the inputs `ranking` (the "
                                  "single-OP PoolRanking rows) and `stats` (the probe's stats "
                                  "table), as conf/pipeline/bottom_up.yaml wires them.")
            pool_of = {c[0]: c for c in self._intersections(
                ranked[:self.candidate_k or len(ranked)])}
            candidates = [{"name": name, "bounds": bounds, "parts": [p["name"] for p in combo]}
                          for name, combo, _, bounds in pool_of.values()]
            scored, names, X = rank_candidates(pools, objective_by_pool(ranking, self.key),
                                               candidates, stats, self.model, self.descending,
                                               self.seed)
            rows = [{"candidate": c["name"], "predicted": v, "trained": i < self.train_top,
                     **dict(zip(names, map(float, x)))}
                    for i, ((c, v), x) in enumerate(zip(scored, X))]
            write_csv(env.workdir / "candidates.csv", rows or [{"candidate": None}])
            combos = [pool_of[c["name"]] for c, _ in scored[:self.train_top]]
            sizes = [len(c[2]) for c in pool_of.values()]
            metrics = {"surrogate/candidates": float(len(scored)),
                       "surrogate/trained_combinations": float(len(combos))}
        for name, combo, common, bounds in combos:
            out.append(self._write(env, combo, common, bounds, name))
        out += [dict(p) for p in pools if p["name"] in self.keep]
        size = min([int(p["size"]) for p in out if p.get("size")] + sizes, default=None)
        return {"pools": out, "num_pools": len(out), "metrics": metrics, "size": size,
                "candidates": []}

    def _sequential(self, env: StepEnv, pools: list[dict], ranked: list[dict]) -> dict[str, Any]:
        """The top ``candidate_k`` single pools and ``keep`` to train now; every intersection
        of those singles written out as a candidate for ``PoolSequentialSearch``."""
        top = ranked[:self.candidate_k or len(ranked)]
        out = [dict(p) for p in top] + [dict(p) for p in pools if p["name"] in self.keep]
        candidates = [self._write(env, combo, common, bounds, name, "candidates")
                      for name, combo, common, bounds in self._intersections(top)]
        size = min([int(p["size"]) for p in out + candidates if p.get("size")], default=None)
        return {"pools": out, "num_pools": len(out), "size": size, "candidates": candidates,
                "metrics": {"surrogate/candidates": float(len(candidates))}}

    @staticmethod
    def _write(env: StepEnv, combo: tuple, common: np.ndarray, bounds: dict, name: str,
               folder: str = "pools") -> dict:
        """The intersection ``common`` of the pools ``combo`` as a pool of its own."""
        t = read_pool(combo[0]["dataset"])
        rows_col = to_numpy(t.column(ROW))
        t = t.take(np.nonzero(np.isin(rows_col, common))[0])
        return {"name": name, "kind": "combined", "parts": [p["name"] for p in combo],
                "bounds": bounds, "size": t.num_rows,
                "dataset": write_pool(t, env.workdir / folder, name)}

    def _intersections(self, top: list[dict]) -> list[tuple[str, tuple, np.ndarray, dict]]:
        """Every subset (size 2 to ``max_order``) of ``top`` whose rows in common number at
        least ``min_size``: (name, its pools, the common rows, the merged bounds)."""
        members = {p["name"]: pool_rows(p) for p in top}
        hi = min(len(top), int(self.max_order or len(top)))
        out = []
        for r in range(2, hi + 1):
            for combo in itertools.combinations(top, r):
                common = members[combo[0]["name"]]
                for p in combo[1:]:
                    common = np.intersect1d(common, members[p["name"]])
                if len(common) < self.min_size:
                    continue
                bounds = {}
                for p in combo:
                    bounds.update(p.get("bounds") or {})
                out.append(("+".join(p["name"] for p in combo), combo, common, bounds))
        return out


class PoolSelection(Step):
    """The first ``top_k`` pools of a (ranked) list, plus the pools named in ``keep`` (the random
    control by default) wherever they rank: e.g. the winner and its control, to scale up."""

    outputs = ("pools",)

    def __init__(self, top_k: int | None = 1, keep: list[str] | None = None,
                 exclude: list[str] | None = None):
        self.top_k = None if top_k is None else int(top_k)  # None: every pool
        self.keep = list(keep if keep is not None else ["random"])
        self.exclude = set(exclude if exclude is not None else ["random"])

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        pools = as_pools(pools, "select")
        out = [p for p in pools if p["name"] not in self.exclude][:self.top_k]
        out += [p for p in pools if p["name"] in self.keep and p not in out]
        return {"pools": out}


class PoolMerging(Step):
    """The union of the pools as one pool (rows sharing ``__row__`` kept once when ``dedup``)."""

    outputs = ("pools", "pool")

    def __init__(self, name: str = "merged", dedup: bool = True):
        self.name, self.dedup = name, bool(dedup)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        tables = [read_pool(p["dataset"]) for p in as_pools(pools, "merge")]
        t = pa.concat_tables(tables, promote_options="default")
        if self.dedup and ROW in t.column_names:
            _, first = np.unique(to_numpy(t.column(ROW)), return_index=True)
            t = t.take(np.sort(first))
        pool = {"name": self.name, "kind": "merged", "size": t.num_rows,
                "parts": [p["name"] for p in pools],
                "dataset": write_pool(t, env.workdir / "pools", self.name)}
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
        for a in as_pools(left, "cartesian join (left)"):
            for b in as_pools(right, "cartesian join (right)"):
                ta, tb = read_pool(a["dataset"]), read_pool(b["dataset"])
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
                            "size": t.num_rows, "dataset": write_pool(t, env.workdir / "pools", name)})
        return {"pools": out}
