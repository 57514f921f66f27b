"""SIGKILL a small run in the middle of each step and right after it, resume, and check that
finished steps are not redone, that nothing is left half-written, and that every step's record
and output tables (and so the final metrics) equal an uninterrupted run's.

Each case starts from the uninterrupted run's records of the steps before the one under test (as
a run killed there would have left them), so a case costs two short runs, not two experiments."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import TINY_TRAINER, write_eval_files, write_quality_reference

pytestmark = pytest.mark.slow
STEPS = ["load", "probe", "refine", "process", "train", "evaluate_data", "evaluate_model"]
SMALL = ["data_pool.num_docs=600", *TINY_TRAINER, "progress=false", "tracking=none"]
MID_STEP_DELAY = 0.3  # seconds after `<step> running` before the kill


def sandbox(run_dir: Path, settings: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "sandbox", *settings, *extra, f"hydra.run.dir={run_dir}"]


def run_to_end(args: list[str], cwd: Path) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def kill_after(args: list[str], cwd: Path, marker: str, delay: float) -> str:
    """Start the run, wait for ``marker`` in its output, wait ``delay`` s, SIGKILL its group."""
    p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                         start_new_session=True)
    seen = []
    deadline = time.time() + 300
    for line in p.stdout:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            break
        assert time.time() < deadline, "marker never appeared"
    else:
        pytest.fail(f"the run ended before `{marker}`:\n" + "".join(seen)[-3000:])
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


def records(run_dir: Path) -> dict:
    f = run_dir / "context.json"
    return json.loads(f.read_text())["steps"] if f.exists() else {}


def comparable(record: dict, run_dir: Path) -> dict:
    """A step's record without timings, its paths relative to its run dir."""
    outputs = json.loads(json.dumps(record["outputs"]).replace(str(run_dir), "RUN"))
    outputs["metrics"] = {k: v for k, v in (outputs.get("metrics") or {}).items()
                          if "seconds" not in k and "per_s" not in k}
    return {"identity": record["identity"], "outputs": outputs}


def assert_nothing_half_written(run_dir: Path) -> None:
    """Every data file under a final name (not a hidden temporary) reads back whole."""
    for f in run_dir.rglob("*"):
        if not f.is_file() or any(part.startswith(".") for part in f.relative_to(run_dir).parts):
            continue
        if f.suffix == ".parquet":
            pq.read_table(f)
        elif f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".jsonl":
            for line in f.read_text().splitlines():
                json.loads(line)
        elif f.suffix == ".yaml":
            yaml.safe_load(f.read_text())


def assert_same_tables(record: dict, reference: dict) -> None:
    """The step's Parquet outputs hold the same rows as the uninterrupted run's."""
    for key, path in reference["outputs"].items():
        if isinstance(path, str) and path.endswith(".parquet"):
            assert pq.read_table(record["outputs"][key]).equals(pq.read_table(path)), key


def forget_computed_stats(cache: Path) -> None:
    """Empty the stats cache, so that probe and process compute (and a kill lands in the work)
    instead of reading the uninterrupted run's results."""
    shutil.rmtree(cache / "stats", ignore_errors=True)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("eval")
    return SMALL + write_eval_files(folder) + write_quality_reference(folder)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, settings, session_cache) -> tuple[Path, dict]:
    """The uninterrupted run: its run dir and its step records."""
    root = tmp_path_factory.mktemp("reference")
    run_to_end(sandbox(root / "run", settings), root)
    steps = records(root / "run")
    assert list(steps) == STEPS
    stats = session_cache / "stats"
    assert any(stats.iterdir()), f"no stats cached in {stats}: see forget_computed_stats"
    return root / "run", steps


def start_after(reference: tuple[Path, dict], step: str, run_dir: Path) -> dict:
    """A run dir whose context holds the uninterrupted run's records of the steps before
    ``step`` (their files stay in the reference run dir, where the records point)."""
    ref_dir, ref_steps = reference
    earlier = {name: rec for name, rec in ref_steps.items()
               if STEPS.index(name) < STEPS.index(step)}
    context = json.loads((ref_dir / "context.json").read_text())
    run_dir.mkdir(parents=True)
    (run_dir / "context.json").write_text(json.dumps(dict(context, steps=earlier)))
    return earlier


@pytest.mark.parametrize("step", STEPS)
def test_killed_in_and_after_a_step_resumes_to_the_same_records(step, reference, settings,
                                                                 tmp_path, session_cache):
    ref_dir, ref_steps = reference
    run_dir = tmp_path / "run"
    earlier = start_after(reference, step, run_dir)
    forget_computed_stats(session_cache)
    resume = sandbox(run_dir, settings, "resume=true")

    # killed in the middle of the step (a quick one may be done by then: then it is recorded)
    out = kill_after(resume, tmp_path, f"{step} running", MID_STEP_DELAY)
    after_kill = records(run_dir)
    assert list(after_kill) == STEPS[:len(after_kill)] and set(earlier) <= set(after_kill)
    for name in earlier:  # finished steps were skipped, not redone
        assert after_kill[name] == earlier[name], name
        assert f"{name} skipped" in " ".join(out.split()), out
    assert_nothing_half_written(run_dir)

    # resumed, and killed as soon as the step is done or skipped (the last one: run to the end);
    # a quick step may have been followed by more steps done before the kill: then as soon as
    # the last of them is skipped
    until = STEPS[max(STEPS.index(step), len(after_kill) - 1)]
    if until == STEPS[-1]:
        out = run_to_end(resume, tmp_path)
    else:
        out = kill_after(resume, tmp_path,
                         f"{until} {'skipped' if until in after_kill else 'done'}", 0.0)
    final = records(run_dir)
    assert list(final) == STEPS[:len(final)] and step in final
    for name in after_kill:
        assert final[name] == after_kill[name], name
        assert f"{name} skipped" in " ".join(out.split()), out
    assert_nothing_half_written(run_dir)
    assert comparable(final[step], run_dir) == comparable(ref_steps[step], ref_dir)
    assert_same_tables(final[step], ref_steps[step])
