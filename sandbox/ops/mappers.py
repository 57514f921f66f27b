"""Text mappers with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and behaviour.

Patterns are matched with the third-party ``regex`` module, as Data-Juicer does: its ``\\w``,
``\\s``, ``\\b``, ``\\d`` and case folding differ from the standard library's ``re`` on many
non-ASCII characters. Patterns are compiled once per OP (Data-Juicer passes the pattern string to
``regex.search``/``regex.sub`` for every sample, which hits regex's cache: same result).
"""
from __future__ import annotations

import re
from typing import Optional

from sandbox.ops import register
from sandbox.ops.base import Mapper

try:  # a dependency of transformers, so always present in this project's environment
    import regex as _regex
except ImportError:  # pragma: no cover - exactness on non-ASCII \w/\s/\b needs `regex`
    import re as _regex

# Data-Juicer's default link pattern (clean_links_mapper), verbatim.
DEFAULT_LINK_PATTERN = (
    r"(?i)\b("
    r"(?:[a-z][\w-]+:(?:\/{1,3}|"
    r"[a-z0-9%])|www\d{0,3}[.]|"
    r"[a-z0-9.\-]+[.][a-z]{2,4}\/)"
    r"(?:[^\s()<>]+|\(([^\s()<>]+|"
    r"(\([^\s()<>]+\)))*\))"
    r"+(?:\(([^\s()<>]+|(\([^\s()<>]+\)))*\)|"
    r"[^\s`!()\[\]{};:\'\".,<>?«»“”‘’])"
    r")"
)
# Data-Juicer's default e-mail pattern (clean_email_mapper), verbatim.
DEFAULT_EMAIL_PATTERN = r"[A-Za-z0-9.\-+_]+@[a-z0-9.\-+_]+\.[a-z]+"

# Data-Juicer's VARIOUS_WHITESPACES (ops/common/special_characters.py). Note: it holds '\t' and
# '\x84' but not '\n', '\r', '\x0b', '\x0c' or '\x85'.
VARIOUS_WHITESPACES = frozenset(
    "\x09\x20\x84\xa0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u200b\u200c\u200d\u202f\u205f\u2060\u3000\ufffc"
)
_OTHER_WHITESPACE = re.compile("[" + "".join(sorted(VARIOUS_WHITESPACES - {" "})) + "]")


def _unwrap_raw_literal(pattern: str) -> str:
    """Data-Juicer quirk: a pattern written as a Python raw-string literal, ``r'...'`` or
    ``r"..."`` (longer than 2 characters), has its ``r`` and quotes removed."""
    if len(pattern) > 2 and (
        (pattern.startswith("r'") and pattern.endswith("'"))
        or (pattern.startswith('r"') and pattern.endswith('"'))
    ):
        return pattern[2:-1]
    return pattern


class _RegexSubMapper(Mapper):
    """Shared body of clean_links_mapper / clean_email_mapper: ``regex.sub(pattern, repl, text,
    flags=DOTALL)`` on every text (Data-Juicer searches first and leaves texts without a match
    untouched, which is the same result). ``repl`` is a regex template: backslash escapes and
    group references such as ``\\1`` are expanded."""

    default_pattern: str = ""
    # A substring every match of the *default* pattern contains: texts without it are skipped.
    default_needles: tuple[str, ...] = ()
    # The default pattern compiled with the engine that runs it fastest with identical matches.
    default_compiled = None

    def __init__(self, pattern: Optional[str] = None, repl: str = "", **kwargs):
        super().__init__(**kwargs)
        self.pattern = pattern
        self.repl = repl
        if pattern is None and self.default_compiled is not None:
            self._regex = self.default_compiled
        else:
            effective = self.default_pattern if pattern is None else _unwrap_raw_literal(pattern)
            self._regex = _regex.compile(effective, flags=_regex.DOTALL)
        self._needles = self.default_needles if pattern is None else ()

    def _clean(self, text):
        if self._needles and not any(n in text for n in self._needles):
            return text
        return self._regex.sub(self.repl, text)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


@register
class CleanLinksMapper(_RegexSubMapper):
    """Remove (or replace with ``repl``) links: http/https/ftp/... URLs, ``www.`` hosts and
    ``host.tld/`` paths, with Data-Juicer's default pattern, case-insensitive, unless ``pattern``
    is given. Data-Juicer quirks: the default pattern takes any ``word:`` followed by 3+
    non-space characters for a scheme, so ``mailto:bob@example.com``, ``note:1234`` and
    ``Sincerely:abc`` are removed too (``10:30am`` is not: a scheme starts with a letter);
    ``host.tld/path`` needs no scheme; a custom pattern written as ``r'...'`` is unwrapped."""

    name = "clean_links_mapper"
    description = "Remove links (http/https/ftp/www/...) from text, or replace them with repl."
    default_pattern = DEFAULT_LINK_PATTERN
    default_needles = (":", ".")  # every alternative of the default pattern needs one of these


@register
class CleanEmailMapper(_RegexSubMapper):
    """Remove (or replace with ``repl``) e-mail addresses, with Data-Juicer's default pattern
    ``[A-Za-z0-9.\\-+_]+@[a-z0-9.\\-+_]+\\.[a-z]+`` unless ``pattern`` is given. Quirks of the
    default: the domain is matched lower-case only, so ``a@Example.com`` stays as it is and
    ``a@mail.example.Com`` leaves ``.Com`` behind; a custom pattern written as ``r'...'`` is
    unwrapped."""

    name = "clean_email_mapper"
    description = "Remove e-mail addresses from text, or replace them with repl."
    default_pattern = DEFAULT_EMAIL_PATTERN
    default_needles = ("@",)
    # ASCII-only classes, no flags, no '.' outside a class: the standard library's backtracking
    # engine finds exactly the matches `regex` finds, about five times faster.
    default_compiled = re.compile(DEFAULT_EMAIL_PATTERN, flags=re.DOTALL)


@register
class CleanHtmlMapper(Mapper):
    """Convert HTML to plain text as Data-Juicer does: first the literal tags ``<li>`` and
    ``<ol>`` become ``"\\n*"`` and ``</li>``/``</ol>`` are dropped (exact, case-sensitive string
    replacements; ``<li class=..>`` is untouched), then selectolax's Lexbor parser returns the
    document's text (``LexborHTMLParser(html).text()``: entities decoded, tags removed, text of
    ``<script>``/``<style>``/``<title>`` kept). Quirks of the HTML parser: leading whitespace of
    the document is dropped, ``\\r\\n``/``\\r`` become ``\\n`` and NUL characters vanish, even in
    texts without any markup. Non-string values are returned unchanged."""

    name = "clean_html_mapper"
    description = "Strip HTML markup to plain text (selectolax/Lexbor); <li>/<ol> become bullets."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from selectolax.lexbor import LexborHTMLParser

        self._parser = LexborHTMLParser

    def _clean(self, raw_html):
        if not isinstance(raw_html, str):
            return raw_html
        raw_html = (
            raw_html.replace("<li>", "\n*")
            .replace("</li>", "")
            .replace("<ol>", "\n*")
            .replace("</ol>", "")
        )
        return self._parser(raw_html).text()

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


@register
class WhitespaceNormalizationMapper(Mapper):
    """``text.strip()`` (Python's notion of whitespace, so '\\n' and '\\r' at the ends go too),
    then every character of Data-Juicer's VARIOUS_WHITESPACES (space, '\\t', '\\xa0', the
    U+2000-U+200D spaces and zero-width characters, U+202F, U+205F, U+2060, U+3000, U+FFFC and
    '\\x84') becomes a plain space. Inner newlines are kept; runs of spaces are not collapsed."""

    name = "whitespace_normalization_mapper"
    description = "Trim the text and turn every kind of Unicode space into a plain ' '."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @staticmethod
    def _normalize(text: str) -> str:
        text = text.strip()
        if text.isascii():  # the only ASCII member that is not ' ' already is '\t'
            return text.replace("\t", " ")
        return _OTHER_WHITESPACE.sub(" ", text)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._normalize(t) for t in texts]
