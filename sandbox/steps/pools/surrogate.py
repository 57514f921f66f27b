"""A surrogate over pools (RegMix, arXiv 2407.01492): a regression from a pool's recipe features
to the objective its trained model reached, fitted on the pools already trained, used to pick
the few combinations worth training (``PoolCombination(method="surrogate")``) and checked on
pools it did not see (``SurrogateReport``).

A pool's *recipe features*, from the stats table the pools were cut from (``n`` samples), for
each stat column ``c`` of the run: ``c:lo`` and ``c:hi``, the quantiles of the dataset's values
of ``c`` at the pool's bounds (0 and 1 when the pool does not bound ``c``: the random control,
or a pool of another stat), so ``hi - lo`` is that OP's kept fraction; ``joint``: the share of the
dataset inside every bound of the pool; ``overlap``: ``joint`` over the smallest single kept
fraction (1 for a single-stat pool, below 1 when a combination's bounds cut each other).

The default model, ``additive``, has the structure of the problem rather than RegMix's: a pool's
features are which single-OP pools it is an intersection of (``in:<pool>``, 1 or 0, from its
``parts``: a single pool is a member of itself; the random control, of none), and the model is a linear regression on
them, so its intercept is the control's value and each coefficient one OP's effect relative to it:
predicted(intersection) = control + the sum of its members' effects. Fitted on the single-OP
pools alone it interpolates them exactly; every trained intersection refits the effects by least
squares. (A tiny ridge penalty keeps it defined without a control, or for a member that no
trained pool holds: that effect is 0.) The regressions over recipe features, RegMix's choice,
stay selectable: ``linear`` (ridge regression on standardised features) or ``gbm``
(scikit-learn's gradient boosting, for a run with many trained pools); fitted on single-OP pools
they extrapolate to intersections poorly, since no single pool has more than one stat bounded.
The candidates are every intersection of the top single pools: at most a few dozen, so each is
scored; a sampler (Optuna's) would only visit a subset of a list that is cheaper to score whole.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from sandbox.errors import ConfigError
from sandbox.numeric import float_column
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import read_pool, write_csv

MODELS = ("additive", "linear", "gbm")


def stat_columns(pools: list[dict]) -> list[str]:
    """The stat columns the pools are bounded on, in first-seen order."""
    out: list[str] = []
    for p in pools:
        for c in (p.get("bounds") or {}):
            if c not in out:
                out.append(c)
    return out


def read_stats(path: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Each column of the stats table as floats (a list-valued stat by its mean)."""
    table = read_pool(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ConfigError(f"surrogate: the stats table {path} has no column(s) {missing}; wire "
                          f"`stats` to the probe that the pools were cut from.")
    out = {}
    for c in columns:
        values = float_column(table.column(c).to_pylist(), list_mean=True)
        if values is None:
            raise ConfigError(f"surrogate: stat column {c} in {path} is not numeric.")
        out[c] = values
    return out


def feature_names(columns: list[str]) -> list[str]:
    return [f"{c}:{end}" for c in columns for end in ("lo", "hi")] + ["joint", "overlap"]


def pool_features(pool: dict, stats: dict[str, np.ndarray], columns: list[str]) -> list[float]:
    """The recipe features of ``pool`` (see the module docstring)."""
    bounds = pool.get("bounds") or {}
    row: list[float] = []
    n = len(next(iter(stats.values()))) if stats else 0
    joint = np.ones(n, dtype=bool)
    kept = []
    for c in columns:
        values = stats[c]
        finite = values[~np.isnan(values)]
        lo, hi = (bounds.get(c) or [None, None])
        if c not in bounds or lo is None or hi is None or finite.size == 0:
            row += [0.0, 1.0]
            continue
        row += [float(np.mean(finite < lo)), float(np.mean(finite <= hi))]
        inside = (values >= lo) & (values <= hi)
        joint &= inside
        kept.append(float(inside.mean()))
    share = float(joint.mean()) if n else 1.0
    overlap = share / min(kept) if kept and min(kept) > 0 else 1.0
    return row + [share, overlap]


def single_pools(pools: list[dict]) -> list[dict]:
    """The single-OP pools among ``pools`` (a pool with bounds and no ``parts``), once each by
    name: the members the ``additive`` model gives an effect each."""
    out, seen = [], set()
    for p in pools:
        if p.get("parts") or not p.get("bounds") or p["name"] in seen:
            continue
        seen.add(p["name"])
        out.append(p)
    return out


def membership(pool: dict, members: list[dict]) -> list[float]:
    """1.0 for each of ``members`` (single-OP pools) that ``pool`` is an intersection of (one of
    its ``parts``, or the pool itself), else 0.0. By name, not by bounds: two thirds of a stat
    with many ties (a repetition ratio of 0) can have the same bounds."""
    parts = set(pool.get("parts") or [pool["name"]])
    return [float(m["name"] in parts) for m in members]


def design(known: list[dict], others: list[dict], stats_path: str, kind: str
           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The feature names and the feature matrices of the ``known`` (trained) pools and of the
    ``others`` under model ``kind``: members for ``additive``, recipe features otherwise."""
    if kind == "additive":
        members = single_pools(known)
        X = np.array([membership(p, members) for p in known]).reshape(len(known), len(members))
        Xo = np.array([membership(p, members) for p in others]).reshape(len(others), len(members))
        return [f"in:{m['name']}" for m in members], X, Xo
    columns = stat_columns(known + others)
    stats = read_stats(stats_path, columns)
    X = np.array([pool_features(p, stats, columns) for p in known])
    Xo = np.array([pool_features(p, stats, columns) for p in others]) if others else \
        np.zeros((0, X.shape[1]))
    return feature_names(columns), X, Xo


def make_model(kind: str, seed: int = 0):
    """An unfitted scikit-learn regressor of ``kind`` (``MODELS``)."""
    if kind == "additive":
        from sklearn.linear_model import Ridge

        # 0/1 features in their own units: the coefficients are the effects themselves
        return Ridge(alpha=1e-6)
    if kind == "linear":
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    if kind == "gbm":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.1,
                                         subsample=1.0, random_state=seed)
    raise ConfigError(f"surrogate model {kind!r}: give one of {', '.join(MODELS)}.")


def fit(X: np.ndarray, y: np.ndarray, kind: str = "linear", seed: int = 0):
    return make_model(kind, seed).fit(np.asarray(X, float), np.asarray(y, float))


def spearman(a, b) -> float:
    """Spearman's rank correlation (NaN when either side is constant)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def leave_one_out(X: np.ndarray, y: np.ndarray, kind: str = "linear", seed: int = 0
                  ) -> np.ndarray:
    """Each point's prediction by the surrogate fitted on all the others."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        out[i] = fit(X[keep], y[keep], kind, seed).predict(X[i:i + 1])[0]
    return out


def objective_by_pool(ranking: list[dict], key: str) -> dict[str, float]:
    """``{pool name: mean of key}`` from a ``PoolRanking``'s rows."""
    out = {}
    for r in ranking:
        v = r.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[str(r["pool"])] = float(v)
    if not out:
        raise ConfigError(f"surrogate: the ranking has no values of {key!r}; set key to one "
                          f"of the ranking's keys (bottom_up.rank_keys).")
    return out


def rank_candidates(trained: list[dict], values: dict[str, float], candidates: list[dict],
                    stats_path: str, kind: str, descending: bool, seed: int = 0
                    ) -> tuple[list[tuple[dict, float]], list[str], np.ndarray]:
    """The candidates with the surrogate's predicted objective, best first; the fitted model is
    trained on the ``trained`` pools that have a value. Also the feature names and the
    candidates' feature matrix (for the table)."""
    known = [p for p in trained if p["name"] in values]
    if len(known) < 3:
        raise ConfigError(f"surrogate: {len(known)} trained pool(s) to fit on; it needs at "
                          f"least 3 (more single-OP pools: bottom_up.stats).")
    names, X, Xc = design(known, candidates, stats_path, kind)
    y = np.array([values[p["name"]] for p in known])
    model = fit(X, y, kind, seed)
    pred = model.predict(Xc) if len(candidates) else np.zeros(0)
    order = np.argsort(-pred if descending else pred, kind="stable")
    return [(candidates[i], float(pred[i])) for i in order], names, Xc[order]


class SurrogateReport(Step):
    """How well the surrogate predicts pools it did not see: leave-one-out over every trained
    pool (the single-OP pools and the combinations), fitted on the rest.

    Inputs: ``ranking`` and ``pools`` (the combination stage's ``PoolRanking`` rows and ranked
    pools), ``single_ranking`` and ``single_pools`` (the single-OP stage's) and ``stats`` (the
    probe's stats table). Fewer than 4 trained pools: no metrics. Metrics:
    ``surrogate/loo_spearman`` (rank correlation of the held-out predictions with the measured
    values), ``surrogate/loo_spearman_combined`` (the same over the intersections alone, when 3
    or more were trained), ``surrogate/top_pick_is_best`` (1 when the pool with the best
    held-out prediction is the measured best), ``surrogate/pools``. Writes
    ``loo.csv`` (each pool's measured and held-out predicted value)."""

    outputs = ("metrics", "table")

    def __init__(self, key: str = "bits_per_byte", descending: bool = False,
                 model: str = "additive", seed: int = 0):
        if model not in MODELS:
            raise ConfigError(f"surrogate model {model!r}: give one of {', '.join(MODELS)}.")
        self.key, self.descending, self.model, self.seed = key, bool(descending), model, int(seed)

    def run(self, env: StepEnv, ranking: list, single_ranking: list, pools: list,
            single_pools: list, stats: str) -> dict[str, Any]:
        values = objective_by_pool(single_ranking, self.key)
        values.update(objective_by_pool(ranking, self.key))  # the combination stage's own runs
        by_name: dict[str, dict] = {}
        for p in list(pools) + list(single_pools):
            by_name.setdefault(p["name"], p)
        known = [by_name[n] for n in values if n in by_name]
        if len(known) < 4:  # leave-one-out has nothing to say
            return {"metrics": {}, "table": None}
        _, X, _ = design(known, [], stats, self.model)
        y = np.array([values[p["name"]] for p in known])
        held_out = leave_one_out(X, y, self.model, self.seed)
        pick = int(np.argmax(held_out) if self.descending else np.argmin(held_out))
        best = float(np.max(y) if self.descending else np.min(y))
        rows = [{"pool": p["name"], self.key: float(v), "held_out_prediction": float(h)}
                for p, v, h in zip(known, y, held_out)]
        path = write_csv(env.workdir / "loo.csv", rows)
        rho = spearman(held_out, y)
        metrics = {"surrogate/pools": float(len(known)),
                   "surrogate/top_pick_is_best": float(y[pick] == best)}  # a tie counts
        if not math.isnan(rho):
            metrics["surrogate/loo_spearman"] = rho
        # the pools the surrogate is for: a held-out single pool tells the additive model
        # nothing (its effect has no other pool to come from), a held-out intersection does
        combined = np.array([len(p.get("bounds") or {}) > 1 for p in known])
        rho = spearman(held_out[combined], y[combined])
        if not math.isnan(rho):
            metrics["surrogate/loo_spearman_combined"] = rho
        return {"metrics": metrics, "table": path}
