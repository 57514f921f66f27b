"""``python -m sandbox [overrides]``: the Hydra command line around ``sandbox.run``."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from sandbox.errors import SandboxError
    from sandbox.runner import run

    try:
        metrics = run(cfg, run_dir=HydraConfig.get().runtime.output_dir)
    except SandboxError as e:
        if cfg.get("traceback"):
            raise
        from sandbox.console import console

        console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    objective = cfg.get("objective")
    if objective:
        names = [objective] if isinstance(objective, str) else list(objective)
        values = [metrics[n] for n in names]
        return values[0] if len(values) == 1 else values
    return None


if __name__ == "__main__":
    main()
