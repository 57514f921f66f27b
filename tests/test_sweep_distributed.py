"""Sweeps across machines, on real servers started here on loopback and always stopped:

* several ``python -m sandbox --multirun`` workers on one Optuna study in PostgreSQL
  (``hydra.sweeper.storage=postgresql://...``): every trial run once, ``n_trials`` in total,
  the summary complete, and their MLflow runs on one ``mlflow server`` (checked through its
  REST API);
* the lock that makes "count the trials, take the next one" one step, under threads racing for
  the last trials (PostgreSQL and SQLite);
* ``hydra/launcher=ray`` (hydra-ray-launcher): trials run as tasks on a local Ray instance.

PostgreSQL comes from the system (Debian's ``postgresql`` package: ``initdb``/``pg_ctl``, run as
the ``postgres`` user when the tests run as root, since PostgreSQL refuses to run as root) and
the driver from ``psycopg[binary]``; without them those tests are skipped, saying why."""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import SENTENCES, make_docs

ROOT = Path(__file__).resolve().parent.parent

# A search that runs in seconds per trial: one filter's bound, the share of documents kept.
SEARCH = """\
# @package _global_
defaults:
  - override /hydra/sweeper: sandbox_optuna
  - override /hydra/sweeper/sampler: random
  - override /pipeline: data_only
  - override /recipe: none
  - override /refine: none
objective: retention
recipe:
  ops:
    text_length_filter: {min_len: 10}
hydra:
  sweeper:
    direction: maximize
    study_name: dist
    n_trials: 6
    params:
      recipe.ops.text_length_filter.min_len: range(0, 600, 20)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what} did not come up in {seconds:.0f}s\n{tail}")


# ============================================================================ servers
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server on 127.0.0.1 in a temp data dir, with an empty database `optuna`;
    stopped and deleted after the module's tests."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    try:
        import psycopg  # SQLAlchemy 2.1's driver for postgresql:// URLs
    except ImportError:
        pytest.skip("the PostgreSQL driver is not installed (pip install 'psycopg[binary]')")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as `postgres`
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = folder / "data", folder / "server.log", free_port()
    started = False
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        options = (f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off "
                   f"-c synchronous_commit=off")
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                        "-o", options, "start"], check=True, capture_output=True, timeout=90)
        started = True
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        if started:
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server():
    """``mlflow server`` on 127.0.0.1 (SQLite backend, artifacts served by the server); its
    process group is stopped after the module's tests."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-mlflow-"))
    port, log = free_port(), folder / "server.log"
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # no background job runner (GenAI features): less to start on a busy machine
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:  # ~10 s on an idle machine, minutes on a loaded one
        wait_until(lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200,
                   240, "mlflow server", proc, log)
        yield url
    finally:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def rest(url: str, endpoint: str, payload: dict | None = None, **query) -> dict:
    """One call of the MLflow REST API (GET with ``query``, POST with ``payload``)."""
    full = f"{url}/api/2.0/mlflow/{endpoint}"
    if query:
        full += "?" + urllib.parse.urlencode(query)
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(full, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# ============================================================================ the sweeps
@pytest.fixture
def search(tmp_path) -> list[str]:
    """The overrides of the tiny search (its YAML, pool and reference written to tmp_path)."""
    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "dist.yaml").write_text(SEARCH)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in make_docs()))
    ref = tmp_path / "reference.jsonl"
    ref.write_text("".join(json.dumps({"text": s, "label": 1}) + "\n" for s in SENTENCES) +
                   "".join(json.dumps({"text": t, "label": 0}) + "\n"
                           for t in ["$$$ ### %%%", "click here buy now", "<div></div> ok"] * 3))
    return [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=dist",
            "data_pool=jsonl", f"data_pool.path={docs}", "progress=false", "num_proc=1",
            f"data_evaluator.reference_path={ref}"]


def worker(folder: Path, overrides: list[str]) -> subprocess.Popen:
    """One ``python -m sandbox --multirun`` worker, run from (and writing under) ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SANDBOX_PARENT_RUN_ID", None)
    cmd = [sys.executable, "-m", "sandbox", "--multirun", *overrides,
           f"cache_dir={folder / 'cache'}", f"hydra.sweep.dir={folder / 'multirun'}"]
    return subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen], seconds: float = 240) -> list[str]:
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=seconds)
            outputs.append(out)
            assert p.returncode == 0, out[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outputs


@pytest.mark.slow
def test_workers_share_one_postgres_study_and_one_mlflow_server(tmp_path, search, postgres_url,
                                                                mlflow_server):
    import optuna
    from optuna.trial import TrialState

    n_trials, n_workers = 6, 3
    common = search + [f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared",
                       f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.plots=false",
                       f"tracking.uri={mlflow_server}",
                       "tracking.experiment=distributed"]
    procs = [worker(tmp_path / f"w{i}", common) for i in range(n_workers)]
    pids = {p.pid: i for i, p in enumerate(procs)}
    outputs = finish(procs)

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.trials
    # n_trials in total, numbered without gaps, each complete: none lost, none run twice
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in trials), \
        [(t.number, t.state, t.user_attrs.get("error")) for t in trials]
    by_worker: dict[int, set[int]] = {}
    for t in trials:
        owner = t.user_attrs["sweeper"]
        assert owner["pid"] in pids and owner["host"] == socket.gethostname()
        by_worker.setdefault(pids[owner["pid"]], set()).add(t.number)
        # the trial ran in its worker's sweep dir, and nowhere else
        assert Path(t.user_attrs["run_dir"]) == \
            tmp_path / f"w{pids[owner['pid']]}" / "multirun" / str(t.number)
        assert t.value == pytest.approx(t.user_attrs["metrics"]["retention"])
    assert len(by_worker) >= 2, by_worker  # the trials were shared out
    run_dirs = sorted(p.name for p in tmp_path.glob("w*/multirun/[0-9]*"))
    assert run_dirs == sorted(str(n) for n in range(n_trials))
    for i, out in enumerate(outputs):  # each worker says what it ran, and only that
        ran = {int(line.split("trial ")[1].split()[0]) for line in out.splitlines()
               if " COMPLETE in " in line and "search" in line}
        assert ran == by_worker.get(i, set())

    # the last worker to end wrote the complete summary; optimization_results.yaml agrees
    best = max(trials, key=lambda t: t.value)
    summaries = sorted(tmp_path.glob("w*/multirun/study_summary.json"),
                       key=lambda p: p.stat().st_mtime)
    last = json.loads(summaries[-1].read_text())
    assert [t["state"] for t in last["trials"]] == ["COMPLETE"] * n_trials
    (number,) = last["best_trials"]  # one best trial (the first of any ties)
    assert trials[number].value == best.value
    results = yaml.safe_load((summaries[-1].parent / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best.value)

    # MLflow: one parent run for the study, one child per trial, all on the server
    exp = rest(mlflow_server, "experiments/get-by-name",
               experiment_name="distributed")["experiment"]
    found = rest(mlflow_server, "runs/search",
                 {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]

    def tags(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in found if tags(r).get("sandbox.search") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent["info"]["run_id"] == study.user_attrs["mlflow_parent_run"]["run_id"]
    assert parent["info"]["status"] == "FINISHED"
    children = [r for r in found if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert sorted(int(tags(r)["sandbox.trial"]) for r in children) == list(range(n_trials))
    value = {t.number: t.value for t in trials}
    for r in children:
        metrics = {m["key"]: m["value"] for m in r["data"]["metrics"]}
        assert metrics["data/retention"] == pytest.approx(value[int(tags(r)["sandbox.trial"])])
        assert tags(r)["optuna.state"] == "COMPLETE"
    parent_metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert parent_metrics["best_retention"] == pytest.approx(best.value)


# ============================================================================ the lock
def _race(storage: str, name: str, target: int, threads: int) -> list:
    """``threads`` workers, each with its own connection, take trials under the study's lock
    until ``target`` are taken; each trial is held a moment before it is told."""
    import optuna

    from sandbox.search.shared import study_lock, taken_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=name, storage=storage, direction="minimize")
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def take() -> None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            start.wait()
            while True:
                with study_lock(study):
                    if taken_trials(study) >= target:
                        return
                    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
                time.sleep(0.01)
                study.tell(trial, trial.params["x"])
        except BaseException as e:
            errors.append(e)

    pool = [threading.Thread(target=take) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors, errors
    return optuna.load_study(study_name=name, storage=storage).trials


def test_racing_workers_take_exactly_n_trials_on_postgres(postgres_url):
    trials = _race(postgres_url, "race", target=12, threads=4)
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state.name == "COMPLETE" for t in trials)


def test_racing_workers_take_exactly_n_trials_on_sqlite(tmp_path):
    trials = _race(f"sqlite:///{tmp_path / 'optuna.db'}", "race", target=8, threads=3)
    assert [t.number for t in trials] == list(range(8))


def test_a_worker_started_beside_another_with_the_same_seed_draws_other_points(tmp_path):
    import optuna

    from sandbox.search.shared import ACTIVE
    from sandbox.search.study import create_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    random = {"_target_": "optuna.samplers.RandomSampler", "seed": 3}

    def first_points(name: str, running_elsewhere: list[dict]) -> list[float]:
        optuna.create_study(study_name=name, storage=storage)
        if running_elsewhere:
            optuna.load_study(study_name=name, storage=storage).set_user_attr(
                ACTIVE, running_elsewhere)
        said: list[str] = []
        study, _ = create_study(name, storage, ["minimize"], random, None, 0, space, said.append)
        points = [study.ask(space).params["x"] for _ in range(3)]
        return points, said, study.user_attrs[ACTIVE]

    alone, said, active = first_points("alone", [])
    assert said == [] and active == [{"host": socket.gethostname(), "pid": os.getpid()}]
    # a live sweep on another machine: this one derives its own seed
    other = {"host": "another-machine", "pid": 1}
    beside, said, active = first_points("beside", [other])
    assert not set(alone) & set(beside)
    assert "1 other sweep(s) run on the study now" in said[0]
    assert other in active and len(active) == 2
    # a sweep of this machine whose process is gone does not count, and is dropped
    dead = {"host": socket.gethostname(), "pid": 2 ** 22 + 12345}
    after, said, active = first_points("after_a_dead_one", [dead])
    assert after == alone and said == [] and dead not in active


# ============================================================================ Ray launcher
def _ray_launcher_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


needs_ray_launcher = pytest.mark.skipif(not _ray_launcher_installed(),
                                        reason="pip install hydra-ray-launcher==1.2.2")


@needs_ray_launcher
def test_the_ray_launcher_installs_without_breaking_other_packages():
    # hydra-ray-launcher pins cloudpickle<3, which joblib >= 1.6 refuses (joblib 1.5 vendors
    # its own): `pip check` tells whether the environment still holds together
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
@needs_ray_launcher
def test_trials_run_as_ray_tasks_with_hydra_launcher_ray(tmp_path, search):
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = worker(tmp_path / "driver", search + [
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2", "tracking=none",
        "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
        "+hydra.launcher.ray.init.logging_level=ERROR"])
    (out,) = finish([proc])
    study = optuna.load_study(study_name="dist", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # the jobs ran in Ray worker processes, not in the sweep's own process
    job_pids = {int(line.split("pid=")[1].split(")")[0]) for line in out.splitlines()
                if "(_run_job pid=" in line}
    assert job_pids and proc.pid not in job_pids
    for t in study.trials:
        # the trial's environment reached the Ray task (hydra.job.env_set): it wrote its full
        # result (every metric), not only the objective it returned
        assert t.user_attrs["metrics"]["retention"] == pytest.approx(t.value)
        assert "samples_out" in t.user_attrs["metrics"]
        assert (Path(t.user_attrs["run_dir"]) / "sandbox.log").is_file()


@pytest.mark.slow
def test_trials_in_processes_of_their_own_get_the_sweeps_searchpath(tmp_path, search):
    """`hydra.sweeper.n_jobs=2` runs each trial as `python -m sandbox` of its own: the search
    file lives only under the sweep's `hydra.searchpath`, and the trials compose it too."""
    import optuna
    from optuna.trial import TrialState

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    (out,) = finish([worker(tmp_path / "w", search + [
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.plots=false", "tracking=none"])])
    trials = optuna.load_study(study_name="dist", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, \
        [t.user_attrs.get("error") for t in trials]
    for t in trials:
        log = (Path(t.user_attrs["run_dir"]) / "trial.log").read_text()  # its own process
        assert f"hydra.searchpath=[file://{tmp_path / 'conf'}]" in log.splitlines()[0]
