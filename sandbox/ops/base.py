"""The operator contract.

An operator (OP) is a named, parameterised transform with Data-Juicer's name and parameters.
Four kinds exist:

* ``Mapper``: edits text, batch in -> batch out (same length).
* ``Filter``: computes per-sample stats (never looking at thresholds), then ``keep`` turns the
  stats into a boolean mask using only the thresholds. Keeping the two apart is what makes
  threshold sweeps and k-sigma refinement cheap: stats are computed once and re-masked.
* ``Deduplicator``: computes a per-sample hash; the engine keeps the first sample of each hash
  among the samples still alive.
* ``Selector``: picks samples from the whole pool (later).

Ops work on batches of texts (lists of ``str``). Intermediates that several OPs need (lines,
words) are computed once per batch through ``TextViews`` (Data-Juicer calls this OP fusion).
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

MAXSIZE = sys.maxsize


@dataclass(frozen=True)
class Threshold:
    """A constructor argument that bounds a stat: ``min`` keeps stat >= value, ``max`` keeps <=."""

    stat: str
    bound: str  # "min" | "max"
    low: float = 0.0  # valid range of the argument, used to clip refined values
    high: float = float(MAXSIZE)


class TextViews:
    """Per-batch cache of derived views of the texts, shared by all OPs that run on the batch.

    ``get(key, fn)`` computes ``[fn(t) for t in texts]`` once per key; OPs name their keys after
    the view and the arguments that shape it (for example ``("words", strip, lower)``).
    """

    def __init__(self, texts: list[str], fields: dict[str, list] | None = None):
        self.texts = texts
        # Extra sample columns (``images``, ``meta``, ...) for OPs that declare them in
        # ``input_fields()``; one value per text, in the same order.
        self.fields = fields or {}
        self._cache: dict[Any, list] = {}

    def field(self, name: str, op: str = "") -> list:
        """The values of sample column ``name`` for this batch (a clear error when absent)."""
        try:
            return self.fields[name]
        except KeyError:
            who = f"{op}: " if op else ""
            raise KeyError(
                f"{who}the samples have no `{name}` column in this batch. The OP reads it (its "
                f"input_fields() lists it); check the data pool has that column."
            ) from None

    def get(self, key, fn) -> list:
        if key not in self._cache:
            self._cache[key] = [fn(t) for t in self.texts]
        return self._cache[key]


class Op:
    """Base of every OP. Subclasses set ``name`` (Data-Juicer's) and ``kind``, and take their
    parameters as flat keyword arguments with defaults, annotated with their types: the signature
    *is* the schema that the recipe loader validates against and ``python -m sandbox.ops`` lists."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Parameters that are bounds on a stat (filters only): {arg_name: Threshold}
    thresholds: ClassVar[dict[str, Threshold]] = {}

    # Which optional resources the OP needs: {name: description}; ``python -m sandbox.ops``
    # lists them with whether each is available offline here (``sandbox.assets``).
    assets: ClassVar[dict[str, str]] = {}

    def __init__(self, text_key: str = "text", **unused):
        if unused:  # the recipe loader checks names first; this is the last line of defence
            raise TypeError(f"{self.name}: unknown parameter(s) {sorted(unused)}")
        self.text_key = text_key

    @classmethod
    def params(cls) -> dict[str, inspect.Parameter]:
        """Constructor parameters (excluding ``self``/``**kwargs``), in declaration order."""
        sig = inspect.signature(cls.__init__)
        return {
            n: p
            for n, p in sig.parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }

    def config(self) -> dict[str, Any]:
        """The parameter values this instance was built with (what a recipe file would hold)."""
        return {n: getattr(self, n) for n in self.params() if hasattr(self, n)}

    def input_fields(self) -> tuple[str, ...]:
        """Sample columns other than the text that the OP reads (``images``, a ``meta`` dict, ...).
        The engine passes their values in ``TextViews.fields``; text-only OPs read none."""
        return ()

    def stat_config(self) -> dict[str, Any]:
        """Parameters that change the stats (not thresholds): part of the stats cache key."""
        return {k: v for k, v in self.config().items() if k not in self.thresholds}


class Mapper(Op):
    kind = "mapper"

    def process_batch(self, texts: list[str]) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class Filter(Op):
    kind = "filter"
    # Names of the stats this filter computes, Data-Juicer's keys (``text_len``, ...).
    stat_keys: ClassVar[tuple[str, ...]] = ()

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Default: every ``Threshold`` arg bounds its stat inclusively (Data-Juicer semantics)."""
        n = len(next(iter(stats.values())))
        mask = np.ones(n, dtype=bool)
        for arg, th in self.thresholds.items():
            value = getattr(self, arg)
            if value is None:
                continue
            col = stats[th.stat]
            mask &= (col >= value) if th.bound == "min" else (col <= value)
        return mask


class Deduplicator(Op):
    """``hash_batch`` computes one value per sample (a hash, or a signature for near-duplicate
    OPs); ``keep_mask`` then decides over the whole pool which alive samples stay. The default is
    exact matching: the first alive sample of each hash stays. Near-duplicate OPs (MinHash-LSH,
    SimHash) override ``keep_mask`` to cluster signatures."""

    kind = "deduplicator"

    def hash_batch(self, views: TextViews) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        """Bool per sample: True for alive samples that stay (always False where ``alive`` is
        False). ``hashes`` holds ``hash_batch``'s values for every sample, in pool order."""
        keep = np.zeros(len(alive), dtype=bool)
        seen: set = set()
        for i in np.flatnonzero(alive):
            h = hashes[i]
            if isinstance(h, list):
                h = tuple(h)
            if h not in seen:
                seen.add(h)
                keep[i] = True
        return keep


class Selector(Op):
    """Dataset-level: picks samples from the pool as it is (the alive samples, in pool order).

    ``select(fields, n)`` gets the values of its ``input_fields()`` for those ``n`` samples and
    returns the indices (into them) of the selected ones, in Data-Juicer's output order."""

    kind = "selector"

    def select(self, fields: dict[str, list], n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass
class OpSpec:
    """One entry of a recipe: a stable key (addressable from the config tree), the OP name and
    its arguments."""

    key: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
