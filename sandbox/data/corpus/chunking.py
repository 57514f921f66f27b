"""Cutting text into documents of a few hundred to two thousand characters.

Chunk lengths are drawn log-uniformly from ``[CHUNK_MIN, CHUNK_MAX]`` with the caller's seeded
``random.Random``, so a build is the same every time."""
from __future__ import annotations

import math
import random
import re

CHUNK_MIN, CHUNK_MAX = 250, 2000  # chunk lengths (characters); targets are log-uniform between


def _target(rng: random.Random, lo: int = CHUNK_MIN, hi: int = CHUNK_MAX) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


SENTENCE_SPLIT_RE = re.compile(  # a sentence end, not after an initial or a common abbreviation
    r"(?<![A-Z]\.)(?<!Mr\.)(?<!Ms\.)(?<!Dr\.)(?<!St\.)(?<!Jr\.)(?<!Sr\.)(?<!vs\.)(?<!No\.)"
    r"(?<!Mrs\.)(?<!Gen\.)(?<!Col\.)(?<!Lt\.)(?<!Rev\.)(?<![ (]c\.)(?<=[.!?])\s+(?=[A-Z\"'(])")


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
        for sent in SENTENCE_SPLIT_RE.split(par):
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
