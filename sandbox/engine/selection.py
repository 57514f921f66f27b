"""Selection: thresholds, deduplication and selectors turn a result file into one keep mask.

OP by OP in recipe order, vectorised (numpy masks; exact dedup is one ``np.unique`` over integer
hash codes of the alive rows), recording which OP dropped each sample. Because mappers and stats
are per sample, computing every stat on every sample and masking afterwards keeps exactly the
samples that applying the OPs one after the other would keep. Engine-independent: every engine
hands its result file to ``select``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.io import read_parquet
from sandbox.engine.common import hash_codes, hash_column, stat_column
from sandbox.engine.result import ComputedFile
from sandbox.ops import Deduplicator, Filter, Op, OpSpec, Selector


@dataclass
class Selection:
    keep: np.ndarray  # bool per sample
    dropped_code: np.ndarray  # int16 per sample: index into ``op_keys`` of the dropping OP, or -1
    op_keys: list[str]
    retention: list[dict[str, Any]]  # one row per OP: samples in/out

    @property
    def dropped_by(self) -> np.ndarray:
        """Object per sample: key of the OP that dropped it, or None."""
        return self.op_key_names()[self.dropped_code]  # -1 picks the trailing None

    def op_key_names(self) -> np.ndarray:
        """``op_keys`` plus a trailing None, as an object array indexed by ``dropped_code``."""
        return np.array(list(self.op_keys) + [None], dtype=object)


def first_alive(codes: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Bool mask: the alive samples that are the first alive sample of their hash code."""
    idx = np.flatnonzero(alive)
    keep = np.zeros(len(alive), dtype=bool)
    if idx.size:
        _, first = np.unique(codes[idx], return_index=True)  # first occurrence (stable)
        keep[idx[first]] = True
    return keep


def select(specs: list[OpSpec], ops: list[Op], columns, n: int, fields=None,
           dedup=None) -> Selection:
    """Apply thresholds, deduplication and selectors. ``columns`` is a dict of arrays or a
    ``ComputedFile`` (checked to line up with the pool's ``n`` rows; only the columns the OPs
    need are loaded). ``fields`` gives selectors the sample columns they read: a dict of lists,
    or the path of the pool's Parquet file (only those columns are read). Selectors keep their
    selected samples; the order of the output stays the pool's order. ``dedup``: what decides
    the deduplicators for which ``dedup.handles(op)`` is true, elsewhere, with
    ``dedup.keep(spec, op, alive) -> (stay, stay_alone)`` (``sandbox.engine.shuffle``); their
    columns are then never loaded here."""
    handled = [dedup is not None and dedup.handles(op) for op in ops]
    if isinstance(columns, ComputedFile):
        columns.check_aligned(n, fields if isinstance(fields, (str, Path)) else None)
        columns = _needed_columns(columns, [s for s, h in zip(specs, handled) if not h],
                                  [o for o, h in zip(ops, handled) if not h])
    alive = np.ones(n, dtype=bool)
    dropped = np.full(n, -1, dtype=np.int16)
    rows = []
    for i, (spec, op) in enumerate(zip(specs, ops)):
        before = int(np.count_nonzero(alive))
        alone = 0
        if isinstance(op, Filter):
            stats = {s: columns[stat_column(spec.key, s)] for s in op.stat_keys}
            passed = np.asarray(op.keep(stats), dtype=bool)
            alone = int(n - np.count_nonzero(passed))
            newly = alive & ~passed
        elif handled[i]:
            stay, stay_alone = dedup.keep(spec, op, alive)
            newly = alive & ~stay
            alone = int(n - np.count_nonzero(stay_alone))
        elif isinstance(op, Deduplicator) and exact(op):
            codes = hash_codes(columns[hash_column(spec.key)])
            newly = alive & ~first_alive(codes, alive)
            alone = int(n - np.unique(codes).size)
        elif isinstance(op, Deduplicator):
            hashes = columns[hash_column(spec.key)]
            newly = alive & ~np.asarray(op.keep_mask(hashes, alive.copy()), dtype=bool)
            alone = int(n - np.count_nonzero(op.keep_mask(hashes, np.ones(n, dtype=bool))))
        elif isinstance(op, Selector):
            idx = np.flatnonzero(alive)
            values = _selector_fields(op, fields, idx)
            chosen = np.asarray(op.select(values, len(idx)), dtype=np.int64)
            stay = np.zeros(n, dtype=bool)
            stay[idx[chosen]] = True
            newly = alive & ~stay
        else:
            newly = np.zeros(n, dtype=bool)
        dropped[newly] = i
        alive &= ~newly
        rows.append({"op": spec.key, "name": spec.name, "kind": op.kind, "in": before,
                     "out": int(np.count_nonzero(alive)), "dropped": int(np.count_nonzero(newly)),
                     "would_drop_alone": alone})
    return Selection(alive, dropped, [s.key for s in specs], rows)


def _needed_columns(computed: ComputedFile, specs: list[OpSpec], ops: list[Op]) -> dict:
    """The stat columns and exact-dedup hash codes the OPs decide on, and the raw signatures of
    near-duplicate OPs (they decide over those)."""
    needed, raw = [], {}
    for spec, op in zip(specs, ops):
        if isinstance(op, Filter):
            needed += [stat_column(spec.key, s) for s in op.stat_keys]
        elif isinstance(op, Deduplicator):
            if exact(op):
                needed.append(hash_column(spec.key))
            else:
                raw[hash_column(spec.key)] = computed.raw(hash_column(spec.key))
    return dict(computed.columns(needed)) | raw


def _selector_fields(op: Selector, fields, idx: np.ndarray) -> dict[str, list]:
    names = list(op.input_fields())
    if not names:
        return {}
    if fields is None:
        raise ValueError(f"{op.name} reads {names}: pass the pool (fields=) to select()")
    if isinstance(fields, (str, Path)):
        table = read_parquet(fields, columns=names).take(idx)
        return {k: table.column(k).to_pylist() for k in names}
    return {k: [fields[k][i] for i in idx] for k in names}


def exact(op: Op) -> bool:
    """True for a deduplicator that declares the exact first-of-each-hash rule (its
    ``shuffle_key`` is ``exact``, the base class's ``keep_mask``): vectorised here."""
    return isinstance(op, Deduplicator) and op.shuffle_key == "exact"
