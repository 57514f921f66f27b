"""Operator registry: one class per OP, registered under its Data-Juicer name.

Every OP lives in ``sandbox/ops/<modality>/<kind>.py`` (modality: ``text``, ``image``, ``video``,
``image_text``, ``video_text``, ``general``; kind: ``filters``, ``mappers``, ``deduplicators``,
``selectors``); code that several OPs share and that is not an OP lives in
``sandbox/ops/common/``. Adding an OP = one class with ``@register`` in the module of its modality
and kind, listed in ``OP_MODULES`` when the module is new. ``python -m sandbox.ops`` lists them
from the same signatures the recipe loader validates against.
"""
from __future__ import annotations

import difflib
import importlib

from sandbox.ops.base import Deduplicator, Filter, Mapper, Op, OpSpec, Selector, TextViews, Threshold
from sandbox.ops.dj_adapter import dj_op_class
from sandbox.ops.registry import OPS, register

# The modules that hold the OPs, imported for their @register side effect: once this package is
# imported, every built-in OP is in OPS.
OP_MODULES = (
    "sandbox.ops.general.filters",
    "sandbox.ops.general.selectors",
    "sandbox.ops.text.filters",
    "sandbox.ops.text.mappers",
    "sandbox.ops.text.deduplicators",
    "sandbox.ops.image.filters",
    "sandbox.ops.image.deduplicators",
    "sandbox.ops.video.filters",
    "sandbox.ops.video.mappers",
    "sandbox.ops.video.deduplicators",
    "sandbox.ops.image_text.filters",
    "sandbox.ops.video_text.filters",
)
for _module in OP_MODULES:
    importlib.import_module(_module)
del _module


def get_op_class(name: str) -> type[Op]:
    """The OP class registered as ``name``, else Data-Juicer's own class through the adapter
    (when ``data_juicer`` is installed); a KeyError naming the closest names otherwise."""
    try:
        return OPS[name]
    except KeyError:
        adapted = dj_op_class(name)
        if adapted is not None:
            return adapted
        close = difflib.get_close_matches(name, OPS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown operator {name!r}.{hint} Run `python -m sandbox.ops` to list all operators."
        ) from None


def all_ops() -> dict[str, type[Op]]:
    """Every registered OP class by name (a copy of the registry)."""
    return dict(OPS)


__all__ = [
    "OPS", "Op", "Mapper", "Filter", "Deduplicator", "Selector", "OpSpec", "TextViews",
    "Threshold", "register", "get_op_class", "all_ops", "OP_MODULES",
]
