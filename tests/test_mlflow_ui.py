"""The MLflow UI in a real browser: ``mlflow ui`` on a free loopback port over a store with two
tiny tracked runs (the baseline and a recipe), read by headless Chromium (``--dump-dom``, after
the page's requests have settled). The runs table must show both runs with their names and
datasets, and a run page the metrics in their sections. Skipped, saying why, where no Chromium
or Chrome is installed (Debian: ``apt-get install chromium``; ``.ci/run`` installs it)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sandbox.runner import run
from tests.conftest import (TINY_TRAINER, compose, make_docs, write_eval_files,
                            write_quality_reference)

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SERVER_START_S = 120  # `mlflow ui` takes ~10 s on an idle machine, several times that on a busy one
PAGE_TIMEOUT_S = 120
EXPECTED_METRICS = ("eval/perplexity", "eval/bits_per_byte", "data/retention",
                    "data/quality_score", "train/loss", "train/loss_final", "time/total_s")


@pytest.fixture(scope="module")
def browser() -> str:
    path = next((p for p in map(shutil.which, BROWSERS) if p), None)
    if path is None:
        pytest.skip("no Chromium or Chrome on PATH to open the MLflow UI in (Debian: "
                    "`apt-get install chromium`; CI installs it in .ci/run)")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two tiny tracked runs, the baseline and a recipe: ``(folder, uri, runs by label)``."""
    folder = tmp_path_factory.mktemp("mlflow_ui")
    docs = folder / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs()), encoding="utf-8")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    common = ["data_pool=jsonl", f"data_pool.path={docs}", "progress=false",
              f"tracking.uri={uri}", *TINY_TRAINER, *write_eval_files(folder),
              *write_quality_reference(folder)]
    for label, extra in (("baseline", ["recipe=none", "refine=none"]), ("recipe", ["refine.k=3"])):
        run(compose(common + extra, return_hydra_config=True), run_dir=folder / label)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sandbox")
    runs = {r.data.tags["sandbox.run_dir"].rsplit("/", 1)[-1]: r
            for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"baseline", "recipe"}
    return folder, uri, exp.experiment_id, runs


@pytest.fixture(scope="module")
def ui(browser, store):
    """The UI's address; the server is stopped (its whole process group) after the module."""
    folder, uri = store[0], store[1]
    port = free_port()
    log = open(folder / "mlflow_ui.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no background job workers (eight processes the UI's pages here never use)
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not answers(address + "/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`mlflow ui` did not answer on {address} within {SERVER_START_S} s: "
                            + (folder / "mlflow_ui.log").read_text()[-2000:])
            time.sleep(0.5)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class _Text(HTMLParser):
    """The text a page shows: one entry per text node, scripts and styles left out."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.lines.append(data.strip())


def page_text(browser: str, url: str, profile: Path, wanted: list[str]) -> list[str]:
    """The page's text once rendered; a second, longer look when a wanted text is missing (a
    busy machine can leave the first one short)."""
    lines: list[str] = []
    for budget_ms in (20_000, 60_000):
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1600,1000",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=PAGE_TIMEOUT_S).stdout
        parser = _Text()
        parser.feed(dom)
        lines = parser.lines
        if all(any(w in line for line in lines) for w in wanted):
            break
    return lines


def test_the_runs_table_shows_both_runs_with_their_names_datasets_and_sources(browser, store,
                                                                             ui, tmp_path):
    _, _, exp_id, runs = store
    base, recipe = runs["baseline"], runs["recipe"]
    labels = {f"{d.dataset.name} ({d.dataset.digest})" for r in (base, recipe)
              for d in r.inputs.dataset_inputs}
    # the same pool (one label), processed two ways (two labels)
    assert len(labels) == 3 and {label.split(" ")[0] for label in labels} == \
        {"docs.jsonl", "docs.jsonl/process"}
    names = [base.info.run_name, recipe.info.run_name]
    # the address a tracked run prints: the runs table, whatever the UI's GenAI switch says
    lines = page_text(browser, f"{ui}/#/experiments/{exp_id}/runs?workflowType=machine_learning",
                      tmp_path / "profile", names + sorted(labels))
    assert base.info.run_name.startswith("baseline · ")
    assert recipe.info.run_name.startswith("recipe=default · refine.k=3 · ")
    for name in names:
        assert name in lines, f"run {name!r} not in the runs table: {lines[:80]}"
    assert "Dataset" in lines and "Source" in lines
    missing = [label for label in labels if label not in lines]
    assert not missing, f"datasets {missing} not in the runs table: {lines[:80]}"
    assert sum(line.startswith("python -m sandbox ") for line in lines) == 2


def test_a_run_page_lists_the_metrics_in_their_sections(browser, store, ui, tmp_path):
    _, _, exp_id, runs = store
    recipe = runs["recipe"]
    lines = page_text(browser, f"{ui}/#/experiments/{exp_id}/runs/{recipe.info.run_id}",
                      tmp_path / "profile", [*EXPECTED_METRICS, recipe.info.run_name])
    assert recipe.info.run_name in lines
    missing = [m for m in EXPECTED_METRICS if m not in lines]
    assert not missing, f"metrics {missing} not on the run page: {lines[:120]}"
    assert any(line.startswith("python -m sandbox ") and "refine.k=3" in line for line in lines)


def test_the_loss_curve_is_keyed_by_tokens_seen(store):
    """Recipes compare at equal compute: the curve's x axis (MLflow's step) is tokens seen."""
    folder, uri, _, runs = store
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=uri).get_metric_history(runs["recipe"].info.run_id,
                                                                "train/loss")
    with open(folder / "recipe" / "train" / "loss_curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(history) == len(curve) >= 2
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == \
        [int(row["tokens_seen"]) for row in curve]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == \
        pytest.approx([float(row["train_loss"]) for row in curve])
