"""What the image and video OPs share: the ``media_error`` stat, the base of the media filters
(per-media stat lists, any/all keep), and the media hashes and keep rule of the image and video
deduplicators.

Every media filter records ``media_error``: ``""`` for a sample whose media could all be read,
else ``"<path>: <reason>; ..."``. A deduplicator's hash of a sample whose media cannot all be
read is ``"!<path>: <reason>"`` (``failed_hash``): never equal to a real hash, and such a sample,
like one without media, is never removed (``keep_first_media``).
"""
from __future__ import annotations

import numpy as np

from sandbox.data.decode import MediaError, memo
from sandbox.data.media import media_list
from sandbox.ops.base import Filter, TextViews

MEDIA_ERROR = "media_error"  # the stat every media filter adds: why a sample's media failed
MEDIA_STATS_VERSION = 2  # part of every media filter's stats cache key (``stat_config``)


def usable(v) -> bool:
    """False for the value a media stat takes when its file could not be read (NaN, or a
    negative count)."""
    return v is not None and v == v and v >= 0


def any_all(lists, ok, any_mode: bool) -> np.ndarray:
    out = np.ones(len(lists), dtype=bool)
    for i, values in enumerate(lists):
        bools = [ok(v) for v in values]
        if bools:
            out[i] = any(bools) if any_mode else all(bools)
    return out


def object_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def per_media_column(lists: list[list], dtype) -> np.ndarray:
    """A stat column of one list per sample. Empty lists become empty arrays of ``dtype`` (as
    Data-Juicer stores them), so that a batch without any media still has a typed column."""
    return object_column([v if len(v) else np.array([], dtype=dtype) for v in lists])


def rows_of(col) -> list:
    """A stat column (numpy, list or Arrow) as a list of per-sample values."""
    return col.to_pylist() if hasattr(col, "to_pylist") else list(col)


class MediaFilter(Filter):
    """Stats are lists (one value per image or video), so these filters declare no
    ``thresholds``: the k-sigma refiner leaves them alone; ``keep`` applies the bounds with
    any/all semantics. ``media_key_arg`` names the parameter that holds the sample column."""

    media_key_arg = "image_key"
    # parameters that change the stats (part of the stats cache key); the bounds and any_or_all
    # only shape the mask, so moving them re-uses the cached stats
    stat_args: tuple[str, ...] = ()

    def stat_config(self) -> dict:
        # ``media_stats``: the layout of these stats (2: ``media_error`` added), so that results
        # cached by an earlier version are not read as these
        return {"media_stats": MEDIA_STATS_VERSION,
                **{k: getattr(self, k) for k in (self.media_key_arg, *self.stat_args)}}

    def _media_setup(self, any_or_all: str, key: str):
        if any_or_all not in ("any", "all"):
            raise ValueError(f"{self.name}: any_or_all must be 'any' or 'all', got {any_or_all!r}")
        self.any_or_all = any_or_all
        setattr(self, self.media_key_arg, key)

    def input_fields(self) -> tuple[str, ...]:
        return (getattr(self, self.media_key_arg),)

    def _paths(self, views: TextViews) -> list[list[str]]:
        return [media_list(p) for p in views.field(getattr(self, self.media_key_arg), self.name)]

    def per_media(self, views: TextViews, fn, fail, *args) -> tuple[list[list], np.ndarray]:
        """``fn(path, *args)`` for every media path of every sample, through the batch's memo;
        ``fail`` stands for the value of a path that cannot be used. Returns the per-sample
        lists and the ``media_error`` column."""
        m = memo(views)
        values, errors = [], []
        for paths in self._paths(views):
            row, why = [], []
            for p in paths:
                v, err = m.try_get(fn, p, *args)
                if err is not None:
                    why.append(str(err))
                    v = fail
                row.append(v)
            values.append(row)
            errors.append("; ".join(dict.fromkeys(why)))
        return values, object_column(errors)

    def _keep_range(self, col, lo, hi) -> np.ndarray:
        return any_all(rows_of(col), lambda v: usable(v) and lo <= v <= hi,
                        self.any_or_all == "any")


def failed_hash(errors: list[MediaError]) -> str:
    """The hash of a sample whose media cannot all be read: never equal to a real hash, and it
    says why."""
    return "!" + "; ".join(dict.fromkeys(str(e) for e in errors))


def media_hashes(views: TextViews, paths: list[list[str]], fn, *args) -> list[str]:
    """Per sample: ``""`` without media; the concatenation of ``fn(path, *args)`` over its
    distinct paths (first-appearance order), each computed once per batch through the memo;
    ``failed_hash`` when one of them cannot be read."""
    m = memo(views)
    out = []
    for row in paths:
        parts, errors = [], []
        for p in dict.fromkeys(row):
            value, err = m.try_get(fn, p, *args)
            if err is not None:
                errors.append(err)
            else:
                parts.append(value)
        out.append(failed_hash(errors) if errors else "".join(parts))
    return out


def keep_first_media(hashes, alive: np.ndarray) -> np.ndarray:
    """The first alive sample of each hash stays; samples with an empty or failed (``"!..."``)
    hash always stay. A hash is a string, or ``[media hash, text hash]`` with ``consider_text``
    (then only the pair counts, as in Data-Juicer)."""
    keep = np.zeros(len(alive), dtype=bool)
    seen: set = set()
    for i in np.flatnonzero(alive):
        h = hashes[i]
        key = tuple(h) if isinstance(h, (list, tuple, np.ndarray)) else h
        if not key or (isinstance(key, str) and key.startswith("!")):
            keep[i] = True
        elif key not in seen:
            seen.add(key)
            keep[i] = True
    return keep
