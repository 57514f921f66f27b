"""Deduplication across a Ray cluster: keys shuffled by hash, groups joined across partitions.

``RayEngine.select`` keeps thresholds and selectors on the driver (they need a few bytes per row)
and hands the deduplicators that declare a ``shuffle_key`` (``sandbox.ops.base.SHUFFLE_KEYS``) to
``ShuffleDedup``: exact ones (``document_deduplicator``; ``media``: image and video
deduplicators, whose rows with an empty or unreadable hash always stay) and MinHash ones
(``document_minhash_deduplicator``), so that neither their hash columns (~36 B/row) nor the
MinHash signatures (~1 KB/row) pass through the driver:

1. **map**, one Ray task per piece of the result file (``shuffle_rows`` rows): read the OP's
   column for those rows and turn each row into its group keys. Exact: the hash value. MinHash:
   one key per band, ``(band j, the band's signature values)``. Each key is hashed to 64 bits
   (``minhash_kernels.key_hashes``) and the records ``(band, key, row id, alive)`` are split by
   that hash into ``P`` partitions (the task's ``P`` return values).
2. **reduce**, one task per partition, fed partition ``p`` of every map: records are grouped by
   their exact key bytes (a 64-bit hash collision never joins two groups) and every group of two
   or more rows gives star edges ``(its smallest row id, row id)``: once over all rows (for the
   retention table's "would drop alone") and once over the alive rows.
3. **join**, on the driver: a union-find over the edges (one per duplicate row and band, not one
   per row; ``minhash_kernels.components_keep``) joins the groups that different bands put in
   different partitions, and the smallest row id of each connected group stays.

The kept set equals selection on one machine (``sandbox.engine.selection``): exact dedup keeps
the first alive row of each hash, which is its smallest row id, and ``lsh_keep`` keeps the root
of each group of rows linked by an equal band, which is its smallest row id too. Neither depends
on how the rows were split, nor on which task finished first. (Data-Juicer's Ray deduplicators
keep whichever copy reaches them first, so their output changes from run to run.)

``document_simhash_deduplicator`` (pairs within a Hamming distance, found by permuted tables)
declares no ``shuffle_key`` and runs on the driver.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.engine.common import ROW_ID_COLUMN, hash_column, to_numpy
from sandbox.engine.result import ComputedFile, misaligned
from sandbox.ops import Deduplicator, Op, OpSpec


def rule(op: Op) -> str | None:
    """How ``ShuffleDedup`` groups the OP's rows, as the OP declares it (its ``shuffle_key``):
    ``exact`` (the first of each hash stays), ``media`` (the same, but rows with an empty or
    failed hash always stay: image and video deduplicators, ``keep_first_media``), ``minhash``
    (rows linked by an equal band), or None for a deduplicator it cannot run (SimHash) and for
    other OPs."""
    return op.shuffle_key if isinstance(op, Deduplicator) else None


def shuffles(op: Op) -> bool:
    """True for the deduplicators ``ShuffleDedup`` runs (``rule``)."""
    return rule(op) is not None


PARTITION_BYTES = 128 * 1024 ** 2  # records per reduce task, when the count is automatic
RECORD_BYTES = 19  # a record besides its key: band 2 B, key offset 8 B, row id 8 B, alive 1 B


def auto_partitions(n: int, bands: tuple[np.ndarray, np.ndarray] | None, least: int) -> int:
    """Reduce tasks for ``n`` rows: ``least`` (one per worker), or more, so that each gets
    about ``PARTITION_BYTES`` of records at most (a reducer holds its records a few times over
    while grouping). ``bands``: MinHash band bounds, or None for exact keys (~40 B)."""
    per_row = (40 + RECORD_BYTES if bands is None
               else int(np.sum(4 * (bands[1] - bands[0]) + RECORD_BYTES)))
    return max(1, int(least), -(-n * per_row // PARTITION_BYTES))


class ShuffleDedup:
    """Exact and MinHash dedup of one result file as a Ray shuffle (see the module docstring).
    ``ray``: the initialised module; ``map_rows``: rows per map task; ``partitions``: reduce
    tasks, or 0 for ``auto_partitions`` with at least ``least_partitions``. ``records`` and
    ``shuffled_bytes`` count what went through the object store (for the benchmark)."""

    def __init__(self, ray, computed: ComputedFile, map_rows: int, partitions: int = 0,
                 least_partitions: int = 1):
        self.ray, self.computed = ray, computed
        self.partitions, self.least_partitions = max(0, int(partitions)), least_partitions
        self.pieces = result_pieces(computed.path, max(1, int(map_rows)))
        self.records = 0
        self.shuffled_bytes = 0

    handles = staticmethod(shuffles)

    def keep(self, spec: OpSpec, op: Op, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(stay, stay_alone)``: the alive rows that stay, and the rows that would stay were
        every row alive (as ``Selection``'s "would drop alone")."""
        ray, n = self.ray, len(alive)
        if not self.pieces:  # an empty pool
            return alive.copy(), np.ones(n, dtype=bool)
        how = rule(op)
        bands = op.band_bounds() if how == "minhash" else None
        width = None if bands is None else 4 * int(bands[1][-1])
        parts = self.partitions or auto_partitions(n, bands, self.least_partitions)
        mapper = ray.remote(num_cpus=1, num_returns=parts, max_retries=3)(map_keys)
        maps = []
        for piece in self.pieces:
            first, stop = piece[4], piece[4] + piece[3] - piece[2]
            out = mapper.remote(str(self.computed.path), hash_column(spec.key), piece,
                                alive[first:stop], how, bands, width, parts)
            maps.append([out] if parts == 1 else out)
        # partitions spread over the nodes (by default Ray would follow the largest inputs)
        reducer = ray.remote(num_cpus=1, max_retries=3, scheduling_strategy="SPREAD")(
            reduce_edges)
        reduces = [reducer.remote(*(m[p] for m in maps)) for p in range(parts)]
        edges_alive, edges_all = [], []
        for records, size, alive_edges, all_edges in ray.get(reduces):
            self.records += records
            self.shuffled_bytes += size
            edges_alive.append(alive_edges)
            edges_all.append(all_edges)
        return (alive & components(n, edges_alive), components(n, edges_all))


# A piece of a result file: row groups [lo, hi) read together, rows [start, stop) of them, and
# the row id of its first row
Piece = tuple[int, int, int, int, int]


def result_pieces(path, rows: int) -> list[Piece]:
    """The result file at ``path`` cut into pieces of at most ``rows`` rows: runs of whole row
    groups (the engine writes one per OP batch), and slices of a row group larger than that."""
    meta = pq.ParquetFile(path).metadata
    pieces: list[Piece] = []
    lo, size, first = 0, 0, 0  # the run of whole groups being gathered
    for g in range(meta.num_row_groups):
        m = meta.row_group(g).num_rows
        if size and size + m > rows:
            pieces.append((lo, g, 0, size, first))
            first += size
            lo, size = g, 0
        if m > rows:
            pieces += [(g, g + 1, a, min(m, a + rows), first + a) for a in range(0, m, rows)]
            first += m
            lo = g + 1
        else:
            size += m
    if size:
        pieces.append((lo, meta.num_row_groups, 0, size, first))
    return pieces


def components(n: int, edges: list[np.ndarray]) -> np.ndarray:
    """Bool per row of ``0..n-1``: the smallest row of each group the ``(2, k)`` edge arrays
    link (a row without edges is its own group)."""
    from sandbox.ops.common import minhash_kernels as mk

    both = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), dtype=np.int64)
    return mk.components_keep(n, both[0], both[1])


# ------------------------------------------------------------------------------ on the workers
def map_keys(path: str, column: str, piece: Piece, alive: np.ndarray, how: str,
             bands: tuple[np.ndarray, np.ndarray] | None, width: int | None,
             partitions: int) -> Any:
    """One map task: the records of rows ``piece`` of the result file at ``path``, split into
    ``partitions`` tables by key hash (a single table when ``partitions`` is 1). ``how`` is the
    OP's ``rule``; for ``minhash``, ``bands`` are its band bounds (``band_bounds``) and every row
    is ``width`` bytes."""
    from sandbox.ops.common import minhash_kernels as mk

    lo, hi, start, stop, first = piece
    table = pq.ParquetFile(path).read_row_groups(range(lo, hi), columns=[ROW_ID_COLUMN, column])
    table = table.slice(start, stop - start)
    rows = to_numpy(table.column(0))
    if not np.array_equal(rows, np.arange(first, first + len(rows))):
        raise misaligned(path, None, f"the rows after offset {first} do not match")
    values = table.column(1).combine_chunks()
    if how == "minhash":
        keys, band, hashes = _band_keys(mk, _signature_words(values, width, path, column), bands)
        rows, alive = np.tile(rows, len(bands[0])), np.tile(alive, len(bands[0]))
    else:
        if how == "media":  # rows whose hash is empty or failed always stay: no records
            keys, grouped = _value_keys(values, media=True)
            rows, alive = rows[grouped], alive[grouped]
        else:
            keys = _as_binary(values)
        band = np.zeros(len(keys), dtype=np.int16)
        hashes = mk.key_hashes(*_bytes_and_offsets(keys), 0)
    records = pa.table({"band": band, "key": keys, "row": rows, "alive": alive})
    if partitions == 1:
        return records
    target = (hashes % np.uint64(partitions)).astype(np.int64)
    order = np.argsort(target, kind="stable")
    ends = np.searchsorted(target[order], np.arange(partitions + 1))
    # one compact table per partition (a slice would carry, and ship, the whole buffers)
    return [records.take(pa.array(order[lo:hi])) for lo, hi in zip(ends[:-1], ends[1:])]


def reduce_edges(*tables: pa.Table) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One reduce task: the records of one partition from every map, grouped by ``(band, key
    bytes)``. Returns the number of records, their bytes, and the star edges ``(2, k)`` int64
    ``(smallest row of the group, row)`` over the alive rows and over all rows."""
    table = pa.concat_tables(tables)
    size = int(table.nbytes)
    if table.num_rows == 0:
        none = np.zeros((2, 0), dtype=np.int64)
        return 0, size, none, none
    codes = to_numpy(table.column("key").combine_chunks().dictionary_encode().indices)
    band = to_numpy(table.column("band")).astype(np.int64)
    group = codes.astype(np.int64) * (int(band.max()) + 1) + band
    rows = to_numpy(table.column("row"))
    alive = to_numpy(table.column("alive")).astype(bool)
    return table.num_rows, size, star_edges(group[alive], rows[alive]), star_edges(group, rows)


def star_edges(group: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(2, k)`` int64: for every row whose group has a smaller row, the edge (smallest row of
    its group, row); each pair once."""
    order = np.lexsort((rows, group))
    group, rows = group[order], rows[order]
    head = np.ones(len(rows), dtype=bool)
    head[1:] = group[1:] != group[:-1]
    smallest = rows[np.flatnonzero(head)][np.cumsum(head) - 1]
    src, dst = smallest[~head].astype(np.int64), rows[~head].astype(np.int64)
    src, dst = src[src != dst], dst[src != dst]  # a row twice in a group links nothing
    if len(src) > 1:  # the same pair from several bands: once (a 1-D sort when ids fit 32 bits)
        if int(dst.max()) < 2 ** 32:
            pairs = np.unique((src.astype(np.uint64) << np.uint64(32)) | dst.astype(np.uint64))
            src, dst = (pairs >> np.uint64(32)).astype(np.int64), \
                (pairs & np.uint64(0xFFFFFFFF)).astype(np.int64)
        else:
            src, dst = np.unique(np.stack([src, dst]), axis=1)
    return np.stack([src, dst])


def _as_binary(values: pa.Array) -> pa.Array:
    """An exact-dedup hash column as byte strings: equal values, equal bytes."""
    if pa.types.is_integer(values.type) and not values.null_count:
        raw = np.asarray(values.to_numpy(zero_copy_only=False), dtype="<i8")
        return pa.Array.from_buffers(pa.large_binary(), len(raw), [
            None, pa.py_buffer(np.arange(len(raw) + 1, dtype=np.int64) * 8),
            pa.py_buffer(raw.tobytes())])
    if (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            or pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)) \
            and not values.null_count:
        return values.cast(pa.large_binary())
    return _value_keys(values, media=False)[0]  # lists, nulls: value by value


def _value_keys(values: pa.Array, media: bool) -> tuple[pa.Array, np.ndarray]:
    """The hashes of a column as key bytes, value by value, equal exactly when the values are
    equal as ``Deduplicator.keep_mask`` compares them (a list as the tuple of its items; items
    length-prefixed so that no two lists share bytes; None apart from every string), and a mask
    of the rows that take part. ``media``: ``keep_first_media``'s rule, where a row whose hash is
    empty, None or a failed one (``"!..."``) always stays, so it takes no part."""
    def item(x) -> bytes:
        return b"\xff" * 4 if x is None else len(b := _encoded(x)).to_bytes(4, "little") + b

    keys, grouped = [], []
    for h in values.to_pylist():
        if media and (not h or (isinstance(h, str) and h.startswith("!"))):
            grouped.append(False)
            continue
        grouped.append(True)
        if isinstance(h, list):
            keys.append(b"L" + b"".join(map(item, h)))
        else:
            keys.append(b"N" if h is None else b"V" + _encoded(h))
    return pa.array(keys, pa.large_binary()), np.array(grouped, dtype=bool)


def _encoded(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else repr(value)).encode("utf-8", "surrogatepass")


def _signature_words(values: pa.Array, width: int, path: str, column: str) -> np.ndarray:
    """The MinHash column's rows as one uint32 matrix (every row ``width`` bytes)."""
    values = values.cast(pa.large_binary())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[
        values.offset:values.offset + len(values) + 1]
    if values.null_count or not np.all(np.diff(offsets) == width):
        raise misaligned(path, None, f"column {column} does not hold MinHash signatures of "
                                     f"{width} bytes per row")
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.view("<u4").reshape(len(values), width // 4)


def _band_keys(mk, words: np.ndarray, bands: tuple[np.ndarray, np.ndarray]
               ) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The MinHash records' keys, band indices and key hashes, band after band: every row's
    band j is the values ``words[:, starts[j]:ends[j]]``. Keys are fixed-width byte strings when
    every band has the same width (no offsets to ship), else variable-width ones."""
    m = len(words)
    cut = [np.ascontiguousarray(words[:, c0:c1]).view(np.uint8).reshape(m, -1)
           for c0, c1 in zip(*bands)]
    hashes = np.concatenate([
        mk.key_hashes(b.reshape(-1), np.arange(m + 1, dtype=np.int64) * b.shape[1], j)
        for j, b in enumerate(cut)])
    band = np.repeat(np.arange(len(cut), dtype=np.int16), m)
    data = pa.py_buffer(np.concatenate([b.reshape(-1) for b in cut]).tobytes())
    sizes = {b.shape[1] for b in cut}
    if len(sizes) == 1 and 0 not in sizes:
        keys = pa.Array.from_buffers(pa.binary(sizes.pop()), len(band), [None, data])
    else:
        offsets = np.zeros(len(band) + 1, dtype=np.int64)
        np.cumsum(np.repeat([b.shape[1] for b in cut], m), out=offsets[1:])
        keys = pa.Array.from_buffers(pa.large_binary(), len(band),
                                     [None, pa.py_buffer(offsets), data])
    return keys, band, hashes


def _bytes_and_offsets(keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A large_binary array's data bytes and its ``len + 1`` offsets into them."""
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset:
                                                                keys.offset + len(keys) + 1]
    data = keys.buffers()[2]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8),
            offsets)
