"""Numeric helpers shared by steps: a stat column as float64 (tests and intervals:
``sandbox.verdict``)."""
from __future__ import annotations


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
