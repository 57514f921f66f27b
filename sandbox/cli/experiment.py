"""``python -m sandbox``'s run: one experiment (or one job of a sweep) from the config Hydra
composed (``sandbox.__main__``), its result for the sweeper, and the return value or exit code."""
from __future__ import annotations

import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sandbox.console import console
from sandbox.errors import SandboxError
from sandbox.runner import run
from sandbox.search.trial import end_with_sweep, trial_hook, write_result
from sandbox.steps.base import Pruned


def main(cfg: DictConfig) -> float | None:
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN  # one process runs every job
    end_with_sweep()  # a trial in a process of its own: not beyond the sweep that started it
    try:
        # a search trial reports intermediate values to its Optuna trial, which may prune it
        metrics = run(cfg, run_dir=HydraConfig.get().runtime.output_dir, report=trial_hook())
    except BaseException as e:
        # for the sweeper, with the compute the run spent before it stopped (runner.compute)
        write_result("pruned" if isinstance(e, Pruned) else "failed",
                     metrics=getattr(e, "compute_ledger", None), error=e)
        if in_sweep or cfg.get("traceback") or not isinstance(e, (SandboxError, Pruned)):
            raise
        console.print(f"[bold red]{'pruned' if isinstance(e, Pruned) else 'error'}:[/] {e}",
                      soft_wrap=True)
        sys.exit(3 if isinstance(e, Pruned) else 2)
    write_result("ok", metrics)
    objective = cfg.get("objective")
    if objective:
        names = [objective] if isinstance(objective, str) else list(objective)
        values = [metrics[n] for n in names]
        return values[0] if len(values) == 1 else values
    return None
