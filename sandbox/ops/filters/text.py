"""Text filters over characters, words and lines: text length, word count, alphanumeric and
special-character ratios, character and word n-gram repetition, average and maximum line length;
with the word and code-point views they share.

Views that several filters need (lines, words, refined words, code points) are computed once per
batch through ``TextViews``, which is what Data-Juicer's OP fusion (``InterVars.lines``/``words``/
``refined_words`` in the sample context) does. Most stats come from the compiled kernels of
``sandbox/ops/kernels.py``; ``char_rep_ratio`` and ``word_rep_ratio`` here are the reference
definitions the tests compare them with.
"""
from __future__ import annotations

import math
from collections import Counter
from itertools import islice

import numpy as np

from sandbox.assets import hf_ref
from sandbox.ops.base import MAXSIZE, Filter, TextViews, Threshold
from sandbox.ops.chars import char_table, refine_words, split_on_whitespace
from sandbox.ops.filters.tokenization import PYTHIA, HFTokenizer, Tokenizer, sp_needs
from sandbox.ops.registry import register


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


def _with_tokenizer(config: dict, tokenizer) -> dict:
    """An OP's stats cache key, naming the model file its ``tokenization=True`` splits with."""
    if tokenizer is not None:
        config["tokenizer"] = tokenizer.key
    return config


def joined_rep_ratio(words: list[str], n: int) -> float:
    """``word_rep_ratio`` keyed as Data-Juicer keys it, by ``" ".join`` of the n-gram (words
    from a tokenizer may hold spaces, where tuples and joined strings would count apart)."""
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    freq = Counter(" ".join(words[i:i + n]) for i in range(total))
    return (total - list(freq.values()).count(1)) / total


def _positive_int(op: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
# Valid ranges of length/count thresholds and of ratio thresholds (``Threshold(low=, high=)``).
LEN_RANGE = dict(low=0.0, high=float(MAXSIZE))
RATIO_RANGE = dict(low=0.0, high=1.0)


@register
class TextLengthFilter(Filter):
    """``text_len = len(text)`` in characters (code points); empty text has length 0."""

    name = "text_length_filter"
    description = "Keep samples whose text length (characters) is within [min_len, max_len]."
    stat_keys = ("text_len",)
    thresholds = {
        "min_len": Threshold("text_len", "min", **LEN_RANGE),
        "max_len": Threshold("text_len", "max", **LEN_RANGE),
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
        "min_num": Threshold("num_words", "min", **LEN_RANGE),
        "max_num": Threshold("num_words", "max", **LEN_RANGE),
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
        # tokenization=True: sentencepiece pieces (sandbox/ops/filters/tokenization.py)
        self._tokenizer = Tokenizer(self.name, lang) if tokenization else None

    needed_assets = classmethod(lambda cls, args: sp_needs(args["lang"], args["tokenization"]))

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.kernels import WORDS

        if self._tokenizer is not None:
            return {"num_words": _array((len(refine_words(w, False))
                                         for w in self._tokenizer.words(views)), np.int64)}
        return {"num_words": char_stats_of(views)[:, WORDS].copy()}


@register
class AlphanumericFilter(_Compiled, Filter):
    """``alnum_ratio = (number of characters c with c.isalnum()) / len(text)``; 0.0 for empty text.
    Unicode-aware: letters and digits of every script count (``str.isalnum``).

    ``tokenization=True``: Data-Juicer's ``alpha_token_ratio`` instead, the number of letters
    (``str.isalpha``) over the number of tokens of the EleutherAI/pythia-6.9b-deduped tokenizer
    (0.0 without tokens); it can exceed 1. The tokenizer is found by ``sandbox.assets``.
    """

    name = "alphanumeric_filter"
    description = "Keep samples whose alphanumeric-character ratio is in [min_ratio, max_ratio]."
    stat_keys = ("alnum_ratio",)
    thresholds = {
        "min_ratio": Threshold("alnum_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("alnum_ratio", "max", **RATIO_RANGE),
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
        self._tokenizer = HFTokenizer(self.name) if tokenization else None
        if tokenization:  # another stat, bounded by the same arguments
            self.stat_keys = ("alpha_token_ratio",)
            self.thresholds = {
                "min_ratio": Threshold("alpha_token_ratio", "min", **LEN_RANGE),
                "max_ratio": Threshold("alpha_token_ratio", "max", **LEN_RANGE),
            }

    needed_assets = classmethod(
        lambda cls, args: [hf_ref(PYTHIA)] if args["tokenization"] else [])

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.kernels import ALNUM

        if self._tokenizer is not None:
            counts = self._tokenizer.token_counts(views)
            return {"alpha_token_ratio": _array(
                (sum(map(str.isalpha, t)) / n if n else 0.0
                 for t, n in zip(views.texts, counts)), np.float64)}
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
        "min_ratio": Threshold("special_char_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("special_char_ratio", "max", **RATIO_RANGE),
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
        "min_ratio": Threshold("char_rep_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("char_rep_ratio", "max", **RATIO_RANGE),
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

    Known difference from ``dj-process`` (a Data-Juicer bug; we keep the exact value): the ratio
    is ``repeated / total`` as one correctly rounded division, compared with the thresholds as
    computed. Data-Juicer's default executor stores the stats column as a ``datasets`` ``Json``
    feature, so before the comparison every stat is written by pandas' ujson with 10 decimal
    places and parsed back by a parser that is not correctly rounded: 18/60 = 0.3 comes back as
    0.30000000000000004 and ``max_ratio: 0.3`` drops the document, while Data-Juicer's OP run
    alone, its Ray executor and we keep it (``tests/fixtures/word_rep_boundary.jsonl``, 69 refined
    words, 18 of 60 10-grams repeated). Only stats within 1e-10 of a threshold, or exactly on a
    threshold such as 0.3 or 0.6 that the parser misreads, are affected; the same holds for every
    ratio stat. ``bench/parity.py`` replays that round trip and checks it accounts for every
    kept-set difference.
    """

    name = "word_repetition_filter"
    description = "Keep samples whose word n-gram repetition ratio is in [min_ratio, max_ratio]."
    stat_keys = ("word_rep_ratio",)
    thresholds = {
        "min_ratio": Threshold("word_rep_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("word_rep_ratio", "max", **RATIO_RANGE),
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
        self._tokenizer = Tokenizer(self.name, lang) if tokenization else None

    needed_assets = classmethod(lambda cls, args: sp_needs(args["lang"], args["tokenization"]))

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops import kernels

        if self._tokenizer is not None:  # n-grams of the refined sentencepiece pieces
            return {"word_rep_ratio": _array(
                (joined_rep_ratio(refine_words(w, True), self.rep_len)
                 for w in self._tokenizer.words(views)), np.float64)}
        cp, offsets = codepoints_of(views, lower=True)
        special = char_table("special")
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
        "min_len": Threshold("avg_line_length", "min", **LEN_RANGE),
        "max_len": Threshold("avg_line_length", "max", **LEN_RANGE),
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
        "min_len": Threshold("max_line_length", "min", **LEN_RANGE),
        "max_len": Threshold("max_line_length", "max", **LEN_RANGE),
    }

    def __init__(self, min_len: int = 10, max_len: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.min_len = min_len
        self.max_len = max_len

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.kernels import LONGEST_LINE

        return {"max_line_length": char_stats_of(views)[:, LONGEST_LINE].copy()}
