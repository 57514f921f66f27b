"""Operator registry: one class per OP, registered under its Data-Juicer name.

Adding an OP = one class with ``@register`` in the module of its kind. ``python -m sandbox.ops``
lists them from the same signatures the recipe loader validates against.
"""
from __future__ import annotations

import difflib

from sandbox.ops.base import Deduplicator, Filter, Mapper, Op, OpSpec, Selector, TextViews, Threshold

OPS: dict[str, type[Op]] = {}
_builtin_loaded = False


def register(cls: type[Op]) -> type[Op]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in OPS:
        raise ValueError(f"duplicate OP name {cls.name!r}")
    OPS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Imported for their @register side effect (importing one module alone registers only it).
    global _builtin_loaded
    if not _builtin_loaded:
        from sandbox.ops import deduplicators, filters, mappers, selectors  # noqa: F401

        _builtin_loaded = True


def get_op_class(name: str) -> type[Op]:
    _load_builtin()
    try:
        return OPS[name]
    except KeyError:
        from sandbox.ops.dj_adapter import dj_op_class

        adapted = dj_op_class(name)
        if adapted is not None:
            return adapted
        close = difflib.get_close_matches(name, OPS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown operator {name!r}.{hint} Run `python -m sandbox.ops` to list all operators."
        ) from None


def all_ops() -> dict[str, type[Op]]:
    _load_builtin()
    return dict(OPS)


__all__ = [
    "OPS", "Op", "Mapper", "Filter", "Deduplicator", "Selector", "OpSpec", "TextViews",
    "Threshold", "register", "get_op_class", "all_ops",
]
