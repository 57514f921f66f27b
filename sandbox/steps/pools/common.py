"""What the pool steps share: a pool's file, its ``__row__`` column, and lists of pools."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.data.io import read_parquet, write_parquet
from sandbox.engine import to_numpy
from sandbox.errors import ConfigError, DataError
from sandbox.utils import atomic_path, safe_name

ROW = "__row__"


def read_pool(path: str):
    return read_parquet(path)


def write_pool(table, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(write_parquet(table, folder / f"{safe_name(name)}.parquet"))


def with_rows(table):
    if ROW in table.column_names:
        return table
    return table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def pool_rows(pool: dict) -> np.ndarray:
    t = read_pool(pool["dataset"])
    if ROW not in t.column_names:
        raise DataError(f"pool {pool.get('name')!r} ({pool['dataset']}) has no `{ROW}` column: "
                        f"combine only pools built by PoolConstruction from one dataset.")
    return to_numpy(t.column(ROW))


def as_pools(pools: Any, what: str) -> list[dict]:
    if isinstance(pools, dict) and "dataset" in pools:
        pools = [pools]
    if not isinstance(pools, list) or not all(isinstance(p, dict) and "dataset" in p
                                               for p in pools):
        raise ConfigError(f"{what}: expected a list of pools ({{name, dataset, size}} dicts), "
                          f"got {type(pools).__name__}. Wire it to a pool step's `pools` output.")
    return pools


def write_csv(path: Path, rows: list[dict]) -> str:
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                        for k, v in r.items()})
    return str(path)
