"""MediaWiki wikitext: the cleaner that turns an article into plain-prose paragraphs, and the
markup fragments (infoboxes, tables, reference lists, category footers) kept as real noise.

The cleaner is this project's own (regular expressions, no wikitext parser): it keeps only
paragraphs that read as sentence-like prose once markup is removed, and drops the rest."""
from __future__ import annotations

import html
import random
import re

from sandbox.data.corpus.chunking import CHUNK_MAX, chunk_lines

_COMMENT_RE = re.compile(r"<!--.*?(-->|$)", re.S)
_REF_RE = re.compile(r"<ref\b[^>/]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_DROP_ELEMENTS_RE = re.compile(
    r"<(math|gallery|timeline|score|syntaxhighlight|source|code|pre|imagemap|table|references|chem"
    r"|hiero|graph|mapframe|inputbox|categorytree)\b[^>]*?(/>|>.*?</\1\s*>)", re.S | re.I)
_TEMPLATE_RE = re.compile(r"\{\{[^{}]*\}\}")
_LINK_RE = re.compile(r"\[\[([^\[\]]*)\]\]")
_EXT_LINK_RE = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_BARE_URL_RE = re.compile(r"(?:https?|ftp)://\S+")
_TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>")
_HEADING_RE = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_MAGIC_RE = re.compile(r"__[A-Z]+__")
_DROP_LINK_NS = {"file", "image", "category", "media"}
_INTERWIKI_RE = re.compile(r"^[a-z][a-z\-]{1,11}:")
_STOP_SECTIONS = {
    "see also", "references", "notes", "external links", "further reading", "bibliography",
    "sources", "footnotes", "citations", "notes and references", "references and notes",
    "works cited", "literature",
}

def _strip_templates(text: str) -> str:
    while True:
        new = _TEMPLATE_RE.sub("", text)
        if new == text:
            return new
        text = new


def _strip_tables(text: str) -> str:
    """Remove ``{| ... |}`` tables (nested ones too), which start and end at line starts."""
    out, depth = [], 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
            continue
        if depth:
            if s.startswith("|}"):
                depth -= 1
            continue
        out.append(line)
    return "\n".join(out)


def _replace_link(m: re.Match) -> str:
    inner = m.group(1)
    target, _, label = inner.partition("|")
    t = target.strip().lstrip(":")
    ns = t.split(":", 1)[0].strip().lower() if ":" in t else ""
    if ns in _DROP_LINK_NS and not target.strip().startswith(":"):
        return ""
    if not label and _INTERWIKI_RE.match(t):  # interlanguage link
        return ""
    if label:
        label = label.rsplit("|", 1)[-1]
        return label if label.strip() else re.sub(r"\s*\(.*\)$", "", t.split(":", 1)[-1])
    return t


def _strip_links(text: str) -> str:
    while True:
        new = _LINK_RE.sub(_replace_link, text)
        if new == text:
            return new
        text = new


def _tidy(par: str) -> str:
    par = par.replace("\xa0", " ").replace("\u200b", "")
    par = re.sub(r"[ \t]+", " ", par)
    par = re.sub(r"\(\s*[,;:.\s]*\)", "", par)  # parentheses emptied by template removal
    par = re.sub(r"\(\s*(?:[,;]\s*)+", "(", par)
    par = re.sub(r"\s+([,.;:!?)])", r"\1", par)
    par = re.sub(r"\(\s+", "(", par)
    par = re.sub(r"([,;])\1+", r"\1", par)
    par = re.sub(r" {2,}", " ", par)
    return par.strip()


MARKUP_RE = re.compile(r"\[\[|\{\{|<ref|'''|==|\{\||&[a-z]+;")  # a raw chunk that shows markup
# markup that must not survive in clean prose
LEFTOVER_RE = re.compile(r"\{\{|\}\}|\[\[|\]\]|\||<|>|==|&[a-z]+;|\{|\}")


def _is_prose(par: str) -> bool:
    if len(par) < 120 or LEFTOVER_RE.search(par):
        return False
    if par[-1] not in ".!?\"')":
        return False
    words = par.split()
    if len(words) < 20:
        return False
    alpha = sum(c.isalpha() for c in par)
    return alpha / len(par) > 0.7


def wikitext_to_paragraphs(wikitext: str) -> list[str]:
    """Convert one article's wikitext (entities already unescaped once, so ``<ref>`` tags are
    real tags) into plain-prose paragraphs. Lists, tables, headings, captions, infoboxes and the
    trailing reference/link sections are dropped; paragraphs that still look like markup or are
    not sentence-like prose are dropped too."""
    text = _COMMENT_RE.sub("", wikitext)
    text = _REF_RE.sub("", text)
    text = _DROP_ELEMENTS_RE.sub("", text)
    text = _strip_templates(text)
    text = _strip_tables(text)
    text = _strip_templates(text)
    text = _strip_links(text)
    text = _EXT_LINK_RE.sub(r"\1", text)
    text = _BARE_URL_RE.sub("", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.I)
    text = _TAG_RE.sub("", text)
    text = _MAGIC_RE.sub("", text)
    text = html.unescape(text)

    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            par = _tidy(" ".join(current))
            if _is_prose(par):
                paragraphs.append(par)
            current.clear()

    for line in text.split("\n"):
        s = line.strip()
        heading = _HEADING_RE.match(s)
        if heading:
            flush()
            if heading.group(2).strip().lower() in _STOP_SECTIONS:
                break
            continue
        if not s or s[0] in "*#:;|!{}" or s.startswith("----"):
            flush()
            continue
        current.append(s)
    flush()
    return paragraphs


# ----------------------------------------------------------------------------- markup fragments
def _top_level_templates(text: str, min_len: int = 200) -> list[str]:
    """Top-level ``{{...}}`` blocks that start a line (infoboxes, taxoboxes, navboxes, sidebars)
    of at least ``min_len`` characters; citation templates are left to the reference lists."""
    out, depth, start = [], 0, 0
    for m in re.finditer(r"\{\{|\}\}", text):
        if m.group() == "{{":
            if depth == 0:
                start = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                block = text[start:m.end()]
                at_line_start = start == 0 or text[start - 1] == "\n"
                name = block[2:12].strip().lower()
                if at_line_start and len(block) >= min_len and not name.startswith("cit"):
                    out.append(block)
    return out


def _tables(text: str) -> list[str]:
    out, cur, depth = [], [], 0
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("{|"):
            depth += 1
        if depth:
            cur.append(line)
            if s.startswith("|}"):
                depth -= 1
                if depth == 0:
                    out.append("\n".join(cur))
                    cur = []
    return out


def _tail_sections(text: str) -> list[str]:
    """Reference lists, further reading and external-link lists."""
    out = []
    parts = re.split(r"(?m)^(=+\s*[^=\n]+?\s*=+)\s*$", text)
    for i in range(1, len(parts) - 1, 2):
        title = parts[i].strip("= \t").lower()
        if title in _STOP_SECTIONS:
            body = parts[i + 1].strip("\n")
            if len(body) > 80:
                out.append(parts[i] + "\n" + body)
    return out


def _footer(text: str) -> list[str]:
    """The trailing block of category links, navigation templates and interlanguage links."""
    lines = text.rstrip().split("\n")
    k = len(lines)
    while k > 0 and (not lines[k - 1].strip() or lines[k - 1].lstrip().startswith(("[[", "{{"))):
        k -= 1
    footer = "\n".join(lines[k:]).strip()
    return [footer] if footer.count("\n") >= 1 else []


def markup_fragments(wikitext: str, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, text) pairs: infobox-like templates, tables, reference/link sections, the category
    footer; blocks longer than CHUNK_MAX are cut into line groups."""
    frags = []
    for kind, blocks in (("template", _top_level_templates(wikitext)), ("table", _tables(wikitext)),
                         ("section", _tail_sections(wikitext)), ("footer", _footer(wikitext))):
        for block in blocks:
            for piece in (chunk_lines(block, rng) if len(block) > CHUNK_MAX else [block]):
                if len(piece.strip()) >= 40:
                    frags.append((kind, piece))
    return frags
