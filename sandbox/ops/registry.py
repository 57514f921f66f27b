"""The table of operators by name, filled by ``@register`` as each OP module is imported.

It imports no OP module, so the OP modules can register into it while ``sandbox.ops`` imports
them."""
from __future__ import annotations

from sandbox.ops.base import Op

OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add ``cls`` to ``OPS`` under its Data-Juicer name (``cls.name``)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in OPS:
        raise ValueError(f"duplicate OP name {cls.name!r}")
    OPS[cls.name] = cls
    return cls
