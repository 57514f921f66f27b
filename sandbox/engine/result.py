"""The result of running a recipe's OPs over a pool: a Parquet file aligned with the pool by
row id, read column by column (the layout is described in ``sandbox.engine.common``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq

from sandbox.data.io import read_parquet, row_chunks
from sandbox.engine.common import (FIELD_PREFIX, POOL_FINGERPRINT_KEY, ROW_ID_COLUMN,
                                   TEXT_COLUMN, hash_codes, is_stat_or_hash, object_array,
                                   to_numpy)
from sandbox.errors import DataError


@dataclass
class ComputedFile:
    """A result file: stat and hash columns, the row ids, and ``TEXT_COLUMN`` when a mapper
    changed the text. Columns are loaded on demand and kept."""

    path: Path
    num_rows: int
    has_text: bool
    cache_hit: bool = False
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def column_names(self) -> list[str]:
        """The stat and hash columns."""
        return [n for n in pq.ParquetFile(self.path).schema_arrow.names if is_stat_or_hash(n)]

    def field_names(self) -> list[str]:
        """The columns of sample fields media mappers changed (``field_column``)."""
        return [n for n in pq.ParquetFile(self.path).schema_arrow.names
                if n.startswith(FIELD_PREFIX)]

    def pool_fingerprint(self) -> str | None:
        """The fingerprint of the pool these results describe (from the file's metadata)."""
        meta = pq.ParquetFile(self.path).schema_arrow.metadata or {}
        value = meta.get(POOL_FINGERPRINT_KEY)
        return value.decode() if value is not None else None

    def columns(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Stat columns as numpy arrays; hash columns as int64 codes (equal hash = equal code)."""
        names = self.column_names() if names is None else names
        missing = [n for n in names if n not in self._columns]
        if missing:
            table = read_parquet(self.path, columns=missing)
            for n in missing:
                col = table.column(n)
                self._columns[n] = hash_codes(col) if n.endswith(".hash") else to_numpy(col)
        return {n: self._columns[n] for n in names}

    def raw(self, name: str) -> np.ndarray:
        """A column's values as a 1-D object array (signatures of near-duplicate OPs)."""
        return object_array(read_parquet(self.path, columns=[name]).column(name))

    def text_batches(self, batch_size: int) -> Iterator:
        """The mapped text, as Arrow arrays of ``batch_size`` rows (only when a mapper ran)."""
        for chunk in row_chunks(self.path, [TEXT_COLUMN], batch_size):
            yield chunk.column(0).combine_chunks()

    def check_aligned(self, num_rows: int, pool: str | Path | None = None) -> None:
        """Raise ``DataError`` unless this file holds row ids ``0..num_rows-1`` in order, i.e.
        one result per pool sample, in the pool's order. Read from the row groups' statistics
        (each group's ids must run from where the previous one stopped) without loading the
        ids; a file without statistics has its ids read and compared."""
        meta = pq.ParquetFile(self.path).metadata
        if meta.num_rows != num_rows:
            raise misaligned(self.path, pool, f"{meta.num_rows} result rows for {num_rows} samples")
        index = meta.schema.to_arrow_schema().get_field_index(ROW_ID_COLUMN)
        start = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = group.column(index).statistics if index >= 0 else None
            if stats is None or not stats.has_min_max or stats.null_count:
                return self._check_ids(num_rows, pool)
            if (stats.min, stats.max) != (start, start + group.num_rows - 1):
                raise misaligned(self.path, pool, f"the rows after offset {start} do not match")
            start += group.num_rows

    def _check_ids(self, num_rows: int, pool: str | Path | None) -> None:
        ids = to_numpy(read_parquet(self.path, columns=[ROW_ID_COLUMN]).column(0))
        if not np.array_equal(ids, np.arange(num_rows)):
            raise misaligned(self.path, pool, "row ids out of order")

    def check_chunk(self, ids: np.ndarray, start: int, pool: str | Path | None = None) -> None:
        """Raise ``DataError`` unless ``ids`` (a chunk of this file's row ids) are the pool
        offsets ``start, start+1, ...``."""
        if not np.array_equal(ids, np.arange(start, start + len(ids))):
            raise misaligned(self.path, pool, f"the rows after offset {start} do not match")


def misaligned(path: Path, pool: str | Path | None, why: str) -> DataError:
    """The error for a result file that does not line up with its pool."""
    of = f" the pool {pool}" if pool is not None else " its pool"
    return DataError(
        f"the engine's results {path} do not line up with{of} ({why}). The file is stale or "
        f"damaged: delete it (it lives under cache_dir/stats/ when cached) and run again."
    )
