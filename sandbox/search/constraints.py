"""Constraints on a trial's metrics: ``"retention >= 0.3"``, ``"time/total_s < 120"``.

Parsed with a regular expression (``METRIC OP NUMBER``, OP one of ``<= < >= >``), never
evaluated as code. Each becomes an Optuna constraint value, feasible when <= 0:
``metric >= b`` -> ``b - metric``; ``metric <= b`` -> ``metric - b``. Optuna does not separate
strict from non-strict bounds (0 is feasible), so ``<`` reads as ``<=``."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from sandbox.errors import ConfigError

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_CONSTRAINT = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_./\-]*)\s*(<=|>=|<|>|=<|=>)\s*({_NUMBER})\s*$")


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
    m = _CONSTRAINT.match(str(text))
    if not m:
        raise ConfigError(
            f"hydra.sweeper.constraints: cannot read `{text}`. Write METRIC OP NUMBER with OP one "
            f"of <=, <, >=, > (e.g. `retention >= 0.3`).")
    metric, op, bound = m.groups()
    op = {"<": "<=", "=<": "<=", ">": ">=", "=>": ">="}.get(op, op)
    return Constraint(metric, op, float(bound))


def parse_constraints(items) -> list[Constraint]:
    if items is None:
        return []
    if isinstance(items, str):
        items = [items]
    return [parse_constraint(t) for t in items]
