"""Selectors (dataset-level) with Data-Juicer's (py-data-juicer 1.6.1) names and parameters.

A selector sees the pool as it is when its turn comes (the alive samples, in pool order): the
engine hands ``select(fields, n)`` the values of the columns the OP reads (``input_fields()``)
and gets back the indices of the selected samples, in Data-Juicer's output order.
"""
from __future__ import annotations

import heapq
import numbers
import sys
from itertools import chain, repeat
from typing import Optional

import numpy as np

from sandbox.ops.base import Selector
from sandbox.ops.registry import register


def stats_to_number(s, reverse: bool = True) -> float:
    """Data-Juicer's ``stats_to_number``: a string is parsed as a float, a list is averaged;
    anything that fails sorts last (``-sys.maxsize`` when ``reverse``, else ``sys.maxsize``)."""
    try:
        if isinstance(s, str):
            return float(s)
        if s is None or (isinstance(s, list) and len(s) == 0):
            raise ValueError("empty value")
        return float(np.asarray(s).mean())
    except Exception:
        return -sys.maxsize if reverse else sys.maxsize


def _nested(value, keys: list[str], op: str):
    for k in keys:
        if not isinstance(value, dict) or k not in value:
            raise KeyError(f"{op}: '{k}' not in {list(value) if isinstance(value, dict) else value!r}")
        value = value[k]
    return value


class _FieldSelector(Selector):
    def __init__(self, field_key: str = "", top_ratio: Optional[float] = None,
                 topk: Optional[int] = None, reverse: bool = True, **kwargs):
        super().__init__(**kwargs)
        if top_ratio is not None and not 0 <= top_ratio <= 1:
            raise ValueError(f"{self.name}: top_ratio must be in [0, 1], got {top_ratio!r}")
        if topk is not None and (isinstance(topk, bool) or topk < 1):
            raise ValueError(f"{self.name}: topk must be a positive integer, got {topk!r}")
        self.field_key = field_key
        self.top_ratio = top_ratio
        self.topk = topk
        self.reverse = reverse

    def input_fields(self) -> tuple[str, ...]:
        return (self.field_key.split(".")[0],) if self.field_key else ()


@register
class TopkSpecifiedFieldSelector(_FieldSelector):
    """Keep the ``topk`` samples (or ``top_ratio`` of the pool; the smaller when both are set)
    with the largest (``reverse: true``) or smallest values of field ``field_key``
    (dot-separated for nested dicts), ordered by that value, ties in pool order. Nested values go
    through Data-Juicer's ``stats_to_number`` (strings parsed, lists averaged, failures last);
    top-level values are compared as they are. Nothing set, or a pool of <= 1 sample: all kept."""

    name = "topk_specified_field_selector"
    description = "Select the top-k samples by a field's value."

    def select(self, fields: dict[str, list], n: int) -> np.ndarray:
        if n <= 1 or not self.field_key:
            return np.arange(n)
        if not self.top_ratio:
            if not self.topk:
                return np.arange(n)
            k = self.topk
        else:
            k = self.top_ratio * n
            if self.topk and self.topk < k:
                k = self.topk
        head, *rest = self.field_key.split(".")
        col = list(fields[head])
        if rest:
            col = [stats_to_number(_nested(v, rest, self.name), self.reverse) for v in col]
        pick = heapq.nlargest if self.reverse else heapq.nsmallest
        return np.asarray(pick(int(k), range(n), col.__getitem__), dtype=np.int64)


@register
class FrequencySpecifiedFieldSelector(_FieldSelector):
    """Group samples by the value of field ``field_key`` (str, number or None), sort groups by
    size (largest first with ``reverse: true``; ties in order of first appearance) and keep the
    samples of the first ``topk`` groups (or ``top_ratio`` of the number of groups; the smaller
    when both are set), group by group."""

    name = "frequency_specified_field_selector"
    description = "Select samples whose field value is among the most (or least) frequent."

    def select(self, fields: dict[str, list], n: int) -> np.ndarray:
        if n <= 1 or not self.field_key:
            return np.arange(n)
        head, *rest = self.field_key.split(".")
        groups: dict = {}
        for i, v in enumerate(fields[head]):
            v = _nested(v, rest, self.name)
            if not (v is None or isinstance(v, (str, numbers.Number))):
                raise TypeError(f"{self.name}: the {i} item is not String, Numbers or NoneType")
            groups.setdefault(v, []).append(i)
        if not self.top_ratio:
            if not self.topk:
                return np.arange(n)
            k = self.topk
        else:
            k = self.top_ratio * len(groups)
            if self.topk and self.topk < k:
                k = self.topk
        chosen = sorted(groups.values(), key=len, reverse=self.reverse)[: int(k)]
        return np.fromiter(chain.from_iterable(chosen), dtype=np.int64)


@register
class RandomSelector(Selector):
    """Keep ``select_num`` samples (or ``int(select_ratio * n)``; the smaller when both are set)
    drawn at random, as Data-Juicer does: the pool shuffled with ``numpy.random.default_rng(42)``
    (Hugging Face ``Dataset.shuffle(seed=42)``), first ones kept, in shuffled order; selecting
    exactly ``n`` keeps the pool as it is; more than ``n`` repeats samples."""

    name = "random_selector"
    description = "Select a random subset (seed 42) of select_num samples or select_ratio."

    def __init__(self, select_ratio: Optional[float] = None, select_num: Optional[int] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if select_ratio is not None and not 0 <= select_ratio <= 1:
            raise ValueError(f"{self.name}: select_ratio must be in [0, 1], got {select_ratio!r}")
        self.select_ratio = select_ratio
        self.select_num = select_num

    def select(self, fields: dict[str, list], n: int) -> np.ndarray:
        if n <= 1 or (self.select_ratio is None and self.select_num is None):
            return np.arange(n)
        if not self.select_ratio:
            k = self.select_num
        else:
            k = int(self.select_ratio * n)
            if self.select_num and self.select_num < k:
                k = self.select_num
        if k <= 0:
            k = n  # Data-Juicer's random_sample: a non-positive number means ceil(n * 1.0)
        if k == n:
            return np.arange(n)
        perm = np.random.default_rng(42).permutation(n)
        reps = int(np.ceil(k / n)) - 1
        pos = range(k) if reps <= 0 else chain(*repeat(range(n), reps), range(k - reps * n))
        return perm[np.fromiter(pos, dtype=np.int64)]
