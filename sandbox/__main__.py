"""``python -m sandbox [overrides]``: the Hydra command line around ``sandbox.run``."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # imported here, not at the top: `--help` and Hydra's other informational commands never
    # need the runner, and answer in a fraction of the time
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sandbox.errors import SandboxError
    from sandbox.runner import run
    from sandbox.search.trial import install_hook_from_env, write_result
    from sandbox.steps.base import Pruned

    install_hook_from_env()  # a search trial in its own process: report to its Optuna trial
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN  # one process runs every job
    try:
        metrics = run(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except BaseException as e:
        write_result("pruned" if isinstance(e, Pruned) else "failed", error=e)  # for the sweeper
        if in_sweep or cfg.get("traceback") or not isinstance(e, (SandboxError, Pruned)):
            raise
        from sandbox.console import console

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


if __name__ == "__main__":
    main()
