"""Faults across processes, injected for real on this machine (loopback only): outside programs
that hang, Ctrl-C during an environment's setup, damaged and concurrently written cache files,
a tracking server that is down or dies, an inference server that dies, a full disk.

Each test measures how long the sandbox took to recover where there is something to recover;
docs/faults.md holds the table of what survives what."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.assets import read_manifest, resolve, sp_ref
from sandbox.errors import DiskFullError
from sandbox.programs import ProgramError
from sandbox.steps.base import StepEnv
from sandbox.steps.external import ExternalTrainer
from tests.test_assets import isolated, server  # noqa: F401 - fixtures: own cache, loopback bucket
from tests.test_programs import live_members

ROOT = Path(__file__).resolve().parent.parent


def running_with(token: str) -> list[int]:
    """Pids of live processes (zombies do not count) whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if token in cmdline and stat[stat.rindex(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(token: str, seconds: float = 5.0) -> list[int]:
    """The processes with ``token`` still alive after ``seconds`` (a SIGKILLed process dies when
    the kernel next schedules it, a moment after the kill on a busy machine)."""
    deadline = time.monotonic() + seconds
    while running_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running_with(token)


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# ------------------------------------------------------------------ outside programs
def test_a_stack_program_that_hangs_silently_is_ended_with_its_whole_group(tmp_path):
    """The program prints nothing and waits on a `sleep` grandchild: at `timeout` the step fails
    in one paragraph, and neither the program nor the grandchild is left in the process table."""
    token = f"{os.getpid()}{time.monotonic_ns() % 10**6}"  # a `sleep` duration no one else uses
    hang = ("import subprocess, sys\n"
            f"subprocess.Popen(['sleep', '{token}'])\n"
            f"subprocess.run(['sleep', '{token}'])\n")
    work = tmp_path / "step"
    work.mkdir()
    env = StepEnv(name="train", workdir=work, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  seed=0)
    step = ExternalTrainer(stack="a hanging stack", argv=["python", "-c", hang], timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProgramError) as info:
        step.run(env)
    took = time.monotonic() - started
    message = str(info.value)
    assert "was stopped at its time limit after 1s" in message
    assert "(it printed nothing)" in message and str(work / "logs" / "run.log") in message
    assert wait_until_gone(token) == []
    assert took < 12, took  # the timeout, SIGTERM, and at most the grace period
    print(f"ended {took:.1f}s after the start (timeout 1s)")


# a build backend that needs nothing from an index: it writes its wheel by hand, and hangs in
# the build while $SLOWPKG_STARTED names a file (where it writes its pid first)
SLOW_BACKEND = """
import os, time, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    started = os.environ.get("SLOWPKG_STARTED")
    if started:
        with open(started, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    name = "slowpkg-0.1-py3-none-any.whl"
    files = {"slowpkg/__init__.py": "READY = True\\n",
             "slowpkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\\nName: slowpkg\\nVersion: 0.1\\n",
             "slowpkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: hand\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
        whl.writestr("slowpkg-0.1.dist-info/RECORD",
                     "".join(f"{p},,\\n" for p in files) + "slowpkg-0.1.dist-info/RECORD,,\\n")
    return name
"""


def sigint_as_in_a_terminal() -> None:
    """For a child process: SIGINT's default action. A process whose parent ignores SIGINT
    starts with it ignored (and Python then installs no KeyboardInterrupt handler): this
    pytest process may, once a library loaded by an earlier test has set it so, and the child
    would then sleep through the Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_env_setup_leaves_nothing_marked_ready_and_setup_finishes_it(tmp_path):
    """SIGINT (what Ctrl-C sends) reaches `python -m sandbox.env setup` while pip builds a local
    package whose build script sleeps: the setup stops in one paragraph, leaves no environment
    marked ready and no build process running; the next setup builds it from the start."""
    package = tmp_path / "slowpkg"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    (package / "backend.py").write_text(SLOW_BACKEND)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "slow.yaml").write_text(f"kind: venv\nrequirements: ['{package}']\n")
    cache = tmp_path / "cache"
    started = tmp_path / "build-started"
    base = {**os.environ, "SANDBOX_CACHE": str(cache)}
    command = [sys.executable, "-m", "sandbox.env", "--conf-dir", str(conf), "setup", "slow"]

    setup = subprocess.Popen(command, cwd=ROOT, env={**base, "SLOWPKG_STARTED": str(started)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 240
    while not started.exists() or not started.read_text():
        assert setup.poll() is None, setup.communicate()
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.1)
    builder = int(started.read_text())
    interrupted = time.monotonic()
    setup.send_signal(signal.SIGINT)
    out, err = setup.communicate(timeout=60)
    stopped = time.monotonic() - interrupted
    assert setup.returncode == 130, out + err
    assert "interrupted: the environment `slow` is not set up" in err and "Traceback" not in err
    assert "python -m sandbox.env setup slow" in err
    deadline = time.monotonic() + 5
    while is_alive(builder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(builder), "the build process outlived the setup"
    folders = [p for p in (cache / "envs").iterdir() if p.is_dir() and p.suffix != ".logs"]
    assert folders and not any((p / ".sandbox-env-ready").exists() for p in folders)
    check = subprocess.run([*command[:-2], "check", "slow"], cwd=ROOT, env=base,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "not set up" in check.stdout

    rebuilt = time.monotonic()
    again = subprocess.run(command, cwd=ROOT, env=base, capture_output=True, text=True,
                           timeout=300)
    rebuilt = time.monotonic() - rebuilt
    assert again.returncode == 0 and "slow: set up in" in again.stdout, again.stderr
    folder = Path(again.stdout.split(" set up in ")[1].strip())
    assert (folder / ".sandbox-env-ready").is_file()
    probe = subprocess.run([str(folder / "bin" / "python"), "-c", "import slowpkg; "
                            "print(slowpkg.READY)"], capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "True", probe.stderr
    print(f"setup stopped {stopped:.1f}s after SIGINT; the next setup built it in {rebuilt:.1f}s")


# ------------------------------------------------------------------ shared caches
RECIPE = {"ops": {"text_length_filter": {"min_len": 5}, "words_num_filter": {"min_num": 2},
                  "document_deduplicator": {}}}


def write_pool(path: Path, rows: int = 3000) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"document {i} says {'word ' * (i % 13)}{i % 97}" for i in range(rows)]
    pq.write_table(pa.table({"text": texts}), path)
    return path


def compute_stats(pool: Path, cache: Path):
    from sandbox.engine import LocalEngine
    from sandbox.recipe import load_recipe

    return LocalEngine(num_proc=1, span_rows=512).compute(pool, load_recipe(RECIPE).ops,
                                                          cache_dir=cache, fingerprint="pool-1")


def read_stats(path: Path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


@pytest.mark.parametrize("damage", ["truncated", "flipped bytes"])
def test_a_damaged_stats_file_is_named_recomputed_and_never_read_as_data(tmp_path, capsys,
                                                                          damage):
    pool, cache = write_pool(tmp_path / "pool.parquet"), tmp_path / "cache"
    first = compute_stats(pool, cache)
    good = read_stats(first.path)
    assert compute_stats(pool, cache).cache_hit
    data = first.path.read_bytes()
    if damage == "truncated":  # a copy cut short, a disk that filled up under another writer
        first.path.write_bytes(data[: len(data) // 2])
    else:  # bits flipped inside the first data page, the footer intact
        middle = bytearray(data)
        for k in range(64, 96):
            middle[k] ^= 0xFF
        first.path.write_bytes(bytes(middle))
    capsys.readouterr()
    started = time.monotonic()
    again = compute_stats(pool, cache)
    took = time.monotonic() - started
    said = " ".join(capsys.readouterr().out.split())
    assert not again.cache_hit and again.path == first.path
    assert f"the cached stats file {first.path} is damaged" in said
    assert "computed again and replaced" in said
    assert read_stats(again.path).equals(good)
    assert compute_stats(pool, cache).cache_hit  # the replacement is trusted again, silently
    assert "damaged" not in capsys.readouterr().out
    print(f"recovered in {took:.2f}s")


COMPUTE_AT_ONCE = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from tests.test_faults import compute_stats
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
print(compute_stats(Path(sys.argv[1]), Path(sys.argv[2])).cache_hit)
"""


@pytest.mark.slow
def test_two_runs_computing_the_same_stats_at_once_never_write_a_torn_file(tmp_path):
    """Two processes start computing one pool's stats into one cache at the same moment (a
    file both wait for): each writes a temp of its own and renames it into place, so the file
    is at every moment missing or whole, and both runs read a whole one."""
    pool, cache = write_pool(tmp_path / "pool.parquet", rows=60000), tmp_path / "cache"
    reference = read_stats(compute_stats(pool, tmp_path / "alone").path)
    go = tmp_path / "go"
    runs = [subprocess.Popen([sys.executable, "-c", COMPUTE_AT_ONCE, str(pool), str(cache),
                              str(go), str(ROOT)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(3)  # both have imported the engine and wait
    go.touch()
    stats = cache / "stats"
    seen_whole = 0
    while any(r.poll() is None for r in runs):  # whatever is under the final name is whole
        finals = [p for p in stats.glob("*.parquet") if not p.name.startswith(".")] \
            if stats.is_dir() else []
        for path in finals:
            try:
                seen_whole += read_stats(path).num_rows == 60000
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    hits = []
    for r in runs:
        out, err = r.communicate()
        assert r.returncode == 0, err
        hits.append(out.strip())
    assert hits == ["False", "False"]  # both computed: they really wrote at the same time
    finals = [p for p in stats.glob("*.parquet") if not p.name.startswith(".")]
    assert seen_whole and len(finals) == 1 and read_stats(finals[0]).equals(reference)
    assert [p.name for p in stats.iterdir() if p.name.startswith(".")] == []  # no temp left



def test_a_truncated_downloaded_asset_is_named_and_downloaded_again(isolated, server, capsys):
    """A model file in the sandbox's cache that is shorter than the manifest recorded is said,
    deleted and fetched again from the (loopback) server, never handed to an OP."""
    handler, _ = server
    payload = os.urandom(200_000)
    handler.files["/models/en.sp.model"] = payload
    first = resolve(sp_ref("en"), progress=False)
    assert first.origin == "download" and read_manifest()[str(first.path)]["size"] == 200_000
    first.path.write_bytes(payload[:70_000])  # cut short after the download had finished
    capsys.readouterr()
    started = time.monotonic()
    again = resolve(sp_ref("en"), progress=False)
    took = time.monotonic() - started
    said = " ".join(capsys.readouterr().out.split())
    assert f"the cached asset {first.path} is damaged (70000 bytes, 200000 when it was " \
           f"downloaded)" in said and "downloaded again" in said
    assert again.origin == "download" and again.path.read_bytes() == payload
    assert resolve(sp_ref("en")).origin == "sandbox cache"
    print(f"recovered in {took:.2f}s")


# ------------------------------------------------------------------ tracking
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_with_on_error_warn_runs_untracked_and_says_so(
        tmp_path, docs_file, capsys):
    from sandbox.runner import run
    from tests.conftest import compose

    uri = f"http://127.0.0.1:{free_port()}"  # closed: nothing listens there
    over = ["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
            "progress=false", f"tracking.uri={uri}", "tracking.on_error=warn"]
    started = time.monotonic()
    run(compose(over), run_dir=tmp_path / "run")
    took = time.monotonic() - started
    said = " ".join(capsys.readouterr().out.split())
    assert f"tracking.on_error=warn: this run is not tracked: the MLflow tracking server " \
           f"tracking.uri={uri} does not answer" in said
    assert said.rstrip().count("This run was not tracked (tracking.on_error=warn)") == 1
    # at the end: after the last step's work, with the run's summary
    assert said.index("This run was not tracked") > said.rindex("process ")
    assert (tmp_path / "run" / "process").is_dir()  # the work was done
    assert not (tmp_path / "run" / "tracking-buffer.jsonl").exists()
    assert took < 60


class MlflowServer:
    """A real `mlflow server` on loopback with a SQLite store, that a test can kill and
    start again on the same port and store."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        import urllib.request

        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts")],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        started = time.monotonic()
        while time.monotonic() - started < 120:
            assert self.process.poll() is None, "mlflow server exited at start"
            try:
                urllib.request.urlopen(self.uri + "/health", timeout=2).close()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        pytest.fail("mlflow server did not answer in 120 s")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.mark.slow
def test_metrics_logged_while_the_tracking_server_is_down_are_kept_and_synced(tmp_path,
                                                                              mlflow_server,
                                                                              capsys):
    """The server is SIGKILLed between two metrics of a run: the run goes on, what it logs
    from then on (metrics, a nested run, both ends) waits in the run dir, and `python -m
    sandbox.tracking sync RUN_DIR` sends it once the server is back: every metric is there,
    once."""
    from mlflow.tracking import MlflowClient

    from sandbox.tracking.buffer import buffer_path, read
    from sandbox.tracking.mlflow_tracker import MLflowTracker

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"tracking:\n  uri: {mlflow_server.uri}\n")
    tracker = MLflowTracker(uri=mlflow_server.uri, experiment="faults")
    tracker.start("a run", {"p": "1"}, {"recipe": "r"}, run_dir=run_dir)
    for step in range(3):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    mlflow_server.kill()
    killed = time.monotonic()
    for step in range(3, 6):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    seed = tracker.child("seed 1", {"seed": "1"})
    seed.log_metrics({"eval/perplexity": 12.5})
    seed.finish()
    tracker.log_text("recipe: r\n", "recipe.yaml")
    tracker.finish()
    records = read(buffer_path(run_dir))
    run_id = records[0]["run_id"]
    assert [r["op"] for r in records] == ["metrics", "metrics", "metrics", "child", "metrics",
                                          "end", "text", "end"]
    said = " ".join(capsys.readouterr().out.split())
    assert "stopped answering" in said and "python -m sandbox.tracking sync" in said
    assert "8 records are kept in" in said
    offline_for = time.monotonic() - killed

    restarted = mlflow_server.start()
    synced = time.monotonic()
    sync = subprocess.run([sys.executable, "-m", "sandbox.tracking", "sync", str(run_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    sync_took = time.monotonic() - synced
    assert sync.returncode == 0 and "sent 8 records" in sync.stdout, sync.stdout + sync.stderr
    assert not buffer_path(run_dir).exists()
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (s + 1)) for s in range(6)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    kids = client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    assert len(kids) == 1 and kids[0].info.status == "FINISHED"
    assert kids[0].data.metrics == {"eval/perplexity": 12.5}
    assert kids[0].data.tags["recipe"] == "r"  # the group tags a nested run inherits
    again = subprocess.run([sys.executable, "-m", "sandbox.tracking", "sync", str(run_dir)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to send" in again.stdout
    assert len(client.get_metric_history(run_id, "train/loss")) == 6  # nothing twice
    print(f"offline {offline_for:.1f}s, server restart {restarted:.1f}s, sync {sync_took:.1f}s")


@pytest.mark.slow
def test_a_run_killed_by_sigkill_is_marked_killed_on_resume(tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.test_fault_injection import kill_after, run_to_end, sandbox

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # killed inside the process step, which takes seconds on 5000 documents (an idle machine
    # ran all of a 600-document run within 0.3 s of its load step)
    settings = ["pipeline=process", "data_pool.num_docs=5000", "progress=false",
                f"tracking.uri={uri}"]
    run_dir = tmp_path / "run"
    kill_after(sandbox(run_dir, settings), tmp_path, "process running", 0.05)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sandbox").experiment_id
    [left] = client.search_runs([experiment])
    assert left.info.status == "RUNNING"  # what SIGKILL leaves: no one could end it

    started = time.monotonic()
    out = " ".join(run_to_end(sandbox(run_dir, settings, "resume=true"), tmp_path).split())
    took = time.monotonic() - started
    assert (f"MLflow: run {left.info.run_id} was left RUNNING by an attempt that was killed; "
            f"marked KILLED (sandbox.killed_attempts=1), and this resume continues it.") in out
    [run] = client.search_runs([experiment])
    assert run.info.run_id == left.info.run_id and run.info.status == "FINISHED"
    assert run.data.tags["sandbox.killed_attempts"] == "1"
    assert "time/total_s" in run.data.metrics  # logged by the resumed attempt, into this run
    print(f"resume finished in {took:.1f}s")


# ------------------------------------------------------------------ infer=api
# an OpenAI-compatible server in a process of its own: it answers "answer to <question>" after
# a short think, and appends every question it was asked to a file
CHAT_SERVER = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, asked = int(sys.argv[1]), sys.argv[2]

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][-1]["content"]
        with open(asked, "a") as f:
            f.write(question + "\\n")
        time.sleep(0.02)
        text = "answer to " + question[::-1]
        payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class ChatServer:
    def __init__(self, folder: Path):
        self.port, self.folder, self.process = free_port(), folder, None
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self, asked: Path) -> None:
        import socket

        self.asked = asked
        self.process = subprocess.Popen([sys.executable, "-c", CHAT_SERVER, str(self.port),
                                         str(asked)], start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline and self.process.poll() is None
                time.sleep(0.05)

    def questions(self) -> list[str]:
        return self.asked.read_text().splitlines() if self.asked.exists() else []

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def chat_server(tmp_path):
    server = ChatServer(tmp_path)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def answers(run_dir: Path) -> list:
    out = run_dir / "infer" / "pool_inference.jsonl"
    return [json.loads(line)["response"] for line in out.read_text().splitlines()]


@pytest.mark.slow
def test_the_inference_server_killed_mid_run_loses_no_answer_and_resume_asks_only_the_rest(
        tmp_path, chat_server):
    """`infer=api` against a server process that is SIGKILLed after some batches: the run fails
    in one paragraph, the rows answered are on disk, and `resume=true` against the restarted
    server asks exactly the rows without an answer; the answers equal an undisturbed run's."""
    rows = 300
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps({"text": f"question number {i}"}) + "\n"
                            for i in range(rows)))
    settings = ["pipeline=infer", "infer=api", f"infer.base_url={chat_server.base_url}",
                "infer.model=m", "infer.batch_size=10", "infer.concurrency=2",
                "infer.max_retries=2", "infer.backoff_base_s=0.05", "infer.backoff_max_s=0.1",
                "data_pool=jsonl", f"data_pool.path={data}", "tracking=none", "progress=false"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def sandbox(run_dir: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "sandbox", *settings, *extra, f"hydra.run.dir={run_dir}"]

    chat_server.start(tmp_path / "asked-undisturbed")
    calm = subprocess.run(sandbox(tmp_path / "undisturbed"), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert calm.returncode == 0, calm.stdout[-2000:] + calm.stderr[-2000:]
    reference = answers(tmp_path / "undisturbed")
    assert len(reference) == rows and None not in reference
    chat_server.kill()

    run_dir = tmp_path / "run"
    out = run_dir / "infer" / "pool_inference.jsonl"
    chat_server.start(tmp_path / "asked-first")
    first = subprocess.Popen(sandbox(run_dir), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not out.exists() or len(out.read_text().splitlines()) < 100:
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
        time.sleep(0.02)
    chat_server.kill()
    killed = time.monotonic()
    said, _ = first.communicate(timeout=120)
    said = " ".join(said.split())
    assert first.returncode == 2, said[-3000:]
    assert "infer: " in said and "rows answered so far are in" in said and \
        "resume=true" in said and "Traceback" not in said
    kept = [a for a in answers(run_dir) if a is not None]
    assert 100 <= len(kept) < rows and kept == reference[:len(kept)]

    chat_server.start(tmp_path / "asked-after")
    resumed = subprocess.run(sandbox(run_dir, "resume=true"), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    recovered = time.monotonic() - killed
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert answers(run_dir) == reference
    # each row without an answer asked once (two requests in flight: in any order), no other
    assert sorted(chat_server.questions()) == \
        sorted(f"question number {i}" for i in range(len(kept), rows))
    print(f"kept {len(kept)} of {rows} answers; killed to resumed end {recovered:.1f}s")


# ------------------------------------------------------------------ disk full
def write_big_pool(path: Path, rows: int = 6000) -> Path:
    import random

    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "data", "juicer", "sandbox", "model", "text"]
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(120))
                                        + f" doc {i}"}) + "\n" for i in range(rows)))
    return path  # ~4.5 MB, and as much again for each copy a step writes


def assert_whole(folder: Path) -> None:
    """Every file under a final name (not a hidden temp) in ``folder`` reads back whole."""
    import pyarrow.parquet as pq

    for f in folder.rglob("*"):
        if f.is_file() and not any(p.startswith(".") for p in f.relative_to(folder).parts):
            if f.suffix == ".parquet":
                pq.read_table(f)
            elif f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".jsonl":
                [json.loads(line) for line in f.read_text().splitlines()]


def tmpfs(mount: Path, size: str):
    """A tmpfs of ``size`` at ``mount`` for the block (mounting needs root or CAP_SYS_ADMIN:
    the test is skipped without)."""

    @contextlib.contextmanager
    def mounted():
        mount.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(mount)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()})")
        try:
            yield mount
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)
    return mounted()


@pytest.fixture
def small_disk(tmp_path):
    """A 9 MiB tmpfs."""
    with tmpfs(tmp_path / "disk", "9m") as mount:
        yield mount


def _limit_file_size(limit: int):
    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["full tmpfs", "file size limit"])
def test_a_full_disk_during_process_is_one_paragraph_and_leaves_nothing_half_written(
        tmp_path, request, fault):
    pool = write_big_pool(tmp_path / "pool.jsonl")
    if fault == "full tmpfs":
        where, limit = request.getfixturevalue("small_disk"), None
    else:
        # the pool's 4.2 MiB (and the processed pool's) fit, the 4.9 MiB stats file does not
        where, limit = tmp_path / "disk", int(4.6 * 2 ** 20)
    run_dir, cache = where / "run", where / "cache"
    command = [sys.executable, "-m", "sandbox", "pipeline=process", "data_pool=jsonl",
               f"data_pool.path={pool}", "tracking=none", "progress=false",
               f"hydra.run.dir={run_dir}", f"cache_dir={cache}"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    full = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300,
                          preexec_fn=None if limit is None else _limit_file_size(limit))
    said = " ".join((full.stdout + full.stderr).split())
    assert full.returncode == 2, said[-3000:]
    assert "Traceback" not in said and said.count("error: step `process` stopped:") == 1
    assert (f"while it wrote to its folder {run_dir / 'process'}" in said
            and f"or the cache {cache}" in said and "resume=true" in said)
    assert ("the disk is full (No space left on device)" in said if limit is None else
            "file size limit" in said)
    assert (run_dir / "load" / "pool.parquet").is_file()
    assert_whole(run_dir)
    assert_whole(cache)
    assert list(cache.glob("stats/*")) == []  # no stats file, not even a temp
    context = json.loads((run_dir / "context.json").read_text())
    assert "process" not in context["steps"]  # not recorded as done

    if limit is None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(where)], check=True)
    started = time.monotonic()
    again = subprocess.run([*command, "resume=true"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "load skipped" in " ".join(again.stdout.split())
    assert_whole(run_dir)
    print(f"{fault}: resumed to the end in {took:.1f}s")


# ------------------------------------------------------------------ engine=ray
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["tasks", "data"])
def test_a_ray_worker_killed_mid_recipe_is_retried_and_the_stats_are_identical(tmp_path,
                                                                              scheduler):
    """SIGKILL a Ray worker process while it computes a span: Ray runs the span again on
    another worker, and the stats file is byte for byte the undisturbed one."""
    ray = pytest.importorskip("ray", reason='engine=ray needs `pip install "ray[data]"`')
    import threading

    from sandbox.engine.ray import RayEngine
    from sandbox.recipe import load_recipe

    pool = write_pool(tmp_path / "pool.parquet", rows=40000)
    ops = load_recipe(RECIPE).ops
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 ** 2,
                 logging_level="ERROR")
    try:
        engine = RayEngine(scheduler=scheduler, span_rows=512)
        calm_dir, hit_dir = tmp_path / "calm", tmp_path / "hit"
        calm_dir.mkdir(), hit_dir.mkdir()
        reference = engine.compute(pool, ops, scratch_dir=calm_dir).path.read_bytes()
        title = "ray::run_span_task" if scheduler == "tasks" else "ray::MapBatches(run_span_rows)"
        result: dict = {}

        def compute():
            try:
                result["computed"] = engine.compute(pool, ops, scratch_dir=hit_dir)
            except BaseException as e:  # noqa: BLE001 - handed to the test's thread
                result["error"] = e

        worker = threading.Thread(target=compute)
        worker.start()
        victim = None
        while worker.is_alive() and victim is None:
            busy = running_with(title)
            if busy:
                victim = busy[0]
                os.kill(victim, signal.SIGKILL)
                killed = time.monotonic()
            time.sleep(0.001)
        worker.join(300)
        assert victim is not None, "no worker was caught computing a span"
        assert "error" not in result, result.get("error")
        took = time.monotonic() - killed
        assert not is_alive(victim)
        assert result["computed"].path.read_bytes() == reference
        print(f"{scheduler}: finished {took:.1f}s after the kill, stats identical")
    finally:
        if started_here:
            ray.shutdown()


def write_short_docs(path: Path, rows: int) -> Path:
    import random

    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "data", "juicer", "sandbox", "model", "text"]
    path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(
        rng.randint(10, 60))) + f" doc {i}"}) + "\n" for i in range(rows)))
    return path


def test_a_kept_span_is_used_only_when_whole_and_its_own(tmp_path):
    """The span store that `resume=true` under engine=ray starts from gives back a span's
    result buffer byte for byte; a file cut short, or one that holds other rows, is removed (to
    be computed again), never read as data."""
    from sandbox.engine.common import pool_spans
    from sandbox.engine.spans import SpanStore
    from sandbox.engine.worker import SpanJob, SpanWorker
    from sandbox.recipe import load_recipe

    pool = write_pool(tmp_path / "pool.parquet", rows=300)
    job = SpanJob(tuple(load_recipe(RECIPE).ops), "text", str(pool), ("text",), 64)
    spans = list(pool_spans(pool, 100))
    worker = SpanWorker(job)
    store = SpanStore(tmp_path / "key.spans", batch_size=64)
    for span in spans[:2]:
        store.put(span, worker.run_span(span))
    assert store.finished(spans) == {0, 1}
    assert store.get(spans[0]).to_pybytes() == worker.run_span(spans[0]).to_pybytes()
    assert SpanStore(store.folder, batch_size=32).finished(spans) == set()  # other batches
    whole = store.path(spans[0]).read_bytes()
    store.path(spans[0]).write_bytes(whole[:len(whole) // 2])
    assert store.get(spans[0]) is None and not store.path(spans[0]).exists()
    store.path(spans[2]).write_bytes(store.path(spans[1]).read_bytes())  # rows 100..199
    assert store.get(spans[2]) is None and not store.path(spans[2]).exists()
    assert store.get(spans[1]) is not None
    store.clear()
    assert not store.folder.exists()


@pytest.mark.slow
def test_the_whole_ray_cluster_gone_mid_recipe_is_one_paragraph_and_resume_keeps_its_spans(
        tmp_path):
    """Every process of the run's Ray instance (GCS server, raylet, workers) is SIGKILLed after
    some spans of the stats are finished: the run ends in one paragraph well before Ray's own
    60 s, the finished spans are kept, `resume=true` computes only the others, and the outputs
    are byte for byte an undisturbed run's."""
    pytest.importorskip("ray", reason='engine=ray needs `pip install "ray[data]"`')
    docs = write_short_docs(tmp_path / "docs.jsonl", rows=12000)
    # 64-row spans: 188 of them, each a Ray task of a few milliseconds
    common = [sys.executable, "-m", "sandbox", "pipeline=process", "engine=ray",
              "data_pool=jsonl", f"data_pool.path={docs}", "tracking=none", "progress=false",
              "engine.num_cpus=2", "engine.span_rows=64", "engine.batch_size=64",
              "process.batch_size=64"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    hit, cache = tmp_path / "hit", tmp_path / "cache-hit"
    command = [*common, f"hydra.run.dir={hit}", f"cache_dir={cache}"]
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    stats, members, listed = cache / "stats", [], 0.0
    deadline = time.monotonic() + 240
    while True:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-3000:]
        if time.monotonic() - listed > 0.1:  # Ray's processes: the run's group, but the run
            members, listed = [p for p in live_members(run.pid) if p != run.pid], time.monotonic()
        folders = [f for f in stats.iterdir() if f.suffix == ".spans"] if stats.is_dir() else []
        done = [n for f in folders for n in os.listdir(f) if not n.startswith(".")]
        if len(done) >= 10:
            break
        time.sleep(0.002)
    for pid in members:  # the whole cluster at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    out, _ = run.communicate(timeout=120)
    took = time.monotonic() - killed
    said = " ".join(out.split())
    assert run.returncode == 2, said[-3000:]
    assert ("error: engine=ray: the local Ray instance this run started (its processes died or "
            "were killed) went away while it computed the stats") in said
    assert "Traceback" not in said and "HYDRA_FULL_ERROR" not in said
    assert "Failed to connect to GCS within 60 seconds" not in said  # ours came first
    finished = re.search(r"(\d+) of (\d+) spans were finished and are kept in", said)
    assert finished, said[-3000:]
    kept, total = int(finished[1]), int(finished[2])
    assert 10 <= kept < total == 188
    assert not list(stats.glob("*.parquet"))  # no result file under its final name
    assert took < 40, took

    started = time.monotonic()
    again = subprocess.run([*command, "resume=true"], cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=300)
    resumed = time.monotonic() - started
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    said = " ".join(again.stdout.split())
    assert (f"engine=ray: {kept} of {total} spans were finished by an earlier run") in said
    assert f"computing the other {total - kept}." in said
    assert not list(stats.glob("*.spans"))  # let go of once the result file is whole

    calm = subprocess.run([*common, f"hydra.run.dir={tmp_path / 'calm'}",
                           f"cache_dir={tmp_path / 'cache-calm'}"], cwd=tmp_path, env=env,
                          text=True, capture_output=True, timeout=300)
    assert calm.returncode == 0, calm.stdout[-3000:]
    [reference] = (tmp_path / "cache-calm" / "stats").glob("*.parquet")
    assert (stats / reference.name).read_bytes() == reference.read_bytes()
    outputs = sorted(f.name for f in (tmp_path / "calm" / "process").iterdir() if f.is_file())
    assert {"processed.parquet", "dropped.parquet"} <= set(outputs)
    for name in outputs:
        assert (hit / "process" / name).read_bytes() == \
            (tmp_path / "calm" / "process" / name).read_bytes(), name
    print(f"one paragraph {took:.1f}s after the kill; {kept} of {total} spans kept; the "
          f"resume computed {total - kept} and ended in {resumed:.1f}s, outputs identical")


@pytest.mark.slow
def test_a_ray_worker_out_of_memory_is_named_with_its_span_and_the_setting_to_lower(tmp_path):
    """Ray's own memory monitor, told that 1% of the machine's memory is all there is, kills the
    worker computing a span each time it runs: the run ends in one paragraph naming the span's
    rows and `engine.span_rows`, after Ray's retries, instead of retrying for ever."""
    pytest.importorskip("ray", reason='engine=ray needs `pip install "ray[data]"`')
    docs = write_short_docs(tmp_path / "docs.jsonl", rows=3000)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_memory_usage_threshold="0.01",
               RAY_memory_monitor_refresh_ms="100")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "sandbox", "pipeline=process", "engine=ray",
                          "data_pool=jsonl", f"data_pool.path={docs}", "tracking=none",
                          "progress=false", "engine.num_cpus=2", "engine.span_rows=1024",
                          f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"],
                         cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300)
    took = time.monotonic() - started
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, said[-3000:]
    pool = tmp_path / "run" / "load" / "pool.parquet"
    assert re.search(r"error: engine=ray: the Ray worker computing the span of rows \d+\.\.\d+ "
                     rf"of the pool {re.escape(str(pool))} ran out of memory on every try "
                     r"\(Ray: \d+ worker\(s\) were killed due to the node running low on "
                     r"memory", said), said[-3000:]
    assert "Lower engine.span_rows (rows per task, now 1024;" in said
    assert "Traceback" not in said and "HYDRA_FULL_ERROR" not in said
    assert not list((tmp_path / "cache" / "stats").glob("*.parquet"))
    print(f"out of memory reported {took:.0f}s after the start (Ray start-up included)")


# ------------------------------------------------------------------ sweeps on one study
@pytest.mark.slow
def test_a_sweep_worker_killed_mid_trial_is_found_by_its_heartbeats_and_its_trial_rerun(
        tmp_path):
    """Two workers on one study; one is SIGKILLed in the middle of a trial. Its trial stops
    beating, the other worker fails it after `grace_s`, ends its MLflow run KILLED, runs its
    parameters again, and the study ends with `n_trials` counted trials, none RUNNING."""
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    from tests.test_sweep_distributed import SEARCH, worker

    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "dist.yaml").write_text(SEARCH)
    docs = write_big_pool(tmp_path / "docs.jsonl", rows=20000)  # a trial takes seconds
    storage, n_trials = f"sqlite:///{tmp_path / 'optuna.db'}", 6
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=dist",
              "data_pool=jsonl", f"data_pool.path={docs}", "progress=false", "num_proc=1",
              "pipeline=process", "objective=samples_out",
              f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=beats",
              f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.plots=false",
              "hydra.sweeper.heartbeat_s=1", "hydra.sweeper.grace_s=4",
              f"tracking.uri={mlflow_uri}", "tracking.experiment=beats"]
    client = MlflowClient(tracking_uri=mlflow_uri)
    client.search_experiments()  # its tables made here, before two processes race to make them
    doomed = worker(tmp_path / "doomed", common)
    survivor = worker(tmp_path / "survivor", common)

    def running(pid: int) -> list:
        try:
            study = optuna.load_study(study_name="beats", storage=storage)
        except Exception:  # not made yet
            return []
        return [t for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.user_attrs.get("sweeper", {}).get("pid") == pid]

    # kill the doomed worker in a trial whose MLflow run is open, while the survivor runs one
    # of its own (past its start, where a dead process of this host is found by its pid, it
    # can learn of the dead one only through the heartbeats). The worker is stopped (SIGSTOP)
    # while the test checks that its trial is still RUNNING and its MLflow run still open: a
    # trial seen running a moment before may have ended meanwhile, and a worker killed after
    # its trial ended leaves nothing stale for the survivor to find.
    deadline, victim = time.monotonic() + 240, None
    while victim is None:
        for p in (doomed, survivor):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[0][-3000:]
        mine, theirs = running(doomed.pid), running(survivor.pid)
        experiment = client.get_experiment_by_name("beats")
        if mine and theirs and experiment is not None:
            doomed.send_signal(signal.SIGSTOP)
            try:
                still = [t for t in running(doomed.pid) if t.number == mine[0].number]
                runs = client.search_runs(
                    [experiment.experiment_id],
                    filter_string=f"tags.`sandbox.trial` = '{mine[0].number}'")
            except Exception:  # a database the stopped worker holds locked: look again later
                still, runs = [], []
            if still and runs and runs[0].info.status == "RUNNING":
                doomed.kill()  # SIGKILL: no heartbeat, no tell, no MLflow end
                doomed.wait()
                victim = still[0]
            else:
                doomed.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    killed = time.monotonic()
    out, _ = survivor.communicate(timeout=600)
    took = time.monotonic() - killed
    assert survivor.returncode == 0, out[-4000:]
    said = " ".join(out.split())
    assert (f"trial {victim.number} sent no heartbeat for 4s (its sweep was killed): marked "
            f"FAIL, its parameters are tried again first") in said

    trials = optuna.load_study(study_name="beats", storage=storage).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    dead = trials[victim.number]
    assert dead.state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state == TrialState.COMPLETE
    counted = [t for t in trials if t.number != victim.number]
    assert len(counted) == n_trials and all(t.state == TrialState.COMPLETE for t in counted)
    assert len({t.number for t in trials}) == len(trials)  # no number taken twice

    experiment = client.get_experiment_by_name("beats").experiment_id
    [child] = client.search_runs([experiment],
                                 filter_string=f"tags.`sandbox.trial` = '{victim.number}'")
    assert child.info.status == "KILLED" and child.data.tags["optuna.state"] == "FAIL"
    print(f"the survivor finished the study {took:.1f}s after the kill (grace 4s)")


DOWNLOAD_AT_ONCE = """
import sys, time
from pathlib import Path
from sandbox.assets.download import download
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
print(download(sys.argv[1], sys.argv[2], progress=False))
"""


def test_two_runs_downloading_one_asset_at_once_take_turns(tmp_path):
    """Two processes fetch one model file into one cache at the same moment from a slow
    (loopback) server: one downloads, the other waits for it and uses its file; no `.part` is
    written by both, and the file is whole."""
    import hashlib
    import http.server
    import threading

    payload = os.urandom(400_000)
    gets: list[str] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            gets.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            for k in range(0, len(payload), 40_000):  # ten pieces over ~1 s
                self.wfile.write(payload[k:k + 40_000])
                self.wfile.flush()
                time.sleep(0.1)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/models/m.bin"
        dest, go = tmp_path / "cache" / "models" / "m.bin", tmp_path / "go"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        runs = [subprocess.Popen([sys.executable, "-c", DOWNLOAD_AT_ONCE, url, str(dest),
                                  str(go)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(1.5)  # both have imported the downloader and wait
        go.touch()
        digests = []
        for r in runs:
            out, err = r.communicate(timeout=60)
            assert r.returncode == 0, err
            digests.append(out.strip())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert digests == [hashlib.sha256(payload).hexdigest()] * 2
    assert dest.read_bytes() == payload and gets == ["/models/m.bin"]  # fetched once
    assert not dest.with_name("m.bin.part").exists()



def test_a_stack_that_fills_the_disk_is_one_paragraph_naming_the_folder(tmp_path):
    """An outside program writes more than its 2 MiB disk holds and fails with the OS's words:
    the step says which folder's disk is full and takes nothing the program wrote."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        work = disk / "step"
        work.mkdir()
        env = StepEnv(name="train", workdir=work, run_dir=disk, cache_dir=tmp_path / "cache",
                      seed=0)
        fill = ("import os\n"
                "with open('checkpoint.bin', 'wb') as f:\n"
                "    for _ in range(8):\n"
                "        f.write(os.urandom(512 * 1024)); f.flush()\n")
        step = ExternalTrainer(stack="a filling stack", argv=["python", "-c", fill],
                               outputs={"model_dir": {"path": "checkpoint.bin"}})
        with pytest.raises(DiskFullError) as info:
            step.run(env)
    message = " ".join(str(info.value).split())
    assert message.startswith(f"a filling stack: its program failed because the disk holding "
                              f"{work} is full")
    assert "Nothing it wrote is taken as a result" in message and "resume=true" in message
    assert "No space left on device" in message  # its last lines



@pytest.mark.slow
def test_ray_failing_to_start_is_one_paragraph_and_leaves_no_ray_process(tmp_path):
    """Ray's GCS server is SIGKILLed the moment it starts (one of Ray's own processes dying
    during start-up): the run ends in one paragraph, not Ray's traceback with Hydra's hint, and
    none of the Ray processes it started stays."""
    pytest.importorskip("ray", reason='engine=ray needs `pip install "ray[data]"`')
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": f"document number {i} " * 5}) + "\n"
                            for i in range(200)))
    run = subprocess.Popen([sys.executable, "-m", "sandbox", "pipeline=process", "engine=ray",
                            "data_pool=jsonl", f"data_pool.path={data}", "tracking=none",
                            "progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True,
                           env=dict(os.environ, PYTHONUNBUFFERED="1"))
    killed, deadline = None, time.monotonic() + 120
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        for pid in live_members(run.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if command.endswith(b"gcs_server"):
                os.kill(pid, signal.SIGKILL)
                killed = time.monotonic()
                break
        time.sleep(0.005)
    out, _ = run.communicate(timeout=300)
    took = time.monotonic() - killed
    assert killed is not None, out[-3000:]
    said = " ".join(out.split())
    assert run.returncode == 2, said[-3000:]
    assert "error: engine=ray: the local Ray instance did not start" in said
    assert "engine=local" in said and "Traceback" not in said and "HYDRA_FULL_ERROR" not in said
    deadline = time.monotonic() + 30
    while live_members(run.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_members(run.pid) == []  # raylet, workers, log monitors: all gone
    assert not (tmp_path / "run" / "process").exists() or \
        not list((tmp_path / "run" / "process").iterdir())
    print(f"failed in one paragraph {took:.0f}s after the GCS server was killed")


@pytest.fixture
def restartable_postgres():
    """A PostgreSQL server on loopback with an empty database `optuna`, that the test may
    stop and start again (skipped where PostgreSQL or its driver is missing)."""
    import pwd
    import shutil
    import tempfile

    from tests.test_sweep_distributed import _pg_bin

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install -y postgresql)")
    psycopg = pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]'")
    folder = Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = folder / "data", folder / "server.log", free_port()
    options = (f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c full_page_writes=off "
               f"-c synchronous_commit=off")

    def ctl(*args: str) -> None:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), *args], check=True,
                       capture_output=True, timeout=90)

    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E",
                    "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
    ctl("-w", "-t", "60", "-o", options, "start")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield (f"postgresql://postgres@127.0.0.1:{port}/optuna",
               lambda: ctl("-m", "fast", "-w", "stop"),
               lambda: ctl("-w", "-t", "60", "-o", options, "start"))
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def _process_sweep(tmp_path, url: str, study: str, n_trials: int, rows: int):
    """A sweep of ``n_trials`` process-pipeline trials on a pool of ``rows`` documents, its
    study ``study`` in the database at ``url``, started in a process of its own."""
    from tests.test_sweep_distributed import SEARCH, worker

    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "dist.yaml").write_text(SEARCH)
    docs = write_big_pool(tmp_path / "docs.jsonl", rows=rows)
    return worker(tmp_path / "w", [
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "hparams_search=dist",
        "data_pool=jsonl", f"data_pool.path={docs}", "progress=false", "num_proc=1",
        "pipeline=process", "objective=samples_out", f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={study}", f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.plots=false", "tracking=none"])


@pytest.mark.slow  # waits out a database outage: 16 s and 38 s
@pytest.mark.parametrize("outage", ["8 s", "for good"])
def test_the_study_database_down_under_a_running_sweep_is_waited_for(tmp_path,
                                                                     restartable_postgres,
                                                                     outage):
    """PostgreSQL stops while a trial runs. Back 8 s later: the sweep retries
    with growing waits, stores the trial when the database answers, and finishes the study; no
    trial is lost or run twice. Gone for good: after ~30 s of retries the sweep stops in one
    paragraph."""
    import optuna
    from optuna.trial import TrialState

    url, stop_db, start_db = restartable_postgres
    n_trials = 3
    sweep = _process_sweep(tmp_path, url, "restart", n_trials, rows=10000)
    deadline = time.monotonic() + 240
    while True:  # the first trial is running
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[0]
        try:
            study = optuna.load_study(study_name="restart", storage=url)
            if study.get_trials(states=(TrialState.RUNNING,)):
                break
        except Exception:  # not made yet
            pass
        time.sleep(0.05)
    stop_db()
    if outage == "for good":
        out, _ = sweep.communicate(timeout=300)
        said = " ".join(out.split())
        assert sweep.returncode == 1, said[-3000:]
        assert (f"error: the study's database hydra.sweeper.storage={url} did not answer for "
                f"32s") in said and "Every finished trial is stored" in said
        assert "Traceback" not in said
        start_db()
        trials = optuna.load_study(study_name="restart", storage=url).trials
        assert [t.state for t in trials] == [TrialState.RUNNING]  # resumable: marked on rerun
        return
    time.sleep(8)
    start_db()
    back = time.monotonic()
    out, _ = sweep.communicate(timeout=300)
    took = time.monotonic() - back
    said = " ".join(out.split())
    assert sweep.returncode == 0, said[-3000:]
    assert "the study's database did not answer" in said and "trying again in" in said
    trials = optuna.load_study(study_name="restart", storage=url).trials
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    print(f"the sweep ended {took:.1f}s after the database came back")


@pytest.mark.slow
def test_a_connection_dropped_while_a_trial_is_claimed_takes_no_trial_twice(
        tmp_path, restartable_postgres):
    """PostgreSQL ends the connection of the sweep the moment it claims its first trial (the
    trial asked for and stored, its claim not): the sweep tries again, claims that same trial,
    and the study ends with exactly `n_trials` trials, numbered 0..n-1, all complete, none left
    RUNNING without an owner."""
    import optuna
    import psycopg
    from optuna.trial import TrialState

    url, _, _ = restartable_postgres
    optuna.create_study(storage=url, study_name="made-first")  # Optuna's tables, to hook into
    with psycopg.connect(url, autocommit=True) as conn:
        # a sequence, not a table: what a dropped connection rolls back, it keeps
        conn.execute("CREATE SEQUENCE sandbox_claims")
        conn.execute("""
            CREATE FUNCTION sandbox_drop_first_claim() RETURNS trigger AS $$
            BEGIN
              IF NEW.key = 'sweeper' AND nextval('sandbox_claims') = 1 THEN
                PERFORM pg_terminate_backend(pg_backend_pid());
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        conn.execute("CREATE TRIGGER sandbox_drop BEFORE INSERT ON trial_user_attributes "
                     "FOR EACH ROW EXECUTE FUNCTION sandbox_drop_first_claim()")
    n_trials = 3
    sweep = _process_sweep(tmp_path, url, "claim", n_trials, rows=500)
    try:  # the trial asked for a second time would stay RUNNING, and the sweep wait for it
        out, _ = sweep.communicate(timeout=120)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    said = " ".join(out.split())
    assert sweep.returncode == 0, said[-3000:]
    assert "the study's database did not answer" in said  # the fault did happen
    trials = optuna.load_study(study_name="claim", storage=url).trials
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]


@pytest.mark.slow
def test_the_trial_processes_of_a_killed_sweep_end_with_it(tmp_path):
    """A sweep running two trials at once (`n_jobs=2`, each `python -m sandbox` in a process
    group of its own) is SIGKILLed: its trial processes, which nothing could stop, end within
    seconds instead of running on unrecorded."""
    from tests.test_sweep_distributed import worker

    docs = write_big_pool(tmp_path / "docs.jsonl", rows=20000)
    # MinHash with many permutations: each trial's probe and process steps work ~15 s without
    # a word (a trial that prints would die at its next line anyway, of the broken pipe to its
    # sweep).
    sweep = worker(tmp_path / "w", [
        "hparams_search=data_quality", "data_pool=jsonl", f"data_pool.path={docs}",
        "++recipe.ops.document_minhash_deduplicator={num_permutations: 512}",
        "progress=false", "num_proc=1",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.plots=false", "tracking=none"])
    marker = f"hydra.run.dir={tmp_path / 'w' / 'multirun'}/"  # a trial's own run dir
    deadline = time.monotonic() + 240
    logs = [tmp_path / "w" / "multirun" / str(n) / "trial.log" for n in (0, 1)]
    while not all(log.exists() and "probe running" in log.read_text() for log in logs):
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[0]
        time.sleep(0.05)
    trials = running_with(marker)
    assert len(trials) >= 2
    sweep.kill()
    sweep.wait()
    killed = time.monotonic()
    left = wait_until_gone(marker, 5)
    took = time.monotonic() - killed
    assert left == [], f"trial processes {left} outlived their sweep"
    assert not any(is_alive(pid) for pid in trials)
    assert not any("probe done" in log.read_text() for log in logs)  # ended mid-step
    print(f"the trial processes ended {took:.1f}s after their sweep")


def test_span_folders_of_killed_runs_are_removed(tmp_path):
    """A killed run leaves its folder of span result files beside the stats cache's result
    file; the next run on this host removes it, and leaves a live run's and another host's."""
    from sandbox.engine.local import _HOST, _SPANS, remove_orphan_span_folders

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"{_SPANS}{_HOST}-{gone.pid}-abc"
    live = tmp_path / f"{_SPANS}{_HOST}-{os.getpid()}-def"
    other = tmp_path / f"{_SPANS}otherhost-{gone.pid}-ghi"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "0.arrow").write_bytes(b"x")
    assert remove_orphan_span_folders(tmp_path) == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()
