"""The surrogate over pools (``sandbox.steps.pools.surrogate``): it recovers a planted linear
effect, picks the combination a planted objective makes best without training anything, and
``experiment=bottom_up bottom_up.combine=surrogate`` composes and runs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.errors import ConfigError
from sandbox.steps.base import StepEnv
from sandbox.steps.pools import (PoolCombination, PoolConstruction, PoolDownsampling,
                                 SurrogateReport)
from sandbox.steps.pools.surrogate import (design, fit, leave_one_out, membership,
                                           pool_features, rank_candidates, read_stats,
                                           single_pools, spearman)
from tests.conftest import TINY_TRAINER, compose, make_docs


def env(tmp_path, name):
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=d, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   show_progress=False)


@pytest.mark.parametrize("kind", ["linear", "gbm"])
def test_the_surrogate_recovers_a_planted_linear_effect(kind):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 6))
    effect = 3.0 * X[:, 0] - 2.0 * X[:, 2]  # features 1, 3, 4, 5 do nothing
    y = effect + rng.normal(scale=0.05, size=40)
    model = fit(X, y, kind)
    fresh = rng.uniform(size=(200, 6))
    truth = 3.0 * fresh[:, 0] - 2.0 * fresh[:, 2]
    assert spearman(model.predict(fresh), truth) > (0.95 if kind == "linear" else 0.85)
    assert spearman(leave_one_out(X, y, kind), y) > (0.95 if kind == "linear" else 0.8)
    if kind == "linear":  # the planted coefficients, in standardised units, and nothing else
        coef = model[-1].coef_ / model[0].scale_
        assert coef[0] == pytest.approx(3.0, rel=0.1) and coef[2] == pytest.approx(-2.0, rel=0.1)
        assert np.all(np.abs(coef[[1, 3, 4, 5]]) < 0.2)
    # a constant side has no rank correlation
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_the_additive_surrogate_recovers_planted_effects_of_each_member():
    rng = np.random.default_rng(2)
    effects = np.array([-0.3, 0.0, 0.2, -0.1, 0.05, 0.0])
    X = (rng.uniform(size=(30, 6)) < 0.4).astype(float)  # which pools each one intersects
    y = 3.0 + X @ effects + rng.normal(scale=0.01, size=30)
    model = fit(X, y, "additive")
    assert model.intercept_ == pytest.approx(3.0, abs=0.02)
    assert model.coef_ == pytest.approx(effects, abs=0.02)
    assert spearman(leave_one_out(X, y, "additive"), y) > 0.95


def test_the_additive_surrogate_sums_its_members_effects_from_single_pools_alone(tmp_path):
    """Fitted on single-OP pools and the control only, it predicts each intersection as the
    control plus its members' effects; a recipe-feature regression cannot tell them apart."""
    pools = [{"name": "a.low", "bounds": {"a": [0.0, 1.0]}},
             {"name": "a.high", "bounds": {"a": [2.0, 3.0]}},
             {"name": "b.low", "bounds": {"b": [0.0, 1.0]}},
             {"name": "b.high", "bounds": {"b": [2.0, 3.0]}},
             {"name": "c.low", "bounds": {"c": [0.0, 1.0]}},
             {"name": "random", "bounds": {}}]
    values = {"a.low": 2.9, "a.high": 3.1, "b.low": 2.95, "b.high": 3.0, "c.low": 2.99,
              "random": 3.0}
    assert [p["name"] for p in single_pools(pools + pools[:1])] == [p["name"] for p in pools[:5]]
    both = {"name": "a.low+b.low", "bounds": {"a": [0.0, 1.0], "b": [0.0, 1.0]},
            "parts": ["a.low", "b.low"]}
    assert membership(both, single_pools(pools)) == [1.0, 0.0, 1.0, 0.0, 0.0]
    three = {"name": "a.high+b.low+c.low", "parts": ["a.high", "b.low", "c.low"],
             "bounds": {"a": [2.0, 3.0], "b": [0.0, 1.0], "c": [0.0, 1.0]}}
    # members by name: two thirds of a stat full of ties share their bounds, not their rows
    twin = {"name": "c.middle", "bounds": {"c": [0.0, 1.0]}}
    assert membership(twin, single_pools(pools + [twin])) == [0, 0, 0, 0, 0, 1]
    ranked, names, X = rank_candidates(pools, values, [three, both], "unused.parquet",
                                       "additive", descending=False)
    assert names == ["in:a.low", "in:a.high", "in:b.low", "in:b.high", "in:c.low"]
    assert [c["name"] for c, _ in ranked] == ["a.low+b.low", "a.high+b.low+c.low"]
    assert ranked[0][1] == pytest.approx(3.0 - 0.1 - 0.05, abs=1e-4)
    assert ranked[1][1] == pytest.approx(3.0 + 0.1 - 0.05 - 0.01, abs=1e-4)
    assert X.tolist() == [[1, 0, 1, 0, 0], [0, 1, 1, 0, 1]]
    # held out, a single pool no trained pool holds has no effect to go on: the control's value
    _, Xk, _ = design(pools, [], "unused.parquet", "additive")
    held = leave_one_out(Xk, np.array([values[p["name"]] for p in pools]), "additive")
    assert held[0] == pytest.approx(values["random"], abs=1e-4)


@pytest.fixture
def analysed(tmp_path):
    """300 samples with three independent uniform stats."""
    rng = np.random.default_rng(1)
    data, stats = tmp_path / "data.parquet", tmp_path / "stats.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(300)]}), data)
    pq.write_table(pa.table({c: rng.uniform(size=300) for c in ("a.x", "b.y", "c.z")}), stats)
    return str(data), str(stats)


def test_recipe_features_are_quantiles_kept_shares_and_overlap(analysed):
    stats = read_stats(analysed[1], ["a.x", "b.y"])
    q = np.quantile(stats["a.x"], [0.25, 0.75])
    f = pool_features({"bounds": {"a.x": [float(q[0]), float(q[1])]}}, stats, ["a.x", "b.y"])
    assert f[0] == pytest.approx(0.25, abs=0.01) and f[1] == pytest.approx(0.75, abs=0.01)
    assert f[2:4] == [0.0, 1.0]  # b.y unbounded
    assert f[4] == pytest.approx(0.5, abs=0.01) and f[5] == 1.0  # joint share, one stat
    both = {"a.x": [float(q[0]), float(q[1])], "b.y": [0.0, float(np.quantile(stats["b.y"], .5))]}
    g = pool_features({"bounds": both}, stats, ["a.x", "b.y"])
    assert g[4] == pytest.approx(0.25, abs=0.05)  # independent stats: 0.5 x 0.5
    assert g[5] == pytest.approx(0.5, abs=0.1)  # the joint share over the smaller kept share
    assert pool_features({"bounds": {}}, stats, ["a.x", "b.y"]) == [0, 1, 0, 1, 1, 1]


def planted(pool, stats):
    """Lower is better: high a.x helps most, high b.y helps less, c.z does nothing."""
    f = pool_features(pool, stats, ["a.x", "b.y", "c.z"])
    return 2.0 - (f[0] + f[1]) / 2 - 0.6 * (f[2] + f[3]) / 2


def test_surrogate_combination_trains_only_the_predicted_best(tmp_path, analysed):
    singles = PoolConstruction(seed=0).run(env(tmp_path, "pools"), *analysed)["pools"]
    stats = read_stats(analysed[1], ["a.x", "b.y", "c.z"])
    values = {p["name"]: planted(p, stats) for p in singles}
    ranked = sorted(singles, key=lambda p: values[p["name"]])
    ranking = [{"pool": p["name"], "bits_per_byte": values[p["name"]]} for p in ranked]
    step = PoolCombination(top_k=3, include_singles=True, keep=["random"], min_size=5,
                           method="surrogate", candidate_k=6, train_top=2)
    out = step.run(env(tmp_path, "combine"), ranked, ranking=ranking, stats=analysed[1])
    combos = [p for p in out["pools"] if p["kind"] == "combined"]
    # the planted best: high a.x and high b.y (a c.z bin beside them changes nothing)
    assert len(combos) == 2 and {"a.x.high", "b.y.high"} <= set(combos[0]["parts"])
    candidates = [{"bounds": b} for _, _, _, b in step._intersections(ranked[:6])]
    assert planted(combos[0], stats) == pytest.approx(min(planted(c, stats) for c in candidates),
                                                      abs=0.02)
    assert [p["name"] for p in out["pools"] if p["kind"] != "combined"] == \
        [p["name"] for p in ranked if p["name"] != "random"][:3] + ["random"]
    rows = list(csv.DictReader(open(tmp_path / "combine" / "candidates.csv")))
    assert out["metrics"]["surrogate/candidates"] == len(rows) > 2
    assert [r["trained"] for r in rows].count("True") == 2
    predicted = [float(r["predicted"]) for r in rows]
    assert predicted == sorted(predicted)  # best (lowest) first
    # the exhaustive default is what it was: every intersection of the top 3
    ex = PoolCombination(top_k=3, include_singles=True, keep=["random"], min_size=5)
    ex_out = ex.run(env(tmp_path, "ex"), ranked)
    assert "surrogate/candidates" not in ex_out["metrics"]
    assert ex_out["size"] == min(p["size"] for p in ex_out["pools"])
    # both equalise to the smallest pool exhaustive search over their candidates would train,
    # and a pool's subsample is then the same in both runs
    every = PoolCombination(top_k=6, include_singles=True, keep=["random"], min_size=5)
    every_out = every.run(env(tmp_path, "every"), ranked)
    assert out["size"] == every_out["size"] < min(p["size"] for p in out["pools"])
    a = PoolDownsampling(seed=1).run(env(tmp_path, "eq1"), out["pools"], size=out["size"])
    b = PoolDownsampling(seed=1).run(env(tmp_path, "eq2"), every_out["pools"],
                                     size=every_out["size"])
    b = {p["name"]: p for p in b["pools"]}
    for p in a["pools"]:
        assert p["size"] == out["size"]
        assert pq.read_table(p["dataset"]).equals(pq.read_table(b[p["name"]]["dataset"]))
    with pytest.raises(ConfigError, match="ranking"):
        step.run(env(tmp_path, "bad"), ranked)
    with pytest.raises(ConfigError, match="bottom_up.combine"):
        PoolCombination(method="greedy")

    # the report: held out one at a time, the planted effect still ranks the pools
    combo_rank = [{"pool": p["name"], "bits_per_byte": planted(p, stats)} for p in combos]
    rep = SurrogateReport(model="linear").run(env(tmp_path, "report"), combo_rank, ranking,
                                              combos, singles, analysed[1])
    assert rep["metrics"]["surrogate/pools"] == len(singles) + 2
    assert rep["metrics"]["surrogate/loo_spearman"] > 0.8
    rows = list(csv.DictReader(open(rep["table"])))
    pick = min(rows, key=lambda r: float(r["held_out_prediction"]))
    best = min(float(r["bits_per_byte"]) for r in rows)
    # the two trained combinations tie in truth (c.z does nothing): the pick is one of them
    assert float(pick["bits_per_byte"]) == pytest.approx(best, abs=0.02)
    assert rep["metrics"]["surrogate/top_pick_is_best"] == float(
        float(pick["bits_per_byte"]) == best)


def test_the_report_holds_out_intersections_for_the_additive_model(tmp_path, analysed):
    singles = PoolConstruction(seed=0).run(env(tmp_path, "pools"), *analysed)["pools"]
    stats = read_stats(analysed[1], ["a.x", "b.y", "c.z"])
    ranked = sorted(singles, key=lambda p: planted(p, stats))
    ranking = [{"pool": p["name"], "bits_per_byte": planted(p, stats)} for p in ranked]
    out = PoolCombination(top_k=5, min_size=5).run(env(tmp_path, "combine"), ranked)["pools"]
    assert len(out) >= 5
    combo_rank = [{"pool": p["name"], "bits_per_byte": planted(p, stats)} for p in out]
    rep = SurrogateReport().run(env(tmp_path, "report"), combo_rank, ranking, out, singles,
                                analysed[1])["metrics"]
    # the planted objective is additive over the stats: each intersection held out is the sum
    # of its members' effects, learnt from the single pools and the other intersections
    assert rep["surrogate/loo_spearman_combined"] > 0.95
    assert rep["surrogate/top_pick_is_best"] == 1.0


def test_bottom_up_combine_surrogate_composes():
    from sandbox.runner import plan_run

    cfg = compose(["experiment=bottom_up", "bottom_up.combine=surrogate",
                   "bottom_up.surrogate.train_top=2"])
    steps = {s.key for p in plan_run(cfg).pipelines for s in p.steps}
    assert {"combine.combine", "combine.surrogate"} <= steps
    assert cfg.pipelines.combine.steps.combine.component.method == "surrogate"


@pytest.mark.slow
def test_bottom_up_combine_surrogate_tiny(tmp_path, eval_files):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs(240)))
    over = ["experiment=bottom_up", "bottom_up.combine=surrogate", "data_pool=jsonl",
            f"data_pool.path={docs}", "progress=false", "tracking=none", *TINY_TRAINER,
            *eval_files, "trainer.num_threads=1", "evaluator.num_threads=1", "bottom_up.seeds=1",
            "bottom_up.stats=[text_length_filter.text_len,alphanumeric_filter.alnum_ratio]",
            "bottom_up.min_combined_size=5", "bottom_up.surrogate.train_top=1",
            "bottom_up.scale_top_k=1", "bottom_up.scale_token_budget=4096"]
    metrics = run_tiny(over, tmp_path)
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    trained = [k for k in ctx if k.startswith("combine.train[")]
    combined = [p for p in ctx["combine.combine"]["outputs"]["pools"] if p["kind"] == "combined"]
    assert len(combined) == 1 and len(trained) == 3 + 1 + 1  # 3 singles, 1 combination, control
    assert metrics["combine/surrogate/trained_combinations"] == 1.0
    assert metrics["combine/surrogate/candidates"] >= 1
    assert metrics["combine/surrogate/pools"] == 7 + 1  # 2 stats x 3 + control, + the combination
    assert -1.0 <= metrics["combine/surrogate/loo_spearman"] <= 1.0
    assert metrics["combine/surrogate/top_pick_is_best"] in (0.0, 1.0)


def run_tiny(over, tmp_path):
    from sandbox.runner import run

    return run(compose(over), run_dir=tmp_path / "run")
