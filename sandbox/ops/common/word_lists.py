"""The word lists of the word-list filters (``stopwords_filter``, ``flagged_words_filter``) and
the word views they count over (whitespace words, the tokenizer's pieces, Data-Juicer's word
augmentation).
"""
from __future__ import annotations

from pathlib import Path

from sandbox.assets import read_words_dir, resolve_words
from sandbox.ops.base import TextViews
from sandbox.ops.common.chars import refine_words
from sandbox.ops.common.text_views import refined_words_of, words_of
from sandbox.ops.common.tokenization import Tokenizer


def tokenized_words_of(views: TextViews, tokenizer: Tokenizer | None) -> list[list[str]]:
    """The words an OP counts: whitespace words without tokenization (Data-Juicer's default),
    the tokenizer's pieces with ``tokenization=True`` (``sandbox/ops/common/tokenization.py``)."""
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


def word_list(op: str, words_dir, words_type: str, lang: str):
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
