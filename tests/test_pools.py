"""Pool steps (construction, downsampling, duplication, combination, merging, cartesian join,
ranking, recipe export, conversion), each on hand-checked data."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.errors import ConfigError
from sandbox.numeric import float_column
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.steps.pools import (FromJsonl, PoolCartesianJoin, PoolCombination, PoolConstruction,
                                 PoolDownsampling, PoolDuplication, PoolMerging, PoolRanking,
                                 PoolSelection, RecipeExport, ToCocoCaption, ToJsonl)
from sandbox.steps.pools.common import ROW
from sandbox.steps.pools.construction import split_positions


def env(tmp_path, name="step"):
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=d, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   show_progress=False)


def texts(path):
    return pq.read_table(path).column("text").to_pylist()


@pytest.fixture
def analysed(tmp_path):
    """12 samples; stat `a.x` = 11..0 (reversed), `b.y` lists, `c.z` strings (skipped)."""
    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(12)]}), data)
    stats = tmp_path / "stats.parquet"
    pq.write_table(pa.table({"a.x": [float(11 - i) for i in range(12)],
                             "b.y": [[i, i + 2] for i in range(12)],   # mean i+1
                             "c.z": [f"s{i}" for i in range(12)]}), stats)
    return str(data), str(stats)


def test_construction_splits_thirds_by_each_stat_with_random_control(tmp_path, analysed):
    out = PoolConstruction(seed=0).run(env(tmp_path), *analysed)
    pools = {p["name"]: p for p in out["pools"]}
    assert list(pools) == ["a.x.low", "a.x.middle", "a.x.high", "b.y.low", "b.y.middle",
                           "b.y.high", "random"]  # 3 per numeric stat + 1; strings skipped
    assert out["num_pools"] == 7 and out["size"] == 4
    # a.x is 11 - i: its lowest third is samples 8..11, kept in their original order
    assert texts(pools["a.x.low"]["dataset"]) == ["t8", "t9", "t10", "t11"]
    assert texts(pools["a.x.high"]["dataset"]) == ["t0", "t1", "t2", "t3"]
    assert pools["a.x.middle"]["bounds"] == {"a.x": [4.0, 7.0]}
    # list-valued stat by its mean (i + 1): low third = samples 0..3
    assert texts(pools["b.y.low"]["dataset"]) == ["t0", "t1", "t2", "t3"]
    assert all(p["size"] == 4 for p in pools.values())
    rnd = pq.read_table(pools["random"]["dataset"]).column(ROW).to_pylist()
    assert len(set(rnd)) == 4 and rnd == sorted(rnd)
    again = PoolConstruction(seed=0).run(env(tmp_path, "again"), *analysed)["pools"]
    assert texts(again[-1]["dataset"]) == texts(pools["random"]["dataset"])  # seeded


def test_construction_counts_ratios_equal_size_and_errors(tmp_path, analysed):
    out = PoolConstruction(split_counts=[2, 3], stats=["a.x"], random_pool=False,
                           equal_size=False).run(env(tmp_path), *analysed)
    sizes = [(p["name"], p["size"]) for p in out["pools"]]
    assert sizes == [("a.x.low", 2), ("a.x.middle", 3), ("a.x.high", 7)]
    out = PoolConstruction(split_counts=[2, 3], stats=["a.x"]).run(env(tmp_path, "eq"), *analysed)
    assert {p["size"] for p in out["pools"]} == {2}  # all made as small as the smallest
    out = PoolConstruction(split_ratios=[0.25, 0.5, 0.75], stats=["a.x"],
                           random_pool=False).run(env(tmp_path, "q"), *analysed)
    assert [p["name"] for p in out["pools"]] == ["a.x.q0", "a.x.q1", "a.x.q2", "a.x.q3"]
    assert split_positions(10, None, None) == [0, 3, 7, 10]
    with pytest.raises(ConfigError, match="increasing quantiles"):
        split_positions(10, [0.7, 0.3], None)
    with pytest.raises(ConfigError, match="not in"):
        PoolConstruction(stats=["nope"]).run(env(tmp_path, "bad"), *analysed)
    assert float_column(["a", "b"], list_mean=True) is None
    assert float_column([[1, 3], 2, None], list_mean=True)[:2].tolist() == [2.0, 2.0]


@pytest.fixture
def pools(tmp_path, analysed):
    out = PoolConstruction(seed=0, random_pool=True).run(env(tmp_path, "pools"), *analysed)
    return {p["name"]: p for p in out["pools"]}


def test_downsampling_is_seeded_and_defaults_to_smallest(tmp_path, pools):
    ps = [pools["a.x.low"], pools["a.x.high"]]
    big = PoolConstruction(split_counts=[2], stats=["a.x"], random_pool=False,
                           equal_size=False).run(env(tmp_path, "big"), str(tmp_path / "data.parquet"),
                                                 str(tmp_path / "stats.parquet"))["pools"]
    assert [p["size"] for p in big] == [2, 10]
    out = PoolDownsampling(seed=3).run(env(tmp_path, "ds"), big)["pools"]
    assert [p["size"] for p in out] == [2, 2]
    again = PoolDownsampling(seed=3).run(env(tmp_path, "ds2"), big)["pools"]
    assert texts(out[1]["dataset"]) == texts(again[1]["dataset"])
    assert set(texts(out[1]["dataset"])) <= set(texts(big[1]["dataset"]))
    out = PoolDownsampling(target_size=3, seed=0).run(env(tmp_path, "ds3"), ps)["pools"]
    assert [p["size"] for p in out] == [3, 3]


def test_a_pools_subsample_does_not_depend_on_its_place_in_the_list(tmp_path, analysed):
    big = PoolConstruction(split_counts=[2], stats=["a.x"], random_pool=False,
                           equal_size=False).run(env(tmp_path, "big"), *analysed)["pools"]
    small, large = big
    other = dict(large, name="a.x.other")  # the same rows under another name
    first = PoolDownsampling(target_size=4, seed=3).run(env(tmp_path, "1"), [large])["pools"]
    later = PoolDownsampling(target_size=4, seed=3).run(env(tmp_path, "2"),
                                                        [small, other, large])["pools"]
    assert texts(later[2]["dataset"]) == texts(first[0]["dataset"])
    assert texts(later[1]["dataset"]) != texts(first[0]["dataset"])  # the name seeds it
    # the same in construction's equal_size: a.x.high is cut alike with or without b.y beside it
    alone = PoolConstruction(stats=["a.x"], split_counts=[2, 3], random_pool=False,
                             seed=1).run(env(tmp_path, "alone"), *analysed)["pools"]
    beside = PoolConstruction(stats=["b.y", "a.x"], split_counts=[2, 3], random_pool=False,
                              seed=1).run(env(tmp_path, "beside"), *analysed)["pools"]
    assert [p["name"] for p in beside][3:] == [p["name"] for p in alone]
    assert [texts(p["dataset"]) for p in beside][3:] == [texts(p["dataset"]) for p in alone]


def test_duplication_repeats_and_shuffles_with_seed(tmp_path, pools):
    p = pools["a.x.high"]
    out = PoolDuplication(times=3).run(env(tmp_path, "d"), [p])["pools"][0]
    assert out["name"] == "a.x.high.x3" and out["size"] == 12
    assert texts(out["dataset"]) == ["t0", "t1", "t2", "t3"] * 3
    sh = PoolDuplication(times=2, shuffle=True, seed=1).run(env(tmp_path, "s"), [p])["pools"][0]
    assert sorted(texts(sh["dataset"])) == sorted(["t0", "t1", "t2", "t3"] * 2)
    assert texts(sh["dataset"]) != ["t0", "t1", "t2", "t3"] * 2
    sh2 = PoolDuplication(times=2, shuffle=True, seed=1).run(env(tmp_path, "s2"), [p])["pools"][0]
    assert texts(sh2["dataset"]) == texts(sh["dataset"])


def test_combination_intersects_subsets_of_the_top_pools(tmp_path, pools):
    # a.x.high = rows 0..3, b.y.low = rows 0..3, b.y.middle = rows 4..7, a.x.middle = rows 4..7
    ranked = [pools["random"], pools["a.x.high"], pools["b.y.middle"], pools["a.x.middle"],
              pools["b.y.low"]]
    out = PoolCombination(top_k=3).run(env(tmp_path, "c"), ranked)
    names = [p["name"] for p in out["pools"]]
    # random is excluded; a.x.high ∩ b.y.middle is empty (skipped); ∩ of all three empty too
    assert names == ["b.y.middle+a.x.middle"]
    assert texts(out["pools"][0]["dataset"]) == ["t4", "t5", "t6", "t7"]
    assert out["pools"][0]["bounds"] == {"b.y": [5.0, 8.0], "a.x": [4.0, 7.0]}
    out = PoolCombination(top_k=2, include_singles=True, keep=["random"]).run(
        env(tmp_path, "c2"), [pools["a.x.high"], pools["b.y.low"], pools["random"]])
    assert [p["name"] for p in out["pools"]] == ["a.x.high", "b.y.low", "a.x.high+b.y.low",
                                                 "random"]


def test_selection_merging_and_cartesian_join(tmp_path, pools):
    ranked = [pools["a.x.high"], pools["random"], pools["b.y.low"]]
    sel = PoolSelection(top_k=1).run(env(tmp_path, "sel"), ranked)["pools"]
    assert [p["name"] for p in sel] == ["a.x.high", "random"]
    m = PoolMerging(name="u").run(env(tmp_path, "m"), [pools["a.x.high"], pools["b.y.low"],
                                                      pools["a.x.middle"]])["pool"]
    assert m["size"] == 8 and texts(m["dataset"]) == [f"t{i}" for i in range(8)]
    left = PoolDownsampling(target_size=2, seed=0).run(env(tmp_path, "l"), [pools["a.x.high"]])
    right = PoolDownsampling(target_size=3, seed=0).run(env(tmp_path, "r"), [pools["a.x.low"]])
    j = PoolCartesianJoin().run(env(tmp_path, "j"), left["pools"], right["pools"])["pools"]
    assert len(j) == 1 and j[0]["size"] == 6
    t = pq.read_table(j[0]["dataset"])
    lt, rt = texts(left["pools"][0]["dataset"]), texts(right["pools"][0]["dataset"])
    assert list(zip(t.column("text").to_pylist(), t.column("text_right").to_pylist())) == \
        [(a, b) for a in lt for b in rt]


def test_ranking_orders_aggregates_seeds_and_tests_against_control(tmp_path):
    def r(name, ppl, acc, seed):
        return {"name": name, "size": 10, "seed": seed, "dataset": f"/x/{name}.parquet",
                "metrics": {"perplexity": ppl, "acc": acc}}

    results = [r("a", 10.0, 0.5, 1), r("a", 10.2, 0.5, 2), r("a", 9.8, 0.5, 3),
               r("b", 20.0, 0.9, 1), r("b", 21.0, 0.9, 2), r("b", 19.0, 0.9, 3),
               r("c", 10.0, 0.7, 1), r("c", 10.0, 0.7, 2), r("c", 10.0, 0.7, 3),
               r("random", 15.0, 0.6, 1), r("random", 16.0, 0.6, 2), r("random", 14.0, 0.6, 3)]
    out = PoolRanking(keys=["perplexity", "acc"], descending=[False, True]).run(
        env(tmp_path, "rank"), results)
    rows = out["ranking"]
    assert [x["pool"] for x in rows] == ["c", "a", "random", "b"]  # tie on ppl: acc decides
    a = rows[1]
    assert a["perplexity"] == pytest.approx(10.0) and a["perplexity_std"] == pytest.approx(0.2)
    assert a["n_seeds"] == 3 and a["rank"] == 2 and a["significant"] and a["beats_control"]
    assert rows[3]["beats_control"] is False and rows[3]["significant"]
    # same seeds on both sides: paired t over seeds (sandbox.verdict, as the run summary)
    assert a["test"] == "paired t" and a["verdict"] == "better" and rows[3]["verdict"] == "worse"
    assert a["vs_control"] == pytest.approx(-5.0)
    assert a["vs_control_ci_low"] < a["vs_control"] < a["vs_control_ci_high"]
    assert out["best"]["name"] == "c" and [p["name"] for p in out["pools"]] == ["c", "a",
                                                                              "random", "b"]
    assert out["metrics"]["best/perplexity"] == 10.0 and out["metrics"]["control/perplexity"] == 15.0
    md = (tmp_path / "rank" / "ranking.md").read_text()
    assert "| 1 | c | 10 |" in md and "| better |" in md and (tmp_path / "rank" / "ranking.png").exists()
    out = PoolRanking(keys="acc", descending=True, plot=False).run(env(tmp_path, "r2"), results)
    assert [x["pool"] for x in out["ranking"]] == ["b", "c", "random", "a"]
    with pytest.raises(ConfigError, match="no result for pool"):
        PoolRanking(keys="nope", plot=False).run(env(tmp_path, "r3"), results)


def test_recipe_export_sets_bounds_of_the_pool(tmp_path):
    import yaml

    recipe = {"path": None, "ops": {"clean_html_mapper": {}, "text_length_filter": {"min_len": 10},
                                    "alphanumeric_filter": {"min_ratio": 0.25},
                                    "words_num_filter": {"min_num": 5}}}
    pool = {"name": "text_length_filter.text_len.middle+alphanumeric_filter.alnum_ratio.high",
            "parts": ["text_length_filter.text_len.middle", "alphanumeric_filter.alnum_ratio.high"],
            "bounds": {"text_length_filter.text_len": [100.0, 500.0],
                       "alphanumeric_filter.alnum_ratio": [0.8, 0.95]}}
    out = RecipeExport().run(env(tmp_path, "exp"), pool, load_recipe(recipe))
    dj = yaml.safe_load(open(out["recipe_path"]))
    assert dj["process"] == [{"clean_html_mapper": {}},
                             {"text_length_filter": {"min_len": 100.0, "max_len": 500.0}},
                             {"alphanumeric_filter": {"min_ratio": 0.8}}]  # high: open above
    from sandbox.recipe import load_dj_file

    assert [s.name for s in load_dj_file(out["recipe_path"]).ops][1] == "text_length_filter"


def test_conversions_round_trip_and_coco(tmp_path, pools):
    js = ToJsonl().run(env(tmp_path, "tj"), [pools["a.x.high"]])["pools"][0]
    lines = [json.loads(x) for x in open(js["dataset"])]
    assert [x["text"] for x in lines] == ["t0", "t1", "t2", "t3"] and ROW not in lines[0]
    back = FromJsonl().run(env(tmp_path, "fj"), [js])["pools"][0]
    assert texts(back["dataset"]) == ["t0", "t1", "t2", "t3"]
    mm = tmp_path / "mm.parquet"
    pq.write_table(pa.table({"text": ["<__dj__image> a cat <|__dj__eoc|>", "two dogs"],
                             "images": [["c.jpg"], ["d1.jpg", "d2.jpg"]]}), mm)
    f = ToCocoCaption().run(env(tmp_path, "coco"), [{"name": "mm", "dataset": str(mm)}])["files"][0]
    coco = json.load(open(f))
    assert [i["file_name"] for i in coco["images"]] == ["c.jpg", "d1.jpg", "d2.jpg"]
    assert [a["caption"] for a in coco["annotations"]] == ["a cat", "two dogs", "two dogs"]
    assert [a["image_id"] for a in coco["annotations"]] == [0, 1, 2]


def test_long_pool_names_stay_apart_as_file_names():
    from sandbox.utils import safe_name

    stem = "+".join(f"special_characters_filter.special_char_ratio.part{i}" for i in range(4))
    names = [f"{stem}+a#s1", f"{stem}+a#s2", f"{stem}+b#s1"]
    files = [safe_name(n) for n in names]
    assert len(set(files)) == 3 and all(len(f) == 150 for f in files)
    assert files[0].startswith(stem[:133]) and safe_name(names[0]) == files[0]  # stable
    assert safe_name("random#s1") == "random#s1" and safe_name("a b/c") == "a_b_c"
