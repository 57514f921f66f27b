"""Numeric helpers shared by steps: a stat column as float64, and Welch's t-test."""
from __future__ import annotations

import math

import numpy as np


def float_column(values, list_mean: bool = False) -> np.ndarray | None:
    """A per-sample stat as float64 (None -> NaN), or None when it is not one number per sample
    (strings; lists, unless ``list_mean``: then a list of numbers counts as its mean, as for
    per-image stats)."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    out = np.empty(len(arr), dtype=np.float64)
    for i, v in enumerate(arr):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            out[i] = float(v)
        elif list_mean and isinstance(v, (list, tuple, np.ndarray)):
            nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
            if len(nums) != len(v):
                return None
            out[i] = float(np.mean(nums)) if nums else np.nan
        else:
            return None
    return out


def welch_t(x, y) -> tuple[float, float]:
    """Welch's two-sided t-test: ``(t, p)``; ``(nan, nan)`` with fewer than 2 values a side.
    Two constant samples give ``(0, 1)`` when equal, else ``(±inf, 0)``."""
    from scipy.stats import ttest_ind

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    if x.var(ddof=1) + y.var(ddof=1) == 0:
        if x.mean() == y.mean():
            return 0.0, 1.0
        return math.copysign(math.inf, x.mean() - y.mean()), 0.0
    res = ttest_ind(x, y, equal_var=False)
    return float(res.statistic), float(res.pvalue)
