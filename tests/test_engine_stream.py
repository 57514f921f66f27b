"""The streaming engine: same results as the in-memory path, bounded batches, cache hits on
threshold-only changes, vectorised dedup equal to the sequential definition, streaming pools."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import engine
from sandbox.engine import compute, compute_file, first_alive, select
from sandbox.errors import DataError
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.data.jsonl import jsonl_bytes
from sandbox.steps.process import Process
from tests.conftest import make_docs

RECIPE = {"ops": {"clean_html_mapper": {}, "whitespace_normalization_mapper": {},
                  "text_length_filter": {"min_len": 30}, "words_num_filter": {"min_num": 8},
                  "special_characters_filter": {"max_ratio": 0.25},
                  "character_repetition_filter": {"rep_len": 10, "max_ratio": 0.5},
                  "document_deduplicator": {}}}


def _texts(n=300):
    docs = make_docs(n)
    return [d["text"] for d in docs] + [d["text"] for d in docs[:40]]  # exact duplicates too


def _pool(tmp_path, texts, row_group_size=37):
    p = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), p,
                   row_group_size=row_group_size)
    return p


@pytest.mark.parametrize("num_proc", [1, 2])
def test_streaming_equals_in_memory(tmp_path, num_proc):
    texts = _texts()
    rec = load_recipe(RECIPE)
    ops = rec.build()
    mem = compute(texts, rec.ops, num_proc=1, batch_size=64)
    cf = compute_file(_pool(tmp_path, texts), rec.ops, num_proc=num_proc, batch_size=50,
                      scratch_dir=tmp_path)
    assert cf.num_rows == len(texts) and cf.has_text
    cols = cf.columns()
    for name, v in mem.columns.items():
        if name.endswith(".hash"):
            continue
        np.testing.assert_allclose(cols[name], v)
    got_texts = [t for arr in cf.text_batches(64) for t in arr.to_pylist()]
    assert got_texts == mem.texts
    a = select(rec.ops, ops, mem.columns, len(texts))
    b = select(rec.ops, ops, cf, len(texts))
    np.testing.assert_array_equal(a.keep, b.keep)
    assert list(a.dropped_by) == list(b.dropped_by)
    assert a.retention == b.retention
    assert 0 < a.keep.sum() < len(texts)


def test_batches_are_bounded(tmp_path, monkeypatch):
    """Workers never see more than batch_size rows, and at most 2*num_proc batches are in flight."""
    seen = []
    real = engine._run_batch

    def spy(texts):
        seen.append(len(texts))
        return real(texts)

    monkeypatch.setattr(engine, "_run_batch", spy)
    texts = _texts()
    rec = load_recipe(RECIPE)
    compute_file(_pool(tmp_path, texts, row_group_size=1000), rec.ops, num_proc=1, batch_size=32,
                 scratch_dir=tmp_path)
    assert max(seen) == 32 and sum(seen) == len(texts)

    consumed, yielded = [], []

    def items():
        for i in range(20):
            consumed.append(i)
            yield i

    for i, r in enumerate(engine._map_ordered(abs, items(), 2, [], "text")):
        yielded.append(r)
        assert len(consumed) - len(yielded) <= 4  # 2 * num_proc
    assert yielded == list(range(20))


def test_threshold_change_hits_the_cache(tmp_path):
    pool = _pool(tmp_path, _texts())
    cache = tmp_path / "cache"
    a = load_recipe(RECIPE)
    first = compute_file(pool, a.ops, cache_dir=cache, fingerprint="fp")
    changed = json.loads(json.dumps(RECIPE))
    changed["ops"]["text_length_filter"]["min_len"] = 200
    changed["ops"]["special_characters_filter"]["max_ratio"] = 0.1
    b = load_recipe(changed)
    second = compute_file(pool, b.ops, cache_dir=cache, fingerprint="fp")
    assert not first.cache_hit and second.cache_hit and first.path == second.path
    k_a = select(a.ops, a.build(), first, first.num_rows).keep
    k_b = select(b.ops, b.build(), second, second.num_rows).keep
    assert k_b.sum() < k_a.sum()
    changed["ops"]["character_repetition_filter"]["rep_len"] = 5  # a stat parameter: recompute
    assert not compute_file(pool, load_recipe(changed).ops, cache_dir=cache,
                            fingerprint="fp").cache_hit


def test_vectorised_dedup_equals_sequential_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(0, 200))
        hashes = rng.integers(0, 20, n)
        alive = rng.random(n) < 0.7
        seen, ref = set(), np.zeros(n, dtype=bool)
        for i in range(n):
            if alive[i] and hashes[i] not in seen:
                seen.add(hashes[i])
                ref[i] = True
        np.testing.assert_array_equal(first_alive(engine.hash_codes(hashes), alive), ref)
        strs = np.array([f"h{h}" for h in hashes], dtype=object)
        np.testing.assert_array_equal(first_alive(engine.hash_codes(strs), alive), ref)


@pytest.mark.parametrize("chunk_rows", [16384, 7])  # 7: many chunks, jsonl parts from 2 workers
def test_process_streams_the_same_outputs(tmp_path, monkeypatch, chunk_rows):
    from sandbox.steps import process

    monkeypatch.setattr(process, "CHUNK_ROWS", chunk_rows)
    texts = _texts()
    pool = _pool(tmp_path, texts)
    wd = tmp_path / "process"
    wd.mkdir()
    env = StepEnv(name="process", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  num_proc=2, show_progress=False)
    out = Process(export_path=str(tmp_path / "out.jsonl"), batch_size=40).run(
        env, dataset=str(pool), recipe=RECIPE)
    rec = load_recipe(RECIPE)
    mem = compute(texts, rec.ops)
    sel = select(rec.ops, rec.build(), mem.columns, len(texts))
    kept = pq.read_table(out["dataset"])
    assert kept.column("id").to_pylist() == list(np.flatnonzero(sel.keep))
    assert kept.column("text").to_pylist() == [mem.texts[i] for i in np.flatnonzero(sel.keep)]
    dropped = pq.read_table(out["dropped"])
    assert dropped.num_rows + kept.num_rows == len(texts)
    assert dropped.column("dropped_by").to_pylist() == [d for d in sel.dropped_by if d]
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines == [json.dumps(r, ensure_ascii=False) for r in kept.to_pylist()]


def _reference_jsonl(table) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.to_pylist())


def test_jsonl_bytes_match_json_dumps():
    t = pa.table({"text": ["a\"b\n\u00e9\u4e2d\x01\\\x7f\u2028", "plain", ""], "n": [1, None, 3],
                  "f": [0.5, 2.0, float("nan")], "l": [[1, 2], [], None],
                  "s": ["x", None, "\t"], "\u00e9 key\"": ["k", "l", "m"]})
    assert bytes(jsonl_bytes(t)).decode() == _reference_jsonl(t)
    one = t.select(["text"])  # string columns only: no Python strings at all
    assert bytes(jsonl_bytes(one)).decode() == _reference_jsonl(one)
    for sliced in (t.slice(1, 2), pa.concat_tables([t.slice(1, 2), t.slice(0, 1)])):
        # a slice's values start at an offset into its buffers; chunked columns get combined
        assert bytes(jsonl_bytes(sliced)).decode() == _reference_jsonl(sliced)
    big = pa.table({"text": pa.array(["\u00e9\n" * 3, "b"], type=pa.large_string())})
    assert bytes(jsonl_bytes(big)).decode() == _reference_jsonl(big)
    assert bytes(jsonl_bytes(t.slice(0, 0))) == b""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), min_size=1,
                max_size=8))
def test_jsonl_bytes_match_json_dumps_on_any_text(texts):
    t = pa.table({"text": texts, "id": list(range(len(texts)))})
    assert bytes(jsonl_bytes(t)).decode() == _reference_jsonl(t)


def test_streaming_jsonl_pool(tmp_path, monkeypatch):
    from sandbox.data import stream
    from sandbox.data.pools import FilePool

    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)
    src = tmp_path / "in.jsonl"
    docs = make_docs(200)
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    wd = tmp_path / "load"
    wd.mkdir()
    env = StepEnv(name="load", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache")
    out = FilePool(path=str(src)).run(env)
    table = pq.read_table(out["dataset"])
    assert table.column("text").to_pylist() == [d["text"] for d in docs]
    assert out["num_samples"] == len(docs)
    # the converted pool is fingerprinted by its input and the conversion, not re-hashed:
    # the same content elsewhere gives the same fingerprint (a shared stats cache), any other
    # content or option another one
    first = out["fingerprint"]
    assert first.startswith("dv")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(src.read_bytes())
    wd2 = tmp_path / "load2"
    wd2.mkdir()
    env2 = StepEnv(name="load", workdir=wd2, run_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert FilePool(path=str(copy)).run(env2)["fingerprint"] == first
    out = FilePool(path=str(src), limit=50).run(env)
    assert out["num_samples"] == 50 and pq.read_table(out["dataset"]).num_rows == 50
    assert out["fingerprint"] != first
    copy.write_text("".join(json.dumps(d) + "\n" for d in docs[1:]))
    assert FilePool(path=str(copy)).run(env2)["fingerprint"] not in (first, out["fingerprint"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in docs[:100]) + "{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl, line 101: malformed JSON"):
        FilePool(path=str(bad)).run(env)


def test_fingerprint_is_content_based_and_memoised(tmp_path):
    from sandbox.data.fingerprint import fingerprint

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"x" * 1000)
    assert fingerprint(a, tmp_path / "c") == fingerprint(b, tmp_path / "c")
    b.write_bytes(b"x" * 999 + b"y")
    assert fingerprint(a, tmp_path / "c") != fingerprint(b, tmp_path / "c")
    assert len(list((tmp_path / "c" / "fingerprints").iterdir())) >= 2


def test_fields_reach_ops_and_selectors_on_the_stream(tmp_path):
    """OPs that read other sample columns (input_fields) get them batch by batch; selectors
    see the alive samples' fields; streaming and in-memory agree."""
    texts = [f"document number {i} with enough words in it to pass" for i in range(300)]
    score = [float((i * 37) % 101) for i in range(300)]
    p = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "score": score}), p, row_group_size=64)
    recipe = {"ops": {"specified_numeric_field_filter": {"field_key": "score", "min_value": 10,
                                                         "max_value": 90},
                      "topk_specified_field_selector": {"field_key": "score", "topk": 50}}}
    rec = load_recipe(recipe)
    ops = rec.build()
    cf = compute_file(p, rec.ops, num_proc=2, batch_size=40, scratch_dir=tmp_path)
    sel = select(rec.ops, ops, cf, len(texts), fields=str(p))
    mem = compute(texts, rec.ops, batch_size=40, fields={"score": score})
    sel2 = select(rec.ops, ops, mem.columns, len(texts), fields={"score": score})
    np.testing.assert_array_equal(sel.keep, sel2.keep)
    kept = sorted(np.asarray(score)[sel.keep])
    assert len(kept) == 50 and min(kept) >= 10 and max(kept) <= 90
    assert kept == sorted(s for s in score if 10 <= s <= 90)[-50:]
