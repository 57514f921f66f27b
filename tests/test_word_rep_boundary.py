"""Stats that sit exactly on a threshold: the document Data-Juicer's ``dj-process`` drops and we
keep (word_rep_ratio 18/60 = 0.3 against ``max_ratio: 0.3``), and the parity bench's generated
boundary documents (bench/boundary_docs.py), checked against our OPs without Data-Juicer."""
from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.ops import TextViews, get_op_class
from sandbox.ops.common.chars import refine_words, split_on_whitespace
from sandbox.ops.text.filters import word_rep_ratio

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DOC = FIXTURES / "word_rep_boundary.jsonl"
RECIPE = FIXTURES / "recipe_a_filters.yaml"
sys.path.insert(0, str(ROOT / "bench"))


def boundary_text() -> str:
    return json.loads(DOC.read_text(encoding="utf-8").splitlines()[0])["text"]


def recipe_process() -> list[dict]:
    return yaml.safe_load(RECIPE.read_text())["process"]


def test_word_rep_ratio_is_exactly_three_tenths_and_kept():
    text = boundary_text()
    words = refine_words(split_on_whitespace(text), lower_case=True)
    assert len(words) == 69  # 60 ten-word n-grams, 18 of them ("back to top ..." x 9) repeated
    op = get_op_class("word_repetition_filter")(rep_len=10, max_ratio=0.3)
    stats = op.compute_stats_batch(TextViews([text]))
    assert stats["word_rep_ratio"][0] == 0.3 == float(Fraction(18, 60))
    assert word_rep_ratio(words, 10) == 0.3  # the reference definition agrees with the kernel
    assert op.keep(stats).tolist() == [True]  # the bound is inclusive, as in Data-Juicer's OP


@pytest.mark.slow
def test_whole_recipe_keeps_the_document(tmp_path):
    """As users run it (the command dj-process is compared with): the document stays."""
    import subprocess

    export = tmp_path / "kept.jsonl"
    out = subprocess.run([sys.executable, "-m", "sandbox", "pipeline=process", "data_pool=jsonl",
                          f"data_pool.path={DOC}", "recipe=dj", f"recipe.path={RECIPE}",
                          "tracking=none", "progress=false", f"process.export_path={export}",
                          f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    kept = [json.loads(line)["text"] for line in open(export, encoding="utf-8")]
    assert kept == [boundary_text()]
    dropped = pq.read_table(tmp_path / "run" / "process" / "dropped.parquet")
    assert dropped.num_rows == 0


def test_data_juicer_json_roundtrip_explains_the_drop():
    """What dj-process compares: the stat after its stats column's JSON round trip."""
    from parity import dj_stats_roundtrip, recipe_masks

    assert dj_stats_roundtrip([0.3, 0.6, 0.25, 394, 0.7741116751269036]) == \
        [0.30000000000000004, 0.6000000000000001, 0.25, 394, 0.7741116751]
    masks = recipe_masks(recipe_process(), [boundary_text()])
    assert masks["exact"].tolist() == [True]
    assert masks["dj_roundtrip"].tolist() == [False]
    assert masks["flip:word_repetition_filter"].tolist() == [True]
    assert not any(m[0] for k, m in masks.items() if k.startswith("flip:")
                   and k != "flip:word_repetition_filter")


@pytest.fixture(scope="module")
def boundary():
    from boundary_docs import boundary_documents

    return boundary_documents(recipe_process(), seed=1)


def test_boundary_documents_sit_where_their_labels_say(boundary):
    docs, notes = boundary
    assert notes == []
    ops = {}
    for entry in recipe_process():
        (name, args), = entry.items()
        ops[name] = get_op_class(name)(**args)
    for name, op in ops.items():
        mine = [d for d in docs if d.op == name]
        stats = op.compute_stats_batch(TextViews([d.text for d in mine]))
        keep = op.keep(stats).tolist()
        key = next(iter(stats))
        for d, value, kept in zip(mine, stats[key], keep):
            assert float(value) == float(d.stat), d.label  # our kernel == the exact fraction
            assert kept == (d.side != "outside"), d.label  # inclusive bounds, both sides
        on = [d for d in mine if d.side == "on"]
        assert on, name
        for arg in {d.arg for d in mine}:  # every bound is reached inside the whole recipe
            assert any(d.reaches for d in on if d.arg == arg), f"{name}.{arg}"


def test_ratio_boundaries_come_through_several_layouts(boundary):
    docs, _ = boundary
    on = [d for d in docs if d.op == "word_repetition_filter" and d.side == "on" and d.reaches]
    totals = {d.how.split()[-1] for d in on}
    assert {"6/20", "18/60", "30/100"} <= totals
    assert {"block", "phrase"} <= {d.how.split()[0] for d in on}
    assert all(d.stat == Fraction(3, 10) and d.value == 0.3 for d in on)
    n = len(docs)
    assert np.mean([d.reaches for d in docs]) > 0.8, n
