"""Our side of every benchmark on a tiny input, so that bench/run.py cannot silently rot: each
runs and prints its figures, and only them, as ``name number [unit]`` lines (the Data-Juicer
side is skipped: it needs bench/dj_env.sh's 2 GB install)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"(\S+) (-?[0-9.]+(?:e[+-]?\d+)?)(?: (\S+))?")


def bench(work: Path, *args: str) -> dict[str, tuple[float, str | None]]:
    """Run ``bench/run.py ARGS`` with its inputs and run dirs under ``work``; its figures as
    ``{name: (value, unit)}``, after checking that every line of its output is one."""
    env = dict(os.environ, BENCH_WORK=str(work))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *args],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    figures = {}
    for line in out.stdout.splitlines():
        m = FIGURE.fullmatch(line)
        assert m, f"not a `name number [unit]` line: {line!r}"
        figures[m.group(1)] = (float(m.group(2)), m.group(3))
    return figures


@pytest.fixture(scope="module")
def figures(tmp_path_factory) -> dict[str, tuple[float, str | None]]:
    """Every benchmark in one ``bench/run.py all`` invocation (one input, one kernel warm-up),
    on 400 documents, one repeat, our side only."""
    return bench(tmp_path_factory.mktemp("bench") / "work", "all", "--docs", "400",
                 "--repeats", "1", "--no-dj", "--train-budget", "8192")


PROBE = {"probe_A_ours_samples_per_s", "probe_A_ours_samples_per_cpu_s"}
REFILTER = {"refilter_400_docs_seconds"}
RSS = {"rss_400_docs_peak_GiB", "rss_400_docs_peak_pss_GiB", "rss_400_docs_samples_per_s"}
STARTUP = {"startup_help_seconds"}
TRAIN = {"train_trainer_tokens_per_s", "train_bare_loop_tokens_per_s",
         "train_trainer_vs_bare_ratio"}


@pytest.mark.slow
def test_all_prints_each_benchmarks_figures_and_only_them(figures):
    throughput = {k for k in figures if k.startswith("process_")}
    assert set(figures) - throughput == PROBE | REFILTER | RSS | STARTUP | TRAIN, figures


@pytest.mark.slow
def test_throughput_probe_refilter_rss_ours(figures):
    f = {k: v for k, v in figures.items() if k.startswith("process_")}
    # per recipe: samples/s and samples/CPU-s uncached, samples/s with the stats cached
    assert len(f) == 6 and all(re.fullmatch(r"process_(A|B|B_exact_dedup_only)_ours_"
                                            r"(samples_per_(cpu_)?s|cached_samples_per_s)", name)
                               for name in f), f
    assert {"process_A_ours_cached_samples_per_s", "process_A_ours_samples_per_s"} <= set(f)
    assert PROBE <= set(figures)
    assert figures["refilter_400_docs_seconds"][1] == "s"
    assert figures["refilter_400_docs_seconds"][0] < 30
    assert RSS <= set(figures)
    assert 0 < figures["rss_400_docs_peak_pss_GiB"][0] <= figures["rss_400_docs_peak_GiB"][0] < 4


@pytest.mark.slow
def test_startup_and_train(figures):
    assert figures["startup_help_seconds"][1] == "s"
    assert TRAIN <= set(figures)
    trainer, bare = figures["train_trainer_tokens_per_s"][0], \
        figures["train_bare_loop_tokens_per_s"][0]
    assert figures["train_trainer_vs_bare_ratio"] == (pytest.approx(trainer / bare, rel=1e-3), "x")


@pytest.mark.slow
def test_search_bench_on_a_tiny_corpus(tmp_path):
    """bench/search.py --tiny: the three searches from one single-OP stage, and figures that
    agree with the compute ledger they are read from."""
    import json

    env = dict(os.environ, BENCH_WORK=str(tmp_path))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "search.py"), "--tiny"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    f = {}
    for line in out.stdout.splitlines():
        m = FIGURE.fullmatch(line)
        assert m, f"not a `name number [unit]` line: {line!r}"
        f[m.group(1)] = float(m.group(2))
    single = f["search_single_op_cpu_s"]
    ex = f["search_exhaustive_combine_cpu_s"]
    assert single > 0 and ex > 0
    for method in ("surrogate", "sequential"):
        su = f[f"search_{method}_combine_cpu_s"]
        assert su > 0
        assert f[f"search_{method}_fraction_of_exhaustive_cpu"] == pytest.approx(
            (single + su) / (single + ex), rel=1e-4)
        assert f[f"search_{method}_fraction_of_exhaustive_cpu_single_op_reused"] == \
            pytest.approx(su / ex, rel=1e-4)
        # beside the top 3 single pools and the control, exhaustive search trains every
        # intersection of the top 3 that is large enough, the others only their picks
        assert f[f"search_{method}_combine_trainings"] < f["search_exhaustive_combine_trainings"]
        assert f[f"search_{method}_same_pick"] in (0, 1)
        assert f[f"search_{method}_pick_within_noise"] >= f[f"search_{method}_same_pick"]
    # the sequential search's trainings, inside its step, are counted: one intersection at most
    assert 3 + 1 <= f["search_sequential_combine_trainings"] <= 3 + 1 + 1
    assert f["search_sequential_rounds"] <= 2
    # replayed on the exhaustive run's values, capped as the run was, it trains as many
    assert f["search_sequential_replay_additive_trained_combinations"] == \
        f["search_sequential_combine_trainings"] - 3 - 1
    assert f["search_sequential_replay_gbm_uncapped_trained_the_best"] in (0, 1)
    # the sub-problems' replay (the full problem alone at top 3): shares, and the variant that
    # explores with one seed spends no more than the one that trains every seed
    assert f["search_subproblems"] == 1
    for variant in ("every_seed", "explore1_confirm2"):
        assert f[f"search_subproblems_{variant}_additive_within_noise"] >= \
            f[f"search_subproblems_{variant}_additive_same_pick"]
    assert f["search_subproblems_explore1_confirm2_additive_trainings_fraction"] <= \
        f["search_subproblems_every_seed_additive_trainings_fraction"] <= 1
    summary = json.loads((tmp_path / "search" / "search.json").read_text())
    assert set(summary["best"]) == {"exhaustive", "surrogate", "sequential"}
    # the ledger: the single-OP stage ran once, and every search resumed it
    for method in ("exhaustive", "surrogate", "sequential"):
        steps = json.loads((tmp_path / "search" / method / "context.json").read_text())["steps"]
        assert not any(k.startswith("single_op.train[") and "reused_from" in r
                       for k, r in steps.items())
        log = (tmp_path / "search" / f"{method}.out").read_text()
        assert "single_op.probe skipped" in log or "probe skipped" in log
