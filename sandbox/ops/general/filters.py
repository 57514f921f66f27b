"""Filters over sample fields other than the text: the source-file suffix (``suffix_filter``)
and the value of a (nested) field, categorical or numeric (``specified_field_filter``,
``specified_numeric_field_filter``).
"""
from __future__ import annotations

from typing import List, Union

import numpy as np

from sandbox.ops.base import MAXSIZE, Filter, TextViews, Threshold
from sandbox.ops.registry import register


def _field_value(sample_col, key_path: list[str], op: str):
    value = sample_col
    for k in key_path:
        if not isinstance(value, dict) or k not in value:
            keys = list(value.keys()) if isinstance(value, dict) else type(value).__name__
            raise KeyError(f"{op}: '{k}' not in {keys}")
        value = value[k]
    return value


class _FieldFilter(Filter):
    """Filters over a (possibly nested, dot-separated) sample field rather than the text."""

    def input_fields(self) -> tuple[str, ...]:
        return (self.field_key.split(".")[0],) if self.field_key else ()

    def _values(self, views: TextViews) -> list:
        head, *rest = self.field_key.split(".")
        return [_field_value(v, rest, self.name) for v in views.field(head, self.name)]


@register
class SuffixFilter(Filter):
    """Keep samples whose file suffix (Data-Juicer's ``__dj__suffix__`` column, e.g. ``.txt``,
    set when loading files) is one of ``suffixes``; no suffixes keeps everything. The stat
    ``suffix`` is the sample's value of that column."""

    name = "suffix_filter"
    description = "Keep samples whose source-file suffix is one of suffixes."
    stat_keys = ("suffix",)
    SUFFIX_FIELD = "__dj__suffix__"

    def __init__(self, suffixes: Union[str, List[str]] = [], **kwargs):
        super().__init__(**kwargs)
        self.suffixes = suffixes
        self._suffixes = [] if suffixes is None else ([suffixes] if isinstance(suffixes, str)
                                                      else list(suffixes))

    def input_fields(self) -> tuple[str, ...]:
        return (self.SUFFIX_FIELD,) if self._suffixes else ()

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.empty(len(views.texts), dtype=object)
        if self._suffixes:
            out[:] = list(views.field(self.SUFFIX_FIELD, self.name))
        return {"suffix": out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = stats["suffix"]
        if not self._suffixes:
            return np.ones(len(col), dtype=bool)
        return np.array([v in self._suffixes for v in col], dtype=bool)


@register
class SpecifiedFieldFilter(_FieldFilter):
    """Keep samples whose field ``field_key`` (dot-separated for nested dicts: ``meta.lang``)
    holds only values in ``target_value`` (a scalar is a one-value list). An empty ``field_key``
    or ``target_value`` keeps everything. The stat is the field's value, under the name
    ``field_key`` as in Data-Juicer. Difference: Data-Juicer fails with the default empty
    ``field_key`` (its lookup of key '' asserts); here it keeps everything without reading."""

    name = "specified_field_filter"
    description = "Keep samples whose field value(s) are all in target_value."

    def __init__(self, field_key: str = "", target_value: list = [], **kwargs):
        super().__init__(**kwargs)
        self.field_key = field_key
        self.target_value = target_value
        self.stat_keys = (field_key or "field_value",)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.empty(len(views.texts), dtype=object)
        if self.field_key:
            out[:] = [v if not isinstance(v, list) else list(v) for v in self._values(views)] \
                if len(views.texts) else []
        return {self.stat_keys[0]: out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = stats[self.stat_keys[0]]
        if not (self.field_key and self.target_value):
            return np.ones(len(col), dtype=bool)
        out = np.ones(len(col), dtype=bool)
        for i, v in enumerate(col):
            vs = v if isinstance(v, (list, tuple, np.ndarray)) else [v]
            out[i] = all(x in self.target_value for x in vs)
        return out


def _dj_is_number(s) -> bool:
    if s:
        try:
            float(s)
            return True
        except (ValueError, TypeError):
            pass
    return False


@register
class SpecifiedNumericFieldFilter(_FieldFilter):
    """Keep samples whose field ``field_key`` (dot-separated for nested dicts) is a number in
    ``[min_value, max_value]``; an empty ``field_key`` keeps everything. The stat (named
    ``field_key``) is ``float(value)``, NaN where Data-Juicer's ``is_number`` says no, and such
    samples are dropped. Data-Juicer quirk kept: ``is_number`` starts with ``if s:``, so a value
    of ``0``/``0.0``/``False`` counts as not a number and the sample is dropped (the string
    ``"0"`` is a number)."""

    name = "specified_numeric_field_filter"
    description = "Keep samples whose numeric field value is within [min_value, max_value]."

    def __init__(self, field_key: str = "", min_value: float = -MAXSIZE, max_value: float = MAXSIZE,
                 **kwargs):
        super().__init__(**kwargs)
        self.field_key = field_key
        self.min_value = min_value
        self.max_value = max_value
        stat = field_key or "field_value"
        self.stat_keys = (stat,)
        self.thresholds = {"min_value": Threshold(stat, "min", low=-float(MAXSIZE), high=float(MAXSIZE)),
                           "max_value": Threshold(stat, "max", low=-float(MAXSIZE), high=float(MAXSIZE))}

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.full(len(views.texts), np.nan, dtype=np.float64)
        if self.field_key:
            for i, v in enumerate(self._values(views)):
                if _dj_is_number(v):
                    out[i] = float(v)
        return {self.stat_keys[0]: out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = np.asarray(stats[self.stat_keys[0]], dtype=np.float64)
        if not self.field_key:
            return np.ones(len(col), dtype=bool)
        return (col >= self.min_value) & (col <= self.max_value)
