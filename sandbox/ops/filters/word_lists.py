"""Word-list filters: the share of a text's words that are stopwords (``stopwords_filter``) or
flagged words (``flagged_words_filter``), with the word views they count over (whitespace words,
jieba's segmentation for Chinese, Data-Juicer's word augmentation).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from sandbox.assets import read_words_dir, resolve_words, words_ref
from sandbox.ops.base import Filter, TextViews, Threshold
from sandbox.ops.chars import refine_words
from sandbox.ops.filters.text import RATIO_RANGE, refined_words_of, words_of
from sandbox.ops.filters.tokenization import Tokenizer, sp_needs
from sandbox.ops.registry import register


def tokenized_words_of(views: TextViews, tokenizer: Tokenizer | None) -> list[list[str]]:
    """The words an OP counts: whitespace words without tokenization (Data-Juicer's default),
    the tokenizer's pieces with ``tokenization=True`` (``sandbox/ops/filters/tokenization.py``)."""
    return words_of(views) if tokenizer is None else tokenizer.words(views)


def augment_words(words: list[str], group_sizes, join_char: str) -> list[str]:
    """Data-Juicer's ``words_augmentation``: append, for each group size g, every run of g
    consecutive words joined with ``join_char``."""
    out = list(words)
    for g in group_sizes:
        out += [join_char.join(words[i:i + g]) for i in range(len(words) - g + 1)]
    return out


def refined_lower_words(views: TextViews, tokenizer: Tokenizer | None, use_words_aug: bool,
                        group_sizes, join_char: str) -> list[list[str]]:
    """Lower-cased, special-character-stripped words (augmented when asked), per text."""
    if tokenizer is None:
        refined = refined_words_of(views, True)
    else:
        words = iter(tokenized_words_of(views, tokenizer))
        refined = views.get(("refined_words", tokenizer.key, True, "SPECIAL_CHARACTERS"),
                            lambda _t: refine_words(next(words), True))
    if use_words_aug:
        return [augment_words(w, group_sizes, join_char) for w in refined]
    return refined


def _word_list(op: str, words_dir, words_type: str, lang: str):
    """The word set of ``lang`` (``all``: every language) and where the lists came from."""
    given = read_words_dir(Path(words_dir).expanduser(), words_type) if words_dir else {}
    if given and lang != "all" and lang not in given:
        raise ValueError(f"{op}: no {words_type} list for lang={lang!r} in {words_dir}; "
                         f"available: {sorted(given)} and 'all'.")
    try:
        found = resolve_words(words_dir, words_type, lang)
    except Exception as e:
        raise type(e)(f"{op}(lang={lang!r}): {e}") from None
    lists = read_words_dir(found.path, words_type)
    if lang == "all" and "all" not in lists:
        return frozenset(w for ws in lists.values() for w in ws), found
    return frozenset(lists[lang]), found


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
        self._words, self._words_source = _word_list(self.name, words_dir, self.words_type, lang)
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
    does (``sandbox/ops/filters/tokenization.py``; zh without it: jieba).
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
    assets = {"flagged_words": "flagged word lists (better-profanity en, or flagged_words_dir)"}

    def __init__(self, lang: str = "en", tokenization: bool = False, min_ratio: float = 0.0,
                 max_ratio: float = 0.045, flagged_words_dir: Optional[str] = None,
                 use_words_aug: bool = False, words_aug_group_sizes: List[int] = [2],
                 words_aug_join_char: str = "", **kwargs):
        super().__init__(**kwargs)
        self.flagged_words_dir = flagged_words_dir
        self._setup(lang, tokenization, min_ratio, max_ratio, flagged_words_dir, use_words_aug,
                    words_aug_group_sizes, words_aug_join_char)
