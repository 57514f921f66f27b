"""Data-Juicer recipes as Data-Juicer writes them: numbers read as its parser reads them, the whole
recipe checked (names, types, ranges, assets) before any data is loaded, and the tokenized and
perplexity filters running for real once their models are in a Data-Juicer cache."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sandbox import env_vars
from sandbox.assets import AssetMissing
from sandbox.errors import RecipeError
from sandbox.recipe import check_recipe, coerce, load_dj_file, validate
from sandbox.runner import run
from tests.conftest import SENTENCES, compose, make_docs

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZED = FIXTURES / "dj_tokenized_recipe.yaml"
NUMBERS = FIXTURES / "dj_numbers_recipe.yaml"


@pytest.fixture
def no_dj_cache(tmp_path, monkeypatch):
    """No Data-Juicer cache, an empty sandbox cache, no downloads."""
    for var in ("DATA_JUICER_MODELS_CACHE", "DATA_JUICER_ASSETS_CACHE", "DATA_JUICER_CACHE_HOME",
                "DATA_JUICER_EXTERNAL_MODELS_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CACHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(env_vars.OFFLINE, "1")
    return tmp_path


@pytest.fixture
def dj_models(no_dj_cache, monkeypatch):
    """Small real stand-ins for en.sp.model and en.arpa.bin in a Data-Juicer model cache."""
    from tests.asset_builders import build_stand_ins

    d = no_dj_cache / "dj_models"
    texts = [d["text"] for d in make_docs(200, seed=3)] + SENTENCES * 5
    build_stand_ins(texts, d, "en", vocab_size=120)
    monkeypatch.setenv("DATA_JUICER_MODELS_CACHE", str(d))
    return d


@pytest.mark.parametrize("value, annotation, expected", [
    ("2e5", int, 200000), (2e5, int, 200000), ("1e-3", float, 0.001), ("10", int, 10),
    (10.0, int, 10), (" 7 ", int, 7), ("1_000", int, 1000), (3, float, 3), ("1e5", int | None, 100000),
    (None, int | None, None), (["1", 2.0], list[int], [1, 2]), ("en", str | list[str], "en"),
])
def test_numbers_are_read_as_data_juicer_reads_them(value, annotation, expected):
    got = coerce(value, annotation)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value, annotation", [
    ("abc", int), (10.5, int), (True, int), ("inf", float), ("nan", float), ([1], int),
    ("x", float | None),
])
def test_values_that_are_not_numbers_are_refused(value, annotation):
    from sandbox.recipe import NotCoercible

    with pytest.raises(NotCoercible):
        coerce(value, annotation)


def test_recipe_file_numbers_coerced_in_place():
    rec = load_dj_file(NUMBERS)
    validate(rec)
    args = {s.key: s.args for s in rec.ops}
    assert args["text_length_filter"] == {"min_len": 10, "max_len": 200000}
    assert args["words_num_filter"] == {"min_num": 10, "max_num": 100000}
    assert args["character_repetition_filter"]["max_ratio"] == 0.1
    assert type(args["average_line_length_filter"]["max_len"]) is int
    rec.build()  # the OPs accept them


def test_refused_value_names_file_op_and_argument(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("process:\n  - text_length_filter:\n      max_len: 10.5e0x\n")
    with pytest.raises(RecipeError, match=r"bad.yaml, OP `text_length_filter`: parameter "
                                          r"`max_len` must be int, got '10.5e0x'"):
        validate(load_dj_file(bad))
    bad.write_text("process:\n  - character_repetition_filter:\n      rep_len: 0\n")
    with pytest.raises(RecipeError, match="rep_len must be a positive integer"):
        check_recipe(load_dj_file(bad))  # a range the OP's constructor checks, before any data


def test_every_missing_asset_in_one_paragraph(no_dj_cache):
    with pytest.raises(AssetMissing) as e:
        check_recipe(load_dj_file(TOKENIZED))
    msg = str(e.value)
    assert "needs 2 assets" in msg and "\n" not in msg
    assert msg.count("en.sp.model") == 1 and msg.count("en.arpa.bin") == 1
    for op in ("flagged_words_filter", "words_num_filter", "word_repetition_filter",
               "perplexity_filter"):
        assert op in msg
    assert f"python -m sandbox.assets fetch --recipe {TOKENIZED}" in msg
    assert "DATA_JUICER_MODELS_CACHE" in msg and "SANDBOX_OFFLINE=1" in msg


def test_offline_run_stops_before_loading_data(no_dj_cache, docs_file, tmp_path, monkeypatch):
    from sandbox.steps.data import load

    def no_loading(*args, **kwargs):  # the load step must never start
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(load.FilePool, "run", no_loading)
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "recipe=dj", f"recipe.path={TOKENIZED}", "tracking=none", "progress=false"])
    with pytest.raises(AssetMissing, match="en.sp.model"):
        run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "load").exists()

    typo = tmp_path / "typo.yaml"
    typo.write_text("process:\n  - text_lenght_filter:\n      min_len: 3\n")
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "recipe=dj", f"recipe.path={typo}", "tracking=none", "progress=false"])
    with pytest.raises(RecipeError, match="Did you mean 'text_length_filter'"):
        run(cfg, run_dir=tmp_path / "run2")


def test_cli_offline_paragraph_without_traceback(no_dj_cache, docs_file, tmp_path):
    import os

    r = subprocess.run([sys.executable, "-m", "sandbox", "pipeline=process", "data_pool=jsonl",
                        f"data_pool.path={docs_file}", "recipe=dj", f"recipe.path={TOKENIZED}",
                        "tracking=none", f"hydra.run.dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ),
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out and "NotImplementedError" not in out
    assert "en.arpa.bin" in out and "python -m sandbox.assets fetch" in out


def test_tokenized_recipe_runs_with_assets_in_a_dj_cache(dj_models, docs_file, tmp_path):
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "recipe=dj", f"recipe.path={TOKENIZED}", "tracking=none", "progress=false"])
    run(cfg, run_dir=tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    out = ctx["steps"]["process"]["outputs"]
    n_in = sum(1 for _ in docs_file.open())
    assert out["num_in"] == n_in and 0 < out["num_out"] < n_in
    dropped = pq.read_table(out["dropped"]).to_pylist()
    assert dropped and all(row for row in dropped)


def test_tokenized_stats_use_the_sentencepiece_pieces(dj_models):
    import kenlm
    import sentencepiece

    from sandbox.ops import TextViews, get_op_class
    from sandbox.ops.common.chars import refine_words

    sp = sentencepiece.SentencePieceProcessor(model_file=str(dj_models / "en.sp.model"))
    lm = kenlm.Model(str(dj_models / "en.arpa.bin"))
    texts = ["The river runs through the old town!", "", "Rain fell. " * 30,
             "A library\nnear the square, lends books."]
    views = TextViews(texts)
    num = get_op_class("words_num_filter")(tokenization=True).compute_stats_batch(views)
    assert num["num_words"].tolist() == [len(refine_words(sp.encode_as_pieces(t), False))
                                         for t in texts]
    rep = get_op_class("word_repetition_filter")(tokenization=True, rep_len=2)
    got = rep.compute_stats_batch(views)["word_rep_ratio"]
    words = refine_words(sp.encode_as_pieces(texts[2]), True)
    grams = [" ".join(words[i:i + 2]) for i in range(len(words) - 1)]
    assert got[2] == sum(1 for g in grams if grams.count(g) > 1) / len(grams) and got[1] == 0.0
    ppl = get_op_class("perplexity_filter")().compute_stats_batch(views)["perplexity"]
    for t, p in zip(texts, ppl):
        lines = " ".join(sp.encode_as_pieces(t)).splitlines()
        length = sum(len(ln.split()) + 1 for ln in lines)
        want = round(10 ** (-sum(lm.score(ln) for ln in lines) / length), 1) if length else 0.0
        assert p == want
    assert ppl[0] > 0


def test_a_recipe_error_also_names_the_missing_assets(no_dj_cache, tmp_path):
    """An unknown OP name and missing models at once: one error says both, so that one
    fix-and-run does."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOKENIZED.read_text().replace("clean_links_mapper", "clean_linkz_mapper"))
    with pytest.raises(RecipeError) as e:
        check_recipe(load_dj_file(bad))
    msg = str(e.value)
    assert "unknown operator 'clean_linkz_mapper'" in msg and "clean_links_mapper" in msg
    assert "Besides, the recipe's other OPs are not ready" in msg
    assert "en.sp.model" in msg and "en.arpa.bin" in msg and "\n" not in msg
