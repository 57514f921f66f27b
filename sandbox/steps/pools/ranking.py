"""Ranking evaluated pools (``PoolRanking``) and checking a small-scale ranking against a
larger one (``DecisionAccuracy``)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import write_csv
from sandbox.verdict import compare, decided_pairs, decision_accuracy, over_seeds


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
                row[f"{k}_seeds"] = {int(s): v for s, v in vals.items()}
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
        table = write_csv(env.workdir / "ranking.csv", public)
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
    (arXiv 2504.11393), with a 95% interval over pools, and the pairs the larger setting itself
    decides over its seeds (``sandbox.verdict.decision_accuracy``). Inputs: the ``ranking`` rows
    of the two ranking steps."""

    outputs = ("metrics", "pairs")

    def __init__(self, key: str = "perplexity", metric_prefix: str = "", alpha: float = 0.05):
        self.key, self.metric_prefix, self.alpha = key, metric_prefix, float(alpha)

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
        # the pairs the larger setting itself tells apart over its seeds (DataDecide counts
        # pairs within its own noise apart); rankings from before per-seed values: none known
        seeds = {re.sub(r"\.x\d+$", "", str(r["pool"])): _seed_values(r.get(f"{self.key}_seeds"))
                 for r in large or []}
        decided = (decided_pairs(seeds, self.alpha)
                   if seeds and all(len(v) >= 2 for v in seeds.values()) else None)
        metrics = decision_accuracy(small_v, large_v, decided=decided)
        shared = sorted(set(small_v) & set(large_v))
        pairs = [{"a": a, "b": b, "small": small_v[a] - small_v[b],
                  "large": large_v[a] - large_v[b],
                  "agree": (small_v[a] - small_v[b]) * (large_v[a] - large_v[b]) > 0}
                 for i, a in enumerate(shared) for b in shared[i + 1:]]
        write_csv(env.workdir / "pairs.csv", pairs)
        return {"metrics": {self.metric_prefix + k: v for k, v in metrics.items()},
                "pairs": pairs}


def _seed_values(raw) -> dict[int, float]:
    """``{seed: value}`` from a ranking row's ``<key>_seeds`` (seeds are strings after the
    context's JSON round trip)."""
    return {int(s): float(v) for s, v in (raw or {}).items()}


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

