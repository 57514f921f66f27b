"""The sequential search over intersections (``bottom_up.combine=sequential``,
``sandbox.steps.pools.PoolSequentialSearch``): on a planted objective it trains the best
intersection within a few rounds and stops, it trains each pool as the pipeline would (same
subsample, every seed), resumes what it finished, passes results through under the other
methods, rejects bad settings clearly, and composes into ``experiment=bottom_up``."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.errors import ConfigError
from sandbox.steps.base import StepEnv
from sandbox.steps.pools import (PoolCombination, PoolConstruction, PoolDownsampling,
                                 PoolSequentialSearch)
from tests.conftest import TINY_TRAINER, compose, make_docs

STATS = ("a.x", "b.y", "c.z")
# the planted objective (lower is better): each row costs the effect of the third each of its
# stats falls in, so a pool's value is a constant plus one effect per stat it bounds: additive
# over the single pools an intersection is made of. The best intersection is a.high+b.high+c.low.
EFFECTS = {"a.x": (0.1, 0.0, -0.3), "b.y": (0.05, 0.0, -0.2), "c.z": (-0.1, 0.0, 0.05)}
CALLS: list[str] = []  # the pools the fake trainer trained, in order
# an interaction the single pools cannot show: rows high in both a.x and b.y cost this more
INTERACTION = {"ab": 0.0}


class FakeTrainer:
    """A trainer that remembers its pool and seed (the ``model``)."""

    def __init__(self, seed: int = 0, text_key: str = "text"):
        self.seed = seed

    def run(self, env: StepEnv, dataset: str) -> dict:
        CALLS.append(dataset)
        model = env.workdir / "model"
        model.mkdir(parents=True, exist_ok=True)
        (model / "model.json").write_text(json.dumps({"dataset": dataset, "seed": self.seed}))
        return {"model_dir": str(model), "metrics": {"tokens": 1.0}}


class FakeEvaluator:
    """``bits_per_byte``: 3 plus the mean over the pool's rows of their planted costs, plus a
    small per-seed offset (two seeds differ, as real trainings do)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def run(self, env: StepEnv, model_dir: str) -> dict:
        info = json.loads((Path(model_dir) / "model.json").read_text())
        t = pq.read_table(info["dataset"])
        cost = np.zeros(t.num_rows)
        for stat, eff in EFFECTS.items():
            third = np.minimum((np.asarray(t.column("v_" + stat)) * 3).astype(int), 2)
            cost += np.asarray(eff)[third]
        both = (np.asarray(t.column("v_a.x")) >= 2 / 3) & (np.asarray(t.column("v_b.y")) >= 2 / 3)
        cost += INTERACTION["ab"] * both
        scores = env.workdir / "doc_scores.npz"
        np.savez(scores, cost=cost)
        return {"metrics": {"bits_per_byte": 3.0 + float(cost.mean()) + 1e-4 * info["seed"]},
                "doc_scores": str(scores)}


FAKE_TRAINER = {"_target_": f"{__name__}.FakeTrainer", "seed": 0}
FAKE_EVALUATOR = {"_target_": f"{__name__}.FakeEvaluator"}


def env(tmp_path, name):
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=d, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   show_progress=False)


@pytest.fixture
def stage(tmp_path):
    """The combination stage up to the search: 900 rows, three stats whose thirds cut exactly
    at 1/3 and 2/3, the single pools ranked by the planted objective, the sequential
    combination's pools (the top 4 and the control) equalised, trained and evaluated."""
    rng = np.random.default_rng(0)
    cols = {s: (rng.permutation(900) + 0.5) / 900 for s in STATS}
    data, stats = tmp_path / "data.parquet", tmp_path / "stats.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(900)],
                             **{"v_" + s: v for s, v in cols.items()}}), data)
    pq.write_table(pa.table(cols), stats)
    singles = PoolConstruction(seed=0).run(env(tmp_path, "pools"), str(data), str(stats))["pools"]
    ev = env(tmp_path, "values")

    def evaluate(pool, seed):
        model = FakeTrainer(seed).run(ev, pool["dataset"])["model_dir"]
        return FakeEvaluator().run(ev, model)

    value = {p["name"]: evaluate(p, 1)["metrics"]["bits_per_byte"] for p in singles}
    ranked = sorted(singles, key=lambda p: value[p["name"]])
    combine = PoolCombination(top_k=3, include_singles=True, keep=["random"], min_size=5,
                              method="sequential", candidate_k=4, seed=7)
    out = combine.run(env(tmp_path, "combine"), ranked)
    equal = PoolDownsampling(seed=7).run(env(tmp_path, "equalize"), out["pools"],
                                         size=out["size"])["pools"]
    results = []
    for p in equal:
        for seed in (1, 2):
            e = evaluate(p, seed)
            results.append(dict(p, seed=seed, metrics=e["metrics"], doc_scores=e["doc_scores"]))
    CALLS.clear()
    return {"ranked": ranked, "combine": out, "results": results, "stats": str(stats),
            "equal": equal}


def search(**kw):
    args = dict(trainer=FAKE_TRAINER, evaluator=FAKE_EVALUATOR, method="sequential", seeds=2,
                max_rounds=4, seed=7)
    return PoolSequentialSearch(**{**args, **kw})


def truth(pool: dict) -> float:
    """The planted value of a pool of infinitely many rows: a bounded stat costs its bin's
    effect, an unbounded one its mean effect."""
    out = 3.0
    for stat, eff in EFFECTS.items():
        bins = [n.rsplit(".", 1)[1] for n in pool.get("parts") or [pool["name"]]
                if n.startswith(stat + ".")]
        out += eff[("low", "middle", "high").index(bins[0])] if bins else float(np.mean(eff))
    return out


def test_sequential_combination_passes_the_top_pools_and_every_intersection(stage):
    out = stage["combine"]
    names = [p["name"] for p in out["pools"]]
    # the top 4 single pools (candidate_k, not top_k) and the control, to train first
    assert names == [p["name"] for p in stage["ranked"] if p["name"] != "random"][:4] + \
        ["random"]
    cands = out["candidates"]
    assert out["metrics"]["surrogate/candidates"] == len(cands) >= 4
    assert all(p["kind"] == "combined" and len(p["parts"]) >= 2 for p in cands)
    # the size exhaustive search over the same 4 pools would equalise to
    every = PoolCombination(top_k=4, include_singles=True, keep=["random"], min_size=5)
    assert out["size"] == every.run(env(Path(cands[0]["dataset"]).parents[2], "ex"),
                                    stage["ranked"])["size"]
    assert {p["name"] for p in cands} == {n for n, *_ in every._intersections(
        [p for p in stage["ranked"] if p["name"] != "random"][:4])}


def test_the_search_trains_the_planted_best_within_few_rounds_and_stops(tmp_path, stage):
    cands = stage["combine"]["candidates"]
    best = min(cands, key=truth)
    assert best["parts"] == ["a.x.high", "b.y.high", "c.z.low"]
    out = search().run(env(tmp_path, "search"), stage["results"], cands,
                       stage["combine"]["size"], stage["stats"])
    m = out["metrics"]
    trained = [p["name"] for p in out["pools"]]
    assert best["name"] in trained
    # few rounds, stopped because the refitted model, whose errors are small here, predicts
    # nothing untrained to beat the best measured
    assert m["surrogate/converged"] == 1.0
    assert 1 <= m["surrogate/trained_combinations"] == len(trained) <= 3 < len(cands)
    assert m["surrogate/rounds"] == len(trained) + 1
    assert m["surrogate/trainings"] == 2 * len(trained) == len(CALLS)
    assert m["surrogate/reused_cpu_s"] == 0.0
    # results: the input ones, then every seed of each trained intersection, in the shape the
    # ranking reads (name, seed, metrics), at the equalised size
    new = out["results"][len(stage["results"]):]
    assert out["results"][:len(stage["results"])] == stage["results"]
    assert [(r["name"], r["seed"]) for r in new] == [(n, s) for n in trained for s in (1, 2)]
    assert all(r["size"] == stage["combine"]["size"] and r["kind"] == "combined"
               and "bits_per_byte" in r["metrics"] and Path(r["doc_scores"]).is_file()
               for r in new)
    rows = list(csv.DictReader(open(out["table"])))
    assert [r["trained"] for r in rows] == ["True"] * len(trained) + ["False"]
    last = rows[-1]
    assert float(last["predicted"]) > float(last["best_measured_before"]) + float(last["margin"])
    assert [r["pick"] for r in rows[:-1]] == trained
    assert rows[0]["margin"] == "nan"  # no error estimate before two intersections are trained
    assert all(float(r["cpu_s"]) >= 0 for r in rows[:-1])
    preds = list(csv.DictReader(open(Path(out["table"]).parent / "predictions.csv")))
    assert len(preds) == len(rows) * len(cands)
    # the ranking of everything trained puts the planted best first
    from sandbox.steps.pools import PoolRanking

    ranking = PoolRanking(keys=["bits_per_byte"]).run(env(tmp_path, "rank"), out["results"])
    assert ranking["best"]["name"] == best["name"]


def test_a_wrong_first_pick_is_measured_refitted_and_left(tmp_path, stage, monkeypatch):
    """With an interaction (a.high and b.high together cost +0.4) the additive model's first
    pick, fitted on the single pools, is wrong; measured, it pulls the refit away from that
    pair, and the search goes on to the best intersection (a.high+c.low: 2.6 against the
    triple's 2.8)."""
    monkeypatch.setitem(INTERACTION, "ab", 0.4)
    cands = stage["combine"]["candidates"]
    out = search(max_rounds=4).run(env(tmp_path, "search"), stage["results"], cands,
                                   stage["combine"]["size"], stage["stats"])
    trained = [p["name"] for p in out["pools"]]
    assert trained[0] == "a.x.high+b.y.high+c.z.low" and "a.x.high+c.z.low" in trained
    assert out["metrics"]["surrogate/converged"] == 1.0
    assert len(trained) <= 3
    measured = {r["name"]: r["metrics"]["bits_per_byte"]
                for r in out["results"][len(stage["results"]):]}
    assert min(measured, key=measured.get) == "a.x.high+c.z.low"
    # capped at one intersection, the search stops there, not converged
    capped = search(max_rounds=1).run(env(tmp_path, "capped"), stage["results"], cands,
                                      stage["combine"]["size"], stage["stats"])
    assert capped["metrics"]["surrogate/trained_combinations"] == 1.0
    assert capped["metrics"]["surrogate/rounds"] == 2.0
    assert capped["metrics"]["surrogate/converged"] == 0.0


def test_a_searched_pool_is_the_one_the_pipeline_would_train(tmp_path, stage):
    """Equalised as PoolDownsampling does (same seed, same rows), so a pool the sequential
    search trains is the data exhaustive search trains under that name."""
    cands = stage["combine"]["candidates"]
    out = search(max_rounds=1).run(env(tmp_path, "search"), stage["results"], cands,
                                   stage["combine"]["size"], stage["stats"])
    assert out["metrics"]["surrogate/trained_combinations"] == 1.0
    pool = out["pools"][0]
    ref = PoolDownsampling(seed=7).run(env(tmp_path, "eq"), [c for c in cands
                                                             if c["name"] == pool["name"]],
                                       size=stage["combine"]["size"])["pools"][0]
    assert pq.read_table(pool["dataset"]).equals(pq.read_table(ref["dataset"]))


def test_a_resumed_search_keeps_the_trainings_it_finished(tmp_path, stage):
    args = (stage["results"], stage["combine"]["candidates"], stage["combine"]["size"],
            stage["stats"])
    first = search().run(env(tmp_path, "search"), *args)
    n = len(CALLS)
    again = search().run(env(tmp_path, "search"), *args)
    assert len(CALLS) == n  # nothing trained twice
    assert again["metrics"]["surrogate/reused_cpu_s"] >= 0.0
    assert [r["metrics"] for r in again["results"]] == [r["metrics"] for r in first["results"]]


def test_exploring_with_one_seed_confirms_the_finalists_with_every_seed(tmp_path, stage):
    """explore_seeds=1: the pools come trained with seed 1 only (as the pipeline's train step
    trains them then), each intersection is trained with seed 1, then the 2 best explored and
    the control get seed 2; only they are ranked, each with both seeds, so the test against
    the control is paired over the same seeds."""
    from sandbox.steps.pools import PoolRanking

    cands = stage["combine"]["candidates"]
    best = min(cands, key=truth)
    first = [r for r in stage["results"] if r["seed"] == 1]
    args = (first, cands, stage["combine"]["size"], stage["stats"])
    out = search(explore_seeds=1, confirm_top=2).run(env(tmp_path, "search"), *args)
    m = out["metrics"]
    trained = [p["name"] for p in out["pools"]]
    assert best["name"] in trained
    # one training per intersection explored, then seed 2 of the 2 finalists and the control
    assert m["surrogate/confirm_trainings"] == 3.0
    assert m["surrogate/trainings"] == len(trained) + 3 == len(CALLS)
    assert {r["seed"] for r in out["explored"]} == {1}
    assert [(r["name"], r["seed"]) for r in out["explored"][:len(first)]] == \
        [(r["name"], r["seed"]) for r in first]
    explored = {r["name"]: r["metrics"]["bits_per_byte"] for r in out["explored"]}
    top2 = sorted((n for n in explored if n != "random"), key=explored.get)[:2]
    assert [(r["name"], r["seed"]) for r in out["results"]] == \
        [(n, s) for n in top2 + ["random"] for s in (1, 2)]
    rows = list(csv.DictReader(open(Path(out["table"]).parent / "confirm.csv")))
    assert [r["pool"] for r in rows] == top2 + ["random"]
    assert [int(r["trained"]) for r in rows] == [1, 1, 1]
    ranking = PoolRanking(keys=["bits_per_byte"]).run(env(tmp_path, "rank"), out["results"])
    assert ranking["best"]["name"] == best["name"]
    rows = {r["pool"]: r for r in ranking["ranking"]}
    assert all(r["n_seeds"] == 2 for r in rows.values())
    assert rows[best["name"]]["test"] == "paired t"
    # resumed: nothing trained twice, the same results
    n = len(CALLS)
    again = search(explore_seeds=1, confirm_top=2).run(env(tmp_path, "search"), *args)
    assert len(CALLS) == n
    assert [r["metrics"] for r in again["results"]] == [r["metrics"] for r in out["results"]]
    # pools given with every seed already: the finalists' seed 2 is taken, not trained again
    CALLS.clear()
    full = search(explore_seeds=1, confirm_top=1).run(env(tmp_path, "full"), stage["results"],
                                                      *args[1:])
    fm = full["metrics"]
    assert fm["surrogate/trainings"] == len(CALLS) == \
        fm["surrogate/trained_combinations"] + fm["surrogate/confirm_trainings"]
    assert fm["surrogate/confirm_trainings"] <= 1  # only an intersection's seed 2
    assert {r["name"] for r in full["results"]} == {best["name"], "random"}


def test_exploration_needs_every_pool_trained_with_its_seeds(tmp_path, stage):
    second = [r for r in stage["results"] if r["seed"] == 2]
    with pytest.raises(ConfigError, match="search_seeds"):
        search(explore_seeds=1).run(env(tmp_path, "s"), second, stage["combine"]["candidates"],
                                    stage["combine"]["size"], stage["stats"])
    # explore_seeds as large as the seeds: the search as without it
    out = search(explore_seeds=2).run(env(tmp_path, "all"), stage["results"],
                                      stage["combine"]["candidates"], stage["combine"]["size"],
                                      stage["stats"])
    assert "surrogate/confirm_trainings" not in out["metrics"]
    assert out["results"][:len(stage["results"])] == stage["results"]


def test_the_bench_replays_the_search_on_sub_problems(tmp_path, stage):
    """bench/search.py's replay on an exhaustive run made of the planted pools: on the full
    problem and on each sub-problem it finds the problem's best, and exploring with one seed
    costs fewer trainings than exploring with both."""
    import importlib.util

    from sandbox.steps.pools import PoolRanking

    path = Path(__file__).resolve().parent.parent / "bench" / "search.py"
    spec = importlib.util.spec_from_file_location("bench_search", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    cands = stage["combine"]["candidates"]
    ev = env(tmp_path, "ex")
    every = list(stage["results"])
    for p in PoolDownsampling(seed=7).run(env(tmp_path, "eq"), cands,
                                          size=stage["combine"]["size"])["pools"]:
        for seed in (1, 2):
            e = FakeEvaluator().run(ev, FakeTrainer(seed).run(ev, p["dataset"])["model_dir"])
            every.append(dict(p, seed=seed, metrics=e["metrics"], doc_scores=e["doc_scores"]))
    ranking = PoolRanking(keys=["bits_per_byte"]).run(env(tmp_path, "rank"), every)["ranking"]
    records = {"combine.evaluate": {"outputs": {"results": every}},
               "combine.combine": {"outputs": {"pools": cands}},
               "combine.equalize": {"outputs": {"pools": stage["equal"]}},
               "combine.rank": {"outputs": {"ranking": ranking}},
               "single_op.probe": {"outputs": {"stats": stage["stats"]}}}
    problems = bench.subproblems(records, sizes=(3,))
    assert len(problems) == 4 + 1  # every 3 of the top 4, then all 4
    for subset in problems:
        full = bench.replay(records, "additive", 4, 2, subset=subset)
        one = bench.replay(records, "additive", 4, 2, subset=subset, explore_seeds=1,
                           confirm_top=2)
        assert full["same_pick"] == one["same_pick"] == 1.0
        assert one["trainings"] < full["trainings"]
        assert 0 < one["trainings_fraction"] < full["trainings_fraction"] <= 1
    assert bench.replay(records, "additive", 4, 2)["best"] == min(cands, key=truth)["name"]


@pytest.mark.parametrize("model", ["linear", "gbm"])
def test_the_other_models_search_too(tmp_path, stage, model):
    out = search(model=model).run(env(tmp_path, "search"), stage["results"],
                                  stage["combine"]["candidates"], stage["combine"]["size"],
                                  stage["stats"])
    assert 1 <= out["metrics"]["surrogate/trained_combinations"] <= 4


def test_other_methods_pass_the_results_through(tmp_path, stage):
    for method in ("exhaustive", "surrogate"):
        out = PoolSequentialSearch(trainer=None, evaluator=None, method=method).run(
            env(tmp_path, method), stage["results"], [], None, None)
        assert out["results"] == stage["results"] and out["metrics"] == {}
    assert not CALLS
    # sequential with no candidate large enough: nothing to train
    out = search().run(env(tmp_path, "none"), stage["results"], [], 10, None)
    assert out["results"] == stage["results"]
    assert out["metrics"]["surrogate/trained_combinations"] == 0.0


def test_bad_settings_say_which_key_to_fix():
    with pytest.raises(ConfigError, match="bottom_up.combine"):
        search(method="greedy")
    with pytest.raises(ConfigError, match="bottom_up.surrogate.model"):
        search(model="forest")
    with pytest.raises(ConfigError, match="bottom_up.surrogate.train_top"):
        search(max_rounds=0)
    with pytest.raises(ConfigError, match="bottom_up.seeds"):
        search(seeds=0)
    with pytest.raises(ConfigError, match="bottom_up.surrogate.explore_seeds"):
        search(explore_seeds=0)
    with pytest.raises(ConfigError, match="bottom_up.surrogate.confirm_top"):
        search(explore_seeds=1, confirm_top=0)
    with pytest.raises(ConfigError, match=r"trainer: \$\{trainer\}"):
        search(trainer={"token_budget": 10})
    with pytest.raises(ConfigError, match="bottom_up.combine"):
        PoolCombination(method="greedy")
    with pytest.raises(ConfigError, match="bottom_up.surrogate.candidate_k"):
        PoolCombination(method="sequential", candidate_k=1)
    with pytest.raises(ConfigError, match="bottom_up.surrogate.train_top"):
        PoolCombination(method="sequential", train_top=0)


def test_bottom_up_combine_sequential_composes():
    from sandbox.runner import plan_run

    cfg = compose(["experiment=bottom_up", "bottom_up.combine=sequential",
                   "bottom_up.surrogate.train_top=2"])
    steps = [s.key for p in plan_run(cfg).pipelines for s in p.steps]
    assert steps.index("combine.evaluate") < steps.index("combine.search") < \
        steps.index("combine.rank")
    search_cfg = cfg.pipelines.combine.steps.search.component
    assert search_cfg.method == "sequential" and search_cfg.max_rounds == 2
    assert search_cfg.trainer._target_ == cfg.trainer._target_
    from omegaconf import OmegaConf

    rank = OmegaConf.to_container(cfg.pipelines.combine.steps.rank, resolve=False)
    assert rank["inputs"]["results"] == "${ctx:search.results}"


@pytest.mark.parametrize("over,seeds", [
    (["bottom_up.combine=sequential", "bottom_up.surrogate.explore_seeds=1"], [1]),
    (["bottom_up.combine=sequential", "bottom_up.surrogate.explore_seeds=1",
      "bottom_up.seeds=[5,7,9]"], [5]),
    (["bottom_up.combine=sequential"], [1, 2]),
    (["bottom_up.combine=exhaustive", "bottom_up.surrogate.explore_seeds=1"], [1, 2])])
def test_the_combination_stage_trains_with_the_exploration_seeds(over, seeds):
    """Only the sequential search explores with fewer seeds; the other methods train every
    seed whatever explore_seeds says."""
    from sandbox.runner import plan_run

    cfg = compose(["experiment=bottom_up", *over])
    train = [s for p in plan_run(cfg).pipelines for s in p.steps if s.key == "combine.train"]
    assert train[0].seeds == seeds
    search_cfg = cfg.pipelines.combine.steps.search.component
    assert search_cfg.confirm_top == 2


@pytest.mark.slow
def test_bottom_up_combine_sequential_tiny(tmp_path, eval_files):
    """The whole experiment: the search trains inside its step, its CPU time is in the ledger,
    and the ranking holds what it trained."""
    from sandbox.runner import run

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs(240)))
    over = ["experiment=bottom_up", "bottom_up.combine=sequential", "data_pool=jsonl",
            f"data_pool.path={docs}", "progress=false", "tracking=none", *TINY_TRAINER,
            *eval_files, "trainer.num_threads=1", "evaluator.num_threads=1", "bottom_up.seeds=1",
            "bottom_up.stats=[text_length_filter.text_len,alphanumeric_filter.alnum_ratio]",
            "bottom_up.min_combined_size=5", "bottom_up.surrogate.train_top=1",
            "bottom_up.surrogate.candidate_k=3", "~pipelines.scale"]
    metrics = run(compose(over), run_dir=tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    trained = [k for k in ctx if k.startswith("combine.train[")]
    assert len(trained) == 3 + 1  # the top 3 single pools and the control
    assert metrics["combine/surrogate/trained_combinations"] == 1.0
    ranked = {r["pool"] for r in ctx["combine.rank"]["outputs"]["ranking"]}
    assert len(ranked) == 5 and any("+" in p for p in ranked)
    assert ctx["combine.search"]["cpu_seconds"] > 0
    assert metrics["compute/combine/search_cpu_s"] == pytest.approx(
        ctx["combine.search"]["cpu_seconds"], abs=1e-3)  # the context keeps 3 decimals
    assert metrics["compute/total_cpu_s"] == pytest.approx(sum(
        v for k, v in metrics.items() if k.startswith("compute/") and k.endswith("_cpu_s")
        and k not in ("compute/total_cpu_s", "compute/reused_cpu_s")))
