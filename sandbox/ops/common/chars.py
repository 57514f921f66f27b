"""Character-level tables and helpers shared by the text OPs and their compiled kernels.

They reproduce Data-Juicer's ``ops/common`` helpers (``split_on_whitespace``, ``strip``,
``words_refinement`` and ``SPECIAL_CHARACTERS``) with identical results, but faster: ``str`` and
``bytes`` methods on ASCII text, numpy look-up tables for the rest. The module imports no other
OP module: the filters, the mappers and the compiled kernels all build on it.
"""
from __future__ import annotations

import string
import sys
from itertools import repeat

import numpy as np

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


def char_table(name: str) -> np.ndarray:
    """Bool look-up tables over every code point: ``special`` (Data-Juicer's SPECIAL_CHARACTERS,
    single characters) and ``alnum`` (``chr(c).isalnum()``)."""
    return _SPECIAL_TABLE if name == "special" else _alnum_table()
