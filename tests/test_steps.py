"""Probe, refine and process steps, and the engine under them, on small hand-checked inputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.data.io import write_parquet
from sandbox.engine import LocalEngine, select
from sandbox.errors import DataError, RecipeError
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.steps.data.probe import Probe, describe
from sandbox.steps.data.process import Process
from sandbox.steps.data.refine import KSigmaRefiner, NoRefine, refine_value


def env_for(tmp_path, name="step", num_proc=1):
    wd = tmp_path / name
    wd.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   num_proc=num_proc, show_progress=False)


def write_pool(tmp_path, texts, **cols):
    p = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, **cols}), p)
    return str(p)


# ----------------------------------------------------------------------------- refine
def test_ksigma_on_a_known_distribution(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.normal(1000, 100, 20000)
    s = describe(lengths, [0.5])
    assert s["mean"] == pytest.approx(1000, abs=3) and s["std"] == pytest.approx(100, abs=3)
    summary = {"text_length_filter.text_len": {"count": 20000, "mean": 1000.0, "std": 100.0},
               "alphanumeric_filter.alnum_ratio": {"count": 20000, "mean": 0.8, "std": 0.1}}
    recipe = {"ops": {"text_length_filter": {"min_len": 10, "max_len": 5},
                      "alphanumeric_filter": {"min_ratio": 0.25, "max_ratio": 1.0}}}
    # min_len > max_len is invalid as written, but refinement replaces both before validation
    with pytest.raises(RecipeError):
        load_recipe(recipe)
    recipe["ops"]["text_length_filter"]["max_len"] = 10**6
    out = KSigmaRefiner(k=3).run(env_for(tmp_path), recipe=load_recipe(recipe),
                                 summary=summary)
    ops = out["recipe"].to_config()["ops"]
    assert ops["text_length_filter"] == {"min_len": 700, "max_len": 1300}  # 1000 -/+ 3*100
    assert ops["alphanumeric_filter"]["min_ratio"] == pytest.approx(0.5)  # 0.8 - 0.3
    assert ops["alphanumeric_filter"]["max_ratio"] == pytest.approx(1.0)  # 1.1 clipped to 1
    moved = {(c["op"], c["arg"]) for c in out["changes"]}
    assert moved == {("text_length_filter", "min_len"), ("text_length_filter", "max_len"),
                     ("alphanumeric_filter", "min_ratio")}  # max_ratio: 1.0 -> clipped 1.0
    import yaml

    dj = yaml.safe_load(open(out["recipe_path"]))
    assert dj["process"][0] == {"text_length_filter": {"min_len": 700, "max_len": 1300}}


def test_refine_value_rounds_integer_bounds_inwards_and_clips():
    assert refine_value(10.0, 2.0, 1.5, "min", 0, 100, integer=True) == 7  # 7.0 -> 7
    assert refine_value(10.0, 2.2, 1.0, "min", 0, 100, integer=True) == 8  # 7.8 -> 8
    assert refine_value(10.0, 2.2, 1.0, "max", 0, 100, integer=True) == 12  # 12.2 -> 12
    assert refine_value(1.0, 5.0, 3.0, "min", 0, 100) == 0  # clipped at the range
    assert refine_value(0.9, 0.5, 3.0, "max", 0.0, 1.0) == 1.0


def test_no_refine_passes_recipe_through(tmp_path):
    recipe = {"ops": {"text_length_filter": {"min_len": 3}}}
    out = NoRefine().run(env_for(tmp_path), recipe=load_recipe(recipe))
    assert out["recipe"].to_config()["ops"] == {"text_length_filter": {"min_len": 3}}
    assert out["changes"] == []


# ----------------------------------------------------------------------------- probe
def test_probe_summary_and_plots(tmp_path):
    texts = ["a" * 10, "b" * 20, "c" * 30, "d" * 40]
    pool = write_pool(tmp_path, texts)
    recipe = {"ops": {"text_length_filter": {"min_len": 15, "max_len": 35}}}
    out = Probe(quantiles=[0.5]).run(env_for(tmp_path, "probe"), dataset=pool,
                                     recipe=load_recipe(recipe))
    s = out["summary"]["text_length_filter.text_len"]
    assert s["count"] == 4 and s["mean"] == 25 and s["min"] == 10 and s["max"] == 40
    assert s["std"] == pytest.approx(np.std([10, 20, 30, 40], ddof=1))
    assert s["q0.5"] == 25
    assert (tmp_path / "probe" / "plots" / "text_length_filter.text_len.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(out["summary_path"])))
    assert rows[0]["op"] == "text_length_filter" and float(rows[0]["mean"]) == 25
    assert pq.read_table(out["stats"]).column("text_length_filter.text_len").to_pylist() == [10, 20, 30, 40]


def test_probe_sees_text_after_preceding_mappers(tmp_path):
    pool = write_pool(tmp_path, ["<b>hi</b> there friend", "plain words here"])
    recipe = {"ops": {"clean_html_mapper": {}, "text_length_filter": {}}}
    out = Probe().run(env_for(tmp_path, "probe"), dataset=pool, recipe=load_recipe(recipe))
    assert pq.read_table(out["stats"]).column("text_length_filter.text_len").to_pylist() == \
        [len("hi there friend"), len("plain words here")]


# ----------------------------------------------------------------------------- process
def test_process_keeps_drops_and_records_why(tmp_path):
    texts = ["short", "a long enough sample of text", "a long enough sample of text",
             "another fine sample here"]
    pool = write_pool(tmp_path, texts, id=[0, 1, 2, 3])
    recipe = {"ops": {"text_length_filter": {"min_len": 10},
                      "document_deduplicator": {}}}
    out = Process().run(env_for(tmp_path, "process"), dataset=pool,
                        recipe=load_recipe(recipe))
    kept = pq.read_table(out["dataset"])
    dropped = pq.read_table(out["dropped"])
    assert kept.column("id").to_pylist() == [1, 3]
    assert dict(zip(dropped.column("id").to_pylist(), dropped.column("dropped_by").to_pylist())) \
        == {0: "text_length_filter", 2: "document_deduplicator"}
    assert kept.num_rows + dropped.num_rows == len(texts)  # nothing silently lost
    rows = {r["op"]: r for r in out["retention"]}
    assert (rows["text_length_filter"]["in"], rows["text_length_filter"]["out"]) == (4, 3)
    assert (rows["document_deduplicator"]["in"], rows["document_deduplicator"]["out"]) == (3, 2)


def test_process_writes_mapped_text_and_exports_jsonl(tmp_path):
    pool = write_pool(tmp_path, ["<p>Hello   world</p>", "mail me at a@b.com today"])
    recipe = {"ops": {"clean_html_mapper": {}, "clean_email_mapper": {}}}
    export = tmp_path / "out.jsonl"
    out = Process(export_path=str(export)).run(env_for(tmp_path, "process"), dataset=pool,
                                               recipe=load_recipe(recipe))
    texts = pq.read_table(out["dataset"]).column("text").to_pylist()
    assert texts[0] == "Hello   world" and "a@b.com" not in texts[1]
    assert [json.loads(l)["text"] for l in export.read_text().splitlines()] == texts


def test_process_names_the_op_that_removed_everything(tmp_path):
    pool = write_pool(tmp_path, ["tiny", "small"])
    recipe = {"ops": {"clean_email_mapper": {}, "text_length_filter": {"min_len": 100}}}
    with pytest.raises(DataError, match=r"OP `text_length_filter` removed the last 2"):
        Process().run(env_for(tmp_path, "process"), dataset=pool, recipe=load_recipe(recipe))


def test_empty_recipe_passes_data_through_untouched(tmp_path):
    texts = ["<b>x</b>", "y", "y"]
    pool = write_pool(tmp_path, texts)
    out = Process().run(env_for(tmp_path, "process"), dataset=pool,
                        recipe=load_recipe({"ops": {}}))
    assert pq.read_table(out["dataset"]).column("text").to_pylist() == texts


# ----------------------------------------------------------------------------- engine
def test_masking_all_stats_equals_applying_ops_one_by_one(docs_file, tmp_path):
    """Computing every stat on every sample and masking afterwards keeps exactly the samples
    that applying the OPs sequentially keeps."""
    texts = [json.loads(l)["text"] for l in docs_file.read_text().splitlines()]
    rec = load_recipe({"ops": {"clean_html_mapper": {}, "text_length_filter": {"min_len": 30},
                               "special_characters_filter": {"max_ratio": 0.25},
                               "document_deduplicator": {}, "words_num_filter": {"min_num": 8}}})
    ops = rec.build()
    pool = write_parquet(pa.table({"text": texts}), tmp_path / "pool.parquet")
    c = LocalEngine(num_proc=2, batch_size=16).compute(pool, rec.ops, scratch_dir=tmp_path)
    sel = select(rec.ops, ops, c, len(texts))
    # sequential reference
    alive = list(range(len(texts)))
    cur = list(texts)
    for spec, op in zip(rec.ops, ops):
        from sandbox.ops import TextViews

        if op.kind == "mapper":
            cur = op.process_batch(cur)
            continue
        sub = [cur[i] for i in alive]
        if op.kind == "filter":
            stats = op.compute_stats_batch(TextViews(sub))
            m = op.keep(stats)
            alive = [i for i, k in zip(alive, m) if k]
        else:
            seen, nxt = set(), []
            for i, h in zip(alive, op.hash_batch(TextViews(sub))):
                if h not in seen:
                    seen.add(h)
                    nxt.append(i)
            alive = nxt
    assert list(np.flatnonzero(sel.keep)) == alive
    assert 0 < len(alive) < len(texts)


def test_stats_cache_is_reused_across_threshold_changes(tmp_path):
    texts = ["x" * i for i in range(1, 50)]
    pool = write_parquet(pa.table({"text": texts}), tmp_path / "pool.parquet")
    engine = LocalEngine(num_proc=1)
    cache = tmp_path / "cache"
    spec_a = load_recipe({"ops": {"text_length_filter": {"min_len": 5}}}).ops
    spec_b = load_recipe({"ops": {"text_length_filter": {"min_len": 30}}}).ops
    a = engine.compute(pool, spec_a, cache_dir=cache, fingerprint="f1")
    b = engine.compute(pool, spec_b, cache_dir=cache, fingerprint="f1")
    assert not a.cache_hit and b.cache_hit
    np.testing.assert_array_equal(a.columns()["text_length_filter.text_len"],
                                  b.columns()["text_length_filter.text_len"])
    spec_c = load_recipe({"ops": {"character_repetition_filter": {"rep_len": 5}}}).ops
    spec_d = load_recipe({"ops": {"character_repetition_filter": {"rep_len": 6}}}).ops
    engine.compute(pool, spec_c, cache_dir=cache, fingerprint="f1")
    assert not engine.compute(pool, spec_d, cache_dir=cache, fingerprint="f1").cache_hit


def test_ksigma_keeps_float_arguments_float_when_default_is_an_int(tmp_path):
    # alphanumeric_filter's max_ratio defaults to sys.maxsize (an int) but is a float argument
    summary = {"alphanumeric_filter.alnum_ratio": {"count": 10, "mean": 0.8, "std": 0.05}}
    out = KSigmaRefiner(k=3).run(env_for(tmp_path),
                                 recipe=load_recipe({"ops": {"alphanumeric_filter": {}}}),
                                 summary=summary)
    # nothing written, nothing refined
    assert out["recipe"].to_config()["ops"]["alphanumeric_filter"] == {}
    out = KSigmaRefiner(k=3).run(env_for(tmp_path), summary=summary, recipe=load_recipe({
        "ops": {"alphanumeric_filter": {"min_ratio": 0.1, "max_ratio": 2**63 - 1}}}))
    args = out["recipe"].to_config()["ops"]["alphanumeric_filter"]
    assert args["min_ratio"] == pytest.approx(0.65) and args["max_ratio"] == pytest.approx(0.95)


def test_ksigma_refines_only_the_arguments_the_recipe_writes(tmp_path):
    summary = {"special_characters_filter.special_char_ratio": {"count": 9, "mean": 0.2, "std": 0.01}}
    out = KSigmaRefiner(k=2).run(env_for(tmp_path), summary=summary, recipe=load_recipe({
        "ops": {"special_characters_filter": {"max_ratio": 0.25}}}))
    assert out["recipe"].op("special_characters_filter").args == \
        {"max_ratio": pytest.approx(0.22)}
    assert [c["arg"] for c in out["changes"]] == ["max_ratio"]


def test_probe_stores_but_does_not_summarise_non_numeric_stats(tmp_path):
    pool = write_pool(tmp_path, ["The cat sat on the mat and looked at the door.",
                                 "Le chat est assis sur le tapis et regarde la porte."])
    recipe = {"ops": {"language_id_score_filter": {"lang": "en", "min_score": 0.5}}}
    out = Probe().run(env_for(tmp_path, "probe"), dataset=pool, recipe=load_recipe(recipe))
    stats = pq.read_table(out["stats"])
    assert stats.column("language_id_score_filter.lang").to_pylist() == ["en", "fr"]
    assert out["summary"]["language_id_score_filter.lang"]["numeric"] is False
    assert out["summary"]["language_id_score_filter.lang_score"]["count"] == 2
    assert [p.name for p in (tmp_path / "probe" / "plots").iterdir()] == \
        ["language_id_score_filter.lang_score.png"]


def test_ksigma_refines_thresholds_on_the_stat_the_built_op_bounds(tmp_path):
    """specified_numeric_field_filter bounds a stat named after its field, not its class's
    placeholder `field_value`: refine finds it (as for alphanumeric_filter with tokenization)."""
    summary = {"specified_numeric_field_filter.meta.score": {"count": 9, "mean": 5.0, "std": 1.0}}
    out = KSigmaRefiner(k=2).run(env_for(tmp_path), summary=summary, recipe=load_recipe({
        "ops": {"specified_numeric_field_filter": {"field_key": "meta.score", "min_value": 0.0,
                                                   "max_value": 100.0}}}))
    args = out["recipe"].to_config()["ops"]["specified_numeric_field_filter"]
    assert (args["min_value"], args["max_value"]) == (pytest.approx(3.0), pytest.approx(7.0))
    assert {c["stat"] for c in out["changes"]} == {"meta.score"}
