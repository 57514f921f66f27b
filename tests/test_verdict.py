"""Intervals, tests and verdicts (``sandbox.verdict``) on constructed samples with known answers,
the closing table's wording, and ``seeds=3`` end to end."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from sandbox.verdict import (Estimate, bootstrap_interval, compare, decision_accuracy, flat,
                             from_flat, is_companion, over_seeds, t_interval)


def test_t_interval_matches_textbook_values():
    m, s, lo, hi = t_interval([10.0, 12.0, 14.0])
    assert (m, s) == (12.0, 2.0)
    half = stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)  # 4.303 * 1.1547
    assert lo == pytest.approx(12 - half) and hi == pytest.approx(12 + half)
    assert math.isnan(t_interval([5.0])[2])


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        _, _, lo, hi = t_interval(rng.normal(3.0, 2.0, size=4))
        covered += lo <= 3.0 <= hi
    assert 0.93 < covered / 2000 < 0.97


def test_bootstrap_interval_of_a_ratio_covers_it_and_shrinks_with_more_documents():
    rng = np.random.default_rng(1)
    def width(n):
        nll = rng.gamma(5.0, 20.0, size=n)
        words = rng.integers(20, 200, size=n).astype(float)
        lo, hi = bootstrap_interval(lambda a, b: math.exp(a.sum() / b.sum()), (nll, words))
        point = math.exp(nll.sum() / words.sum())
        assert lo < point < hi
        return hi - lo
    assert width(1600) < width(100) / 2.5  # ~ 1/sqrt(n): 4x narrower


def test_flat_round_trip_and_companions():
    est = over_seeds({42: 10.0, 43: 12.0, 44: 14.0})
    metrics = {"n_seeds": 3.0, **flat("perplexity", est)}
    assert metrics["perplexity.seed43"] == 12.0
    back = from_flat(metrics, "perplexity")
    assert (back.mean, back.std, back.n, back.method) == (12.0, 2.0, 3, "seeds")
    assert back.per_seed == {42: 10.0, 43: 12.0, 44: 14.0}
    assert all(is_companion(k) for k in metrics if k != "perplexity")
    single = from_flat({"perplexity": 5.0, "perplexity_ci_low": 4.0, "perplexity_ci_high": 6.5},
                       "perplexity")
    assert single.method == "bootstrap" and single.n == 1 and single.text() == "5 ± 1.2"
    assert from_flat({"x": 1.0}, "x").method == "none"


def test_paired_comparison_when_both_sides_ran_the_same_seeds():
    # a constant improvement of 1 across seeds that vary a lot: paired sees it, Welch does not
    base = over_seeds({1: 10.0, 2: 20.0, 3: 30.0})
    ours = over_seeds({1: 9.0, 2: 19.1, 3: 28.9})
    c = compare(ours, base, higher_is_better=False)
    assert c.test == "paired t" and c.verdict == "better" and c.p < 0.05
    d = np.array([-1.0, -0.9, -1.1])
    assert c.p == pytest.approx(stats.ttest_rel([9, 19.1, 28.9], [10, 20, 30]).pvalue)
    assert c.low < d.mean() < c.high < 0
    unpaired = compare(Estimate(ours.mean, ours.std, 3), Estimate(base.mean, base.std, 3), False)
    assert unpaired.test == "Welch t" and unpaired.verdict == "no detectable difference"


def test_welch_comparison_matches_scipy_and_words_direction():
    x, y = [5.1, 5.3, 4.9, 5.2], [4.0, 4.2, 3.9]
    a = Estimate(np.mean(x), np.std(x, ddof=1), 4)
    b = Estimate(np.mean(y), np.std(y, ddof=1), 3)
    c = compare(a, b, higher_is_better=True)
    assert c.p == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    assert c.verdict == "better" and c.low > 0
    assert compare(a, b, higher_is_better=False).verdict == "worse"
    assert compare(a, b, higher_is_better=None).verdict == "different"


def test_single_seed_bootstrap_comparison_and_untested_cases():
    a = Estimate(10.0, low=9.0, high=11.0, method="bootstrap")
    b = Estimate(10.5, low=9.5, high=11.5, method="bootstrap")
    c = compare(a, b, higher_is_better=False)
    assert c.test == "bootstrap z" and c.verdict == "no detectable difference" and c.p > 0.4
    far = compare(Estimate(5.0, low=4.9, high=5.1, method="bootstrap"), b, False)
    assert far.verdict == "better"
    none = compare(Estimate(1.0), Estimate(2.0), False)
    assert not none.tested and none.verdict == "not tested"


def test_zero_variance_sides_do_not_divide_by_zero():
    same = compare(over_seeds({1: 3.0, 2: 3.0}), over_seeds({1: 3.0, 2: 3.0}), True)
    assert same.p == 1.0 and same.verdict == "no detectable difference"
    apart = compare(over_seeds({1: 4.0, 2: 4.0}), over_seeds({1: 3.0, 2: 3.0}), True)
    assert apart.p == 0.0 and apart.verdict == "better"


def test_decision_accuracy_counts_pairs_ordered_alike():
    small = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    assert decision_accuracy(small, {k: v * 10 for k, v in small.items()})["decision_accuracy"] == 1
    flipped = dict(small, d=0.5)  # d moves from best to worst: 3 of 6 pairs flip
    out = decision_accuracy(small, flipped)
    assert out["decision_pairs"] == 6 and out["decision_accuracy"] == 0.5
    assert out["decision_accuracy_ci_low"] < 0.5 < out["decision_accuracy_ci_high"]


def test_summary_table_words_better_worse_and_no_difference(capsys):
    from sandbox.console import print_summary

    def seeded(name, values):
        return flat(name, over_seeds(dict(zip((42, 43, 44), values))))

    run = {"n_seeds": 3.0, **seeded("perplexity", [100, 101, 99]),
           **seeded("downstream_accuracy", [0.60, 0.62, 0.61]),
           **seeded("downstream_f1", [0.5, 0.7, 0.6]), "retention": 0.8}
    base = {"n_seeds": 3.0, **seeded("perplexity", [120, 122, 119]),
            **seeded("downstream_accuracy", [0.65, 0.66, 0.655]),
            **seeded("downstream_f1", [0.55, 0.65, 0.62]), "retention": 1.0}
    print_summary(run, base, run_dir="x")
    out = capsys.readouterr().out
    lines = {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("│ ")}
    assert "better" in lines["perplexity"] and "worse" in lines["downstream_accuracy"]
    assert "no detectable difference" in lines["downstream_f1"]
    assert "perplexity.seed42" not in out and "95% t interval over 3 seeds" in out
    assert "(-20.0%)" in lines["retention"] and "better" not in lines["retention"]


def test_single_seed_table_says_the_interval_is_not_seed_variance(capsys):
    from sandbox.console import print_summary

    run = {"perplexity": 10.0, "perplexity_ci_low": 9.0, "perplexity_ci_high": 11.0}
    base = {"perplexity": 12.0, "perplexity_ci_low": 11.0, "perplexity_ci_high": 13.0}
    print_summary(run, base, run_dir="x")
    out = capsys.readouterr().out
    assert "bootstrap z" in out and "does not cover seed variance" in out
    assert "seeds=3" in out


@pytest.mark.slow
def test_seeds_3_end_to_end_trains_three_models_and_aggregates(docs_file, tmp_path,
                                                              eval_files):
    from sandbox.runner import run
    from tests.conftest import TINY_TRAINER, compose, write_quality_reference

    # an absolute store URI: MLflow caches stores by URI, so a relative one would follow this
    # process's first working directory into later tests
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    over = ["data_pool=jsonl", f"data_pool.path={docs_file}", "progress=false",
            "tracking=mlflow", f"tracking.uri={uri}", *write_quality_reference(tmp_path),
            *TINY_TRAINER, *eval_files,
            "seeds=3", "evaluator.bootstrap=200"]
    metrics = run(compose(over), run_dir=tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    assert {"train#s42", "train#s43", "train#s44", "evaluate_model#s44"} <= set(ctx)
    assert "evaluate_data#s42" not in ctx and "probe#s42" not in ctx  # data steps run once
    dirs = {ctx[f"train#s{s}"]["outputs"]["model_dir"] for s in (42, 43, 44)}
    assert len(dirs) == 3 and all(f"seed{s}" in d for d, s in zip(sorted(dirs), (42, 43, 44)))
    per_seed = [ctx[f"evaluate_model#s{s}"]["outputs"]["metrics"]["perplexity"]
                for s in (42, 43, 44)]
    assert len(set(per_seed)) == 3  # different init and data order give different models
    assert metrics["n_seeds"] == 3
    assert metrics["perplexity"] == pytest.approx(np.mean(per_seed))
    assert metrics["perplexity_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert metrics["perplexity_ci_low"] < metrics["perplexity"] < metrics["perplexity_ci_high"]
    assert metrics["perplexity.seed43"] == per_seed[1]
    # MLflow: the aggregate on the run, one nested run per seed with that seed's metrics
    from mlflow.tracking import MlflowClient

    from sandbox.tracking.names import tracked_name

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sandbox").experiment_id
    runs = client.search_runs([exp])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    ppl = tracked_name("perplexity")  # grouped in the store (eval/perplexity)
    assert parent.data.metrics[ppl] == pytest.approx(metrics["perplexity"])
    assert parent.data.metrics[tracked_name("perplexity.seed43")] == per_seed[1]
    kids = {r.data.tags["sandbox.seed"]: r for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(kids) == ["42", "43", "44"]
    assert kids["43"].data.metrics[ppl] == per_seed[1]
    # resume: nothing re-runs, the same aggregate comes back
    again = run(compose(over + ["resume=true"]), run_dir=tmp_path / "run")
    assert again["perplexity"] == metrics["perplexity"]


def test_seeds_must_be_a_count_or_distinct_integers():
    from omegaconf import OmegaConf

    from sandbox.errors import ConfigError
    from sandbox.runner.executor import seed_list

    assert seed_list(OmegaConf.create({"seed": 7, "seeds": 3})) == [7, 8, 9]
    assert seed_list(OmegaConf.create({"seed": 7, "seeds": [1, 5]})) == [1, 5]
    for bad in (0, [1, 1], "x", [1.5]):
        with pytest.raises(ConfigError, match="seeds="):
            seed_list(OmegaConf.create({"seed": 7, "seeds": bad}))


def test_without_a_baseline_the_summary_names_the_command_that_makes_one(capsys):
    from sandbox.console import print_summary

    print_summary({"retention": 0.8}, None, run_dir="x",
                  baseline_command="python -m sandbox experiment=clip recipe=none refine=none")
    out = " ".join(capsys.readouterr().out.split())
    assert "run `python -m sandbox experiment=clip recipe=none refine=none` to make one" in out


def _rows(out: str) -> dict[str, str]:
    return {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("│ ")}


def test_a_metric_that_ranks_recipes_at_chance_gets_no_verdict(capsys):
    """A metric constructed to be pure noise across a ladder: its decision accuracy's interval
    reaches chance, so the closing table prints the reason instead of a verdict, however
    "significant" its difference from the baseline; a metric with signal keeps its verdict."""
    from sandbox.console import print_summary

    rng = np.random.default_rng(0)
    large = {f"r{i}": float(i) for i in range(12)}
    noise = decision_accuracy({k: rng.normal() for k in large}, large, n_boot=500)
    signal = {"downstream_accuracy": {"decision_accuracy": noise["decision_accuracy"],
                                      "low": noise["decision_accuracy_ci_low"],
                                      "high": noise["decision_accuracy_ci_high"]},
              "perplexity": {"decision_accuracy": 0.96, "low": 0.9, "high": 1.0}}
    assert signal["downstream_accuracy"]["low"] <= 0.5

    def seeded(name, values):
        return flat(name, over_seeds(dict(zip((42, 43, 44), values))))

    run = {"n_seeds": 3.0, **seeded("perplexity", [100, 101, 99]),
           **seeded("downstream_accuracy", [0.80, 0.81, 0.805])}
    base = {"n_seeds": 3.0, **seeded("perplexity", [120, 122, 119]),
            **seeded("downstream_accuracy", [0.60, 0.61, 0.605])}
    print_summary(run, base, run_dir="x", primary="perplexity", signal=signal)
    out = capsys.readouterr().out
    rows = _rows(out)
    assert "no verdict" in rows["downstream_accuracy"] and "better" not in rows["downstream_accuracy"]
    assert "better" in rows["perplexity"]
    text = " ".join(out.split())
    assert "does not rank recipes: decision accuracy" in text


def test_primary_metric_first_other_verdicts_holm_corrected(capsys):
    from sandbox.console import print_summary

    def seeded(name, values):
        return flat(name, over_seeds(dict(zip((42, 43, 44), values))))

    run = {"n_seeds": 3.0, **seeded("bits_per_byte", [1.00, 1.01, 0.99]),
           **seeded("choice_logprob", [-1.00, -0.95, -1.02]),
           **seeded("perplexity", [100, 101, 99])}
    base = {"n_seeds": 3.0, **seeded("bits_per_byte", [1.10, 1.12, 1.09]),
            **seeded("choice_logprob", [-1.05, -0.97, -1.05]),
            **seeded("perplexity", [110, 112, 109])}
    print_summary(run, base, run_dir="x", primary="bits_per_byte")
    out = capsys.readouterr().out
    body = [ln for ln in out.splitlines() if ln.startswith("│ ")]
    assert body[0].split()[1] == "bits_per_byte" and body[0].split()[2] == "*"
    text = " ".join(out.split())
    assert "Holm-corrected for 2 metrics" in text
    assert "Verdict (bits_per_byte *, the primary metric, p < 0.05): better" in text


def test_summary_pairs_documents_and_states_the_detectable_difference(capsys):
    """With per-document scores on both sides the comparison is paired over documents; the
    closing lines state the smallest difference the run could tell from noise."""
    from sandbox.console import print_summary

    rng = np.random.default_rng(5)
    hard = rng.normal(3.0, 1.0, 500)
    nbytes = rng.integers(100, 300, 500).astype(float)
    ours = {42: (hard * nbytes * 0.69 * 0.98, nbytes)}
    theirs = {42: (hard * nbytes * 0.69, nbytes)}
    bpb = lambda nll, b: nll.sum() / b.sum()  # noqa: E731
    run = {"bits_per_byte": bpb(*ours[42]), "bits_per_byte_ci_low": 0.0,
           "bits_per_byte_ci_high": 9.0}
    base = {"bits_per_byte": bpb(*theirs[42]), "bits_per_byte_ci_low": 0.0,
            "bits_per_byte_ci_high": 9.0}
    print_summary(run, base, run_dir="x", primary="bits_per_byte",
                  paired={"bits_per_byte": (ours, theirs, bpb)})
    out = " ".join(capsys.readouterr().out.split())
    assert "paired bootstrap" in out and "better" in out  # the intervals alone could not tell
    assert "With one seed, a bits_per_byte difference below" in out and "seeds=3" in out
