"""What the evaluators share: a path or a list of paths as a list, the rows of a predicted
dataset, and a bootstrap interval as ``NAME_ci_low``/``NAME_ci_high`` metrics."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from sandbox.data.rows import iter_rows
from sandbox.verdict import bootstrap_interval


def as_list(value: Any) -> list[str]:
    """A path, a list of paths or None as a list of path strings."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


def read_rows(path: str) -> list[dict]:
    """Every row of a pool file (jsonl, json, parquet, csv) as a dict."""
    return list(iter_rows(Path(path)))


def ci_metrics(name: str, stat: Callable, arrays: tuple, n_boot: int,
               seed: int = 0) -> dict[str, float]:
    """``NAME_ci_low``/``NAME_ci_high``: the 95% bootstrap interval of ``stat(*arrays)`` over
    their rows (a fixed resampling seed, so two runs on the same rows resample alike); nothing
    when ``n_boot`` is 0 or the interval is undefined."""
    if n_boot <= 0:
        return {}
    low, high = bootstrap_interval(stat, arrays, n_boot=n_boot, seed=seed)
    return {} if math.isnan(low) else {f"{name}_ci_low": low, f"{name}_ci_high": high}
