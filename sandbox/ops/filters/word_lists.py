"""Word-list filters: the share of a text's words that are stopwords (``stopwords_filter``) or
flagged words (``flagged_words_filter``), with the word views they count over (whitespace words,
jieba's segmentation for Chinese, Data-Juicer's word augmentation).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from sandbox.assets import load_words_asset
from sandbox.ops.base import Filter, TextViews, Threshold
from sandbox.ops.chars import refine_words
from sandbox.ops.filters.text import RATIO_RANGE, refined_words_of, tokenizer_unavailable, words_of
from sandbox.ops.registry import register


def _jieba_words(text: str) -> list[str]:
    import jieba  # only tokenization=True with lang='zh' needs it (~40 ms to import)

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
    raise tokenizer_unavailable(op, f"a sentencepiece model for lang={lang!r}")


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
            raise tokenizer_unavailable(self.name, f"a sentencepiece model for lang={lang!r}")
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
    ``{lang: [words]}`` as in Data-Juicer; unset, ``better-profanity``'s English list is used
    (Data-Juicer's own default list is a download from its servers and also has other
    languages). ``tokenization=True`` with ``lang: zh`` uses jieba (see stopwords_filter)."""

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
