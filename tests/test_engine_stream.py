"""The streaming engine: batches, spans and workers do not change results, bounded batches,
results aligned with the pool by row id, cache hits on threshold-only changes, vectorised dedup
equal to the sequential definition, streaming pools."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.data.io import write_parquet
from sandbox.engine import (ROW_ID_COLUMN, LocalEngine, ProcessOutputs, first_alive, hash_codes,
                            select)
from sandbox.engine.local import ordered_map
from sandbox.engine.worker import SpanWorker
from sandbox.errors import DataError
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.data.jsonl import jsonl_bytes
from sandbox.steps.data.process import Process
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


def _one_batch(tmp_path, texts, specs, **columns):
    """The reference: every OP over the whole pool in one batch, in this process."""
    pool = write_parquet(pa.table({"text": texts, **columns}), tmp_path / "one_batch.parquet")
    whole = max(1, len(texts))
    return LocalEngine(num_proc=1, batch_size=whole, span_rows=whole).compute(
        pool, specs, scratch_dir=tmp_path)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_batches_spans_and_workers_do_not_change_results(tmp_path, num_proc):
    texts = _texts()
    rec = load_recipe(RECIPE)
    ops = rec.build()
    ref = _one_batch(tmp_path, texts, rec.ops)
    cf = LocalEngine(num_proc=num_proc, batch_size=50, span_rows=60).compute(
        _pool(tmp_path, texts), rec.ops, scratch_dir=tmp_path)
    assert cf.num_rows == len(texts) and cf.has_text and not cf.cache_hit
    cols = cf.columns()
    assert sorted(cols) == sorted(ref.columns())
    for name, v in ref.columns().items():
        np.testing.assert_allclose(cols[name], v)
    got_texts = [t for arr in cf.text_batches(64) for t in arr.to_pylist()]
    assert got_texts == [t for arr in ref.text_batches(64) for t in arr.to_pylist()]
    a = select(rec.ops, ops, ref, len(texts))
    b = select(rec.ops, ops, cf, len(texts))
    np.testing.assert_array_equal(a.keep, b.keep)
    assert list(a.dropped_by) == list(b.dropped_by)
    assert a.retention == b.retention
    assert 0 < a.keep.sum() < len(texts)
    c = select(rec.ops, ops, cf.columns(), len(texts))  # plain arrays select the same
    np.testing.assert_array_equal(a.keep, c.keep)


def test_spawned_workers_give_the_same_results(tmp_path):
    """A worker's job and entry points pickle, so ``spawn`` works as well as the default fork
    (OPs without compiled kernels here: each spawned worker would compile its own)."""
    texts = _texts()
    rec = load_recipe({"ops": {"whitespace_normalization_mapper": {},
                               "text_length_filter": {"min_len": 30}, "document_deduplicator": {}}})
    pool = _pool(tmp_path, texts)
    forked = LocalEngine(num_proc=2, batch_size=50).compute(pool, rec.ops, scratch_dir=tmp_path)
    spawned = LocalEngine(num_proc=2, batch_size=50, start_method="spawn").compute(
        pool, rec.ops, scratch_dir=tmp_path / "spawn")
    assert pq.read_table(forked.path).equals(pq.read_table(spawned.path))


def test_results_carry_row_ids_and_the_pool_fingerprint(tmp_path):
    texts = _texts()
    rec = load_recipe(RECIPE)
    cf = LocalEngine(num_proc=2, batch_size=50).compute(_pool(tmp_path, texts), rec.ops,
                                                         cache_dir=tmp_path / "cache",
                                                         fingerprint="fp")
    ids = pq.read_table(cf.path, columns=[ROW_ID_COLUMN]).column(0)
    assert ids.type == pa.int64() and ids.to_pylist() == list(range(len(texts)))
    assert cf.pool_fingerprint() == "fp" and ROW_ID_COLUMN not in cf.column_names()
    empty = write_parquet(pa.table({"text": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    none = LocalEngine(num_proc=1).compute(empty, rec.ops, scratch_dir=tmp_path)
    assert none.num_rows == 0 and pq.read_table(none.path).column_names == [ROW_ID_COLUMN]


def test_misaligned_results_are_refused(tmp_path):
    """select and write check the row ids instead of trusting positions."""
    texts = _texts()
    rec = load_recipe(RECIPE)
    ops = rec.build()
    pool = _pool(tmp_path, texts)
    engine = LocalEngine(num_proc=1, chunk_rows=64)
    cf = engine.compute(pool, rec.ops, scratch_dir=tmp_path)
    sel = select(rec.ops, ops, cf, len(texts))
    table = pq.read_table(cf.path)
    ids = table.column(ROW_ID_COLUMN).to_numpy()
    # rows out of place across row groups: select sees it in the groups' statistics
    pq.write_table(table.take(np.roll(np.arange(len(texts)), 1)), cf.path, row_group_size=64)
    with pytest.raises(DataError, match="do not match"):
        select(rec.ops, ops, cf, len(texts))
    # two rows swapped inside a row group: writing, which reads every id, refuses it
    swapped = ids.copy()
    swapped[[100, 101]] = swapped[[101, 100]]
    write_parquet(table.set_column(0, ROW_ID_COLUMN, pa.array(swapped)), cf.path)
    outputs = ProcessOutputs(dropped=tmp_path / "dropped.parquet", kept=tmp_path / "kept.parquet")
    with pytest.raises(DataError, match="do not line up with the pool"):
        engine.write(pool, cf, sel, "text", outputs)
    write_parquet(table.slice(0, len(texts) - 1), cf.path)
    with pytest.raises(DataError, match="result rows for"):
        select(rec.ops, ops, cf, len(texts))
    assert not (tmp_path / "kept.parquet").exists()


def test_a_stale_cache_entry_is_recomputed(tmp_path):
    pool = _pool(tmp_path, _texts())
    rec = load_recipe(RECIPE)
    engine = LocalEngine(num_proc=1)
    first = engine.compute(pool, rec.ops, cache_dir=tmp_path / "cache", fingerprint="fp")
    table = pq.read_table(first.path)
    write_parquet(table.replace_schema_metadata({}), first.path)  # no pool fingerprint
    again = engine.compute(pool, rec.ops, cache_dir=tmp_path / "cache", fingerprint="fp")
    assert not again.cache_hit and again.pool_fingerprint() == "fp"
    assert engine.compute(pool, rec.ops, cache_dir=tmp_path / "cache", fingerprint="fp").cache_hit


def test_batches_are_bounded(tmp_path, monkeypatch):
    """Workers never see more than batch_size rows, and at most 2*num_proc batches are in flight."""
    seen = []
    real = SpanWorker.run_batch

    def spy(self, texts, fields=None):
        seen.append(len(texts))
        return real(self, texts, fields)

    monkeypatch.setattr(SpanWorker, "run_batch", spy)
    texts = _texts()
    rec = load_recipe(RECIPE)
    LocalEngine(num_proc=1, batch_size=32).compute(_pool(tmp_path, texts, row_group_size=1000),
                                                   rec.ops, scratch_dir=tmp_path)
    assert max(seen) == 32 and sum(seen) == len(texts)

    consumed, yielded = [], []

    def items():
        for i in range(20):
            consumed.append(i)
            yield i

    for i, r in enumerate(ordered_map(abs, items(), 2)):
        yielded.append(r)
        assert len(consumed) - len(yielded) <= 4  # 2 * num_proc
    assert yielded == list(range(20))


def test_threshold_change_hits_the_cache(tmp_path):
    pool = _pool(tmp_path, _texts())
    cache = tmp_path / "cache"
    engine = LocalEngine(num_proc=1)
    a = load_recipe(RECIPE)
    first = engine.compute(pool, a.ops, cache_dir=cache, fingerprint="fp")
    changed = json.loads(json.dumps(RECIPE))
    changed["ops"]["text_length_filter"]["min_len"] = 200
    changed["ops"]["special_characters_filter"]["max_ratio"] = 0.1
    b = load_recipe(changed)
    second = engine.compute(pool, b.ops, cache_dir=cache, fingerprint="fp")
    assert not first.cache_hit and second.cache_hit and first.path == second.path
    k_a = select(a.ops, a.build(), first, first.num_rows).keep
    k_b = select(b.ops, b.build(), second, second.num_rows).keep
    assert k_b.sum() < k_a.sum()
    changed["ops"]["character_repetition_filter"]["rep_len"] = 5  # a stat parameter: recompute
    assert not engine.compute(pool, load_recipe(changed).ops, cache_dir=cache,
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
        np.testing.assert_array_equal(first_alive(hash_codes(hashes), alive), ref)
        strs = np.array([f"h{h}" for h in hashes], dtype=object)
        np.testing.assert_array_equal(first_alive(hash_codes(strs), alive), ref)


@pytest.mark.parametrize("chunk_rows", [16384, 7])  # 7: many chunks, jsonl parts from 2 workers
def test_process_streams_the_same_outputs(tmp_path, chunk_rows):
    texts = _texts()
    pool = _pool(tmp_path, texts)
    wd = tmp_path / "process"
    wd.mkdir()
    env = StepEnv(name="process", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  show_progress=False, engine=LocalEngine(num_proc=2, chunk_rows=chunk_rows))
    out = Process(export_path=str(tmp_path / "out.jsonl"), batch_size=40).run(
        env, dataset=str(pool), recipe=load_recipe(RECIPE))
    rec = load_recipe(RECIPE)
    ref = _one_batch(tmp_path, texts, rec.ops)
    ref_texts = [t for arr in ref.text_batches(len(texts)) for t in arr.to_pylist()]
    sel = select(rec.ops, rec.build(), ref, len(texts))
    kept = pq.read_table(out["dataset"])
    assert kept.column("id").to_pylist() == list(np.flatnonzero(sel.keep))
    assert kept.column("text").to_pylist() == [ref_texts[i] for i in np.flatnonzero(sel.keep)]
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


def test_jsonl_bytes_grow_past_their_first_room():
    """The rows are written into room for them as they are plus an eighth: texts made mostly
    of escapes (6 bytes for each control character) must grow it, anywhere in the table."""
    for texts in (["\x00" * 5000, "a"], ["a" * 100, "\x01\n" * 3000], ["b"] * 50 + ["\"" * 999]):
        t = pa.table({"text": texts, "n": list(range(len(texts)))})
        assert bytes(jsonl_bytes(t)).decode() == _reference_jsonl(t)


def test_jsonl_parts_concatenate_to_the_whole():
    from sandbox.data.jsonl import jsonl_parts

    t = pa.table({"text": [f"doc {i}\n\"{i}\"" for i in range(5000)], "n": list(range(5000))})
    whole = bytes(jsonl_bytes(t))
    for parts, pieces in ((1, 1), (2, 2), (3, 3), (8, 4)):  # at least 1024 rows a piece
        got = jsonl_parts(t, parts)
        assert len(got) == pieces and b"".join(bytes(g) for g in got) == whole
    assert [bytes(g) for g in jsonl_parts(t.slice(0, 10), 2)] == [bytes(jsonl_bytes(t.slice(0, 10)))]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), min_size=1,
                max_size=8))
def test_jsonl_bytes_match_json_dumps_on_any_text(texts):
    t = pa.table({"text": texts, "id": list(range(len(texts)))})
    assert bytes(jsonl_bytes(t)).decode() == _reference_jsonl(t)


def test_streaming_jsonl_pool(tmp_path, monkeypatch):
    from sandbox.data import stream
    from sandbox.steps.data.load import FilePool

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


def test_read_ahead_gives_the_same_pool_and_errors(tmp_path, monkeypatch):
    """The command line starts parsing the data pool's file before the load step runs: the
    load step then takes those blocks, and gets the same pool, the same limit and the same
    error as without; a file changed since, or a config that is not a streamed FilePool, is
    not read ahead."""
    from omegaconf import OmegaConf

    from sandbox.data import stream
    from sandbox.steps.data.load import FilePool

    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)
    src = tmp_path / "in.jsonl"
    docs = make_docs(300)
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))

    def load(path, name, **kw):
        wd = tmp_path / name
        wd.mkdir()
        env = StepEnv(name="load", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache")
        return FilePool(path=str(path), **kw).run(env)

    plain = pq.read_table(load(src, "plain")["dataset"])
    node = OmegaConf.create({"_target_": "sandbox.steps.data.load.FilePool", "path": str(src),
                             "format": "jsonl", "on_bad_record": "fail"})
    assert stream.read_ahead_pool(node) and len(stream._AHEAD) == 1
    ahead = pq.read_table(load(src, "ahead")["dataset"])
    assert not stream._AHEAD and ahead.equals(plain)

    # a limit stops the load early: the read-ahead stops too and frees its blocks
    assert stream.read_ahead(src, "jsonl", blocks=2)
    taken = stream._AHEAD[stream._file_key(src, "jsonl")]
    assert load(src, "limited", limit=7)["num_samples"] == 7
    taken.thread.join(5)
    assert taken._stop.is_set() and not taken.thread.is_alive() and taken._queue.empty()

    # the same error, in the same words
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in docs[:100]) + "{oops\n")
    assert stream.read_ahead(bad, "jsonl")
    with pytest.raises(DataError, match=r"bad.jsonl, line 101: malformed JSON"):
        load(bad, "bad")

    # the file changed after the read-ahead started: the load reads it afresh
    assert stream.read_ahead(src, "jsonl")
    src.write_text("".join(json.dumps(d) + "\n" for d in docs[:10]))
    assert load(src, "changed")["num_samples"] == 10
    stream._AHEAD.clear()

    # only a FilePool that streams and fails on bad records is read ahead
    for other in ({**node, "on_bad_record": "skip"}, {**node, "_target_": "x.CorpusPool"},
                  {**node, "path": str(tmp_path / "missing.jsonl")}, None):
        assert not stream.read_ahead_pool(OmegaConf.create(other) if other else None)
    assert not stream._AHEAD


def test_read_ahead_from_the_command_line_is_settled_by_the_composed_config(tmp_path,
                                                                          monkeypatch):
    """A single run's ``data_pool.path=`` starts the parse before composition; the composed
    pool then keeps that read-ahead when it streams the same file, and stops it otherwise."""
    from omegaconf import OmegaConf

    from sandbox.data import stream

    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    monkeypatch.setattr(stream, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(stream, "_AHEAD", {})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in make_docs(300)))
    node = OmegaConf.create({"_target_": "sandbox.steps.data.load.FilePool", "path": str(src),
                             "format": "jsonl", "on_bad_record": "fail"})

    # not a single fresh run, or a path that sweeps: nothing is started
    for argv in (["--multirun", f"data_pool.path={src}"], [f"data_pool.path={src}", "-m"],
                 [f"data_pool.path={src}", "resume=true"], [f"data_pool.path={src},{src}"],
                 ["--cfg", "job", f"data_pool.path={src}"], ["data_pool=jsonl"],
                 [f"data_pool.path={tmp_path / 'missing.jsonl'}"]):
        assert not stream.read_ahead_from_overrides(argv), argv
    assert not stream._AHEAD

    # the composed pool streams the same file: the early read-ahead is the one it takes
    assert stream.read_ahead_from_overrides(["pipeline=process", f"++data_pool.path='{src}'",
                                             "data_pool.format=jsonl"])
    early = next(iter(stream._AHEAD.values()))
    assert stream.read_ahead_pool(node) and list(stream._AHEAD.values()) == [early]

    # the composed pool is another one: the guess stops and frees what it parsed
    other = tmp_path / "other.jsonl"
    other.write_text(src.read_text())
    assert stream.read_ahead_from_overrides([f"data_pool.path={other}"])
    guess = stream._AHEAD[stream._file_key(other, "jsonl")]
    assert not stream.read_ahead_pool(OmegaConf.create({**node, "_target_": "x.CorpusPool"}))
    guess.thread.join(5)
    early.thread.join(5)
    assert not stream._AHEAD and guess._stop.is_set() and not guess.thread.is_alive()
    assert guess._queue.empty() and not early.thread.is_alive()


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
    see the alive samples' fields (from the pool file or a dict); batched and one batch agree."""
    texts = [f"document number {i} with enough words in it to pass" for i in range(300)]
    score = [float((i * 37) % 101) for i in range(300)]
    p = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "score": score}), p, row_group_size=64)
    recipe = {"ops": {"specified_numeric_field_filter": {"field_key": "score", "min_value": 10,
                                                         "max_value": 90},
                      "topk_specified_field_selector": {"field_key": "score", "topk": 50}}}
    rec = load_recipe(recipe)
    ops = rec.build()
    cf = LocalEngine(num_proc=2, batch_size=40).compute(p, rec.ops, scratch_dir=tmp_path)
    sel = select(rec.ops, ops, cf, len(texts), fields=str(p))
    ref = _one_batch(tmp_path, texts, rec.ops, score=score)
    sel2 = select(rec.ops, ops, ref.columns(), len(texts), fields={"score": score})
    np.testing.assert_array_equal(sel.keep, sel2.keep)
    kept = sorted(np.asarray(score)[sel.keep])
    assert len(kept) == 50 and min(kept) >= 10 and max(kept) <= 90
    assert kept == sorted(s for s in score if 10 <= s <= 90)[-50:]


def test_engines_are_built_from_config_nodes(tmp_path):
    from sandbox.engine import build_engine, engine_for
    from sandbox.errors import ConfigError

    assert isinstance(build_engine(None), LocalEngine)
    built = build_engine({"_target_": "sandbox.engine.local.LocalEngine", "num_proc": 3,
                          "span_rows": 100})
    assert (built.num_proc, built.span_rows) == (3, 100)
    with pytest.raises(ConfigError, match="engine.batch_size=0"):
        build_engine({"_target_": "sandbox.engine.local.LocalEngine", "batch_size": 0})
    with pytest.raises(ConfigError, match="is not a data engine"):
        build_engine({"_target_": "pathlib.Path"})
    env = StepEnv(name="s", workdir=tmp_path, run_dir=tmp_path, cache_dir=tmp_path, num_proc=2)
    assert engine_for(env).num_proc == 2  # a step environment built without an engine
    env.engine = built
    assert engine_for(env) is built


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_writes_media_paths_relative_to_its_folder(tmp_path, suffix):
    texts = [f"document number {i} with enough words in it to pass" for i in range(20)]
    export_dir = tmp_path / "export"
    images = [[str(export_dir / "media" / f"{i}.png"), "/elsewhere/x.png"] for i in range(20)]
    pool = write_parquet(pa.table({"text": texts, "images": images}), tmp_path / "pool.parquet")
    wd = tmp_path / "process"
    wd.mkdir()
    env = StepEnv(name="process", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  show_progress=False, engine=LocalEngine(num_proc=1))
    export = export_dir / f"kept{suffix}"
    recipe = load_recipe({"ops": {"text_length_filter": {"min_len": 10}}})
    out = Process(export_path=str(export)).run(env, dataset=str(pool), recipe=recipe)
    exported = (pq.read_table(export).to_pylist() if suffix == ".parquet" else
                [json.loads(line) for line in export.read_text().splitlines()])
    assert [r["images"] for r in exported] == \
        [[f"media/{i}.png", "/elsewhere/x.png"] for i in range(20)]
    assert pq.read_table(out["dataset"]).column("images").to_pylist() == images  # run dir: as is


def test_a_field_an_op_reads_but_the_pool_lacks_is_one_paragraph_before_work(tmp_path):
    pool = tmp_path / "pool.parquet"
    write_parquet(pa.table({"text": ["a b c", "d e f"]}), pool)
    env = StepEnv(name="process", workdir=tmp_path / "p", run_dir=tmp_path,
                  cache_dir=tmp_path / "cache", engine=LocalEngine(num_proc=1))
    env.workdir.mkdir()
    recipe = {"ops": {"suffix_filter": {"suffixes": [".py"]}}}
    with pytest.raises(DataError) as e:
        Process().run(env, dataset=str(pool), recipe=load_recipe(recipe))
    msg = str(e.value)
    assert "suffix_filter" in msg and "`__dj__suffix__`" in msg and "add_suffix: true" in msg
    assert "its fields: text" in msg and "_enabled=false" in msg
    assert not list((tmp_path / "cache").rglob("*.parquet"))  # nothing computed
