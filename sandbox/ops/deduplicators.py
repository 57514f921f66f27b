"""Deduplicators with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and hashes."""
from __future__ import annotations

import hashlib
import string

from sandbox.ops import register
from sandbox.ops.base import Deduplicator, TextViews

try:  # a dependency of transformers, so always present in this project's environment
    import regex as _regex
except ImportError:  # pragma: no cover - `re`'s \s and \d differ on a few non-ASCII characters
    import re as _regex

# Data-Juicer's pattern, compiled with the `regex` module as Data-Juicer does. Its \s is Unicode's
# White_Space (not '\x1c'-'\x1f', unlike `re`), its \d Unicode's Nd of regex's own Unicode version.
_NON_CHARACTER = _regex.compile(r"\s+|\d+|[" + _regex.escape(string.punctuation) + "]")
# What that pattern removes from ASCII text: \s = \t \n \v \f \r and space, \d = 0-9, punctuation.
_ASCII_NON_CHARACTER = (" \t\n\x0b\x0c\r" + string.digits + string.punctuation).encode("ascii")
# Python's str.strip() on ASCII strips these (\x1c-\x1f are str.isspace(), though not \s above).
_ASCII_STRIP = b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@register
class DocumentDeduplicator(Deduplicator):
    """Exact document deduplication: the hash is ``md5(text.strip().encode('utf-8')).hexdigest()``
    (Data-Juicer's ``hash`` value), after optional lower-casing and, with
    ``ignore_non_character``, removing every whitespace run, digit run and ASCII punctuation
    character (Unicode whitespace and digits; non-ASCII punctuation such as '，' or '“' is kept).
    The engine keeps the first sample of each hash. Quirks: without ``ignore_non_character``,
    leading/trailing whitespace never matters (the text is stripped before hashing) but inner
    whitespace does; lower-casing happens before the removal."""

    name = "document_deduplicator"
    description = "Drop exact duplicate texts (md5), optionally ignoring case and non-letters."

    def __init__(self, lowercase: bool = False, ignore_non_character: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.lowercase = lowercase
        self.ignore_non_character = ignore_non_character

    def hash_text(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        if self.ignore_non_character:
            if text.isascii():
                data = text.encode("ascii").translate(None, _ASCII_NON_CHARACTER)
                return _md5(data.strip(_ASCII_STRIP))
            text = _NON_CHARACTER.sub("", text)
        return _md5(text.strip().encode("utf-8"))

    def hash_batch(self, views: TextViews) -> list:
        return [self.hash_text(t) for t in views.texts]
