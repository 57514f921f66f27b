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

Decisions at a rung: the pruner ranks the values the rungs report (successive halving promotes
the best 1/eta of the trials that reached the rung). Where the rung's run kept per-document
scores of the objective (the evaluator's ``doc_scores.npz``, collected in the run dir's
``doc_scores/``) and so did the trial the pruner's rule promotes last (the *cutoff*), a trial
the pruner would stop is stopped only when the paired per-document comparison with the cutoff
(``sandbox.verdict.paired_documents``: both sides scored on the same documents, over their
seeds) says it is worse; within noise of the cutoff it is promoted, since ranking two trials the
evaluation cannot tell apart would be a coin flip (``paired_rung_decision``). Without those
scores the pruner's ranking of the reported values decides.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError

DOC_SCORES_ATTR = "doc_scores_rung{}"  # a trial's user attr: its rung's doc_scores folder


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


@dataclass
class RungDecision:
    prune: bool
    why: str  # for the sweep's log line


def paired_rung_decision(value: float, scores: dict, peers: list[tuple[int, float, dict]],
                         metric: str, reduction_factor: int, maximize: bool
                         ) -> RungDecision | None:
    """Prune or promote a trial at a rung on paired per-document comparisons; None when they
    cannot decide, and the pruner's ranking of the reported values decides instead.

    ``value``: the trial's objective at the rung, as reported (the metric's own sign); ``scores``:
    its per-document arrays by seed (``sandbox.runner.doc_scores.load``); ``peers``: the other
    trials that reached the rung, as ``(trial number, value, scores)`` (``scores`` may be empty).
    The trials are ranked by value and the one successive halving promotes last (Optuna's rule:
    the ``len // reduction_factor``-th best, at least the best) is the cutoff. A trial at least as
    good as the cutoff is promoted; a worse one is pruned only when the paired comparison with the
    cutoff's documents says ``worse``, and promoted when it finds no detectable difference."""
    from sandbox.runner.doc_scores import pairs
    from sandbox.verdict import paired_documents

    ranked = sorted([(value, -1, scores), *((v, n, s) for n, v, s in peers)],
                    key=lambda x: -x[0] if maximize else x[0])
    index = max(0, len(ranked) // max(1, int(reduction_factor)) - 1)
    cutoff_value, cutoff, cutoff_scores = ranked[index]
    if (value >= cutoff_value) if maximize else (value <= cutoff_value):
        return RungDecision(False, "among the best at this rung")
    matched = pairs(scores, cutoff_scores).get(metric) if scores and cutoff_scores else None
    if not matched:
        return None
    c, _ = paired_documents(*matched, higher_is_better=maximize)
    versus = f"trial {cutoff}, paired over documents: {c.diff:+.4g}, p={c.p:.2g}"
    if c.verdict == "worse":
        return RungDecision(True, f"worse than {versus}")
    return RungDecision(False, f"within noise of {versus}")
