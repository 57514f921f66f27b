"""Optional adapter: run a Data-Juicer OP that has no native port here through Data-Juicer's own
class, when the ``data_juicer`` package is importable (never a core dependency).

The wrapper takes Data-Juicer's constructor signature (so recipes are validated against it) and
is marked ``adapted_from_data_juicer``; ``python -m sandbox.ops NAME`` says so, and building one
logs a warning line. Filters adapted this way store Data-Juicer's keep decision as the stat
``dj_keep`` (1.0 kept, 0.0 dropped): their thresholds cannot be refined from stats.
"""
from __future__ import annotations

import importlib.util
import inspect
import logging

import numpy as np

from sandbox.ops.base import Deduplicator, Filter, Mapper, Op, TextViews

log = logging.getLogger("sandbox.ops")
_CACHE: dict[str, type[Op]] = {}


def available() -> bool:
    """Whether the ``data_juicer`` package is installed (it is only imported when used)."""
    return importlib.util.find_spec("data_juicer") is not None


def dj_op_class(name: str) -> type[Op] | None:
    """A wrapper class for Data-Juicer's OP ``name``, or None (not installed / no such OP)."""
    if name in _CACHE:
        return _CACHE[name]
    if not available():
        return None
    try:
        from data_juicer.ops import OPERATORS
        from data_juicer.ops import base_op as dj
    except Exception as e:  # a broken Data-Juicer install must not break the sandbox
        log.warning("data_juicer is installed but could not be imported: %s", e)
        return None
    dj_cls = OPERATORS.modules.get(name)
    if dj_cls is None:
        return None
    if issubclass(dj_cls, dj.Mapper):
        base = _DJMapper
    elif issubclass(dj_cls, dj.Filter):
        base = _DJFilter
    elif issubclass(dj_cls, dj.Deduplicator):
        base = _DJDeduplicator
    else:
        return None
    sig = inspect.signature(dj_cls.__init__)
    params = [p for n, p in sig.parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    params.append(inspect.Parameter("text_key", inspect.Parameter.KEYWORD_ONLY, default="text",
                                    annotation=str))

    def __init__(self, text_key: str = "text", **kwargs):
        Op.__init__(self, text_key=text_key)
        for k, v in kwargs.items():
            setattr(self, k, v)
        log.warning("OP %s is not implemented natively; running Data-Juicer's own %s.%s",
                    name, dj_cls.__module__, dj_cls.__qualname__)
        self._dj = dj_cls(text_key=text_key, **kwargs)

    __init__.__signature__ = sig.replace(parameters=[params[0]] + [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[1:]])
    __init__.__annotations__ = {}
    doc = (inspect.getdoc(dj_cls) or "").split("\n\n")[0]
    cls = type(dj_cls.__name__ + "ViaDataJuicer", (base,), {
        "name": name, "__init__": __init__, "adapted_from_data_juicer": True,
        "description": "(Data-Juicer adapter) " + " ".join(doc.split())[:90],
        "__doc__": "Runs Data-Juicer's own implementation. " + (inspect.getdoc(dj_cls) or ""),
    })
    _CACHE[name] = cls
    return cls


def _samples(op, texts):
    from data_juicer.utils.constant import Fields

    return {op.text_key: list(texts), Fields.stats: [{} for _ in texts]}


class _DJMapper(Mapper):
    def process_batch(self, texts: list[str]) -> list[str]:
        op = self._dj
        if op.is_batched_op():
            return list(op.process_batched({self.text_key: list(texts)})[self.text_key])
        return [op.process_single({self.text_key: t})[self.text_key] for t in texts]


class _DJFilter(Filter):
    stat_keys = ("dj_keep",)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        op = self._dj
        samples = _samples(self, views.texts)
        samples.update(views.fields)
        from data_juicer.utils.constant import Fields

        if op.is_batched_op():
            samples = op.compute_stats_batched(samples)
            keep = list(op.process_batched(samples))
        else:
            keep = []
            for i in range(len(views.texts)):
                s = {k: v[i] for k, v in samples.items()}
                s = op.compute_stats_single(s)
                keep.append(op.process_single(s))
                samples[Fields.stats][i] = s[Fields.stats]
        return {"dj_keep": np.asarray(keep, dtype=np.float64)}

    def keep(self, stats):
        return np.asarray(stats["dj_keep"]) > 0.5


class _DJDeduplicator(Deduplicator):
    def hash_batch(self, views: TextViews) -> list:
        out = []
        for i, t in enumerate(views.texts):
            s = {self.text_key: t, **{k: v[i] for k, v in views.fields.items()}}
            before = set(s)
            s = self._dj.compute_hash(s)
            out.append(repr(sorted((k, s[k]) for k in set(s) - before)))
        return out
