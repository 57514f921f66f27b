"""``experiment=transfer`` end to end at a tiny scale: the default ladder, the table, the plot and
the metrics; a user's ladder of recipe files, whose cells are reused when one recipe is added."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from sandbox.runner import run
from tests.conftest import TINY_TRAINER, compose, make_docs, write_eval_files

pytestmark = pytest.mark.slow


def _over(tmp_path, docs, *extra):
    return ["experiment=transfer", "data_pool=jsonl", f"data_pool.path={docs}", "progress=false",
            "tracking=none", *TINY_TRAINER, *write_eval_files(tmp_path),
            f"cache_dir={tmp_path / 'cache'}",
            "transfer.scales=[{name:small,token_budget:2048},{name:large,token_budget:6144}]",
            *extra]


def test_tiny_transfer_experiment_reports_decision_accuracy(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs(240)))
    run_dir = tmp_path / "run"
    metrics = run(compose(_over(tmp_path, docs, "transfer.seeds=2", "transfer.ksigma=[1,3]")),
                  run_dir=run_dir)
    ladder = [r["name"] for r in csv.DictReader(open(run_dir / "ladder" / "ladder.csv"))]
    assert ladder[:4] == ["baseline", "recipe", "ksigma1", "ksigma3"]
    assert {"random", "dropped:recipe", "alphanumeric_filter.alnum_ratio.low"} <= set(ladder)
    cells = list(csv.DictReader(open(run_dir / "transfer" / "cells.csv")))
    assert len(cells) == len(ladder) * 2 * 2 and {c["scale"] for c in cells} == {"small", "large"}
    table = (run_dir / "transfer" / "transfer.md").read_text()
    assert "| bits_per_byte |" in table and "decided at large" in table
    assert (run_dir / "transfer" / "transfer.png").stat().st_size > 0
    pairs = len(ladder) * (len(ladder) - 1) / 2
    for m in ("bits_per_byte", "choice_logprob", "perplexity", "choice_accuracy"):
        assert 0 < metrics[f"transfer/{m}/decision_pairs"] <= pairs
        assert 0 <= metrics[f"transfer/{m}/decided_pairs"] <= pairs
    acc = metrics["transfer/bits_per_byte/decision_accuracy"]
    assert 0 <= metrics["transfer/bits_per_byte/decision_accuracy_ci_low"] <= acc <= 1
    assert metrics["transfer/cells_cached"] == 0
    # the same experiment again: every cell comes from the cache
    again = run(compose(_over(tmp_path, docs, "transfer.seeds=2", "transfer.ksigma=[1,3]")),
                run_dir=tmp_path / "again")
    assert again["transfer/cells_cached"] == again["transfer/cells"] == len(cells)
    assert again["transfer/bits_per_byte/decision_accuracy"] == acc


def test_a_user_ladder_adds_one_recipe_at_the_cost_of_its_own_runs(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs(200)))
    files = []
    for name, ops in (("short", [{"text_length_filter": {"min_len": 50}}]),
                      ("alnum", [{"alphanumeric_filter": {"min_ratio": 0.7}}]),
                      ("words", [{"words_num_filter": {"min_num": 30}}])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"process": ops}))
        files.append(str(path))
    first = run(compose(_over(tmp_path, docs, "transfer.seeds=1",
                              f"transfer.recipes=[{files[0]},{files[1]}]")),
                run_dir=tmp_path / "a")
    assert first["transfer/cells"] == 3 * 2 and first["transfer/cells_cached"] == 0
    more = run(compose(_over(tmp_path, docs, "transfer.seeds=1",
                             f"transfer.recipes=[{','.join(files)}]")), run_dir=tmp_path / "b")
    assert more["transfer/cells"] == 4 * 2 and more["transfer/cells_cached"] == 3 * 2
    ladder = [r["name"] for r in csv.DictReader(open(tmp_path / "b" / "ladder" / "ladder.csv"))]
    assert ladder == ["baseline", "short", "alnum", "words"]
