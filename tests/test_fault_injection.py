"""Kill the default experiment with SIGKILL at several points, resume, and check that the run
completes, that finished steps are not redone, and that the metrics equal an uninterrupted run's."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
COMMON = ["trainer.token_budget=131072", "progress=false", "tracking=none"]


def cmd(run_dir: Path, cache: Path, extra=()):
    return [sys.executable, "-m", "sandbox", *COMMON, *extra, f"hydra.run.dir={run_dir}",
            f"cache_dir={cache}"]


def run_to_end(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def kill_after(args, cwd, marker: str, delay: float) -> str:
    """Start the run, wait for ``marker`` on its output, wait ``delay`` s, SIGKILL its group."""
    p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)
    seen = []
    deadline = time.time() + 300
    for line in p.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            break
        assert time.time() < deadline, "marker never appeared"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def steps(run_dir: Path) -> dict:
    f = run_dir / "context.json"
    return json.loads(f.read_text())["steps"] if f.exists() else {}


def final_metrics(run_dir: Path) -> dict:
    s = steps(run_dir)
    out = {}
    for name in ("evaluate_data", "evaluate_model", "train"):
        out.update({k: v for k, v in s[name]["outputs"]["metrics"].items()
                    if "seconds" not in k and "per_s" not in k})
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    run_to_end(cmd(root / "run", root / "cache"), root)
    return final_metrics(root / "run")


@pytest.mark.parametrize("marker,delay", [
    ("probe running", 0.2),            # during probe (stats computed by worker processes, ~1 s)
    ("refine done", 0.0),              # between steps
    ("train running", 2.5),            # during training
])
def test_killed_run_resumes_to_identical_metrics(tmp_path, reference, marker, delay):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    kill_after(cmd(run_dir, cache), tmp_path, marker, delay)
    before = steps(run_dir)
    killed_in = marker.split()[0]
    assert killed_in not in before or marker.endswith("done"), "the step under the kill finished"
    # nothing half-written under a final name
    assert not list(run_dir.rglob("*.tmp*")) or all(".tmp" in p.name for p in run_dir.rglob("*.tmp*"))
    out = run_to_end(cmd(run_dir, cache, ["resume=true"]), tmp_path)
    after = steps(run_dir)
    for name, rec in before.items():  # finished steps were skipped, not redone
        assert after[name] == rec, name
        assert f"{name} skipped" in " ".join(out.split()), out
    assert list(after) == ["load", "probe", "refine", "process", "train", "evaluate_data",
                           "evaluate_model"]
    assert final_metrics(run_dir) == reference


def test_killed_process_pipeline_resumes_to_the_same_output(tmp_path):
    import pyarrow.parquet as pq

    ref = tmp_path / "ref"
    run_to_end(cmd(ref / "run", ref / "cache", ["pipeline=process"]), tmp_path)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    # the step takes ~0.3 s on the default pool: kill as soon as it starts
    kill_after(cmd(run_dir, cache, ["pipeline=process"]), tmp_path, "process running", 0.0)
    assert "process" not in steps(run_dir)
    assert not (run_dir / "process" / "processed.parquet").exists()  # never half-written
    run_to_end(cmd(run_dir, cache, ["pipeline=process", "resume=true"]), tmp_path)
    got = pq.read_table(run_dir / "process" / "processed.parquet")
    want = pq.read_table(ref / "run" / "process" / "processed.parquet")
    assert got.equals(want)
