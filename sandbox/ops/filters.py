"""Text filters with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and stat definitions.

Every filter splits into ``compute_stats_batch`` (stats only, never looking at thresholds) and the
base ``Filter.keep`` (``min <= stat <= max``, both ends inclusive, as Data-Juicer's default
``min_closed_interval=True, max_closed_interval=True, reversed_range=False``).

The per-text helpers at the top of this module reproduce Data-Juicer's ``ops/common`` helpers
(``split_on_whitespace``, ``strip``, ``words_refinement`` and ``SPECIAL_CHARACTERS``) with identical
results, but faster: ``str``/``bytes`` methods on ASCII text, numpy look-up tables for the rest.
Views that several filters need (lines, words, refined words) are computed once per batch through
``TextViews``, which is what Data-Juicer's OP fusion (``InterVars.lines``/``words``/
``refined_words`` in the sample context) does.
"""
from __future__ import annotations

import math
import re
import string
import sys
from collections import Counter
from itertools import count, islice, repeat
from typing import Optional, Tuple

import numpy as np

from sandbox.ops import register
from sandbox.ops.base import MAXSIZE, Filter, TextViews, Threshold

# ---------------------------------------------------------------------------------------------
# Data-Juicer's SPECIAL_CHARACTERS (data_juicer/ops/common/special_characters.py)
# ---------------------------------------------------------------------------------------------
# It is ``set(string.punctuation + string.digits + string.whitespace + OTHER_SPECIAL_CHARACTERS)``
# plus every key of ``emoji.EMOJI_DATA`` from the emoji version Data-Juicer pins (emoji==2.2.0).
# Only single characters are ever tested for membership (``c in SPECIAL_CHARACTERS`` while
# counting, ``word[i] in strip_characters`` while stripping), so the multi-code-point emoji
# sequences of that set never match anything; the single-code-point emoji are listed below as
# inclusive code-point ranges so that we need no ``emoji`` dependency.
_OTHER_SPECIAL_CHARACTERS = (  # Data-Juicer's OTHER_SPECIAL_CHARACTERS, escaped, in its order
    "\x92\u2009\x93\x97\u200a\x9d\x99\u202f\x96\u2005\x95\x91\x9c\u3000\u2002\x20\u2008"
    "\x98\x81\u2003\x82\ufffc\x83\x84\u2019\u201c\u201d\u2013\u30fc\u4e00\u25ac\u2026"
    "\u2726\ufffd\xad\xa3\u200b\u2022\u20ac\xab\xbb\xb0\xb7\u2550\xd7\u58eb\uff3e\u02d8"
    "\u21d3\u2193\u2191\u2190\u2192\uff08\uff09\xa7\u2033\u2032\xb4\xbf\u2212\xb1\u2208"
    "\ufeff\xa2\xf8\u201a\u201e\xbd\xbc\xbe\xb9\xb2\xb3\u2015\u2043\uff0c\u02cc\xb8\u2039"
    "\u203a\u02ba\u02c8\u02bb\xa6\u2010\u2800\u2030\x85\u2011\u2264\u2265\u2016\u25c6"
    "\u25cf\u25a0\u25ba\u25bc\u25b2\u25b4\u2206\u25bb\xa1\u2605\u2606\u2731\u02d0\xba"
    "\u3002\xaf\u02dc\xa5\u026a\u2248\u2020\u4e0a\u30f3\uff1a\u223c\u2044\u30fb\u2661"
    "\u2713\u2295\u2024\uff0e\u22c5\xf7\uff11\u201f\uff1b\u060c\u3001\xa8\u093e\u09be"
    "\u0940\u094d\u0947\u25e6\u02da\u309c\u02bc\u2256\xa4\u30c3\u30c4\u30b7\u2103\u221a"
    "\uff01\u3010\u3011\u203f\u221e\u27a4\uff5e\u03c0\u0647\u06e9\u261b\u20a8\u27a9\u263b"
    "\u0e51\u066a\u2665\u0131\u097d\u300a\u2018\xa9\ufd3f\u066c\uff1f\u25b7\u0413\u266b"
    "\u221f\u2122\xaa\u20aa\xae\u300c\u2014\u2756\u300d\ufd3e\u300b"
)
_EMOJI_SINGLE_CODEPOINT_RANGES = (  # single-code-point keys of emoji 2.2.0's EMOJI_DATA
    (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB),
    (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2604), (0x260E, 0x260E),
    (0x2611, 0x2611), (0x2614, 0x2615), (0x2618, 0x2618), (0x261D, 0x261D), (0x2620, 0x2620),
    (0x2622, 0x2623), (0x2626, 0x2626), (0x262A, 0x262A), (0x262E, 0x262F), (0x2638, 0x263A),
    (0x2640, 0x2640), (0x2642, 0x2642), (0x2648, 0x2653), (0x265F, 0x2660), (0x2663, 0x2663),
    (0x2665, 0x2666), (0x2668, 0x2668), (0x267B, 0x267B), (0x267E, 0x267F), (0x2692, 0x2697),
    (0x2699, 0x2699), (0x269B, 0x269C), (0x26A0, 0x26A1), (0x26A7, 0x26A7), (0x26AA, 0x26AB),
    (0x26B0, 0x26B1), (0x26BD, 0x26BE), (0x26C4, 0x26C5), (0x26C8, 0x26C8), (0x26CE, 0x26CF),
    (0x26D1, 0x26D1), (0x26D3, 0x26D4), (0x26E9, 0x26EA), (0x26F0, 0x26F5), (0x26F7, 0x26FA),
    (0x26FD, 0x26FD), (0x2702, 0x2702), (0x2705, 0x2705), (0x2708, 0x270D), (0x270F, 0x270F),
    (0x2712, 0x2712), (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721),
    (0x2728, 0x2728), (0x2733, 0x2734), (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C),
    (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757), (0x2763, 0x2764), (0x2795, 0x2797),
    (0x27A1, 0x27A1), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F004, 0x1F004), (0x1F0CF, 0x1F0CF), (0x1F170, 0x1F171),
    (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F201, 0x1F202),
    (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F250, 0x1F251),
    (0x1F300, 0x1F321), (0x1F324, 0x1F393), (0x1F396, 0x1F397), (0x1F399, 0x1F39B),
    (0x1F39E, 0x1F3F0), (0x1F3F3, 0x1F3F5), (0x1F3F7, 0x1F4FD), (0x1F4FF, 0x1F53D),
    (0x1F549, 0x1F54E), (0x1F550, 0x1F567), (0x1F56F, 0x1F570), (0x1F573, 0x1F57A),
    (0x1F587, 0x1F587), (0x1F58A, 0x1F58D), (0x1F590, 0x1F590), (0x1F595, 0x1F596),
    (0x1F5A4, 0x1F5A5), (0x1F5A8, 0x1F5A8), (0x1F5B1, 0x1F5B2), (0x1F5BC, 0x1F5BC),
    (0x1F5C2, 0x1F5C4), (0x1F5D1, 0x1F5D3), (0x1F5DC, 0x1F5DE), (0x1F5E1, 0x1F5E1),
    (0x1F5E3, 0x1F5E3), (0x1F5E8, 0x1F5E8), (0x1F5EF, 0x1F5EF), (0x1F5F3, 0x1F5F3),
    (0x1F5FA, 0x1F64F), (0x1F680, 0x1F6C5), (0x1F6CB, 0x1F6D2), (0x1F6D5, 0x1F6D7),
    (0x1F6DC, 0x1F6E5), (0x1F6E9, 0x1F6E9), (0x1F6EB, 0x1F6EC), (0x1F6F0, 0x1F6F0),
    (0x1F6F3, 0x1F6FC), (0x1F7E0, 0x1F7EB), (0x1F7F0, 0x1F7F0), (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945), (0x1F947, 0x1F9FF), (0x1FA70, 0x1FA7C), (0x1FA80, 0x1FA88),
    (0x1FA90, 0x1FABD), (0x1FABF, 0x1FAC5), (0x1FACE, 0x1FADB), (0x1FAE0, 0x1FAE8),
    (0x1FAF0, 0x1FAF8),
)
SPECIAL_CHARACTERS: frozenset[str] = frozenset(
    string.punctuation + string.digits + string.whitespace + _OTHER_SPECIAL_CHARACTERS
).union(chr(c) for lo, hi in _EMOJI_SINGLE_CODEPOINT_RANGES for c in range(lo, hi + 1))

_ASCII_SPECIAL = "".join(c for c in map(chr, range(128)) if c in SPECIAL_CHARACTERS)
_ASCII_SPECIAL_BYTES = _ASCII_SPECIAL.encode("ascii")
_ASCII_ALNUM_BYTES = bytes(c for c in range(128) if chr(c).isalnum())

_SPECIAL_TABLE = np.zeros(sys.maxunicode + 1, dtype=bool)
_SPECIAL_TABLE[[ord(c) for c in SPECIAL_CHARACTERS]] = True
_ALNUM_TABLE: np.ndarray | None = None  # built on first non-ASCII text (~30 ms)


def _alnum_table() -> np.ndarray:
    """``table[cp] == chr(cp).isalnum()`` for every code point (numpy's isalnum is CPython's)."""
    global _ALNUM_TABLE
    if _ALNUM_TABLE is None:
        chars = np.arange(sys.maxunicode + 1, dtype=np.uint32).view("U1")
        _ALNUM_TABLE = np.asarray(np.char.isalnum(chars), dtype=bool)
    return _ALNUM_TABLE


def codepoints(text: str) -> np.ndarray:
    """The code points of ``text`` as uint32 (lone surrogates kept, as Python's str keeps them)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def alnum_count(text: str) -> int:
    """``sum(c.isalnum() for c in text)``."""
    if text.isascii():
        return len(text) - len(text.encode("ascii").translate(None, _ASCII_ALNUM_BYTES))
    return int(np.count_nonzero(_alnum_table()[codepoints(text)]))


def special_char_count(text: str) -> int:
    """``len([c for c in text if c in SPECIAL_CHARACTERS])``."""
    if text.isascii():
        return len(text) - len(text.encode("ascii").translate(None, _ASCII_SPECIAL_BYTES))
    return int(np.count_nonzero(_SPECIAL_TABLE[codepoints(text)]))


def split_on_whitespace(text: str) -> list[str]:
    """Data-Juicer's ``get_words_from_document(text)`` without a tokenizer, i.e.
    ``split_on_whitespace(text, new_line=True, tab=True)``: split on ' ', '\\n' and '\\t' *only*
    (not on '\\r', '\\xa0', ...) and drop the empty pieces."""
    return list(filter(None, text.replace("\n", " ").replace("\t", " ").split(" ")))


def strip_special(word: str) -> str:
    """Data-Juicer's ``strip(word, SPECIAL_CHARACTERS)``: drop leading and trailing special
    characters."""
    if word.isascii():
        return word.strip(_ASCII_SPECIAL)
    special = SPECIAL_CHARACTERS
    if word[0] not in special and word[-1] not in special:
        return word
    i, j = 0, len(word)
    while i < j and word[i] in special:
        i += 1
    while j > i and word[j - 1] in special:
        j -= 1
    return word[i:j]


def special_chars_in(text: str) -> str:
    """The special characters that occur in ``text`` plus every ASCII one, as a string for
    ``str.strip``: stripping with it is stripping with SPECIAL_CHARACTERS, for any substring of
    ``text``."""
    if text.isascii():
        return _ASCII_SPECIAL
    cps = codepoints(text)
    cps = cps[cps >= 128]
    present = np.unique(cps[_SPECIAL_TABLE[cps]])
    return _ASCII_SPECIAL + "".join(map(chr, present.tolist()))


def refine_words(words: list[str], lower_case: bool) -> list[str]:
    """Data-Juicer's ``words_refinement(words, lower_case=..., strip_chars=SPECIAL_CHARACTERS)``:
    lower-case first (when asked), then strip special characters, then drop empty words."""
    if lower_case:
        words = list(map(str.lower, words))
    chars = special_chars_in("".join(words))
    return list(filter(None, map(str.strip, words, repeat(chars))))


def lines_of(views: TextViews) -> list[list[str]]:
    """``text.splitlines()`` per text (Data-Juicer's ``InterVars.lines``)."""
    return views.get(("lines",), str.splitlines)


def words_of(views: TextViews) -> list[list[str]]:
    """Whitespace-split words per text (Data-Juicer's ``InterVars.words`` without tokenizer)."""
    return views.get(("words", "split_on_whitespace"), split_on_whitespace)


def refined_words_of(views: TextViews, lower_case: bool) -> list[list[str]]:
    """Words refined by ``refine_words`` per text (Data-Juicer's ``InterVars.refined_words``),
    derived from the shared ``words_of`` view."""
    words = iter(words_of(views))
    # TextViews.get evaluates fn(text) in text order, so the iterator stays aligned.
    return views.get(
        ("refined_words", "split_on_whitespace", lower_case, "SPECIAL_CHARACTERS"),
        lambda _text: refine_words(next(words), lower_case),
    )


def char_rep_ratio(text: str, n: int) -> float:
    """Data-Juicer's character n-gram repetition ratio: over the ``len(text) - n + 1`` character
    n-grams, the share taken by the ``k`` most frequent ones, where ``k = min(int(sqrt(D)),
    D - D1)``, D the number of distinct n-grams and D1 the number seen once. Reference version,
    one text at a time; ``char_rep_ratios`` computes the same numbers faster."""
    total = len(text) - n + 1
    if total <= 0:
        return 0.0
    freq = sorted(Counter([text[i : i + n] for i in range(total)]).values(), reverse=True)
    distinct = len(freq)
    k = min(int(math.sqrt(distinct)), distinct - freq.count(1))
    return sum(freq[:k]) / total if k > 0 else 0.0


# --- vectorised n-gram counting -------------------------------------------------------------
# Both repetition filters only need the sizes of the groups of equal n-grams. They get them by
# sorting integer keys instead of hashing Python strings:
# * characters: texts are encoded with the narrowest fixed-width codec that holds all their
#   characters (latin-1: 1 byte, UTF-16 without surrogate pairs: 2, UTF-32: 4) and viewed,
#   without copying, as overlapping little-endian uint64 words: word i holds characters
#   i .. i+q-1 *exactly* (q = 8, 4 or 2), so an n-gram with n <= q is its own exact key;
# * words: each distinct word gets an integer id (a dict), one "word" per id.
# Longer n-grams are covered by several words and get a 64-bit hash chained so that it is
# invertible given all but the last word; n-grams are grouped by sorting (hash, position), and
# every pair of neighbours with equal hash is checked against the exact words. On a collision
# the text is counted with the reference function, so results are always exactly Data-Juicer's.
_NP_MIN_CHARS = 256  # below this the per-call overhead of numpy outweighs dict counting
_NP_MIN_WORDS = 64
_NON_LATIN1 = re.compile("[^\\x00-\\xff]")
_ASTRAL = re.compile("[\\U00010000-\\U0010ffff]")
_CODECS = (("latin-1", 1), ("utf-16-le", 2), ("utf-32-le", 4))
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_S29, _S32 = np.uint64(29), np.uint64(32)
_POSITIONS = np.arange(1 << 16, dtype=np.uint64)


def _positions(k: int) -> np.ndarray:
    global _POSITIONS
    if k > _POSITIONS.size:
        _POSITIONS = np.arange(max(k, 2 * _POSITIONS.size), dtype=np.uint64)
    return _POSITIONS[:k]


def _codec_width(text: str) -> int:
    if text.isascii() or _NON_LATIN1.search(text) is None:
        return 0
    return 1 if _ASTRAL.search(text) is None else 2


def _chained_hashes(words: np.ndarray, offsets: list[int], m: int) -> np.ndarray:
    """For every start i < m, a 64-bit hash of ``words[i + o] for o in offsets``; given all but
    the last of those words, the hash determines the last one (every step is invertible)."""
    h = words[:m] * _M1
    for o in offsets[1:]:
        h ^= h >> _S29
        h *= _M2
        h ^= words[o : o + m]
    h ^= h >> _S32
    h *= _M1
    h ^= h >> _S29
    return h


# Group sizes come back as (sizes of the groups seen more than once, number of groups), or
# None when a hash collision was found.
_Groups = Optional[Tuple[np.ndarray, int]]
_NO_REPS = np.zeros(0, dtype=np.int64)


def _groups_exact(keys: np.ndarray) -> _Groups:
    total = keys.size
    keys = np.sort(keys)
    ends = np.flatnonzero(keys[1:] != keys[:-1])
    if ends.size == total - 1:  # every n-gram distinct
        return _NO_REPS, total
    sizes = np.diff(ends, prepend=-1, append=total - 1)
    return sizes[sizes > 1], sizes.size


def _groups_hashed(h: np.ndarray, words: np.ndarray, exact_offsets: list[int]) -> _Groups:
    total = h.size
    pbits = total.bit_length()
    mask = np.uint64((1 << pbits) - 1)
    packed = h & ~mask  # high bits of the hash, position in the low bits
    packed |= _positions(total)
    packed.sort()
    same = (packed[1:] >> np.uint64(pbits)) == (packed[:-1] >> np.uint64(pbits))
    pairs = np.flatnonzero(same)
    if pairs.size == 0:
        return _NO_REPS, total
    a = (packed[pairs] & mask).astype(np.intp)
    b = (packed[pairs + 1] & mask).astype(np.intp)
    if not np.array_equal(h[a], h[b]):
        return None
    for o in exact_offsets:
        if not np.array_equal(words[a + o], words[b + o]):
            return None
    sizes = np.diff(np.flatnonzero(~same), prepend=-1, append=total - 1)
    return sizes[sizes > 1], sizes.size


def _char_ratio(groups: tuple[np.ndarray, int], total: int) -> float:
    reps, distinct = groups
    k = min(int(math.sqrt(distinct)), reps.size)
    if k <= 0:
        return 0.0
    if k < reps.size:
        reps = np.partition(reps, reps.size - k)[reps.size - k :]
    return int(reps.sum()) / total


def _char_rep_group(texts: list[str], n: int, width: int) -> list[float]:
    codec, unit = _CODECS[width]
    q = 8 // unit
    joined = "".join(texts)
    buf = (joined + "\0" * (q - 1)).encode(codec, "surrogatepass")
    words = np.ndarray(shape=(len(joined),), dtype="<u8", buffer=buf, strides=(unit,))
    out = []
    start = 0
    if n <= q:
        keys = words if n == q else words & np.uint64((1 << (8 * unit * n)) - 1)
        for t in texts:
            total = len(t) - n + 1
            out.append(_char_ratio(_groups_exact(keys[start : start + total]), total))
            start += len(t)
        return out
    offsets = list(range(0, n - q + 1, q))
    if offsets[-1] != n - q:
        offsets.append(n - q)
    h = _chained_hashes(words, offsets, len(joined) - n + 1)
    for t in texts:
        total = len(t) - n + 1
        groups = _groups_hashed(h[start : start + total], words[start:], offsets[:-1])
        out.append(char_rep_ratio(t, n) if groups is None else _char_ratio(groups, total))
        start += len(t)
    return out


def char_rep_ratios(texts: list[str], n: int) -> np.ndarray:
    """``[char_rep_ratio(t, n) for t in texts]``, vectorised (identical results)."""
    out = np.zeros(len(texts), dtype=np.float64)
    groups: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, t in enumerate(texts):
        if len(t) < _NP_MIN_CHARS or len(t) <= n:
            out[i] = char_rep_ratio(t, n)
        else:
            groups[_codec_width(t)].append(i)
    for width, idx in enumerate(groups):
        if idx:
            out[idx] = _char_rep_group([texts[i] for i in idx], n, width)
    return out


def word_rep_ratio(words: list[str], n: int) -> float:
    """Data-Juicer's word n-gram repetition ratio: the share of the ``len(words) - n + 1`` word
    n-grams whose n-gram occurs more than once. (Data-Juicer keys n-grams by ``" ".join``; the
    words hold no space, so counting tuples is the same.) Reference version, one text at a time;
    ``word_rep_ratios`` computes the same numbers faster."""
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    if n == 1:
        freq = Counter(words)
    else:
        freq = Counter(zip(*(islice(words, i, None) for i in range(n))))
    once = list(freq.values()).count(1)
    return (total - once) / total


def word_rep_ratios(word_lists: list[list[str]], n: int) -> np.ndarray:
    """``[word_rep_ratio(w, n) for w in word_lists]``, vectorised (identical results)."""
    out = np.zeros(len(word_lists), dtype=np.float64)
    big = []
    for i, words in enumerate(word_lists):
        if len(words) < _NP_MIN_WORDS or len(words) <= n:
            out[i] = word_rep_ratio(words, n)
        else:
            big.append(i)
    if not big:
        return out
    flat = [w for i in big for w in word_lists[i]]
    vocab: dict[str, int] = {}
    ids = np.fromiter(map(vocab.setdefault, flat, count()), dtype=np.uint64, count=len(flat))
    offsets = list(range(n))
    h = _chained_hashes(ids, offsets, len(flat) - n + 1) if n > 1 else ids
    start = 0
    for i in big:
        size = len(word_lists[i])
        total = size - n + 1
        if n == 1:
            groups = _groups_exact(ids[start : start + total])
        else:
            groups = _groups_hashed(h[start : start + total], ids[start:], offsets[:-1])
        if groups is None:
            out[i] = word_rep_ratio(word_lists[i], n)
        else:
            out[i] = int(groups[0].sum()) / total
        start += size
    return out


def _array(values, dtype) -> np.ndarray:
    return np.fromiter(values, dtype=dtype)


def _no_tokenizer(op: str, what: str) -> NotImplementedError:
    return NotImplementedError(
        f"{op}: tokenization=True needs {what}, which Data-Juicer downloads from a model hub; "
        "that is not available offline here. Use tokenization=False."
    )


def _positive_int(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
_LEN_RANGE = dict(low=0.0, high=float(MAXSIZE))
_RATIO_RANGE = dict(low=0.0, high=1.0)


@register
class TextLengthFilter(Filter):
    """``text_len = len(text)`` in characters (code points); empty text has length 0."""

    name = "text_length_filter"
    description = "Keep samples whose text length (characters) is within [min_len, max_len]."
    stat_keys = ("text_len",)
    thresholds = {
        "min_len": Threshold("text_len", "min", **_LEN_RANGE),
        "max_len": Threshold("text_len", "max", **_LEN_RANGE),
    }

    def __init__(self, min_len: int = 10, max_len: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.min_len = min_len
        self.max_len = max_len

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {"text_len": _array(map(len, views.texts), np.int64)}


@register
class WordsNumFilter(Filter):
    """``num_words``: the number of words after splitting on ' ', '\\n' and '\\t' only (other
    whitespace such as '\\r' or '\\xa0' stays inside words) and stripping leading/trailing
    ``SPECIAL_CHARACTERS`` from each word; words that were only special characters (``"--"``,
    ``"2024"``, ``"!"``) are not counted. No lower-casing.

    Data-Juicer quirk: ``lang`` is only used to pick the sentencepiece model when
    ``tokenization=True``; with ``tokenization=False`` (the default) it changes nothing, so
    Chinese text without spaces counts as one word per whitespace-separated run.
    """

    name = "words_num_filter"
    description = "Keep samples whose word count (whitespace split, specials stripped) is in range."
    stat_keys = ("num_words",)
    thresholds = {
        "min_num": Threshold("num_words", "min", **_LEN_RANGE),
        "max_num": Threshold("num_words", "max", **_LEN_RANGE),
    }

    def __init__(
        self,
        lang: str = "en",
        tokenization: bool = False,
        min_num: int = 10,
        max_num: int = MAXSIZE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.lang = lang
        self.tokenization = tokenization
        self.min_num = min_num
        self.max_num = max_num
        if tokenization:
            raise _no_tokenizer(self.name, f"a sentencepiece model for lang={lang!r}")

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {"num_words": _array(map(len, refined_words_of(views, False)), np.int64)}


@register
class AlphanumericFilter(Filter):
    """``alnum_ratio = (number of characters c with c.isalnum()) / len(text)``; 0.0 for empty text.
    Unicode-aware: letters and digits of every script count (``str.isalnum``).

    ``tokenization=True`` (Data-Juicer's ``alpha_token_ratio``: letters per token of the
    EleutherAI/pythia-6.9b-deduped tokenizer) is not available offline and raises.
    """

    name = "alphanumeric_filter"
    description = "Keep samples whose alphanumeric-character ratio is in [min_ratio, max_ratio]."
    stat_keys = ("alnum_ratio",)
    thresholds = {
        "min_ratio": Threshold("alnum_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("alnum_ratio", "max", **_RATIO_RANGE),
    }

    def __init__(
        self,
        tokenization: bool = False,
        min_ratio: float = 0.25,
        max_ratio: float = MAXSIZE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.tokenization = tokenization
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        if tokenization:
            raise _no_tokenizer(
                self.name, "the Hugging Face tokenizer 'EleutherAI/pythia-6.9b-deduped'"
            )

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {
            "alnum_ratio": _array(
                (alnum_count(t) / len(t) if t else 0.0 for t in views.texts), np.float64
            )
        }


@register
class SpecialCharactersFilter(Filter):
    """``special_char_ratio = (characters in SPECIAL_CHARACTERS) / len(text)``; 0.0 for empty
    text. SPECIAL_CHARACTERS is Data-Juicer's set: ASCII punctuation, digits and whitespace
    (so '\\n' and ' ' count as special), a list of other symbols/invisible characters, and the
    single-code-point emoji of emoji 2.2.0."""

    name = "special_characters_filter"
    description = "Keep samples whose special-character ratio is within [min_ratio, max_ratio]."
    stat_keys = ("special_char_ratio",)
    thresholds = {
        "min_ratio": Threshold("special_char_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("special_char_ratio", "max", **_RATIO_RANGE),
    }

    def __init__(self, min_ratio: float = 0.0, max_ratio: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {
            "special_char_ratio": _array(
                (special_char_count(t) / len(t) if t else 0.0 for t in views.texts), np.float64
            )
        }


@register
class CharacterRepetitionFilter(Filter):
    """``char_rep_ratio``: take all ``len(text) - rep_len + 1`` character n-grams (n = rep_len,
    overlapping, newlines included), D distinct ones of which D1 occur once; the ratio is the
    number of occurrences of the ``k = min(int(sqrt(D)), D - D1)`` most frequent distinct
    n-grams over the number of n-grams. 0.0 when the text is shorter than ``rep_len`` or no
    n-gram repeats. (Data-Juicer stores ``rep_len`` as ``self.n``.)
    """

    name = "character_repetition_filter"
    description = "Keep samples whose char n-gram repetition ratio is in [min_ratio, max_ratio]."
    stat_keys = ("char_rep_ratio",)
    thresholds = {
        "min_ratio": Threshold("char_rep_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("char_rep_ratio", "max", **_RATIO_RANGE),
    }

    def __init__(self, rep_len: int = 10, min_ratio: float = 0.0, max_ratio: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        _positive_int(self.name, "rep_len", rep_len)
        self.rep_len = rep_len
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {"char_rep_ratio": char_rep_ratios(views.texts, self.rep_len)}


@register
class WordRepetitionFilter(Filter):
    """``word_rep_ratio``: words are split on ' ', '\\n', '\\t', lower-cased, then stripped of
    ``SPECIAL_CHARACTERS`` (empty ones dropped); over the ``len(words) - rep_len + 1`` word
    n-grams, the ratio is the number of n-grams whose n-gram occurs more than once over all
    n-grams. 0.0 when there are fewer than ``rep_len`` words.

    Data-Juicer quirk: ``lang`` only picks the sentencepiece model when ``tokenization=True``;
    with the default ``tokenization=False`` it changes nothing.
    """

    name = "word_repetition_filter"
    description = "Keep samples whose word n-gram repetition ratio is in [min_ratio, max_ratio]."
    stat_keys = ("word_rep_ratio",)
    thresholds = {
        "min_ratio": Threshold("word_rep_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("word_rep_ratio", "max", **_RATIO_RANGE),
    }

    def __init__(
        self,
        lang: str = "en",
        tokenization: bool = False,
        rep_len: int = 10,
        min_ratio: float = 0.0,
        max_ratio: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _positive_int(self.name, "rep_len", rep_len)
        self.lang = lang
        self.tokenization = tokenization
        self.rep_len = rep_len
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        if tokenization:
            raise _no_tokenizer(self.name, f"a sentencepiece model for lang={lang!r}")

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {"word_rep_ratio": word_rep_ratios(refined_words_of(views, True), self.rep_len)}


@register
class AverageLineLengthFilter(Filter):
    """``avg_line_length = len(text) / len(text.splitlines())`` (a float; 0.0 for empty text).
    Data-Juicer quirks: the numerator is the whole text length, line breaks included;
    ``str.splitlines`` also breaks on '\\r', '\\x0b', '\\x0c', '\\x1c'-'\\x1e', '\\x85',
    '\\u2028', '\\u2029', and a trailing newline does not start another line."""

    name = "average_line_length_filter"
    description = "Keep samples whose average line length is within [min_len, max_len]."
    stat_keys = ("avg_line_length",)
    thresholds = {
        "min_len": Threshold("avg_line_length", "min", **_LEN_RANGE),
        "max_len": Threshold("avg_line_length", "max", **_LEN_RANGE),
    }

    def __init__(self, min_len: int = 10, max_len: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.min_len = min_len
        self.max_len = max_len

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        lines = lines_of(views)
        return {
            "avg_line_length": _array(
                (len(t) / len(ls) if ls else 0.0 for t, ls in zip(views.texts, lines)),
                np.float64,
            )
        }


@register
class MaximumLineLengthFilter(Filter):
    """``max_line_length = max(len(line) for line in text.splitlines())`` (0 for empty text);
    lines exclude their line break, and are split as ``str.splitlines`` does."""

    name = "maximum_line_length_filter"
    description = "Keep samples whose longest line length is within [min_len, max_len]."
    stat_keys = ("max_line_length",)
    thresholds = {
        "min_len": Threshold("max_line_length", "min", **_LEN_RANGE),
        "max_len": Threshold("max_line_length", "max", **_LEN_RANGE),
    }

    def __init__(self, min_len: int = 10, max_len: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.min_len = min_len
        self.max_len = max_len

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {
            "max_line_length": _array(
                (max(map(len, ls)) if ls else 0 for ls in lines_of(views)), np.int64
            )
        }
