"""The compute ledger of a run: what each step cost, in CPU-seconds, wall seconds and
GPU-seconds, and what reusing finished steps saved.

A step's CPU time is this process's CPU time while it ran (``time.process_time``: every thread)
plus that of the child processes that ended and were waited for meanwhile
(``resource.getrusage(RUSAGE_CHILDREN)``: engine workers, external programs). A worker pool that
outlives the step is counted when it is closed, in the step that closes it. A step's
GPU-seconds are its wall seconds when it ran on CUDA: its component has a ``device`` that is, or
resolves to (``auto`` with a GPU), ``cuda``; the CPU time of such a step still counts.

The run's metrics (and its MLflow run) get, per step name (``<pipeline>/<step>`` in a
multi-pipeline experiment), summed over seeds, fan-out elements and iterations:

* ``compute/<step>_cpu_s``, ``compute/<step>_wall_s``, and ``compute/<step>_gpu_s`` for a step
  that ran on CUDA;
* ``compute/total_cpu_s``, ``compute/total_wall_s``, ``compute/total_gpu_s``: their sums;
* ``compute/reused_steps`` and ``compute/reused_cpu_s``: the steps skipped as unchanged
  (``resume=true``, or a twin with the same identity) and the CPU-seconds their records cost
  when they were computed (their wall seconds for records older than the ledger).

A run whose metrics count the pairs of pools (or recipes) it decided (``decided_pairs``: the
scaled ranking of ``experiment=bottom_up``, the ladder of ``experiment=transfer``) also gets
``compute/cpu_s_per_decided_pair``: its total CPU-seconds over those pairs (``per_decision``).

A trial that a pruner stops, or a run that fails, keeps the ledger of what it spent so far
(``partial``): the sweep counts it (``sandbox.search.summary``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from sandbox.utils import Clock  # noqa: F401 (the executor and tests take it from here)

PREFIX = "compute/"


def on_cuda(component: Any) -> bool:
    """Whether ``component`` ran on CUDA: its ``device`` names CUDA, or is ``auto`` in a process
    whose torch (already imported by the step) sees a GPU."""
    spec = str(getattr(component, "device", "") or "").lower()
    if spec.startswith("cuda"):
        return True
    if spec != "auto" or "torch" not in sys.modules:
        return False
    try:
        return bool(sys.modules["torch"].cuda.is_available())
    except Exception:
        return False


@dataclass
class Ledger:
    """Per step name: CPU, wall and GPU seconds spent; and the reused steps."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    gpu: dict[str, float] = field(default_factory=dict)
    reused_steps: int = 0
    reused_cpu: float = 0.0

    def spent(self, step: str, clock: Clock, cuda: bool = False) -> None:
        self.cpu[step] = self.cpu.get(step, 0.0) + clock.cpu
        self.wall[step] = self.wall.get(step, 0.0) + clock.wall
        if cuda:
            self.gpu[step] = self.gpu.get(step, 0.0) + clock.wall

    def reused(self, record: dict) -> None:
        """A step skipped because ``record`` (a context record) holds its result."""
        self.reused_steps += 1
        cost = record.get("cpu_seconds", record.get("seconds"))
        self.reused_cpu += float(cost or 0.0)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for step in self.wall:
            out[f"{PREFIX}{step}_cpu_s"] = self.cpu[step]
            out[f"{PREFIX}{step}_wall_s"] = self.wall[step]
            if step in self.gpu:
                out[f"{PREFIX}{step}_gpu_s"] = self.gpu[step]
        out[f"{PREFIX}total_cpu_s"] = sum(self.cpu.values())
        out[f"{PREFIX}total_wall_s"] = sum(self.wall.values())
        out[f"{PREFIX}total_gpu_s"] = sum(self.gpu.values())
        out[f"{PREFIX}reused_steps"] = float(self.reused_steps)
        out[f"{PREFIX}reused_cpu_s"] = self.reused_cpu
        return out


def per_decision(metrics: dict[str, float], total_cpu: float) -> dict[str, float]:
    """``compute/cpu_s_per_decided_pair`` when exactly one metric counts decided pairs
    (``<pipeline>/decided_pairs``) and it is above zero; else nothing."""
    counts = [v for k, v in metrics.items()
              if (k == "decided_pairs" or k.endswith("/decided_pairs")) and v and v > 0]
    if len(counts) != 1:
        return {}
    return {f"{PREFIX}cpu_s_per_decided_pair": total_cpu / float(counts[0])}
