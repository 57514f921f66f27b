"""The data engine: run a recipe's OPs over a pool, in batches, on several processes.

Two phases, kept apart on purpose:

1. ``compute``: mappers edit the text, filters compute stats, deduplicators compute hashes, for
   *every* sample (nothing is dropped). This never looks at thresholds, so its result is cached
   by (input fingerprint, the OPs' names and stat-relevant parameters): probe and process share
   it, and a threshold change or a sweep trial re-uses it.
2. ``select``: thresholds turn stats into masks, OP by OP in recipe order, and deduplicators keep
   the first alive sample of each hash. Cheap (vectorised), and it records which OP dropped each
   sample (drop reasons as data).

Because mappers and stats are per-sample, computing every stat on every sample and masking
afterwards keeps exactly the samples that applying the OPs one after the other would keep.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.ops import Deduplicator, Filter, Mapper, Op, OpSpec, TextViews
from sandbox.utils import stable_hash

TEXT_COLUMN = "__text__"
ENGINE_VERSION = 1  # bump when stat/cache layout changes


def stat_column(key: str, stat: str) -> str:
    return f"{key}.{stat}"


def hash_column(key: str) -> str:
    return f"{key}.hash"


@dataclass
class Computed:
    texts: list[str]  # text after all mappers
    columns: dict[str, np.ndarray]  # stat and hash columns, one value per sample
    cache_hit: bool = False


# ---------------------------------------------------------------- compute (stats, text, hashes)
_WORKER_OPS: list[tuple[str, Op]] = []


def _init_worker(specs: list[OpSpec], text_key: str) -> None:
    from sandbox.ops import get_op_class

    global _WORKER_OPS
    _WORKER_OPS = [(s.key, get_op_class(s.name)(text_key=text_key, **s.args)) for s in specs]


def _run_batch(texts: list[str]) -> tuple[list[str], dict[str, Any]]:
    cols: dict[str, Any] = {}
    views = TextViews(texts)
    for key, op in _WORKER_OPS:
        if isinstance(op, Mapper):
            texts = op.process_batch(views.texts)
            views = TextViews(texts)  # derived views are stale once the text changed
        elif isinstance(op, Filter):
            for stat, values in op.compute_stats_batch(views).items():
                cols[stat_column(key, stat)] = values
        elif isinstance(op, Deduplicator):
            cols[hash_column(key)] = op.hash_batch(views)
    return views.texts, cols


def cache_key(fingerprint: str, specs: list[OpSpec], text_key: str) -> str:
    from sandbox.ops import get_op_class

    parts = []
    for s in specs:
        op = get_op_class(s.name)(text_key=text_key, **s.args)
        parts.append([s.key, s.name, op.stat_config()])
    return stable_hash([ENGINE_VERSION, fingerprint, text_key, parts], n=24)


def compute(texts: list[str], specs: list[OpSpec], text_key: str = "text", num_proc: int = 1,
            batch_size: int = 512, cache_dir: Path | None = None, fingerprint: str | None = None,
            progress=None) -> Computed:
    """Run every OP on every sample; cached when ``cache_dir`` and ``fingerprint`` are given."""
    cache_file = None
    if cache_dir is not None and fingerprint is not None:
        cache_file = Path(cache_dir) / "stats" / f"{cache_key(fingerprint, specs, text_key)}.parquet"
        if cache_file.exists():
            got = _load_cache(cache_file, texts)
            if got is not None:
                return got

    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    results: list[tuple[list[str], dict[str, Any]]] = []
    advance = progress or (lambda n=1: None)
    if num_proc > 1 and len(batches) > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(num_proc, initializer=_init_worker, initargs=(specs, text_key)) as pool:
            for res in pool.imap(_run_batch, batches, chunksize=1):
                results.append(res)
                advance(len(res[0]))
    else:
        _init_worker(specs, text_key)
        for b in batches:
            results.append(_run_batch(b))
            advance(len(b))

    out_texts = [t for r in results for t in r[0]]
    columns: dict[str, np.ndarray] = {}
    for name in (results[0][1] if results else {}):
        parts = [r[1][name] for r in results]
        columns[name] = (np.concatenate([np.asarray(p) for p in parts])
                         if not name.endswith(".hash") else np.array(sum((list(p) for p in parts), []),
                                                                      dtype=object))
    computed = Computed(out_texts, columns)
    if cache_file is not None:
        _save_cache(cache_file, computed, changed=any(isinstance_mapper(s) for s in specs))
    return computed


def isinstance_mapper(spec: OpSpec) -> bool:
    from sandbox.ops import get_op_class

    return issubclass(get_op_class(spec.name), Mapper)


def _save_cache(path: Path, c: Computed, changed: bool) -> None:
    import pyarrow as pa

    from sandbox.data.io import write_parquet

    data: dict[str, Any] = {}
    if changed:
        data[TEXT_COLUMN] = pa.array(c.texts, type=pa.large_string())
    for k, v in c.columns.items():
        data[k] = pa.array(list(v)) if v.dtype == object else pa.array(v)
    table = pa.table(data) if data else pa.table({"__n__": pa.array(np.zeros(len(c.texts), np.int8))})
    write_parquet(table, path)


def _load_cache(path: Path, texts: list[str]) -> Computed | None:
    from sandbox.data.io import read_parquet

    try:
        table = read_parquet(path)
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    if table.num_rows != len(texts):
        return None
    names = table.column_names
    out_texts = table.column(TEXT_COLUMN).to_pylist() if TEXT_COLUMN in names else list(texts)
    cols = {}
    for n in names:
        if n in (TEXT_COLUMN, "__n__"):
            continue
        col = table.column(n)
        cols[n] = (np.array(col.to_pylist(), dtype=object) if n.endswith(".hash")
                   else col.to_numpy())
    return Computed(out_texts, cols, cache_hit=True)


# ---------------------------------------------------------------- select (thresholds, dedup)
@dataclass
class Selection:
    keep: np.ndarray  # bool per sample
    dropped_by: np.ndarray  # object per sample: key of the OP that dropped it, or None
    retention: list[dict[str, Any]]  # one row per OP: samples in/out


def select(specs: list[OpSpec], ops: list[Op], columns: dict[str, np.ndarray], n: int) -> Selection:
    alive = np.ones(n, dtype=bool)
    dropped_by = np.full(n, None, dtype=object)
    rows = []
    for spec, op in zip(specs, ops):
        before = int(alive.sum())
        alone = 0
        if isinstance(op, Filter):
            stats = {s: columns[stat_column(spec.key, s)] for s in op.stat_keys}
            passed = np.asarray(op.keep(stats), dtype=bool)
            alone = int((~passed).sum())
            newly = alive & ~passed
        elif isinstance(op, Deduplicator):
            hashes = columns[hash_column(spec.key)]
            newly = np.zeros(n, dtype=bool)
            seen: set = set()
            for i in np.flatnonzero(alive):
                h = hashes[i]
                if h in seen:
                    newly[i] = True
                else:
                    seen.add(h)
            alone = _duplicates_in(hashes)
        else:
            newly = np.zeros(n, dtype=bool)
        dropped_by[newly] = spec.key
        alive &= ~newly
        rows.append({"op": spec.key, "name": spec.name, "kind": op.kind, "in": before,
                     "out": int(alive.sum()), "dropped": int(newly.sum()),
                     "would_drop_alone": alone})
    return Selection(alive, dropped_by, rows)


def _duplicates_in(hashes: np.ndarray) -> int:
    return len(hashes) - len(set(hashes.tolist()))
