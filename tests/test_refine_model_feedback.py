"""refine=model_feedback: thresholds from the held-out loss of small models trained per stat bin,
checked on a pool where the right answer is known."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.errors import ConfigError
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.steps.data.probe import Probe
from sandbox.steps.data.refine_model_feedback import (ModelFeedbackRefiner, bin_cuts, bound_value,
                                                 kept_range)

WORDS = ("the river town mill farmers market morning library square children council bridge "
         "valley afternoon students school trees road museum history fishermen nets season "
         "weather harbour boats village church garden").split()
SYMBOLS = "$#%&*@!?(){}[]<>|^~=+;:"
TINY = dict(token_budget=8192, seq_len=32, batch_size=8, n_layer=1, n_embd=32, n_head=2,
            vocab_size=300, num_threads=1, log_every=1000)


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
    return " ".join(words).capitalize() + "."


def known_pool(folder: Path, n_clean: int = 60, n_noise: int = 30, seed: int = 0):
    """English-like documents plus pure symbol noise (a third of the pool): noise has a special
    character ratio far above every clean document's, and hurts a model evaluated on English.
    ``score`` is a field unrelated to quality by construction: each of its terciles holds the
    same number of noise documents."""
    rng = random.Random(seed)
    rows = []
    for i in range(n_clean):
        rows.append({"text": " ".join(sentence(rng) for _ in range(rng.randint(2, 5))),
                     "noise": False, "tercile": i % 3})
    for i in range(n_noise):
        length = rng.randint(60, 300)
        rows.append({"text": "".join(rng.choice(SYMBOLS) for _ in range(length)),
                     "noise": True, "tercile": i % 3})
    for r in rows:  # terciles (0.1-0.3], (0.4-0.6], (0.7-0.9] of an unrelated number
        r["score"] = 0.1 + 0.3 * r.pop("tercile") + rng.uniform(0.0, 0.2)
    rng.shuffle(rows)
    path = folder / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    eval_path = folder / "eval.jsonl"
    erng = random.Random(seed + 1)
    eval_path.write_text("".join(json.dumps({"text": " ".join(sentence(erng) for _ in range(4))})
                                 + "\n" for _ in range(12)))
    return path, eval_path, rows


def step_env(tmp_path: Path, name: str) -> StepEnv:
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=workdir, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   seed=0, num_proc=1, show_progress=False)


RECIPE = load_recipe({"ops": {
    "special_characters_filter": {"max_ratio": 0.95},
    "specified_numeric_field_filter": {"field_key": "score", "min_value": 0.01}}})


def test_known_answer_noise_band_cut_unrelated_stat_left_alone(tmp_path):
    pool, eval_path, rows = known_pool(tmp_path)
    probe = Probe(plots=False).run(step_env(tmp_path, "probe"), dataset=str(pool), recipe=RECIPE)
    refiner = ModelFeedbackRefiner(stats=probe["stats"], dataset=str(pool), bins=3,
                                   min_bin_size=5, tolerance=0.05, trainer=TINY,
                                   evaluator={"bootstrap": 50, "num_threads": 1},
                                   eval_path=str(eval_path), seed=0)
    env = step_env(tmp_path, "refine")
    env.report_hook = lambda *value: reported.append(value)
    reported = []
    out = refiner.run(env, recipe=RECIPE, summary=probe["summary"])
    assert reported == []  # slice trainings never reach a sweep trial's pruner

    ratios = pq.read_table(probe["stats"]).column(
        "special_characters_filter.special_char_ratio").to_numpy()
    noise = np.array([r["noise"] for r in rows])
    new_max = out["recipe"].op("special_characters_filter").args["max_ratio"]
    # the max is moved below the noise band, and every clean document stays
    assert ratios[~noise].max() <= new_max < ratios[noise].min()
    assert "min_ratio" not in out["recipe"].op("special_characters_filter").args
    assert RECIPE.op("special_characters_filter").args == {"max_ratio": 0.95}  # a new copy
    # the unrelated stat: all its bins train alike, so its bounds stay as written
    field = out["recipe"].op("specified_numeric_field_filter").args
    assert field["min_value"] == 0.01 and "max_value" not in field
    assert out["changes"] == [{"op": "special_characters_filter", "arg": "max_ratio",
                               "stat": "special_char_ratio", "old": 0.95, "new": new_max}]

    # the table: 3 bins per stat + the baseline, the noise bin is the worst and not kept
    table = list(csv.DictReader(open(out["table"])))
    sc = [r for r in table if r["column"] == "special_characters_filter.special_char_ratio"]
    assert [r["kept"] for r in sc] == ["True", "True", "False"]
    losses = [float(r["loss"]) for r in sc]
    base = float(next(r for r in table if r["column"] == "baseline")["loss"])
    assert losses[2] > base and losses[2] > 1.5 * max(losses[:2])  # noise only: far worse
    assert all(float(r["ci_low"]) <= float(r["loss"]) <= float(r["ci_high"]) for r in sc)
    field_rows = [r for r in table if r["column"] == "specified_numeric_field_filter.score"]
    assert [r["kept"] for r in field_rows] == ["True"] * 3
    assert [int(r["n"]) for r in field_rows] == [30, 30, 30]
    # the refined recipe file is the one process reads (Data-Juicer's process: list)
    written = yaml.safe_load(Path(out["recipe_path"]).read_text())
    assert {"special_characters_filter": {"max_ratio": new_max}} in [
        {k: {a: v for a, v in args.items() if a == "max_ratio"}}
        for op in written["process"] for k, args in op.items()
        if k == "special_characters_filter"]
    m = out["metrics"]
    assert m["trainings"] == 7 and m["stats_refined"] == 1  # 2 stats x 3 bins + baseline


def test_kept_range_rules():
    # contiguous around the best; a bad bin between two good ones ends the range
    assert kept_range([1.0, 1.01, 1.5, 1.0], None, 0.02)[:2] == (0, 1)
    # not worse than the baseline counts as acceptable too
    assert kept_range([1.0, 1.2, 1.3], 1.25, 0.02)[:2] == (0, 1)
    assert kept_range([1.0, 1.2, 1.3], 1.25, 0.02, or_baseline=False)[:2] == (0, 0)
    assert kept_range([2.0, 1.0, 2.0], None, 0.0)[:2] == (1, 1)
    assert bin_cuts(10, 3) == [0, 3, 7, 10]
    # integer args rounded inwards-safe, values clipped to the argument's range
    assert bound_value(10.0, "max", 0, 100, True) == 10
    assert bound_value(9.5, "min", 0, 100, True) == 10
    assert bound_value(-3.0, "min", 0, 100, False) == 0


def test_needs_the_probe_outputs(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)needs the probe.s stats file.*ctx:probe.stats"):
        ModelFeedbackRefiner().run(step_env(tmp_path, "refine"), recipe=RECIPE, summary={})
    with pytest.raises(ConfigError, match="metric"):
        ModelFeedbackRefiner(metric="accuracy")
