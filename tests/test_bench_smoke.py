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


def bench(tmp_path: Path, *args: str) -> dict[str, tuple[float, str | None]]:
    """Run one benchmark; its figures as ``{name: (value, unit)}``."""
    env = dict(os.environ, BENCH_WORK=str(tmp_path / "work"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *args],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    figures = {}
    for line in out.stdout.splitlines():
        m = FIGURE.fullmatch(line)
        assert m, f"not a `name number [unit]` line: {line!r}"
        figures[m.group(1)] = (float(m.group(2)), m.group(3))
    return figures


@pytest.mark.slow
def test_throughput_probe_refilter_rss_ours(tmp_path):
    f = bench(tmp_path, "throughput", "--docs", "400", "--repeats", "1", "--no-dj")
    assert len(f) == 4 and all(re.fullmatch(r"process_(A|B|B_exact_dedup_only)_ours_samples_per_"
                                            r"(cpu_)?s", name) for name in f), f
    f = bench(tmp_path, "probe", "--docs", "400", "--repeats", "1", "--no-dj")
    assert set(f) == {"probe_A_ours_samples_per_s", "probe_A_ours_samples_per_cpu_s"}
    f = bench(tmp_path, "refilter", "--docs", "400", "--repeats", "1")
    assert set(f) == {"refilter_400_docs_seconds"} and f["refilter_400_docs_seconds"][1] == "s"
    assert f["refilter_400_docs_seconds"][0] < 30
    f = bench(tmp_path, "rss", "--docs", "400")
    assert set(f) == {"rss_400_docs_peak_GiB", "rss_400_docs_peak_pss_GiB",
                      "rss_400_docs_samples_per_s"}
    assert 0 < f["rss_400_docs_peak_pss_GiB"][0] <= f["rss_400_docs_peak_GiB"][0] < 4


@pytest.mark.slow
def test_startup_and_train(tmp_path):
    f = bench(tmp_path, "startup", "--repeats", "1")
    assert set(f) == {"startup_help_seconds"} and f["startup_help_seconds"][1] == "s"
    f = bench(tmp_path, "train", "--repeats", "1", "--docs", "300", "--train-budget", "8192")
    assert set(f) == {"train_trainer_tokens_per_s", "train_bare_loop_tokens_per_s",
                      "train_trainer_vs_bare_ratio"}
    trainer, bare = f["train_trainer_tokens_per_s"][0], f["train_bare_loop_tokens_per_s"][0]
    assert f["train_trainer_vs_bare_ratio"] == (pytest.approx(trainer / bare, rel=1e-3), "x")
