"""``experiment=bottom_up`` end to end at a tiny scale: pools -> ranking -> combination ->
scaling, a ranking table, a plot, a Data-Juicer recipe; a re-run with resume does nothing."""
from __future__ import annotations

import csv
import json

import pytest

from sandbox.recipe import load_dj_file
from sandbox.runner import run
from tests.conftest import TINY_TRAINER, compose, make_docs


@pytest.mark.slow
def test_bottom_up_experiment_tiny(tmp_path, eval_files):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs(240)))
    over = ["experiment=bottom_up", "data_pool=jsonl", f"data_pool.path={docs}",
            "progress=false", "tracking=none", *TINY_TRAINER,
            *eval_files, "trainer.num_threads=1", "evaluator.num_threads=1",
            "bottom_up.stats=[text_length_filter.text_len,alphanumeric_filter.alnum_ratio]",
            "bottom_up.min_combined_size=5", "bottom_up.scale_token_budget=8192",
            "bottom_up.scale_n_layer=2"]
    run_dir = tmp_path / "run"
    metrics = run(compose(over), run_dir=run_dir)
    rows = list(csv.DictReader(open(run_dir / "single_op" / "rank" / "ranking.csv")))
    assert len(rows) == 2 * 3 + 1 and {r["pool"] for r in rows} >= {"random",
                                                                   "text_length_filter.text_len.low"}
    assert [int(r["rank"]) for r in rows] == list(range(1, 8))
    assert {r["size"] for r in rows} == {rows[0]["size"]}  # equal sizes
    assert all(r["n_seeds"] == "2" for r in rows)
    assert (run_dir / "single_op" / "rank" / "ranking.png").exists()
    ctx = json.loads((run_dir / "context.json").read_text())["steps"]
    assert len([k for k in ctx if k.startswith("single_op.train[")]) == 14
    best = ctx["combine.rank"]["outputs"]["best"]["name"]
    recipe = load_dj_file(ctx["combine.export"]["outputs"]["recipe_path"])
    assert any(s.name.endswith("_filter") for s in recipe.ops), best
    assert "scale/best_beats_control" in metrics and metrics["single_op/pools"] == 7
    scale = [r["pool"] for r in csv.DictReader(open(run_dir / "scale" / "rank" / "ranking.csv"))]
    selected = [p["name"] for p in ctx["scale.select"]["outputs"]["pools"]]
    combined = [p["name"] for p in ctx["combine.rank"]["outputs"]["pools"]]
    assert sorted(selected) == sorted(combined) and "random" in selected  # every pool scaled
    assert sorted(scale) == sorted(f"{n}.x2" for n in selected)
    # decision accuracy over every pair of scaled pools, ordered at both scales (ties left out),
    # and the pairs the scaled ranking itself decides over its 2 seeds
    n_pairs = len(selected) * (len(selected) - 1) // 2
    assert n_pairs >= 3 and 0 < metrics["scale/decision_pairs"] <= n_pairs
    assert 0 <= metrics["scale/decided_pairs"] <= n_pairs
    assert 0 <= metrics["scale/decision_accuracy_ci_low"] <= metrics["scale/decision_accuracy"] \
        <= metrics["scale/decision_accuracy_ci_high"] <= 1
    assert len(list(csv.DictReader(open(run_dir / "scale" / "decisions" / "pairs.csv")))) \
        == n_pairs
    before = (run_dir / "context.json").read_text()
    run(compose(over + ["resume=true"]), run_dir=run_dir)
    after = json.loads((run_dir / "context.json").read_text())["steps"]
    assert {k: v["identity"] for k, v in after.items()} == \
        {k: v["identity"] for k, v in json.loads(before)["steps"].items()}
    assert all(after[k]["seconds"] == v["seconds"] for k, v in json.loads(before)["steps"].items()
               if "[" in k)  # no training re-ran
