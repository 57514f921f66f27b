"""Compiled kernels (numba) of ``document_minhash_deduplicator``: MinHash signatures and the
LSH grouping over the pool.

Exactly what the reference Python code computes (``DocumentMinhashDeduplicator.signature`` and
``_union_find_keep`` stay as the definition; the tests compare both):

* a shingle's hash is the first 4 bytes of its SHA-1, read little-endian (SHA-1 implemented
  here, on the shingle's UTF-8 bytes);
* permutation ``k`` maps it to ``((a[k] * h + b[k]) mod 2**64) mod (2**61 - 1) & 0xffffffff``
  (the 64-bit wrap-around of the reference's uint64 numpy arithmetic), and the signature is the
  minimum over the text's shingles (0xffffffff everywhere when it has none);
* ``lsh_keep`` links samples with an equal band (a run of signature values; equality is checked
  on the values, hashes only pick the table slot) and keeps the first sample of each group.

Importing this module loads no numba (see ``sandbox.jit``).
"""
from __future__ import annotations

import numpy as np

from sandbox.jit import njit
from sandbox.ops.common.kernels import utf8  # noqa: F401  (re-exported)

_M32 = np.uint64(0xFFFFFFFF)
_P61 = np.uint64((1 << 61) - 1)
_S61 = np.uint64(61)
_SPACE = np.uint8(32)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)
_S29 = np.uint64(29)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


# ------------------------------------------------------------------------------ SHA-1
# Messages are read as big-endian 32-bit words: ``be[i]`` is the word of bytes i..i+3 of the
# text (``_be_words``). Single-block messages (<= 55 bytes) are hashed LANES at a time, one per
# lane of a loop the compiler vectorises; longer ones one by one.
_H0, _H1, _H2, _H3, _H4 = (np.uint32(0x67452301), np.uint32(0xEFCDAB89), np.uint32(0x98BADCFE),
                          np.uint32(0x10325476), np.uint32(0xC3D2E1F0))
LANES = 64


# SHA-1 works in uint32 throughout: numba widens uint32 arithmetic to 64 bits, and the casts
# back to uint32 after every step let the compiler keep 32-bit lanes (twice as many per vector
# as int64) and use vector rotates in ``sha1_lanes``: ~3x faster than the same rounds in int64.
_U32 = np.uint32
_K0, _K1, _K2, _K3 = (np.uint32(0x5A827999), np.uint32(0x6ED9EBA1), np.uint32(0x8F1BBCDC),
                      np.uint32(0xCA62C1D6))
_B8, _B16, _B24, _FF = np.uint32(8), np.uint32(16), np.uint32(24), np.uint32(0xFF)


@njit(inline="always")
def _rotl(x, n):
    return _U32((x << _U32(n)) | (x >> _U32(32 - n)))


# SHA-1's round functions plus round constants, one per round group (rounds 0-19, 20-39, ...)
@njit(inline="always")
def _f0(b, c, d):
    return _U32(((b & c) | (~b & d)) + _K0)


@njit(inline="always")
def _f1(b, c, d):
    return _U32((b ^ c ^ d) + _K1)


@njit(inline="always")
def _f2(b, c, d):
    return _U32(((b & c) | (b & d) | (c & d)) + _K2)


@njit(inline="always")
def _f3(b, c, d):
    return _U32((b ^ c ^ d) + _K3)


def _rounds5_of(f):
    """Five SHA-1 rounds with round function ``f``: one function per round group rather than
    one that branches on the group, as the 80 rounds are inlined into every kernel that hashes
    (a branching one made numba's compile of those kernels ~4x slower, ~100 s, for no speed)."""

    @njit(inline="always")
    def rounds5(a, b, c, d, e, w, t, l):
        """Rounds t .. t+4 of lane ``l`` (message schedule ``w[:, l]``); after 5 rounds the five
        variables are back in their roles."""
        e = _U32(_rotl(a, 5) + f(b, c, d) + e + w[t, l])
        b = _rotl(b, 30)
        d = _U32(_rotl(e, 5) + f(a, b, c) + d + w[t + 1, l])
        a = _rotl(a, 30)
        c = _U32(_rotl(d, 5) + f(e, a, b) + c + w[t + 2, l])
        e = _rotl(e, 30)
        b = _U32(_rotl(c, 5) + f(d, e, a) + b + w[t + 3, l])
        d = _rotl(d, 30)
        a = _U32(_rotl(b, 5) + f(c, d, e) + a + w[t + 4, l])
        c = _rotl(c, 30)
        return a, b, c, d, e

    return rounds5


_R0, _R1, _R2, _R3 = (_rounds5_of(f) for f in (_f0, _f1, _f2, _f3))


@njit(inline="always")
def _compress(w, l, a, b, c, d, e):
    """The 80 rounds of one block on (a .. e) for lane ``l``; ``w[:, l]`` holds its message
    schedule (all 80 words). Spelled out, so that a loop over lanes vectorises."""
    a, b, c, d, e = _R0(a, b, c, d, e, w, 0, l)
    a, b, c, d, e = _R0(a, b, c, d, e, w, 5, l)
    a, b, c, d, e = _R0(a, b, c, d, e, w, 10, l)
    a, b, c, d, e = _R0(a, b, c, d, e, w, 15, l)
    a, b, c, d, e = _R1(a, b, c, d, e, w, 20, l)
    a, b, c, d, e = _R1(a, b, c, d, e, w, 25, l)
    a, b, c, d, e = _R1(a, b, c, d, e, w, 30, l)
    a, b, c, d, e = _R1(a, b, c, d, e, w, 35, l)
    a, b, c, d, e = _R2(a, b, c, d, e, w, 40, l)
    a, b, c, d, e = _R2(a, b, c, d, e, w, 45, l)
    a, b, c, d, e = _R2(a, b, c, d, e, w, 50, l)
    a, b, c, d, e = _R2(a, b, c, d, e, w, 55, l)
    a, b, c, d, e = _R3(a, b, c, d, e, w, 60, l)
    a, b, c, d, e = _R3(a, b, c, d, e, w, 65, l)
    a, b, c, d, e = _R3(a, b, c, d, e, w, 70, l)
    a, b, c, d, e = _R3(a, b, c, d, e, w, 75, l)
    return a, b, c, d, e


@njit
def _block(w, l, h0, h1, h2, h3, h4):
    """One SHA-1 block on the state (h0 .. h4) for lane ``l``."""
    a, b, c, d, e = _compress(w, l, h0, h1, h2, h3, h4)
    return _U32(h0 + a), _U32(h1 + b), _U32(h2 + c), _U32(h3 + d), _U32(h4 + e)


@njit(inline="always")
def _schedule(w, count):
    """Rows 16..79 of the message schedules ``w`` (uint32 ``(80, lanes)``) from rows 0..15."""
    for t in range(16, 80):
        for l in range(count):
            w[t, l] = _rotl(_U32(w[t - 3, l] ^ w[t - 8, l] ^ w[t - 14, l] ^ w[t - 16, l]), 1)


@njit(inline="always")
def _hash32(h0):
    """The first 4 digest bytes (h0, big-endian) read little-endian: h0 byte-swapped."""
    return _U32(((h0 & _FF) << _B24) | (((h0 >> _B8) & _FF) << _B16)
                | (((h0 >> _B16) & _FF) << _B8) | (h0 >> _B24))


@njit(cache=True, nogil=True)
def sha1_lanes(w, out, count):
    """``out[l]`` = ``sha1_hash32`` of the one-block message whose padded block is
    ``w[:16, l]``, for the first ``count`` lanes. ``w``: uint32 ``(80, lanes)``, rows 16.. are
    scratch. Only h0 is kept: that, and the rounds inlined, let the compiler vectorise the loop
    across lanes."""
    _schedule(w, count)
    for l in range(count):
        a, b, c, d, e = _compress(w, l, _H0, _H1, _H2, _H3, _H4)
        out[l] = _hash32(_U32(_H0 + a))


@njit
def _be_words(src, lo, hi, be):
    """``be[i - lo]`` = the big-endian word of ``src[i:i + 4]`` for i in [lo, hi), bytes at or
    past ``hi`` read as 0."""
    for i in range(lo, max(lo, hi - 3)):
        be[i - lo] = ((np.int64(src[i]) << 24) | (np.int64(src[i + 1]) << 16)
                      | (np.int64(src[i + 2]) << 8) | np.int64(src[i + 3]))
    for i in range(max(lo, hi - 3), hi):
        x = 0
        for j in range(4):
            x <<= 8
            if i + j < hi:
                x |= np.int64(src[i + j])
        be[i - lo] = x


_PAD = 64  # words past a text's last one that ``_put_short`` may read (its ``be`` has them)
_HIGH32 = np.uint64(0xFFFFFFFF00000000)


@njit(inline="always")
def _put_short(w, l, be, start, n):
    """``_put_block(w, l, be, start, n, 0, True)`` for a one-block message (``n <= 55``),
    without branches: every one of the 15 words is read (``be`` holds ``_PAD`` words past the
    text) and the padding chosen by selects (the word holding the end: its message bytes, then
    0x80; after it, zeros), as the message's length varies from shingle to shingle and branches
    on it mispredict."""
    full = n >> 2
    r = n & 3
    keep = _U32((_HIGH32 >> np.uint64(8 * r)) & np.uint64(0xFFFFFFFF))  # r message bytes
    pad = _U32(_U32(0x80) << _U32(24 - 8 * r))
    for t in range(15):
        word = be[start + 4 * t]
        last = _U32((word & keep) | pad)
        w[t, l] = word if t < full else (last if t == full else _U32(0))
    w[15, l] = n * 8  # the bit length; its high word (w[14]) is 0


@njit
def _put_block(w, l, be, start, n, blk, last):
    """Lane ``l`` of ``w`` := block ``blk`` of the padded message of ``n`` bytes whose words are
    ``be[start:]`` (SHA-1 padding: 0x80, zeros, and in the ``last`` block the bit length)."""
    base = 64 * blk
    for t in range(16):
        p = base + 4 * t
        if p + 4 <= n:
            x = np.int64(be[start + p])
        elif p < n:
            r = n - p  # 1..3 message bytes left in this word
            keep = (0xFFFFFFFF << (32 - 8 * r)) & 0xFFFFFFFF
            x = (np.int64(be[start + p]) & keep) | (0x80 << (24 - 8 * r))
        elif p == n:
            x = 0x80000000
        else:
            x = 0
        w[t, l] = x
    if last:
        bits = np.int64(n) * 8
        w[14, l] = (bits >> 32) & 0xFFFFFFFF
        w[15, l] = bits & 0xFFFFFFFF


@njit
def _sha1_one(be, start, n, w):
    """``sha1_hash32`` of one message of any length (words ``be[start:]``), block by block in
    lane 0 of ``w``."""
    h0, h1, h2, h3, h4 = _H0, _H1, _H2, _H3, _H4
    total = (n + 8) // 64 + 1  # blocks after padding
    for k in range(total):
        _put_block(w, 0, be, start, n, k, k == total - 1)
        _schedule(w, 1)
        h0, h1, h2, h3, h4 = _block(w, 0, h0, h1, h2, h3, h4)
    return _hash32(h0)


def sha1_hash32_bytes(data: bytes) -> int:
    """The kernel's ``sha1_hash32`` of one byte string (for tests; ``_sha1_one``)."""
    src = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, dtype=np.uint8)
    be = np.zeros(len(data) + 1, dtype=np.uint32)
    _be_words(src, 0, len(data), be)
    return int(_sha1_one(be, 0, len(data), np.empty((80, 1), np.uint32)))


# ------------------------------------------------------------------------------ signatures
@njit
def _permute_min(hv, count, a, b, sig):
    """For each hash ``h`` of ``hv[:count]``: ``sig[k] = min(sig[k], ((a[k]*h + b[k]) mod 2**64)
    mod (2**61-1) & 0xffffffff)``."""
    for i in range(count):
        hu = np.uint64(hv[i])
        for k in range(a.size):
            x = a[k] * hu + b[k]
            r = (x & _P61) + (x >> _S61)
            if r >= _P61:
                r -= _P61
            r &= _M32
            if r < sig[k]:
                sig[k] = r


@njit
def _hash_messages(be, mstart, mlen, nmsg, w, hv, a, b, sig):
    """Fold the hashes of messages ``i < nmsg`` (``mlen[i]`` bytes, words ``be[mstart[i]:]``)
    into ``sig`` (MinHash over the permutations ``a``, ``b``). One-block messages go through
    ``sha1_lanes`` LANES at a time (``w``: uint32 ``(80, LANES + 1)``), longer ones (a few
    percent of the shingles of ordinary text) one by one in its last lane."""
    count = 0
    for i in range(nmsg):
        n = mlen[i]
        if n <= 55:
            _put_short(w, count, be, mstart[i], n)
            count += 1
            if count == LANES:
                sha1_lanes(w, hv, count)
                _permute_min(hv, count, a, b, sig)
                count = 0
        else:
            hv[LANES] = _sha1_one(be, mstart[i], n, w[:, LANES:])
            _permute_min(hv[LANES:], 1, a, b, sig)
    if count:
        sha1_lanes(w, hv, count)
        _permute_min(hv, count, a, b, sig)


@njit(cache=True, nogil=True,
      export="u4[:, ::1](u1[::1], i8[::1], i8, u8[::1], u8[::1])")
def space_signatures(buf, offsets, window, a, b):
    """MinHash signatures of ``space`` shingles: per text ``buf[offsets[d]:offsets[d + 1]]``
    (UTF-8, already lower-cased / cleaned), tokens are the non-empty runs between b' ' bytes,
    shingles the windows of ``window`` tokens joined by one b' '. Returns the uint32 signatures,
    ``(n, a.size)``."""
    n = offsets.size - 1
    out = np.empty((n, a.size), dtype=np.uint32)
    longest = 0
    for d in range(n):
        longest = max(longest, offsets[d + 1] - offsets[d])
    norm = np.empty(longest + 1, dtype=np.uint8)  # the tokens joined by single spaces
    be = np.zeros(longest + _PAD, dtype=np.uint32)
    ts = np.empty(longest // 2 + 2, dtype=np.int64)  # token starts in ``norm``
    mlen = np.empty(longest // 2 + 1, dtype=np.int64)
    w = np.empty((80, LANES + 1), dtype=np.uint32)
    hv = np.empty(LANES + 1, dtype=np.uint32)
    sig = np.empty(a.size, dtype=np.uint64)
    for d in range(n):
        # one pass without branches on the bytes (token bounds vary too much to predict):
        # every byte is written to ``norm``, but a space at the start or after a space does
        # not advance it; a byte other than a space right after one starts a token
        m = 0
        ntok = 0
        after_space = 1
        for i in range(offsets[d], offsets[d + 1]):
            c = buf[i]
            space = np.int64(c == _SPACE)
            norm[m] = c
            ts[ntok] = m
            ntok += (1 - space) & after_space
            m += 1 - (space & after_space)
            after_space = space
        if after_space and m > 0:  # the space after the last token
            m -= 1
        sig[:] = _M32
        nsh = ntok - window + 1
        if nsh > 0:
            _be_words(norm, 0, m, be)
            for s in range(nsh):
                last = s + window - 1  # its last token ends before the next one's space
                mlen[s] = (ts[last + 1] - 1 if last + 1 < ntok else m) - ts[s]
            _hash_messages(be, ts, mlen, nsh, w, hv, a, b, sig)
        for k in range(a.size):
            out[d, k] = np.uint32(sig[k])
    return out


@njit(cache=True, nogil=True,
      export="u4[:, ::1](u1[::1], i8[::1], i8[::1], u8[::1], u8[::1])")
def shingle_signatures(buf, shingle_offsets, doc_offsets, a, b):
    """MinHash signatures from explicit shingles: shingle ``s`` is
    ``buf[shingle_offsets[s]:shingle_offsets[s + 1]]``, text ``d`` has shingles
    ``doc_offsets[d]`` to ``doc_offsets[d + 1]``. Returns uint32 ``(n, a.size)``."""
    n = doc_offsets.size - 1
    out = np.empty((n, a.size), dtype=np.uint32)
    longest = 0
    most = 0
    for d in range(n):
        size = shingle_offsets[doc_offsets[d + 1]] - shingle_offsets[doc_offsets[d]]
        longest = max(longest, size)
        most = max(most, doc_offsets[d + 1] - doc_offsets[d])
    be = np.zeros(longest + _PAD, dtype=np.uint32)
    mstart = np.empty(most + 1, dtype=np.int64)
    mlen = np.empty(most + 1, dtype=np.int64)
    w = np.empty((80, LANES + 1), dtype=np.uint32)
    hv = np.empty(LANES + 1, dtype=np.uint32)
    sig = np.empty(a.size, dtype=np.uint64)
    for d in range(n):
        sig[:] = _M32
        first = doc_offsets[d]
        nsh = doc_offsets[d + 1] - first
        lo = shingle_offsets[first]
        _be_words(buf, lo, shingle_offsets[doc_offsets[d + 1]], be)
        for s in range(nsh):
            mstart[s] = shingle_offsets[first + s] - lo
            mlen[s] = shingle_offsets[first + s + 1] - shingle_offsets[first + s]
        _hash_messages(be, mstart, mlen, nsh, w, hv, a, b, sig)
        for k in range(a.size):
            out[d, k] = np.uint32(sig[k])
    return out


# ------------------------------------------------------------------------------ LSH grouping
@njit
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@njit
def _band_hash(words, p, c0, c1):
    """A 64-bit hash of ``words[p, c0:c1]`` (it only picks table slots and tags): a sum of
    independent products (no long dependency chain), then mixed."""
    h = np.uint64(c1 - c0)
    for c in range(c0, c1):
        h += (np.uint64(words[p, c]) | (np.uint64(c - c0 + 1) << _S32)) * _MIX
    h ^= h >> _S32
    h *= _MIX2
    h ^= h >> _S29
    return h


@njit(cache=True, nogil=True,
      export="b1[::1](u4[:, ::1], i8[::1], i8[::1])")
def lsh_keep(words, starts, ends):
    """``words``: uint32 ``(m, width)``, one row per alive sample in pool order; band ``j`` is
    the columns ``[starts[j], ends[j])``. Samples with an equal band are linked; returns a bool
    per row: True for the first row of each connected group."""
    m = words.shape[0]
    parent = np.arange(m)
    size = 8
    while size < 2 * m:
        size <<= 1
    mask = size - 1
    # a slot holds (the upper 32 bits of the band's hash) << 32 | (1 + its first row); 0: empty
    table = np.empty(size, dtype=np.uint64)
    low = np.uint64(0xFFFFFFFF)
    nb = starts.size
    hashes = np.empty((nb, m), dtype=np.uint64)
    for p in range(m):  # one sequential pass over the rows
        for j in range(nb):
            hashes[j, p] = _band_hash(words, p, starts[j], ends[j])
    for j in range(nb):
        c0 = starts[j]
        c1 = ends[j]
        table[:] = 0
        for p in range(m):
            h = hashes[j, p]
            tag = h & ~low
            s = np.int64(h & np.uint64(mask))
            while True:
                v = table[s]
                if v == 0:
                    table[s] = tag | np.uint64(p + 1)
                    break
                q = np.int64(v & low) - 1
                if v & ~low == tag:
                    same = True
                    for c in range(c0, c1):
                        if words[p, c] != words[q, c]:
                            same = False
                            break
                    if same:  # union, the smaller root wins (the group's first sample)
                        rp = _find(parent, p)
                        rq = _find(parent, q)
                        if rp < rq:
                            parent[rq] = rp
                        elif rq < rp:
                            parent[rp] = rq
                        break
                s = (s + 1) & mask
    keep = np.empty(m, dtype=np.bool_)
    for p in range(m):
        keep[p] = _find(parent, p) == p
    return keep


# ------------------------------------------------------------------------------ shuffled grouping
# What ``sandbox.engine.shuffle`` runs: the LSH grouping above, split into a shuffle of keys
# (a band's values, or an exact-dedup hash) by their 64-bit hash and one union over the edges.
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def key_hashes(data, offsets, salt):
    """A 64-bit hash of each byte string ``data[offsets[i]:offsets[i + 1]]`` (FNV-1a, then
    mixed), seeded by ``salt`` (the band index): it picks a key's shuffle partition, never
    decides equality."""
    m = offsets.size - 1
    out = np.empty(m, dtype=np.uint64)
    seed = _FNV_OFFSET ^ (np.uint64(salt) * _MIX)
    for i in range(m):
        h = seed
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * _FNV_PRIME
        h ^= h >> _S32
        h *= _MIX2
        h ^= h >> _S29
        out[i] = h
    return out


@njit(cache=True, nogil=True)
def components_keep(n, src, dst):
    """Rows ``0..n-1`` linked by the edges ``(src[e], dst[e])``; returns a bool per row: True
    for the smallest row of each connected group (as ``lsh_keep``'s roots)."""
    parent = np.arange(n)
    for e in range(src.size):
        rp = _find(parent, src[e])
        rq = _find(parent, dst[e])
        if rp < rq:
            parent[rq] = rp
        elif rq < rp:
            parent[rp] = rq
    keep = np.empty(n, dtype=np.bool_)
    for p in range(n):
        keep[p] = _find(parent, p) == p
    return keep
