"""Filters with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and stat definitions, one
module per family: ``text`` (characters, words, lines), ``word_lists`` (stopwords, flagged
words), ``model`` (language id, perplexity, token count), ``fields`` (sample fields other than the
text), ``image`` and ``video``.

Every filter splits into ``compute_stats_batch`` (stats only, never looking at thresholds) and the
base ``Filter.keep`` (``min <= stat <= max``, both ends inclusive, as Data-Juicer's default
``min_closed_interval=True, max_closed_interval=True, reversed_range=False``). Importing this
package registers every filter.
"""
from __future__ import annotations

from sandbox.ops.chars import (SPECIAL_CHARACTERS, codepoints, refine_words, special_chars_in,
                               split_on_whitespace, strip_special)
from sandbox.ops.filters.fields import (SpecifiedFieldFilter, SpecifiedNumericFieldFilter,
                                        SuffixFilter)
from sandbox.ops.filters.image import (ImageAestheticsFilter, ImageAspectRatioFilter,
                                       ImageNSFWFilter, ImageShapeFilter, ImageSizeFilter,
                                       size_to_bytes)
from sandbox.ops.filters.model import (LanguageIDScoreFilter, PerplexityFilter, TokenNumFilter,
                                       load_tokenizer)
from sandbox.ops.filters.text import (AlphanumericFilter, AverageLineLengthFilter,
                                      CharacterRepetitionFilter, MaximumLineLengthFilter,
                                      SpecialCharactersFilter, TextLengthFilter,
                                      WordRepetitionFilter, WordsNumFilter, char_ratio,
                                      char_rep_ratio, char_stats_of, codepoints_of,
                                      refined_words_of, word_rep_ratio, words_of)
from sandbox.ops.filters.video import (VideoAspectRatioFilter, VideoDurationFilter,
                                       VideoMotionScoreFilter, VideoResolutionFilter)
from sandbox.ops.filters.word_lists import (FlaggedWordFilter, StopWordsFilter, augment_words,
                                            refined_lower_words, tokenized_words_of)

__all__ = [
    # character helpers (defined in sandbox.ops.chars)
    "SPECIAL_CHARACTERS", "codepoints", "refine_words", "special_chars_in", "split_on_whitespace",
    "strip_special",
    # text
    "TextLengthFilter", "WordsNumFilter", "AlphanumericFilter", "SpecialCharactersFilter",
    "CharacterRepetitionFilter", "WordRepetitionFilter", "AverageLineLengthFilter",
    "MaximumLineLengthFilter", "char_ratio", "char_rep_ratio", "char_stats_of", "codepoints_of",
    "refined_words_of", "word_rep_ratio", "words_of",
    # word lists
    "StopWordsFilter", "FlaggedWordFilter", "augment_words", "refined_lower_words",
    "tokenized_words_of",
    # model
    "LanguageIDScoreFilter", "PerplexityFilter", "TokenNumFilter", "load_tokenizer",
    # fields
    "SuffixFilter", "SpecifiedFieldFilter", "SpecifiedNumericFieldFilter",
    # image
    "ImageAspectRatioFilter", "ImageShapeFilter", "ImageSizeFilter", "size_to_bytes",
    "ImageAestheticsFilter", "ImageNSFWFilter",
    # video
    "VideoDurationFilter", "VideoResolutionFilter", "VideoAspectRatioFilter",
    "VideoMotionScoreFilter",
]
