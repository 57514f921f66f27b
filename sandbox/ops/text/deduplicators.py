"""Text deduplicators with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and hashes:
``document_deduplicator`` (exact), ``document_minhash_deduplicator`` and
``document_simhash_deduplicator`` (near duplicates)."""
from __future__ import annotations

import functools
import hashlib
import json
import string
import struct
from collections import defaultdict
from typing import Optional

import numpy as np
import regex

from sandbox.cache import cache_root
from sandbox.ops.base import Deduplicator, TextViews
from sandbox.ops.registry import register
from sandbox.utils import atomic_write_json, stable_hash

# Data-Juicer's pattern, compiled with the `regex` module as Data-Juicer does. Its \s is Unicode's
# White_Space (not '\x1c'-'\x1f', unlike `re`), its \d Unicode's Nd of regex's own Unicode version.
_NON_CHARACTER = regex.compile(r"\s+|\d+|[" + regex.escape(string.punctuation) + "]")
# What that pattern removes from ASCII text: \s = \t \n \v \f \r and space, \d = 0-9, punctuation.
_ASCII_NON_CHARACTER = (" \t\n\x0b\x0c\r" + string.digits + string.punctuation).encode("ascii")
# Python's str.strip() on ASCII strips these (\x1c-\x1f are str.isspace(), though not \s above).
_ASCII_STRIP = b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@register
class DocumentDeduplicator(Deduplicator):
    """Exact document deduplication: the hash is ``md5(text.strip().encode('utf-8')).hexdigest()``
    (Data-Juicer's ``hash`` value), after optional lower-casing and, with
    ``ignore_non_character``, removing every whitespace run, digit run and ASCII punctuation
    character (Unicode whitespace and digits; non-ASCII punctuation such as '，' or '“' is kept).
    The engine keeps the first sample of each hash. Quirks: without ``ignore_non_character``,
    leading/trailing whitespace never matters (the text is stripped before hashing) but inner
    whitespace does; lower-casing happens before the removal."""

    name = "document_deduplicator"
    description = "Drop exact duplicate texts (md5), optionally ignoring case and non-letters."
    shuffle_key = "exact"

    def __init__(self, lowercase: bool = False, ignore_non_character: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.lowercase = lowercase
        self.ignore_non_character = ignore_non_character

    def hash_text(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.ignore_non_character:
            if text.isascii():
                data = text.encode("ascii").translate(None, _ASCII_NON_CHARACTER)
                return _md5(data.strip(_ASCII_STRIP))
            text = _NON_CHARACTER.sub("", text)
        return _md5(text.strip().encode("utf-8"))

    def hash_batch(self, views: TextViews) -> list:
        return [self.hash_text(t) for t in views.texts]


# =============================================================================================
# Near-duplicate deduplicators (dataset-level: hash_batch + keep_mask)
# =============================================================================================
MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_PUNCT = regex.compile(r"\p{P}")
_TOKENIZATIONS = ("space", "punctuation", "character", "sentencepiece")


def sha1_hash32(data: bytes) -> int:
    """First 4 bytes of SHA-1, little-endian (datasketch's token hash, as Data-Juicer uses)."""
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


@functools.lru_cache(maxsize=64)
def optimal_param(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows per band) minimising the weighted false-positive + false-negative areas of
    the LSH S-curve (datasketch's method, as Data-Juicer computes it, with scipy's quad).

    Computing it costs ~1 s (scipy's import and a few thousand integrals), on the path of every
    run of a recipe with this OP, for a value that depends only on these four numbers: it is
    kept under ``<cache root>/minhash/`` (one small file per set of arguments; one that cannot
    be read is computed again)."""
    args = [float(threshold), int(num_perm), float(false_positive_weight),
            float(false_negative_weight)]
    memo = cache_root() / "minhash" / f"optimal_param-{stable_hash(args)}.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["args"] == args and all(isinstance(v, int) and v >= 1 for v in saved["value"]):
            return tuple(saved["value"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = _optimal_param(*args)
    try:
        atomic_write_json(memo, {"args": args, "value": list(value)})
    except OSError:  # a read-only cache: computed again next time
        pass
    return value


def _optimal_param(threshold: float, num_perm: int, false_positive_weight: float,
                   false_negative_weight: float) -> tuple[int, int]:
    from scipy import integrate

    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, int(num_perm / b) + 1):
            fp, _ = integrate.quad(lambda s: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)
            fn, _ = integrate.quad(lambda s: 1 - (1 - (1 - s ** float(r)) ** float(b)), threshold, 1.0)
            err = fp * false_positive_weight + fn * false_negative_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


def _shingles(op, text: str, joiner: str = " ") -> list[bytes]:
    if op.lowercase:
        text = text.lower()
    if op._ignore is not None:
        text = op._ignore.sub("", text)
    w = op.window_size
    if op.tokenization == "character":
        return [text[i:i + w].encode() for i in range(len(text) - w + 1)]
    if op.tokenization == "punctuation":
        toks = _PUNCT.split(text)
    elif op.tokenization == "space":
        # Data-Juicer calls split_on_whitespace(text) with its defaults new_line=False,
        # tab=False here: only ' ' separates tokens ("a\nb" is one token).
        toks = [w for w in text.split(" ") if w]
    elif op.tokenization == "sentencepiece":
        toks = op._sp.encode(text, out_type=str)
        joiner = ""
    else:
        raise NotImplementedError(f"Unimplemented tokenization method [{op.tokenization}]")
    return [joiner.join(toks[i:i + w]).encode() for i in range(len(toks) - w + 1)]


class _ShingleDedup(Deduplicator):
    def _shingle_setup(self, tokenization, window_size, lowercase, ignore_pattern):
        if tokenization not in _TOKENIZATIONS[: 3 if self.name.endswith("simhash_deduplicator") else 4]:
            raise NotImplementedError(f"{self.name}: unimplemented tokenization {tokenization!r}")
        self.tokenization = tokenization
        self.window_size = window_size
        self.lowercase = lowercase
        self.ignore_pattern = ignore_pattern
        self._ignore = regex.compile(ignore_pattern) if ignore_pattern else None


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent.get(x, x)
        return root

    def union(self, x: int, y: int) -> None:
        px, py = self.find(x), self.find(y)
        self.parent[px] = self.parent[py] = min(px, py)


def _union_find_keep(hashes, alive: np.ndarray, bands: int) -> np.ndarray:
    """The reference LSH grouping (``hashes[i]`` is sample i's list of ``bands`` band byte
    strings): samples sharing any band are linked, the first sample of each group stays."""
    idx = np.flatnonzero(alive)
    keep = np.zeros(len(alive), dtype=bool)
    if len(idx) <= 1:
        keep[idx] = True
        return keep
    uf = _UnionFind()
    for band in range(bands):
        table: dict[bytes, int] = {}
        for pos, i in enumerate(idx):
            h = bytes(hashes[i][band])
            first = table.setdefault(h, pos)
            if first != pos:
                uf.union(pos, first)
    keep[idx] = [uf.find(p) == p for p in range(len(idx))]
    return keep


@register
class DocumentMinhashDeduplicator(_ShingleDedup):
    """Near-duplicate removal with MinHash-LSH, as Data-Juicer does it. Per sample: shingles of
    ``window_size`` tokens (``space``: words split on ' ' only, not on newlines or tabs (Data-Juicer's
    call), joined with ' ';
    ``punctuation``: pieces between ``\\p{P}`` characters; ``character``: characters;
    ``sentencepiece``: pieces of ``tokenizer_model``), after lower-casing and removing
    ``ignore_pattern``; each shingle's 32-bit SHA-1 goes through ``num_permutations`` universal
    hashes ``(a*h + b) mod (2**61-1) & 0xffffffff`` (a, b drawn from ``RandomState(42)``), the
    minimum per permutation is the signature, cut into ``num_bands`` bands of
    ``num_rows_per_band`` rows (chosen to minimise false positive + negative areas for
    ``jaccard_threshold`` when unset). Over the pool (``keep_mask``): samples sharing any band
    are linked, and of each connected group only the first sample stays. A text with fewer
    tokens than ``window_size`` has no shingles and gets the all-0xffffffff signature, so all such
    texts are duplicates of one another (Data-Juicer's behaviour). Computed in compiled code
    (``minhash_kernels``: SHA-1, permutations, ``space`` tokenization, the LSH grouping), equal
    to the reference Python (``signature``, ``_union_find_keep``) value for value."""

    name = "document_minhash_deduplicator"
    description = "Remove near-duplicate documents (MinHash-LSH, Jaccard >= jaccard_threshold)."
    shuffle_key = "minhash"  # rows linked by an equal band (band_bounds)
    assets = {"local_model": "with tokenization=sentencepiece: a sentencepiece model file "
                             "(tokenizer_model)"}

    def __init__(self, tokenization: str = "space", window_size: int = 5, lowercase: bool = True,
                 ignore_pattern: Optional[str] = None, num_permutations: int = 256,
                 jaccard_threshold: float = 0.7, num_bands: Optional[int] = None,
                 num_rows_per_band: Optional[int] = None, tokenizer_model: Optional[str] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self._shingle_setup(tokenization, window_size, lowercase, ignore_pattern)
        if not 0 <= jaccard_threshold <= 1:
            raise ValueError(f"{self.name}: jaccard_threshold must be in [0, 1]")
        self.num_permutations = num_permutations
        self.jaccard_threshold = jaccard_threshold
        self.num_bands = num_bands
        self.num_rows_per_band = num_rows_per_band
        self.tokenizer_model = tokenizer_model
        self._sp = None
        if tokenization == "sentencepiece":
            if tokenizer_model is None:
                raise ValueError("To use 'sentencepiece' tokenization, 'tokenizer_model' is required.")
            import sentencepiece  # an optional package, absent from a default install

            self._sp = sentencepiece.SentencePieceProcessor()
            self._sp.load(tokenizer_model)
        if num_bands is None or num_rows_per_band is None:
            self._bands, self._rows = optimal_param(jaccard_threshold, num_permutations)
        else:
            self._bands, self._rows = num_bands, num_rows_per_band
        gen = np.random.RandomState(seed=42)
        self._a, self._b = np.ascontiguousarray(np.array(
            [(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64),
              gen.randint(0, MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_permutations)],
            dtype=np.uint64,
        ).T)
        self._block = max(1, (8 * 1024 * 1024) // (num_permutations * 8))

    def signature(self, text: str) -> np.ndarray:
        """The reference signature of one text (uint64, ``num_permutations`` values), in numpy;
        ``signatures`` computes the same values in compiled code."""
        tokens = set(_shingles(self, text))
        hv = np.fromiter((sha1_hash32(t) for t in tokens), dtype=np.uint64, count=len(tokens))
        if len(hv) == 0:
            return np.full(self.num_permutations, MAX_HASH, dtype=np.uint64)
        out = None
        for s in range(0, len(hv), self._block):
            block = hv[s:s + self._block]
            m = np.bitwise_and((block[:, None] * self._a + self._b) % MERSENNE_PRIME, MAX_HASH).min(axis=0)
            out = m if out is None else np.minimum(out, m)
        return out

    def reference_bands(self, text: str) -> list[bytes]:
        """The reference band values of one text (``signature`` cut into ``num_bands`` byte
        strings, as Data-Juicer's), the input of ``_union_find_keep``."""
        sig, r = self.signature(text), self._rows
        return [bytes(sig[i * r:(i + 1) * r].byteswap().data) for i in range(self._bands)]

    def signatures(self, texts: list[str], width: Optional[int] = None) -> np.ndarray:
        """uint32 ``(len(texts), width)``: the first ``width`` (default all) values of each
        text's signature, computed in compiled code (``minhash_kernels``)."""
        from sandbox.ops.common import minhash_kernels as mk

        width = self.num_permutations if width is None else min(width, self.num_permutations)
        a, b = self._a[:width], self._b[:width]
        if not texts:
            return np.zeros((0, width), dtype=np.uint32)
        if self.tokenization == "space" and self.window_size >= 1:
            prepared = []
            for t in texts:
                if self.lowercase:
                    t = t.lower()
                if self._ignore is not None:
                    t = self._ignore.sub("", t)
                prepared.append(t)
            buf, offsets = mk.utf8(prepared)
            return mk.space_signatures(buf, offsets, self.window_size, a, b)
        shingles = [_shingles(self, t) for t in texts]
        doc_offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        counts = np.fromiter(map(len, shingles), dtype=np.int64, count=len(texts))
        np.cumsum(counts, out=doc_offsets[1:])
        flat = [s for doc in shingles for s in doc]
        sh_offsets = np.zeros(len(flat) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)), out=sh_offsets[1:])
        joined = b"".join(flat)
        buf = np.frombuffer(joined, dtype=np.uint8) if joined else np.zeros(1, np.uint8)
        return mk.shingle_signatures(buf, sh_offsets, doc_offsets, a, b)

    def preload(self) -> None:
        """Load the compiled signature and LSH kernels (see ``Op.preload``)."""
        from sandbox.ops.common import minhash_kernels as mk

        self.signatures(["a b c d e f"], self._width())
        one = np.arange(1, dtype=np.int64)
        mk.lsh_keep(np.zeros((2, 1), dtype="<u4"), one, one + 1)

    def _width(self) -> int:
        """How many signature values the bands use."""
        return min(self._bands * self._rows, self.num_permutations)

    def hash_batch(self, views: TextViews) -> list:
        """Per text, one ``bytes``: the signature values the bands use (the first ``num_bands *
        num_rows_per_band``) as little-endian uint32; band i is values ``[i*rows, (i+1)*rows)``.
        Equal bands here are exactly equal bands of the reference (``reference_bands``)."""
        sigs = self.signatures(views.texts, self._width()).astype("<u4", copy=False)
        return [row.tobytes() for row in sigs]

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        """The kept set of ``_union_find_keep`` (the reference), by ``minhash_kernels.lsh_keep``
        over the alive samples' signatures as one uint32 matrix."""
        idx = np.flatnonzero(alive)
        keep = np.zeros(len(alive), dtype=bool)
        if len(idx) <= 1:
            keep[idx] = True
            return keep
        rows = [hashes[i] for i in idx]
        width = 4 * self._width()
        if not all(isinstance(v, (bytes, bytearray)) and len(v) == width for v in rows):
            # lists of band byte strings (hash_batch's format before the compiled kernels)
            return _union_find_keep(hashes, alive, self._bands)
        from sandbox.ops.common import minhash_kernels as mk

        words = np.frombuffer(b"".join(rows), dtype="<u4").reshape(len(rows), width // 4)
        keep[idx] = mk.lsh_keep(words, *self.band_bounds())
        return keep

    def band_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)``: band j is the signature values ``[starts[j], ends[j])`` of
        ``hash_batch``'s rows (the last bands are shorter, or empty, when ``num_bands *
        num_rows_per_band`` exceeds ``num_permutations``)."""
        bounds = np.minimum(np.arange(self._bands + 1, dtype=np.int64) * self._rows,
                            self._width())
        return bounds[:-1], bounds[1:]


@register
class DocumentSimhashDeduplicator(_ShingleDedup):
    """Near-duplicate removal with 64-bit SimHash, as Data-Juicer does it. Per sample: shingles as
    document_minhash_deduplicator (``space``, ``punctuation`` or ``character``; window 6), each
    hashed with the first 8 bytes of its MD5 (big-endian), combined by ``simhash.compute`` (bit i
    set when more shingles have it set than not). Over the pool: pairs of distinct hashes at
    Hamming distance <= ``hamming_distance`` (found with ``num_blocks`` permuted tables,
    ``simhash.find_all``) are linked; of each connected group only the first sample stays, and
    samples with equal hashes outside any group are exact duplicates (first one stays). Needs
    the ``simhash-pybind`` package, as Data-Juicer does."""

    name = "document_simhash_deduplicator"
    description = "Remove near-duplicate documents (SimHash, Hamming distance <= hamming_distance)."
    assets = {"simhash": "the simhash-pybind package (PyPI)"}
    shuffle_key = None  # pairs within a Hamming distance: on the driver

    def __init__(self, tokenization: str = "space", window_size: int = 6, lowercase: bool = True,
                 ignore_pattern: Optional[str] = None, num_blocks: int = 6,
                 hamming_distance: int = 4, **kwargs):
        super().__init__(**kwargs)
        self._shingle_setup(tokenization, window_size, lowercase, ignore_pattern)
        if hamming_distance >= num_blocks:
            raise ValueError(f"{self.name}: hamming_distance ({hamming_distance}) must be less "
                             f"than num_blocks ({num_blocks})")
        self.num_blocks = num_blocks
        self.hamming_distance = hamming_distance
        import simhash  # only this OP needs it

        self._simhash = simhash

    def hash_batch(self, views: TextViews) -> list:
        sh = self._simhash
        return [str(np.uint64(sh.compute(map(sh.unsigned_hash, _shingles(self, t)))))
                for t in views.texts]

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(alive)
        keep = np.zeros(len(alive), dtype=bool)
        if len(idx) <= 1:
            keep[idx] = True
            return keep
        vals = [str(hashes[i]) for i in idx]
        matches = self._simhash.find_all(np.array(vals, dtype=np.uint64), self.num_blocks,
                                         self.hamming_distance)
        graph: dict[str, set] = defaultdict(set)
        for x, y in matches:
            graph[str(x)].add(str(y))
            graph[str(y)].add(str(x))
        cluster: dict[str, int] = {}
        cid = 0
        for h in graph:
            if h in cluster:
                continue
            stack = [h]
            cluster[h] = cid
            while stack:
                for nb in graph[stack.pop()]:
                    if nb not in cluster:
                        cluster[nb] = cid
                        stack.append(nb)
            cid += 1
        seen_c, seen_h = set(), set()
        for i, h in zip(idx, vals):
            if h in cluster:
                c = cluster[h]
                if c not in seen_c:
                    seen_c.add(c)
                    keep[i] = True
            elif h not in seen_h:
                seen_h.add(h)
                keep[i] = True
        return keep
