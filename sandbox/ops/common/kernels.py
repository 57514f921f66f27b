"""Compiled kernels for the per-character loops of the text OPs (numba; compiled on first use and
cached on disk, see ``sandbox.jit``, so later processes only load them).

Each kernel works on a whole batch at once: the texts' code points as one ``uint32`` array plus
``offsets`` (text ``d`` is ``cp[offsets[d]:offsets[d + 1]]``), or their UTF-8 bytes the same way.
Results are exactly those of the reference Python functions they replace (``filters/text.py``
keeps those as the definition and the tests compare both): n-grams are grouped by
open-addressing hash tables whose hashes only pick the slot, and every match is confirmed on the
actual code points (or word ids), so a hash collision can never merge two different n-grams.
(The hashes are polynomial in one base; the tests build real collisions from Thue-Morse words to
check this.) Most n-grams of a text occur once: a byte count per hash (``_mark``) lets those
skip the exact table, which then holds only the n-grams that may repeat.

Importing this module loads no numba: a kernel runs through its ahead-of-time extension, or is
compiled on its first call (``sandbox.jit``).
"""
from __future__ import annotations

import numpy as np

from sandbox.jit import njit
from sandbox.ops.common.chars import char_table

_U64_1 = np.uint64(1)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BASE = np.uint64(0x100000001B3)


# ------------------------------------------------------------------------------ batch inputs
def codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(cp, offsets)``: the code points of all texts in one uint32 array (lone surrogates kept,
    as ``str`` keeps them) and where each text starts; ``offsets[-1] == cp.size``."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    cp = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return cp, offsets


def utf8(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(bytes, offsets)`` as ``codepoints`` but UTF-8 encoded (strict, as ``str.encode()``)."""
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(texts)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


_CONTEXT = np.uint32(0xFFFFFFFF)  # ``lower_table``'s mark of the characters Python must lower
_LOWER: list = []


def lower_table() -> np.ndarray:
    """uint32 per code point: its lower case (``str.lower`` of that one character), except
    U+0130 (two characters) and U+03A3 (final or not, by context), marked ``_CONTEXT``. Built
    from one ``str.lower`` of every code point (~50 ms, once per process)."""
    if not _LOWER:
        every = np.arange(0x110000, dtype=np.uint32)
        every[0x130] = 0x41  # kept out of the one-string lower(): it would lengthen the string
        text = every.tobytes().decode("utf-32-le", "surrogatepass").lower()
        table = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
        table[[0x130, 0x3A3]] = _CONTEXT
        _LOWER.append(table)
    return _LOWER[0]


def warm_up() -> None:
    """Load every kernel now (from the on-disk cache; compiled on the very first use)."""
    texts = ["a B", ""]
    cp, offsets = codepoints(texts)
    special = char_table("special")
    char_stats(cp, offsets, char_classes())
    word_rep_ratios_of(texts, cp, offsets, special, 1)
    char_rep_ratios(cp, offsets, 1)


# ------------------------------------------------------------------------------ helpers
@njit(cache=True, inline="always")
def _is_sep(c) -> bool:
    """Data-Juicer's split_on_whitespace(new_line=True, tab=True) separators: ' ', '\\n', '\\t'."""
    return c == 32 or c == 10 or c == 9


@njit(cache=True, inline="always")
def _same(a, i, j, n) -> bool:
    """``a[i:i + n] == a[j:j + n]``: the check that makes every hash-table match exact."""
    for o in range(n):
        if a[i + o] != a[j + o]:
            return False
    return True


@njit(cache=True, inline="always")
def _same_lower(a, lower, i, j, n) -> bool:
    """``lower[a[i:i + n]] == lower[a[j:j + n]]``."""
    for o in range(n):
        if lower[a[i + o]] != lower[a[j + o]]:
            return False
    return True


@njit(cache=True)
def _table_size(n):
    size = 8
    while size < 2 * n:
        size <<= 1
    return size


@njit(cache=True)
def _slot(h, mask):
    return np.int64((h * _MIX) >> np.uint64(32)) & mask


# ------------------------------------------------------------------------------ kernels
# columns of ``char_stats``
ALNUM, SPECIAL, WORDS, LINES, LONGEST_LINE = range(5)


_IS_ALNUM, _IS_SPECIAL, _IS_SEP, _IS_BREAK = 1, 2, 4, 8
_CLASSES: list = []


def char_classes() -> np.ndarray:
    """uint8 bit flags per code point for ``char_stats``: alnum, special (Data-Juicer's
    SPECIAL_CHARACTERS), word separator (' ', '\\n', '\\t') and line break (``str.splitlines``'s:
    '\\n', '\\r', '\\x0b', '\\x0c', '\\x1c'-'\\x1e', '\\x85', '\\u2028', '\\u2029')."""
    if not _CLASSES:
        classes = char_table("alnum").astype(np.uint8) * _IS_ALNUM
        classes |= char_table("special").astype(np.uint8) * _IS_SPECIAL
        classes[[32, 10, 9]] |= _IS_SEP
        classes[[10, 11, 12, 13, 28, 29, 30, 0x85, 0x2028, 0x2029]] |= _IS_BREAK
        _CLASSES.append(classes)
    return _CLASSES[0]


@njit(cache=True, nogil=True,
      export="i8[:, ::1](u4[::1], i8[::1], u1[::1])")
def char_stats(cp, offsets, classes):
    """Per text, in one pass over its code points (``classes`` from ``char_classes``), an int64
    row of:

    * ALNUM, SPECIAL: how many of its characters are alnum / special;
    * WORDS: words (split on ' ', '\\n', '\\t') keeping a character once the special
      characters at both ends are stripped (Data-Juicer's words_num);
    * LINES, LONGEST_LINE: ``len(text.splitlines())`` and the length of its longest line
      ('\\r\\n' is one break; a break at the end starts no line)."""
    n = offsets.size - 1
    out = np.zeros((n, 5), dtype=np.int64)
    for d in range(n):
        start, end = offsets[d], offsets[d + 1]
        n_alnum = n_special = words = lines = longest = 0
        in_word = plain = prev_cr = False
        line_start = start
        for i in range(start, end):
            c = cp[i]
            k = classes[c]
            n_alnum += k & 1
            n_special += (k >> 1) & 1
            if k & 4:  # a word separator
                if plain:
                    words += 1
                in_word = plain = False
            else:
                in_word = True
                if not k & 2:
                    plain = True
            if k & 8:  # a line break
                if c == 10 and prev_cr:  # the \n of \r\n: the same break
                    line_start = i + 1
                    prev_cr = False
                    continue
                lines += 1
                longest = max(longest, i - line_start)
                line_start = i + 1
                prev_cr = c == 13
            else:
                prev_cr = False
        if in_word and plain:
            words += 1
        if line_start < end:
            lines += 1
            longest = max(longest, end - line_start)
        out[d, ALNUM] = n_alnum
        out[d, SPECIAL] = n_special
        out[d, WORDS] = words
        out[d, LINES] = lines
        out[d, LONGEST_LINE] = longest
    return out


@njit(cache=True, inline="always")
def _mark(seen, b) -> None:
    """Count a hash into ``seen[b]`` (0 -> 1 -> 3, then stays 3: seen once, seen twice or more)."""
    seen[b] = ((seen[b] << 1) | 1) & 3


@njit(cache=True, nogil=True,
      export="(f8[::1], i8[::1])(u4[::1], i8[::1], u4[::1], b1[::1], i8)")
def word_rep_ratios(cp, offsets, lower, special, n):
    """``(ratios, odd)``. Per text: Data-Juicer's word n-gram repetition ratio over its refined
    words (split on ' ', '\\n', '\\t'; lower-cased through ``lower``, see ``lower_table``;
    special characters stripped at both ends; empty words dropped). ``odd`` lists the texts
    holding a character ``lower`` marks ``_CONTEXT``: their ratio is left 0.0 for the caller to
    compute from Python's own lower-casing (``word_rep_ratios_of``).

    Words are found and hashed in one pass over the code points, then numbered (equal words get
    the id of their first occurrence, each match confirmed on the lower-cased code points). The
    n-grams of ids are hashed once into ``hs`` and counted into a small ``seen`` array 8x their
    number; only the n-grams whose ``seen`` entry says "twice or more" (the repeated ones plus a
    few hash neighbours) go through the exact table, so most n-grams cost two byte lookups."""
    ndocs = offsets.size - 1
    out = np.zeros(ndocs, dtype=np.float64)
    odd = np.empty(ndocs, dtype=np.int64)
    nodd = 0
    longest = 0
    for d in range(ndocs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = longest // 2 + 1
    ws = np.empty(cap, dtype=np.int64)
    we = np.empty(cap, dtype=np.int64)
    ids = np.empty(cap, dtype=np.int64)
    whash = np.empty(cap, dtype=np.uint64)
    hs = np.empty(cap, dtype=np.uint64)
    # one set of tables for the batch, each text using the first 2x-its-size slots of them
    table = np.full(_table_size(cap), -1, dtype=np.int64)
    counts = np.zeros(table.size, dtype=np.int64)
    seen = np.zeros(8 * table.size, dtype=np.uint8)
    for d in range(ndocs):
        start, end = offsets[d], offsets[d + 1]
        # the refined words: [a, b) is a word's part between its leading and trailing special
        # characters (a = -1 while only special ones were seen), hk its hash
        nw = 0
        flagged = False
        a = b = -1
        h = hk = np.uint64(0)
        for i in range(start, end + 1):
            v = lower[cp[i]] if i < end else np.uint32(32)
            if _is_sep(v):
                if a >= 0:
                    ws[nw] = a
                    we[nw] = b
                    whash[nw] = hk
                    nw += 1
                    a = -1
                continue
            sp = False
            if v == _CONTEXT:
                flagged = True
            else:
                sp = special[v]
            if a < 0:
                if sp:
                    continue
                a = i
                h = np.uint64(0)
            h = h * _BASE + np.uint64(v)
            if not sp:
                b = i + 1
                hk = h
        if flagged:
            odd[nodd] = d
            nodd += 1
            continue
        total = nw - n + 1
        if total <= 0:
            continue
        # word ids: equal words (same lower-cased code points) get the id of their first one
        size = _table_size(nw)
        mask = size - 1
        for k in range(nw):
            h = whash[k]
            s = _slot(h, mask)
            while True:
                r = table[s]
                if r == -1:
                    table[s] = k
                    ids[k] = k
                    break
                if (whash[r] == h and we[r] - ws[r] == we[k] - ws[k]
                        and _same_lower(cp, lower, ws[r], ws[k], we[k] - ws[k])):
                    ids[k] = ids[r]
                    break
                s = (s + 1) & mask
        table[:size] = -1
        # n-gram counts, keyed by the ids of their n words; those seen once skip the table
        size = _table_size(total)
        mask = size - 1
        bmask = 8 * size - 1
        for k in range(total):
            h = np.uint64(0)
            for o in range(n):
                h = h * _BASE + np.uint64(ids[k + o])
            hs[k] = h
            _mark(seen, _slot(h, bmask))
        for k in range(total):
            h = hs[k]
            if seen[_slot(h, bmask)] != 3:
                continue
            s = _slot(h, mask)
            while True:
                r = table[s]
                if r == -1:
                    table[s] = k
                    counts[s] = 1
                    break
                if _same(ids, r, k, n):
                    counts[s] += 1
                    break
                s = (s + 1) & mask
        seen[:8 * size] = 0
        rep = 0
        for s in range(size):
            if table[s] != -1:
                if counts[s] > 1:
                    rep += counts[s]
                table[s] = -1  # clean for the next text
        out[d] = rep / total
    return out, odd[:nodd]


def word_rep_ratios_of(texts: list[str], cp: np.ndarray, offsets: np.ndarray, special: np.ndarray,
                       n: int) -> np.ndarray:
    """``word_rep_ratios`` of the texts (code points ``(cp, offsets)``), the texts it leaves to
    Python's lower-casing included: those are lower-cased by ``str.lower`` and counted again (a
    lower-cased text holds no ``_CONTEXT`` character, and ``lower_table`` maps it to itself)."""
    out, odd = word_rep_ratios(cp, offsets, lower_table(), special, n)
    if odd.size:
        again = [texts[d].lower() for d in odd]
        out[odd] = word_rep_ratios(*codepoints(again), lower_table(), special, n)[0]
    return out


@njit(cache=True, nogil=True,
      export="f8[::1](u4[::1], i8[::1], i8)")
def char_rep_ratios(cp, offsets, n):
    """Per text: Data-Juicer's character n-gram repetition ratio: over the ``len - n + 1``
    character n-grams, the share of the ``k = min(int(sqrt(D)), D - D1)`` most frequent distinct
    ones (D distinct n-grams, D1 of them seen once).

    As in ``word_rep_ratios``, the rolling hashes go through a small ``seen`` count first and
    only the n-grams it has seen twice or more go through the exact table (every match confirmed
    on the code points); the others are distinct n-grams seen once, counted into D."""
    ndocs = offsets.size - 1
    out = np.zeros(ndocs, dtype=np.float64)
    # base ** (n - 1), to take the leaving character out of the rolling hash
    top = _U64_1
    for _ in range(n - 1):
        top = top * _BASE
    longest = 1
    for d in range(ndocs):
        longest = max(longest, offsets[d + 1] - offsets[d] - n + 1)
    # one set of tables for the batch, each text using the first 2x-its-size slots of them and
    # clearing only the slots it filled (``used``): no allocation or full sweep per text
    cap = _table_size(longest)
    table = np.full(cap, -1, dtype=np.int64)  # the n-gram's first position in the text
    counts = np.zeros(cap, dtype=np.int64)
    hashes = np.empty(cap, dtype=np.uint64)
    used = np.empty(cap, dtype=np.int64)
    reps = np.empty(cap, dtype=np.int64)
    hs = np.empty(longest, dtype=np.uint64)
    seen = np.zeros(8 * cap, dtype=np.uint8)
    for d in range(ndocs):
        start = offsets[d]
        total = offsets[d + 1] - start - n + 1
        if total <= 0:
            continue
        size = _table_size(total)
        mask = size - 1
        bmask = 8 * size - 1
        h = np.uint64(0)
        for i in range(n - 1):
            h = h * _BASE + np.uint64(cp[start + i])
        for k in range(total):
            h = h * _BASE + np.uint64(cp[start + k + n - 1])
            hs[k] = h
            _mark(seen, _slot(h, bmask))
            h = h - np.uint64(cp[start + k]) * top
        distinct = 0  # in the exact table
        checked = 0  # n-grams that went through it
        for k in range(total):
            h = hs[k]
            if seen[_slot(h, bmask)] != 3:
                continue
            checked += 1
            s = _slot(h, mask)
            while True:
                r = table[s]
                if r == -1:
                    table[s] = k
                    hashes[s] = h
                    counts[s] = 1
                    used[distinct] = s
                    distinct += 1
                    break
                if hashes[s] == h and _same(cp, start + r, start + k, n):
                    counts[s] += 1
                    break
                s = (s + 1) & mask
        seen[:8 * size] = 0
        nrep = 0
        for u in range(distinct):
            s = used[u]
            if counts[s] > 1:
                reps[nrep] = counts[s]
                nrep += 1
            table[s] = -1  # clean for the next text
        kk = min(int(np.sqrt(total - checked + distinct)), nrep)
        if kk <= 0:
            continue
        top_k = reps[:nrep]
        if kk < nrep:
            top_k.sort()
        acc = 0
        for u in range(nrep - kk, nrep):
            acc += top_k[u]
        out[d] = acc / total
    return out
