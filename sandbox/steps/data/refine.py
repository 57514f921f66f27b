"""Refine: move the recipe's thresholds from what the probe saw.

``KSigmaRefiner`` follows Data-Juicer: a filter argument *written in the recipe* that bounds a
stat from below (its name contains ``min``) becomes mean - k*std of that stat (std with ddof=1,
as Data-Juicer's analyzer reports it), one that bounds from above (``max``) becomes mean + k*std.
Arguments left at their defaults stay there, so a recipe that writes only ``max_ratio`` gets a
one-sided filter. Unlike Data-Juicer, values are clipped to the argument's valid range (a
negative ``min_len`` means nothing). Integer arguments are rounded inwards-safe
(``min`` up, ``max`` down), which keeps exactly the samples of the real-valued bound because
their stats are integers. Writes the refined recipe in Data-Juicer's ``process:`` format and a
table of the thresholds that moved."""
from __future__ import annotations

import csv
import math
import typing
from typing import Any

from sandbox.engine import stat_column
from sandbox.recipe import Recipe
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path, atomic_write_text

OUTPUTS = ("recipe", "recipe_path", "changes")


def write_refined(env: StepEnv, rec: Recipe, changes: list[dict]) -> dict[str, Any]:
    path = atomic_write_text(env.workdir / "recipe.yaml", rec.to_dj_yaml())
    with atomic_path(env.workdir / "changes.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["op", "arg", "stat", "old", "new"])
        w.writeheader()
        w.writerows(changes)
    return {"recipe": rec, "recipe_path": str(path), "changes": changes}


class NoRefine(Step):
    """Keep the thresholds as written (still writes the recipe it passes on)."""

    outputs = OUTPUTS

    def __init__(self, text_key: str = "text"):
        self.text_key = text_key

    def run(self, env: StepEnv, recipe: Recipe, summary: dict | None = None,
            stats: str | None = None, dataset: str | None = None) -> dict[str, Any]:
        """``stats`` and ``dataset`` (the probe's per-sample stats and the pool) are what a
        refiner that trains on the data needs (refine=model_feedback); this one needs neither."""
        return write_refined(env, recipe, [])


class KSigmaRefiner(Step):
    outputs = OUTPUTS

    def __init__(self, k: float = 3.0, text_key: str = "text"):
        if not k >= 0:
            raise ValueError(f"refine.k must be >= 0, got {k}")
        self.k = float(k)
        self.text_key = text_key

    def run(self, env: StepEnv, recipe: Recipe, summary: dict, stats: str | None = None,
            dataset: str | None = None) -> dict[str, Any]:
        """k-sigma needs only the probe's ``summary`` (``stats``, ``dataset``: unused)."""
        from sandbox.ops import get_op_class

        changes, moved = [], {}
        thresholds = recipe.thresholds()
        for spec in recipe.ops:
            cls = get_op_class(spec.name)
            hints = typing.get_type_hints(cls.__init__)
            for arg, th in thresholds[spec.key].items():
                if arg not in spec.args:
                    continue
                s = summary.get(stat_column(spec.key, th.stat))
                if not s or not s.get("count"):
                    continue
                old = spec.args[arg]
                new = refine_value(s["mean"], s["std"], self.k, th.bound, th.low, th.high,
                                   integer=hints.get(arg) is int)
                moved.setdefault(spec.key, {})[arg] = new
                if new != old:
                    changes.append({"op": spec.key, "arg": arg, "stat": th.stat, "old": old,
                                    "new": new})
        return write_refined(env, recipe.with_args(moved), changes)


def refine_value(mean: float, std: float, k: float, bound: str, low: float, high: float,
                 integer: bool = False):
    value = mean - k * std if bound == "min" else mean + k * std
    value = min(max(value, low), high)
    if integer:
        value = math.ceil(value) if bound == "min" else math.floor(value)
        value = int(min(max(value, math.ceil(low)), math.floor(high)))
    return value
