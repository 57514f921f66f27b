"""document_minhash_deduplicator's compiled kernels (sandbox.ops.common.minhash_kernels) against the
reference Python implementation kept in sandbox.ops.text.deduplicators (``signature``,
``reference_bands``, ``_union_find_keep``): equal value for value."""
from __future__ import annotations

import hashlib
import json
import random
import struct

import numpy as np
import pytest

from sandbox.ops import TextViews, get_op_class
from sandbox.ops.text.deduplicators import _union_find_keep

NAME = "document_minhash_deduplicator"


def op(**kw):
    return get_op_class(NAME)(**kw)


def _words(rng: random.Random, n: int, alphabet: str, lo: int = 1, hi: int = 9) -> list[str]:
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


def texts() -> list[str]:
    rng = random.Random(7)
    out = [
        "", " ", "     ", "a", "a b c d", "a b c d e", "  a  b   c d    e  ",
        "one two three four five six seven", "One TWO three FOUR five SIX",
        "tab\tinside tokens\nnewline makes one token\r\n each x y z",
        "\t\t\n\n a\tb c\nd e f g h \t",
        "Éé café naïve ÉCOLE résumé über straße x y z",
        "中文 文本 没有 空格 的 情况 下 也 可以 分词 吗",
        "中文文本没有空格的情况下整段就是一个词。第二句，还是一个词！",
        "😀 😃 😄 😁 😆 😅 🤣 😂 🙂 🙃 👩‍👩‍👧‍👦 🏳️‍🌈",
        "İstanbul İİ ΣΑΣ Σ ς ß ẞ ǅ ﬃ K Å Ω",
        "x" * 54 + " y z w v",  # shingle lengths around one SHA-1 block (55 bytes)
        " ".join(["abcdefghij"] * 5) + " " + " ".join(["abcdefghijk"] * 5),
        " ".join(["a" * 23] * 7),  # 119 bytes per 5-shingle: two blocks exactly
        " ".join(["a" * 24] * 7),  # 124: three blocks
        " ".join(["é" * 40] * 6),  # long multi-byte shingles
        " ".join(_words(rng, 3000, "abcdefghijklmnopqrstuvwxyz")),
        " ".join(_words(rng, 400, "ab")),  # many repeated shingles
        "  ".join(_words(rng, 300, "abcdéÉ中文😀İΣ\t\n", 1, 30)),
        " ".join(_words(rng, 200, "abcdefghijklmnopqrstuvwxyz", 20, 60)),
        "Hello, world! This is: a test; with (punctuation) — and «quotes» “here”. 你好，世界！",
    ]
    for n in range(0, 130, 7):  # every shingle length class
        out.append(" ".join(["q" * max(1, n // 5)] * 6))
    return out


def _check_signatures(o, batch):
    got = o.signatures(batch)
    assert got.shape == (len(batch), o.num_permutations) and got.dtype == np.uint32
    for i, t in enumerate(batch):
        ref = o.signature(t)
        assert np.array_equal(got[i].astype(np.uint64), ref), (i, t[:60])


@pytest.mark.slow  # ~1 min on a 2-core machine without AVX-512: the kernel's first compile
def test_sha1_kernel_matches_hashlib():
    from sandbox.ops.common import minhash_kernels as mk

    rng = np.random.default_rng(0)
    for n in list(range(0, 260)) + [1000, 4097, 10000]:
        data = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        expected = struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]
        assert mk.sha1_hash32_bytes(data) == expected, n
    # the vectorised path (one-block messages of up to 55 bytes, 64 lanes at a time): one
    # shingle per text and the identity permutation (a = 1, b = 0) make the signature the hash
    msgs = [rng.integers(0, 256, size=n, dtype=np.uint8).tobytes() for n in range(56)] * 3
    sizes = np.array([0] + [len(m) for m in msgs], dtype=np.int64)
    sig = mk.shingle_signatures(np.frombuffer(b"".join(msgs), dtype=np.uint8), np.cumsum(sizes),
                                np.arange(len(msgs) + 1, dtype=np.int64),
                                np.ones(1, np.uint64), np.zeros(1, np.uint64))
    assert sig[:, 0].tolist() == [struct.unpack("<I", hashlib.sha1(m).digest()[:4])[0]
                                  for m in msgs]


@pytest.mark.parametrize("kw", [
    {},
    {"window_size": 1},
    {"window_size": 3, "lowercase": False},
    {"window_size": 2, "ignore_pattern": r"\p{P}"},
    {"num_permutations": 64, "window_size": 8},
])
def test_space_signatures_match_reference(kw):
    _check_signatures(op(**kw), texts())


@pytest.mark.parametrize("kw", [
    {"tokenization": "punctuation", "window_size": 3},
    {"tokenization": "character", "window_size": 4, "num_permutations": 32},
    {"tokenization": "character", "window_size": 40, "num_permutations": 16},
    {"window_size": 0, "num_permutations": 16},  # degenerate window: the generic path
])
def test_other_tokenizations_match_reference(kw):
    _check_signatures(op(**kw), texts())


def test_signatures_batch_independent():
    o = op(num_permutations=32)
    batch = texts()
    whole = o.signatures(batch)
    for i, t in enumerate(batch):
        assert np.array_equal(o.signatures([t])[0], whole[i])
    assert o.signatures([]).shape == (0, 32)


@pytest.mark.parametrize("kw", [{}, {"num_bands": 4, "num_rows_per_band": 3},
                                {"num_permutations": 16, "num_bands": 5, "num_rows_per_band": 4}])
def test_hash_batch_equals_reference_bands(kw):
    o = op(**kw)
    batch = texts()
    hashes = o.hash_batch(TextViews(batch))
    r = o._rows
    for h, t in zip(hashes, batch):
        assert isinstance(h, bytes)
        values = np.frombuffer(h, dtype="<u4")
        ref = o.reference_bands(t)  # big-endian uint64 values per band
        assert len(ref) == o._bands
        for i, band in enumerate(ref):
            assert np.array_equal(values[i * r:(i + 1) * r].astype(np.uint64),
                                  np.frombuffer(band, dtype=">u8"))


def _random_pool(rng, n, width, dup_rate=0.3):
    """Signatures with exact copies and shared bands (chains of them, across groups)."""
    sig = rng.integers(0, 2 ** 32, size=(n, width), dtype=np.uint64).astype(np.uint32)
    sig[rng.random(n) < 0.05] = 0xFFFFFFFF  # "too short" texts: all equal
    for i in range(1, n):
        u = rng.random()
        j = int(rng.integers(0, i))
        if u < dup_rate / 3:
            sig[i] = sig[j]
        elif u < dup_rate:
            cols = rng.choice(width, size=int(rng.integers(1, max(2, width // 3))), replace=False)
            sig[i, cols] = sig[j, cols]
    return sig


def _reference_hashes(sig, bands, rows):
    s64 = sig.astype(np.uint64)
    return [[bytes(row[b * rows:(b + 1) * rows].byteswap().data) for b in range(bands)]
            for row in s64]


@pytest.mark.parametrize("kw", [{}, {"num_bands": 8, "num_rows_per_band": 2},
                                {"num_bands": 3, "num_rows_per_band": 1},
                                {"num_permutations": 16, "num_bands": 6, "num_rows_per_band": 3},
                                {"num_permutations": 16, "num_bands": 2, "num_rows_per_band": 8}])
def test_keep_mask_equals_union_find(kw):
    o = op(**kw)
    rng = np.random.default_rng(1)
    width = min(o._bands * o._rows, o.num_permutations)
    for n, dup in ((1, 0.3), (2, 0.9), (50, 0.5), (3000, 0.3), (3000, 0.02)):
        sig = _random_pool(rng, n, width, dup)
        new = np.empty(n, dtype=object)
        new[:] = [row.astype("<u4").tobytes() for row in sig]
        ref = _reference_hashes(sig, o._bands, o._rows)
        for alive in (np.ones(n, bool), rng.random(n) < 0.7, np.zeros(n, bool)):
            expected = _union_find_keep(ref, alive, o._bands)
            assert np.array_equal(o.keep_mask(new, alive.copy()), expected)
            assert np.array_equal(o.keep_mask(list(new), alive.copy()), expected)
            assert np.array_equal(o.keep_mask(ref, alive.copy()), expected)  # earlier format


def test_keep_mask_on_real_text_and_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.engine import object_array

    o = op()
    rng = random.Random(3)
    base = [" ".join(_words(rng, 200, "abcdefgh")) for _ in range(20)]
    batch = []
    for _ in range(300):
        t = rng.choice(base).split(" ")
        for _ in range(rng.choice([0, 1, 3, 30])):
            t[rng.randrange(len(t))] = "zz"
        batch.append(" ".join(t))
    batch += ["", "short one", "a b"]
    hashes = o.hash_batch(TextViews(batch))
    ref = [o.reference_bands(t) for t in batch]
    pq.write_table(pa.table({"h": pa.array(hashes)}), tmp_path / "h.parquet")
    back = object_array(pq.read_table(tmp_path / "h.parquet").column("h"))
    assert list(back) == hashes
    for alive in (np.ones(len(batch), bool), np.array([i % 3 != 1 for i in range(len(batch))])):
        expected = _union_find_keep(ref, alive, o._bands)
        assert 0 < expected.sum() < alive.sum()
        assert np.array_equal(o.keep_mask(back, alive.copy()), expected)


def test_more_bands_than_permutations():
    # bands past the signature are empty (or short), as in the reference: everything links
    o = op(num_permutations=16, num_bands=6, num_rows_per_band=4)
    batch = ["a b c d e f g", "totally different words in this text here", "x y z w v u"]
    hashes = o.hash_batch(TextViews(batch))
    assert all(len(h) == 4 * 16 for h in hashes)
    ref = [o.reference_bands(t) for t in batch]
    alive = np.ones(3, bool)
    assert o.keep_mask(hashes, alive).tolist() == _union_find_keep(ref, alive, 6).tolist() \
        == [True, False, False]


def test_engine_select_equals_reference(tmp_path):
    """Through the engine: hash_batch in the compute pass, its column written to Parquet and
    read back by ``ComputedFile.raw``, ``keep_mask`` in ``select``; the batch size does not
    change the result."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.engine import LocalEngine, select
    from sandbox.recipe import load_recipe

    rng = random.Random(5)
    base = [" ".join(_words(rng, 120, "abcdefgh")) for _ in range(30)]
    texts = []
    for _ in range(200):
        t = rng.choice(base).split(" ")
        for _ in range(rng.choice([0, 2, 40])):
            t[rng.randrange(len(t))] = "zz"
        texts.append(" ".join(t))
    texts += ["", "a b"]
    rec = load_recipe({"ops": {"words_num_filter": {"min_num": 3},
                               NAME: {}}})
    ops = rec.build()
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts}), pool)
    cf = LocalEngine(num_proc=1, batch_size=64).compute(pool, rec.ops, scratch_dir=tmp_path)
    got = select(rec.ops, ops, cf, len(texts))
    other = LocalEngine(num_proc=1, batch_size=50).compute(pool, rec.ops,
                                                           scratch_dir=tmp_path / "b50")
    mem = select(rec.ops, ops, other, len(texts))
    o = op()
    alive = np.array([len([w for w in t.split() if w]) >= 3 for t in texts])
    expected = _union_find_keep([o.reference_bands(t) for t in texts], alive, o._bands)
    assert np.array_equal(got.keep, expected) and np.array_equal(mem.keep, expected)
    assert 0 < expected.sum() < alive.sum()


def test_optimal_param_is_kept_on_disk(tmp_path):
    # ~1 s to compute (scipy): kept under the cache root, and a damaged file is computed again
    from sandbox.cache import using_cache_root
    from sandbox.ops.text.deduplicators import _optimal_param, optimal_param

    expected = _optimal_param(0.5, 32, 0.5, 0.5)
    with using_cache_root(tmp_path):
        optimal_param.cache_clear()
        assert optimal_param(0.5, 32) == expected
        (memo,) = (tmp_path / "minhash").glob("optimal_param-*.json")
        memo.write_text('{"args": [0.5, 32, 0.5, 0.5], "value": [99, 99]}')
        optimal_param.cache_clear()
        assert optimal_param(0.5, 32) == (99, 99)  # read back, not computed
        memo.write_text("{trunc")
        optimal_param.cache_clear()
        assert optimal_param(0.5, 32) == expected
        assert json.loads(memo.read_text())["value"] == list(expected)
    optimal_param.cache_clear()
