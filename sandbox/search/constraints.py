"""Constraints on a trial's metrics: ``"retention >= 0.3"``, ``"time/total_s < 120"``.

Read by ``sandbox.conditions.parse_bound`` (``METRIC OP NUMBER``, OP one of ``<= < >= >``), never
evaluated as code. Each becomes an Optuna constraint value, feasible when <= 0:
``metric >= b`` -> ``b - metric``; ``metric <= b`` -> ``metric - b``. Optuna does not separate
strict from non-strict bounds (0 is feasible), so ``<`` reads as ``<=``."""
from __future__ import annotations

import math
from dataclasses import dataclass

from sandbox.conditions import parse_bound
from sandbox.errors import ConfigError


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # "<=" or ">="
    bound: float

    def value(self, metrics: dict[str, float]) -> float:
        """Optuna's constraint value: <= 0 when satisfied (inf when the metric is missing)."""
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(float(v)):
            return math.inf
        return float(v) - self.bound if self.op == "<=" else self.bound - float(v)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraint(text: str) -> Constraint:
    """One ``hydra.sweeper.constraints`` entry."""
    parsed = parse_bound(str(text))
    if parsed is None:
        raise ConfigError(
            f"hydra.sweeper.constraints: cannot read `{text}`. Write METRIC OP NUMBER with OP one "
            f"of <=, <, >=, > (e.g. `retention >= 0.3`).")
    metric, op, bound = parsed
    return Constraint(metric, "<=" if op in ("<", "<=") else ">=", bound)


def parse_constraints(items) -> list[Constraint]:
    """``hydra.sweeper.constraints``: a list of entries, one entry, or None."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    return [parse_constraint(t) for t in items]
