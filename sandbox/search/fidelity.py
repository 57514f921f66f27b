"""Token budget as a fidelity: a trial runs at the smallest budget first and is promoted to the
next only while the study's pruner (successive halving or Hyperband) keeps it.

``hydra.sweeper.fidelity``::

    fidelity:
      key: trainer.token_budget          # the override each rung sets
      rungs: [40000, 120000, 360000]      # increasing budgets
      resume_key: ++trainer.resume_from   # where a promoted rung is told its checkpoint

Each rung of a trial is its own run (run dir ``<trial>_rung<i>`` under the sweep dir) with
``key=<rung>``. After a rung the objective is reported to the trial at step ``<rung>``; when the
pruner says stop before the last rung the trial is PRUNED with the value of its last rung. A run
that left one checkpoint (the trainer's ``checkpoint`` output: ``trainer.schedule=wsd``, taken
where its decay starts) is continued from it by the next rung (``resume_key=<that file>``)
rather than trained again from the start; a run without one (another app, ``seeds=N``) starts
over. The trial's compute ledger is the sum over its rungs. Without a ``pruner`` the study gets
Optuna's ``SuccessiveHalvingPruner`` with the rungs' ratio as its reduction factor.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError


@dataclass
class Fidelity:
    key: str
    rungs: list[float]
    resume_key: str = "++trainer.resume_from"

    @classmethod
    def parse(cls, node: Any) -> "Fidelity | None":
        if not node:
            return None
        if not isinstance(node, dict) or not node.get("key") or not node.get("rungs"):
            raise ConfigError(f"hydra.sweeper.fidelity={node!r}: give `key` (the override each "
                              f"rung sets, e.g. trainer.token_budget) and `rungs` (increasing "
                              f"budgets, e.g. [40000, 120000, 360000]).")
        unknown = set(node) - {"key", "rungs", "resume_key"}
        if unknown:
            raise ConfigError(f"hydra.sweeper.fidelity has unknown key(s) {sorted(unknown)}; it "
                              f"takes key, rungs and resume_key.")
        rungs = list(node["rungs"])
        try:
            numbers = [float(r) for r in rungs]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) < 2 or any(b <= a for a, b in zip(numbers, numbers[1:])) or \
                numbers[0] <= 0:
            raise ConfigError(f"hydra.sweeper.fidelity.rungs={rungs}: give at least two "
                              f"increasing positive budgets.")
        return cls(str(node["key"]), [int(r) if float(r).is_integer() else float(r)
                                      for r in numbers],
                   str(node.get("resume_key") or "++trainer.resume_from"))

    def default_pruner(self) -> dict:
        """Successive halving over these rungs (the reduction factor: the rungs' ratio)."""
        ratio = max(2, int(round(float(self.rungs[1]) / float(self.rungs[0]))))
        return {"_target_": "optuna.pruners.SuccessiveHalvingPruner",
                "min_resource": int(math.ceil(float(self.rungs[0]))),
                "reduction_factor": ratio, "min_early_stopping_rate": 0}

    def overrides(self, rung: int, checkpoint: str | None) -> list[str]:
        out = [f"{self.key}={self.rungs[rung]}"]
        if checkpoint:
            out.append(f"{self.resume_key}={json.dumps(checkpoint)}")
        return out


def checkpoint_of(run_dir: str | Path | None) -> str | None:
    """The one checkpoint a run's steps left (their ``checkpoint`` output, in its
    ``context.json``), or None when there is none or several (seeds)."""
    if not run_dir:
        return None
    try:
        steps = json.loads((Path(run_dir) / "context.json").read_text()).get("steps", {})
    except (OSError, ValueError):
        return None
    found = {v["outputs"]["checkpoint"] for v in steps.values()
             if isinstance(v.get("outputs"), dict)
             and isinstance(v["outputs"].get("checkpoint"), str)
             and Path(v["outputs"]["checkpoint"]).is_file()}
    return found.pop() if len(found) == 1 else None


def add_ledgers(total: dict[str, float], metrics: dict[str, Any]) -> dict[str, float]:
    """``total`` with a rung's ``compute/...`` metrics added to it."""
    for k, v in metrics.items():
        if k.startswith("compute/") and isinstance(v, (int, float)) and v is not None:
            total[k] = total.get(k, 0.0) + float(v)
    return total
