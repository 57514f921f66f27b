"""The data-evaluation step: retention, quality, diversity and size, on hand-made Parquet files
(hand-computed numbers) and on the default corpus."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.data.corpus import CLEAN_SOURCES, default_corpus
from sandbox.errors import DataError
from sandbox.steps.evaluate import data as E
from sandbox.steps.base import StepEnv
from sandbox.steps.evaluate.data import DataEvaluator, bigram_diversity

CLEAN = [
    "The river runs through the old town and past the mill, where farmers once brought grain.",
    "Farmers bring their goods to the market every Saturday morning, and the square fills early.",
    "A small library near the square lends books to children and holds readings in the winter.",
    "The council met on Tuesday to discuss the new bridge, which should open next spring.",
    "Rain fell across the valley for most of the afternoon, and the roads were closed by evening.",
    "Students at the school planted trees along the road as part of a project on local history.",
]
JUNK = [
    "{{Infobox settlement | name = X | population_total = 1234 | area_km2 = 5 }} [[Category:Towns]]",
    "|-\n| [[Foo]] || 12 || 34\n|-\n| [[Bar]] || 56 || 78\n|}",
    "anarch greek rule stem archon ruler merriam-webst onlin dictionari polit philosophi encompass",
    "$$$ ### %%% &&& *** @@@ !!! ??? ((( ))) [[[ ]]] {{{ }}} &nbsp; &ndash; <ref name=a/>",
    "#REDIRECT [[Computer accessibility]] {{R from CamelCase}}",
    "* {{cite web |url=http://example.org |title=Example |accessdate=2011-04-17}}",
]


def write(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def make_env(tmp_path: Path, seed: int = 42, cache_dir: Path | None = None) -> StepEnv:
    return StepEnv(name="evaluate_data", workdir=tmp_path / "work", run_dir=tmp_path,
                   cache_dir=cache_dir or tmp_path / "cache", seed=seed, show_progress=False)


@pytest.fixture
def small_reference(tmp_path) -> str:
    """A tiny hand-made reference: clean sentences vs markup and junk (no network)."""
    rows = [{"text": t, "label": 1} for t in CLEAN] + [{"text": t, "label": 0} for t in JUNK]
    p = tmp_path / "reference.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


# -------------------------------------------------------------------------------------------
# hand-computed metrics
# -------------------------------------------------------------------------------------------

def test_bigram_diversity_by_hand():
    # "the cat sat on the mat": 5 bigrams, all distinct; "The cat sat.": 2 bigrams already seen
    div, used = bigram_diversity(["the cat sat on the mat", "The cat sat."], 1000, seed=0)
    assert used == 9
    assert div == pytest.approx(5 / 7)
    # the word budget cuts the sample: "a b a b" -> (a b) (b a) (a b) -> 2 distinct of 3
    div, used = bigram_diversity(["a b a b a b"], 4, seed=0)
    assert used == 4 and div == pytest.approx(2 / 3)
    assert bigram_diversity([], 10, seed=0) == (0.0, 0)
    # bigrams never cross documents: two one-word documents have none
    assert bigram_diversity(["alpha", "beta"], 10, seed=0) == (0.0, 2)


def test_retention_diversity_and_counts_by_hand(tmp_path, small_reference):
    source = [
        {"text": "the cat sat on the mat", "source": "a"},
        {"text": "the cat sat", "source": "a"},
        {"text": "a dog ran far away", "source": "b"},
        {"text": "{{junk}} [[junk]]", "source": "b"},
        {"text": "more junk here", "source": "c"},
    ]
    kept = [source[0], source[1], source[2]]
    src = write(tmp_path / "source.parquet", source)
    out = write(tmp_path / "out.parquet", kept)
    result = DataEvaluator(reference_path=small_reference).run(make_env(tmp_path), out, src)
    m = result["metrics"]
    assert m["retention"] == pytest.approx(3 / 5)
    assert m["retention/a"] == 1.0
    assert m["retention/b"] == 0.5
    assert m["retention/c"] == 0.0
    assert m["num_samples"] == 3.0
    assert m["num_tokens_approx"] == 6 + 3 + 5
    # bigrams: 5 + 2 (both seen) + 4 -> 9 distinct of 11
    assert m["diversity"] == pytest.approx(9 / 11)
    assert m["diversity_words_used"] == 14
    assert all(isinstance(v, float) for v in m.values())
    report = json.loads(Path(result["report"]).read_text())
    assert report["metrics"] == m
    assert report["per_source"]["b"] == {"in": 2, "out": 1}
    assert Path(result["report"]).parent == tmp_path / "work"


def test_without_source_column_and_empty_output(tmp_path, small_reference):
    src = write(tmp_path / "source.parquet", [{"text": t} for t in CLEAN + JUNK])
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), empty)
    m = DataEvaluator(reference_path=small_reference).run(make_env(tmp_path), str(empty),
                                                          src)["metrics"]
    assert m["retention"] == 0.0 and m["num_samples"] == 0.0
    assert m["quality_score"] == 0.0 and m["diversity"] == 0.0
    assert not any(k.startswith("retention/") for k in m)


def test_text_key_is_honoured(tmp_path, small_reference):
    rows = [{"content": t} for t in CLEAN]
    src = write(tmp_path / "s.parquet", rows)
    m = DataEvaluator(text_key="content", reference_path=small_reference).run(
        make_env(tmp_path), src, src)["metrics"]
    assert m["retention"] == 1.0 and m["num_samples"] == len(CLEAN)


# -------------------------------------------------------------------------------------------
# quality classifier
# -------------------------------------------------------------------------------------------

def test_quality_ranks_clean_above_junk_with_hand_made_reference(tmp_path, small_reference):
    env = make_env(tmp_path)
    src = write(tmp_path / "all.parquet", [{"text": t} for t in CLEAN + JUNK])
    clean = write(tmp_path / "clean.parquet", [{"text": t} for t in CLEAN])
    junk = write(tmp_path / "junk.parquet", [{"text": t} for t in JUNK])
    ev = DataEvaluator(reference_path=small_reference)
    q_clean = ev.run(env, clean, src)["metrics"]["quality_score"]
    q_junk = ev.run(env, junk, src)["metrics"]["quality_score"]
    q_all = ev.run(env, src, src)["metrics"]
    assert q_clean > 0.5 > q_junk
    assert q_junk < q_all["quality_score"] < q_clean
    assert q_all["quality_score"] == pytest.approx(q_all["quality_score_before"])


def test_classifier_is_cached_by_reference_content(tmp_path, small_reference, monkeypatch):
    env = make_env(tmp_path)
    src = write(tmp_path / "s.parquet", [{"text": t} for t in CLEAN + JUNK])
    first = DataEvaluator(reference_path=small_reference).run(env, src, src)
    cached = list((tmp_path / "cache" / "quality_classifier").glob("*.npz"))
    assert len(cached) == 1

    def no_training(*a, **k):
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(E.QualityClassifier, "train", no_training)
    again = DataEvaluator(reference_path=small_reference).run(env, src, src)
    assert again["metrics"] == first["metrics"]
    # a reference with other content is another cache entry (so it trains)
    other = tmp_path / "other.jsonl"
    other.write_text(Path(small_reference).read_text() + json.dumps(
        {"text": "One more clean sentence about the harbour and its boats.", "label": 1}) + "\n")
    with pytest.raises(AssertionError, match="cached classifier"):
        DataEvaluator(reference_path=str(other)).run(env, src, src)


def test_reference_without_labels_is_refused(tmp_path):
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"text": "no label here"}) + "\n")
    src = write(tmp_path / "s.parquet", [{"text": t} for t in CLEAN])
    with pytest.raises(DataError, match="label"):
        DataEvaluator(reference_path=str(ref)).run(make_env(tmp_path), src, src)


# -------------------------------------------------------------------------------------------
# on the default corpus (built once per test session)
# -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def corpus_pool(tmp_path_factory):
    paths = default_corpus()
    rows = [json.loads(line) for line in open(paths.pool, encoding="utf-8")]
    d = tmp_path_factory.mktemp("pools")
    return paths, rows, d


def test_default_corpus_pool_scores(tmp_path, corpus_pool):
    paths, rows, d = corpus_pool
    src = write(d / "pool.parquet", rows)
    clean_only = write(d / "clean.parquet", [r for r in rows if r["source"] in CLEAN_SOURCES])
    env = make_env(tmp_path)
    ev = DataEvaluator()  # reference: the default corpus's quality_reference.jsonl
    t = time.perf_counter()
    full = ev.run(env, src, src)["metrics"]  # includes training the classifier once
    assert time.perf_counter() - t < 20
    t = time.perf_counter()
    clean = ev.run(env, clean_only, src)["metrics"]
    assert time.perf_counter() - t < 10  # a few seconds on a 5000-document pool
    assert full["num_samples"] == 5000 and full["retention"] == 1.0
    assert clean["quality_score"] > full["quality_score"] + 0.1
    assert clean["quality_score"] > 0.8
    assert clean["retention/wiki_clean"] == 1.0 and clean["retention/wiki_raw"] == 0.0
    assert full["diversity_words_used"] == clean["diversity_words_used"] == 50000
    # per-source quality: each noisy kind scores below each clean kind
    scores = {}
    for s in ("wiki_clean", "news", "speech", "wiki_raw", "wiki_markup_fragment", "stemmed_junk"):
        p = write(d / f"{s}.parquet", [r for r in rows if r["source"] == s])
        scores[s] = ev.run(env, p, src)["metrics"]["quality_score"]
    assert min(scores[s] for s in ("wiki_clean", "news", "speech")) > 0.8
    assert max(scores[s] for s in ("wiki_raw", "wiki_markup_fragment", "stemmed_junk")) < 0.4
    report = json.loads(Path(ev.run(env, src, src)["report"]).read_text())
    assert report["quality_classifier"]["held_out_accuracy"] > 0.85
    assert report["quality_classifier"]["reference"] == str(paths.quality_reference)


def test_same_seed_same_metrics(tmp_path, corpus_pool):
    _, rows, d = corpus_pool
    src = write(d / "pool-seed.parquet", rows)
    cache = tmp_path / "cache"
    a = DataEvaluator().run(make_env(tmp_path / "a", 7, cache), src, src)["metrics"]
    b = DataEvaluator().run(make_env(tmp_path / "b", 7, cache), src, src)["metrics"]
    c = DataEvaluator(quality_sample=500, diversity_words=5000).run(
        make_env(tmp_path / "c", 8, cache), src, src)["metrics"]
    assert a == b
    assert c["diversity"] != a["diversity"]
    assert c["diversity_words_used"] == 5000
    # one classifier whatever the run's seed: the scores of different trials stay comparable
    assert len(list((cache / "quality_classifier").glob("*.npz"))) == 1
