"""The operator contract.

An operator (OP) is a named, parameterised transform with Data-Juicer's name and parameters.
Four kinds exist:

* ``Mapper``: edits text, batch in -> batch out (same length).
* ``Filter``: computes per-sample stats (never looking at thresholds), then ``keep`` turns the
  stats into a boolean mask using only the thresholds. Keeping the two apart is what makes
  threshold sweeps and k-sigma refinement cheap: stats are computed once and re-masked.
* ``Deduplicator``: computes a per-sample hash; the engine keeps the first sample of each hash
  among the samples still alive (or what the OP's ``keep_mask`` keeps).
* ``Selector``: picks samples from the whole pool (later).

Ops work on batches of texts (lists of ``str``). Intermediates that several OPs need (lines,
words) are computed once per batch through ``TextViews`` (Data-Juicer calls this OP fusion).

An OP declares what the rest of the package needs to know about it, as class attributes and class
methods, so that no code outside ``sandbox/ops/`` names an OP class: ``assets`` and
``needed_assets(args)`` (the models, word lists and tokenizers it needs), and a deduplicator's
``shuffle_key`` (how its rows group when the Ray engine shuffles them).
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
        """``[fn(t) for t in texts]``, computed once per batch for ``key``."""
        if key not in self._cache:
            self._cache[key] = [fn(t) for t in self.texts]
        return self._cache[key]

    def shared(self, key, fn):
        """``fn(texts)`` (a whole-batch view, such as the code points of every text), computed
        once per batch for ``key``."""
        if key not in self._cache:
            self._cache[key] = fn(self.texts)
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

    # How the rows of a deduplicator group (``SHUFFLE_KEYS``; None for every other OP): read by
    # the engines (``sandbox.engine.selection``, ``sandbox.engine.shuffle``).
    shuffle_key: ClassVar[str | None] = None

    # True for a Data-Juicer OP run through its own implementation (``sandbox.ops.dj_adapter``).
    adapted_from_data_juicer: ClassVar[bool] = False

    def __init__(self, text_key: str = "text", **unused):
        if unused:  # the recipe loader checks names first; this is the last line of defence
            raise TypeError(f"{self.name}: unknown parameter(s) {sorted(unused)}")
        self.text_key = text_key

    @classmethod
    def needed_assets(cls, args: dict[str, Any]) -> list:
        """The asset files (``sandbox.assets.AssetRef``) the OP needs when built with ``args`` (all
        its arguments, defaults filled in): what ``recipe.check_recipe`` checks before any data
        is read and ``python -m sandbox.assets fetch`` downloads. None by default."""
        return []

    @classmethod
    def params(cls) -> dict[str, inspect.Parameter]:
        """Constructor parameters (excluding ``self``/``**kwargs``), in declaration order."""
        out: dict[str, inspect.Parameter] = {}
        # the OP's own arguments first, then those every OP of its kind takes (``Filter``'s
        # interval flags), as long as each level passes the rest on with ``**kwargs``
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is Op:
                continue
            params = inspect.signature(init).parameters.values()
            for p in params:
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    out.setdefault(p.name, p)
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        return out

    def config(self) -> dict[str, Any]:
        """The parameter values this instance was built with (what a recipe file would hold)."""
        return {n: getattr(self, n) for n in self.params() if hasattr(self, n)}

    def preload(self) -> None:
        """Load heavy state the OP shares across batches (compiled kernels, models) now. The
        engine calls it in the main process before forking its workers, which then inherit it
        instead of each loading their own copy."""

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

    def output_fields(self) -> tuple[str, ...]:
        """Sample columns besides the text that the mapper rewrites or adds (``videos``,
        ``video_frames``); text mappers change none. The engine calls ``process_fields`` for a
        mapper that declares some, and writes them into the processed samples."""
        return ()

    def process_fields(self, views: TextViews) -> tuple[list[str], dict[str, list]]:
        """``(texts, {field: values})`` for one batch: the text after the mapper and the new
        values of ``output_fields()`` (one per sample). Text mappers need not override it."""
        return self.process_batch(views.texts), {}


class Filter(Op):
    kind = "filter"
    # Names of the stats this filter computes, Data-Juicer's keys (``text_len``, ...).
    stat_keys: ClassVar[tuple[str, ...]] = ()
    # Arguments that only shape the mask, like thresholds: not part of the stats cache key.
    MASK_ARGS: ClassVar[tuple[str, ...]] = ("min_closed_interval", "max_closed_interval",
                                            "reversed_range")

    def __init__(self, min_closed_interval: bool = True, max_closed_interval: bool = True,
                 reversed_range: bool = False, **kwargs):
        """Data-Juicer's generic filter flags: open/closed bounds, and keeping the samples
        *outside* [min, max] instead (applied per stat)."""
        super().__init__(**kwargs)
        self.min_closed_interval = min_closed_interval
        self.max_closed_interval = max_closed_interval
        self.reversed_range = reversed_range
        custom_keep = type(self).keep is not Filter.keep
        if custom_keep and (not min_closed_interval or not max_closed_interval or reversed_range):
            raise ValueError(
                f"{self.name} does not support min_closed_interval/max_closed_interval/"
                f"reversed_range (its keep rule is not a plain [min, max] range); remove them")

    def stat_config(self) -> dict[str, Any]:
        return {k: v for k, v in super().stat_config().items() if k not in self.MASK_ARGS}

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """Default: every ``Threshold`` arg bounds its stat, inclusively unless the interval flags
        say otherwise; ``reversed_range`` keeps what falls outside, stat by stat (Data-Juicer)."""
        n = len(next(iter(stats.values())))
        mask = np.ones(n, dtype=bool)
        by_stat: dict[str, np.ndarray] = {}
        for arg, th in self.thresholds.items():
            value = getattr(self, arg)
            if value is None:
                continue
            col = stats[th.stat]
            if th.bound == "min":
                ok = (col >= value) if getattr(self, "min_closed_interval", True) else (col > value)
            else:
                ok = (col <= value) if getattr(self, "max_closed_interval", True) else (col < value)
            by_stat[th.stat] = by_stat.get(th.stat, np.ones(n, dtype=bool)) & ok
        for inside in by_stat.values():
            mask &= ~inside if getattr(self, "reversed_range", False) else inside
        return mask


# A deduplicator's ``shuffle_key``: how its rows group, which the engines read instead of its
# ``keep_mask`` (the Ray engine groups them on its workers, ``sandbox.engine.shuffle``):
# ``exact``: the first alive row of each hash stays (the base ``keep_mask``);
# ``media``: the same, but a row whose hash is empty or failed (``"!..."``) always stays
#   (``sandbox.ops.common.media.keep_first_media``: the image and video deduplicators);
# ``minhash``: rows linked by an equal MinHash band are one group, whose first row stays (the OP
#   gives its ``band_bounds()``; its hashes are the signatures' bytes).
# None: only the OP's ``keep_mask`` knows, so it runs on the driver (SimHash).
SHUFFLE_KEYS = ("exact", "media", "minhash")


class Deduplicator(Op):
    """``hash_batch`` computes one value per sample (a hash, or a signature for near-duplicate
    OPs); ``keep_mask`` then decides over the whole pool which alive samples stay. The default is
    exact matching: the first alive sample of each hash stays. Near-duplicate OPs (MinHash-LSH,
    SimHash) override ``keep_mask`` to cluster signatures.

    ``shuffle_key`` declares the rule ``keep_mask`` follows (``SHUFFLE_KEYS``), so that the
    engines can apply it without calling ``keep_mask`` row by row: a class that overrides
    ``keep_mask`` declares its own ``shuffle_key`` (None when no rule fits)."""

    kind = "deduplicator"
    shuffle_key: ClassVar[str | None] = "exact"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "keep_mask" in vars(cls) and "shuffle_key" not in vars(cls):
            raise TypeError(f"{cls.__name__} overrides keep_mask: declare its shuffle_key "
                            f"(one of {SHUFFLE_KEYS}, or None)")
        if cls.shuffle_key is not None and cls.shuffle_key not in SHUFFLE_KEYS:
            raise TypeError(f"{cls.__name__}.shuffle_key={cls.shuffle_key!r}: expected one of "
                            f"{SHUFFLE_KEYS} or None")

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
