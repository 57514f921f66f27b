"""Torch threads chosen from the CPUs other processes leave free (with a console warning when
the machine is oversubscribed), and the run's sandbox.log receiving the console and warnings."""
from __future__ import annotations

import logging
import warnings

import pytest

from sandbox.errors import ConfigError
from sandbox.threads import busy_cpus, choose_threads, parse_threads, usable_cpus


# ============================================================================ threads
def test_auto_takes_the_cpus_other_processes_leave_free(monkeypatch):
    monkeypatch.setattr("sandbox.threads.usable_cpus", lambda: 4)
    idle = choose_threads("auto", measure=lambda: 0.1)
    assert (idle.threads, idle.oversubscribed, idle.warning("k")) == (4, False, None)
    half = choose_threads("auto", measure=lambda: 2.2)
    assert (half.threads, half.oversubscribed) == (2, False)
    busy = choose_threads("auto", measure=lambda: 3.9)
    assert busy.threads == 1 and busy.oversubscribed
    assert "k=auto: 1 thread(s)" in busy.warning("k")
    unknown = choose_threads("auto", measure=lambda: None)  # no /proc/stat: every CPU
    assert (unknown.threads, unknown.warning("k")) == (4, None)


def test_a_fixed_count_is_kept_but_reported_when_it_oversubscribes(monkeypatch):
    monkeypatch.setattr("sandbox.threads.usable_cpus", lambda: 2)
    fixed = choose_threads(2, measure=lambda: 2.0)
    assert fixed.threads == 2 and fixed.oversubscribed
    assert "trainer.num_threads=2 thread(s) will compete" in fixed.warning("trainer.num_threads")
    assert choose_threads(2, measure=lambda: 0.0).warning("n") is None
    assert "may use 2 CPU(s)" in choose_threads(8, measure=lambda: 0.0).warning("n")


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, None])
def test_bad_thread_counts_are_config_errors(value):
    with pytest.raises(ConfigError, match="give a number of threads"):
        parse_threads(value, "trainer.num_threads")
    assert parse_threads("AUTO") == "auto" and parse_threads("3") == 3


def test_the_measurement_sees_a_busy_process():
    import multiprocessing as mp
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs Linux's /proc/stat and CPU affinity")
    assert 1 <= usable_cpus() <= os.cpu_count()
    ctx = mp.get_context("spawn")
    spinner = ctx.Process(target=_spin, daemon=True)
    spinner.start()
    try:
        busy = busy_cpus(0.5)
    finally:
        spinner.kill()
        spinner.join()
    assert busy is not None and busy >= 0.6  # the spinning process, whatever else runs


def _spin():
    while True:
        pass


def test_the_trainer_warns_on_the_console_when_oversubscribed(tmp_path, monkeypatch, capsys):
    from tests.test_train import TINY, make_corpus, make_env, write_parquet

    from sandbox.steps.model.train import CausalLMTrainer

    monkeypatch.setattr("sandbox.threads.busy_cpus", lambda: 8.0)
    pool = write_parquet(tmp_path / "pool.parquet", make_corpus(60))
    CausalLMTrainer(**{**TINY, "token_budget": 512, "num_threads": "auto"}).run(
        make_env(tmp_path / "train"), dataset=pool)
    out = capsys.readouterr().out
    assert "the machine is oversubscribed" in out and "trainer.num_threads=auto" in out
    with pytest.raises(ConfigError):
        CausalLMTrainer(num_threads="many")


# ============================================================================ sandbox.log
def test_the_run_log_gets_console_lines_tables_and_warnings(tmp_path, capsys, monkeypatch):
    from rich.table import Table

    from sandbox.console import console, step_line
    from sandbox.run_log import RunLogCallback

    root = logging.getLogger()
    file_handler = logging.FileHandler(tmp_path / "sandbox.log")  # what Hydra's job_logging makes
    root.addHandler(file_handler)
    shown = []  # what prints warnings to the terminal
    monkeypatch.setattr(warnings, "showwarning", lambda message, *a, **k: shown.append(message))
    callback = RunLogCallback()
    try:
        console.print("before the job")  # not a job's line: not in the log
        callback.on_job_start(config=None)
        console.print(step_line("probe", "running Probe"))
        table = Table(title="metrics")
        table.add_column("metric")
        table.add_row("perplexity")
        console.print(table)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a threshold looks odd")
        callback.on_job_end(config=None, job_return=None)
        console.print("after the job")
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
    log = (tmp_path / "sandbox.log").read_text()
    assert "probe running Probe" in log and "[bold" not in log  # plain text, no markup
    assert "perplexity" in log and "metrics" in log
    assert "UserWarning: a threshold looks odd" in log
    assert "before the job" not in log and "after the job" not in log
    out = capsys.readouterr()
    assert out.out.count("probe running Probe") == 1  # the console did not print it twice
    assert [str(m) for m in shown] == ["a threshold looks odd"]  # still shown as before


def test_a_real_run_writes_its_step_lines_to_sandbox_log(tmp_path, docs_file):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run_dir = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "-m", "sandbox", "pipeline=probe", "data_pool=jsonl",
         f"data_pool.path={docs_file}", "tracking=none", "progress=false", "num_proc=1",
         f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = (run_dir / "sandbox.log").read_text()
    assert "probe running" in log and "done in" in log, log
