"""Per-batch views of the texts that several text filters share (whitespace words, refined
words, code points, the character stats of ``kernels.char_stats``), computed once per batch
through ``TextViews``: what Data-Juicer's OP fusion (``InterVars.lines``/``words``/
``refined_words`` in the sample context) does.
"""
from __future__ import annotations

import numpy as np

from sandbox.ops.base import TextViews
from sandbox.ops.common.chars import refine_words, split_on_whitespace


def char_stats_of(views: TextViews) -> np.ndarray:
    """Per text, the character counts, word count and line stats of ``kernels.char_stats`` (one
    pass over the batch, shared by the filters that need any of them)."""
    from sandbox.ops.common import kernels

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


# --- batch views for the compiled kernels (sandbox/ops/common/kernels.py) ---------------------------
def codepoints_of(views: TextViews) -> tuple[np.ndarray, np.ndarray]:
    """The batch's code points and offsets (``kernels.codepoints``): computed once per batch and
    shared by every kernel OP."""
    from sandbox.ops.common import kernels

    return views.shared(("codepoints",), kernels.codepoints)


def char_ratio(views: TextViews, column: int) -> np.ndarray:
    """Per text: ``char_stats`` column ``column`` over the text's length; 0.0 when empty."""
    counts = char_stats_of(views)[:, column]
    lengths = np.diff(codepoints_of(views)[1])
    # int / int in float64 is correctly rounded, as Python's ``count / len(text)``
    return np.divide(counts, lengths, out=np.zeros(len(counts)), where=lengths > 0)
