"""Building a component (a step, an engine, a tracker) from its config node: ``_target_`` plus
the constructor's parameters, as Hydra's ``instantiate`` does, with a constructor that rejects
its values reported as a one-paragraph ``ConfigError`` that names the config key."""
from __future__ import annotations

from typing import Any

from sandbox.errors import ConfigError


def build_component(node: Any, where: str, what: str) -> Any:
    """``instantiate(node)``; ``where`` is the node's key (``refine``, ``engine``), ``what`` the
    component's name for the message (its class)."""
    # lazy: hydra is only needed when a config is turned into objects, never by `--help`
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(f"{where}: {what} rejected its config: {cause}. Fix the value under "
                          f"`{where}`.") from None
