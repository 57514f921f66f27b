"""Living beside hydra-optuna-sweeper. Both plugins register ``hydra/sweeper=optuna``, and the one
Hydra loads last wins without a word; ours is also ``hydra/sweeper=sandbox_optuna``, which nothing
else claims. This module's name starts with ``_`` so Hydra's plugin scanner does not execute it:
it is imported normally, once, and its state lasts for the whole process."""
from __future__ import annotations

import importlib.util
import warnings

OWN_NAME = "sandbox_optuna"
ALIAS = "optuna"
UPSTREAM_MODULE = "hydra_plugins.hydra_optuna_sweeper"

_warned = False


class PluginConflictWarning(UserWarning):
    """hydra-optuna-sweeper is installed beside this project's sweeper."""


def upstream_installed() -> bool:
    try:
        return importlib.util.find_spec(UPSTREAM_MODULE) is not None
    except (ImportError, ValueError):
        return False


def alias_owner() -> str:
    """Whose node ``hydra/sweeper=optuna`` composes right now: ``sandbox`` or ``hydra-optuna-sweeper``."""
    from hydra.core.config_store import ConfigStore

    try:
        node = ConfigStore.instance().load(f"hydra/sweeper/{ALIAS}.yaml")
        target = str(node.node.get("_target_", ""))
    except Exception:  # not registered (yet)
        return "nobody"
    return "sandbox" if target.startswith("hydra_plugins.sandbox_optuna.") else \
        "hydra-optuna-sweeper"


def warn_if_upstream_installed() -> None:
    """Once per process: say that ``hydra/sweeper=optuna`` is ambiguous here, and what to use."""
    global _warned
    if _warned or not upstream_installed():
        return
    _warned = True
    owner = alias_owner()
    warnings.warn(
        f"hydra-optuna-sweeper is installed beside sandbox's Optuna sweeper. Both register "
        f"hydra/sweeper={ALIAS}, and the one Hydra loads last wins (here: {owner}). Use "
        f"hydra/sweeper={OWN_NAME} for sandbox's sweeper (conf/hparams_search does), or "
        f"`pip uninstall hydra-optuna-sweeper` (it pins optuna<3).",
        PluginConflictWarning, stacklevel=2)
