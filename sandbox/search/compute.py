"""The compute ledger of a search: what its trials spent, and what pruning and reuse saved.

Each trial's run reports its own ledger (``sandbox.runner.compute``: ``compute/total_cpu_s``,
``compute/total_wall_s``, ``compute/total_gpu_s``, ``compute/reused_steps``,
``compute/reused_cpu_s``), a pruned or failed one what it spent before it stopped; the sweeper
keeps them in each trial's user attr ``metrics``. ``search_ledger`` adds them up:

* ``total_cpu_s`` / ``total_wall_s`` / ``total_gpu_s``: every trial with a ledger, any state;
  ``by_state``: the CPU-seconds per Optuna state;
* ``full_trial_cpu_s``: the median CPU-seconds of a completed trial, the cost of a trial that
  runs to the end;
* ``pruning``: the pruned trials, what they spent, what they would have cost run to the end
  (``full_trial_cpu_s`` each) and the difference, ``saved_cpu_s``;
* ``reuse``: the steps the trials skipped as unchanged and the CPU-seconds those cost when they
  were computed;
* ``decided_comparisons``: for one objective, the completed trials that differ significantly from
  the best (``sandbox.search.noise``: tested and not within noise), and ``cpu_s_per_decision``,
  the total over them; None where no comparison could be tested.

Trials without a ledger (run before it existed, or by an app that is not the sandbox) are counted
in ``trials_without_ledger`` and add nothing.
"""
from __future__ import annotations

import statistics
from typing import Any

CPU, WALL, GPU = "compute/total_cpu_s", "compute/total_wall_s", "compute/total_gpu_s"
REUSED, REUSED_CPU = "compute/reused_steps", "compute/reused_cpu_s"


def _num(metrics: dict, key: str) -> float | None:
    v = (metrics or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def search_ledger(trials: list, noise: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ledger of ``trials`` (Optuna ``FrozenTrial``s); ``noise``: ``within_noise``'s answer,
    for the compute per decided comparison."""
    total = {"cpu": 0.0, "wall": 0.0, "gpu": 0.0}
    by_state: dict[str, float] = {}
    complete_cpu: list[float] = []
    pruned_cpu: list[float] = []
    reused_steps, reused_cpu, without = 0, 0.0, 0
    for t in trials:
        m = t.user_attrs.get("metrics") or {}
        cpu = _num(m, CPU)
        if cpu is None:
            without += 1
            continue
        state = t.state.name
        total["cpu"] += cpu
        total["wall"] += _num(m, WALL) or 0.0
        total["gpu"] += _num(m, GPU) or 0.0
        by_state[state] = by_state.get(state, 0.0) + cpu
        reused_steps += int(_num(m, REUSED) or 0)
        reused_cpu += _num(m, REUSED_CPU) or 0.0
        if state == "COMPLETE":
            complete_cpu.append(cpu)
        elif state == "PRUNED":
            pruned_cpu.append(cpu)
    full = statistics.median(complete_cpu) if complete_cpu else None
    pruning: dict[str, Any] = {"trials": len(pruned_cpu), "spent_cpu_s": sum(pruned_cpu)}
    if full is not None:
        pruning["full_cost_cpu_s"] = full * len(pruned_cpu)
        pruning["saved_cpu_s"] = max(0.0, pruning["full_cost_cpu_s"] - pruning["spent_cpu_s"])
    decided = None
    if noise and len(noise) == 1:
        entry = next(iter(noise.values()))
        if entry.get("count") is not None:
            decided = entry["others"] - len(entry["untested"]) - entry["count"]
    return {
        "total_cpu_s": total["cpu"], "total_wall_s": total["wall"], "total_gpu_s": total["gpu"],
        "by_state": by_state, "full_trial_cpu_s": full, "pruning": pruning,
        "reuse": {"steps": reused_steps, "saved_cpu_s": reused_cpu},
        "decided_comparisons": decided,
        "cpu_s_per_decision": total["cpu"] / decided if decided else None,
        "trials_without_ledger": without,
    }


def ledger_metrics(ledger: dict[str, Any]) -> dict[str, float]:
    """The ledger as the parent run's metrics (``compute/...``)."""
    out = {"compute/total_cpu_s": ledger["total_cpu_s"],
           "compute/total_wall_s": ledger["total_wall_s"],
           "compute/total_gpu_s": ledger["total_gpu_s"],
           "compute/pruned_trials": float(ledger["pruning"]["trials"]),
           "compute/pruned_spent_cpu_s": ledger["pruning"]["spent_cpu_s"],
           "compute/reused_steps": float(ledger["reuse"]["steps"]),
           "compute/reuse_saved_cpu_s": ledger["reuse"]["saved_cpu_s"]}
    if "saved_cpu_s" in ledger["pruning"]:
        out["compute/pruning_saved_cpu_s"] = ledger["pruning"]["saved_cpu_s"]
    if ledger["full_trial_cpu_s"] is not None:
        out["compute/full_trial_cpu_s"] = ledger["full_trial_cpu_s"]
    if ledger["cpu_s_per_decision"] is not None:
        out["compute/cpu_s_per_decision"] = ledger["cpu_s_per_decision"]
    return out


def ledger_line(ledger: dict[str, Any]) -> str | None:
    """The summary's sentence on compute; None when no trial reported a ledger (an app that is
    not the sandbox)."""
    if ledger["total_cpu_s"] == 0 and not ledger["by_state"]:
        return None
    text = (f"compute: {ledger['total_cpu_s']:.1f} CPU-s ({ledger['total_wall_s']:.1f} s wall"
            + (f", {ledger['total_gpu_s']:.1f} GPU-s" if ledger["total_gpu_s"] else "") + ")")
    p = ledger["pruning"]
    if p["trials"]:
        text += f"; {p['trials']} pruned trial(s) spent {p['spent_cpu_s']:.1f} CPU-s"
        if "saved_cpu_s" in p:
            text += (f" of the {p['full_cost_cpu_s']:.1f} they would have cost run to the end "
                     f"(pruning saved {p['saved_cpu_s']:.1f})")
    r = ledger["reuse"]
    if r["steps"]:
        text += f"; reuse skipped {r['steps']} step(s) that cost {r['saved_cpu_s']:.1f} CPU-s"
    if ledger["cpu_s_per_decision"] is not None:
        text += (f"; {ledger['cpu_s_per_decision']:.1f} CPU-s per decided comparison "
                 f"({ledger['decided_comparisons']} decided)")
    if ledger["trials_without_ledger"]:
        text += f"; {ledger['trials_without_ledger']} trial(s) without a ledger"
    return text
