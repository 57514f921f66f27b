"""Our side of every benchmark on a tiny input, so bench/run.py cannot silently rot (the
Data-Juicer side is skipped: it needs bench/dj_env.sh's 2 GB install)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path, *args) -> dict[str, str]:
    env = dict(os.environ, BENCH_WORK=str(tmp_path / "work"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), *args],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    figures = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.strip())
    assert figures, out.stderr
    return figures


@pytest.mark.slow
def test_throughput_probe_refilter_rss_ours(tmp_path):
    f = bench(tmp_path, "throughput", "--docs", "400", "--repeats", "1", "--no-dj")
    assert float(f["process_A_ours_samples_per_s"]) > 0
    assert any(k.startswith("process_B") for k in f)
    f = bench(tmp_path, "probe", "--docs", "400", "--repeats", "1", "--no-dj")
    assert float(f["probe_A_ours_samples_per_s"]) > 0
    f = bench(tmp_path, "refilter", "--docs", "400", "--repeats", "1")
    assert float(f["refilter_400_docs_seconds"].split()[0]) < 30
    f = bench(tmp_path, "rss", "--docs", "400")
    assert 0 < float(f["rss_400_docs_peak_GiB"].split()[0]) < 4


@pytest.mark.slow
def test_startup_and_train(tmp_path):
    f = bench(tmp_path, "startup", "--repeats", "1")
    assert float(f["startup_help_seconds"].split()[0]) > 0
    f = bench(tmp_path, "train", "--repeats", "1", "--docs", "300", "--train-budget", "8192")
    assert float(f["train_trainer_vs_bare_ratio"].split()[0]) > 0
