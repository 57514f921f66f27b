"""Shared fixtures: a per-session cache, composing configs without Hydra's CLI, and small
real-looking data.

Every test runs against a temporary cache root, never the user's. It is set up when pytest
starts, before any test module is imported: numba reads its cache location once, at import, and
collecting the tests imports it. The default corpus's source wheels (~40 MB from PyPI) are
hard-linked from the user's cache when it has them (the user's cache is only read), so a session
pays only for building the corpora it uses (~5-10 s each). Compiled kernels (~30 s of CPU over
the whole suite) are kept in pytest's cache folder, under a digest of sandbox/'s sources: a
session compiles them only when the code changed since the last one (or under
``-p no:cacheprovider``, into the session's cache)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from sandbox import env_vars
from sandbox.cache import cache_root

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
SESSION_CACHE = pytest.StashKey[Path]()
KERNELS_DIR = pytest.StashKey[Path]()
OWNS_CACHE = pytest.StashKey[bool]()
WORKERS_CACHE = "sandbox_session_cache"  # the key of the cache root in an xdist worker's input
WORKERS_KERNELS = "sandbox_kernels"  # and of numba's cache folder
WORKERS_COLUMNS = "sandbox_columns"  # and of the controller's COLUMNS when this file was loaded
# pytest-xdist's workers start with COLUMNS=80 where the user set none, which narrows the console
# (sandbox/console.py widens it only when COLUMNS is unset): they take the controller's instead
COLUMNS = os.environ.get("COLUMNS")
# numba's cache, named apart from <cache root>/numba: a run given its own cache_dir moves numba's
# cache only when it follows the root, so every test and subprocess shares these compiled kernels
KERNELS = "compiled-kernels"
SOURCES = Path(__file__).resolve().parent.parent / "sandbox"


def pytest_configure(config):
    """Make a temporary folder the cache root of this session and of every process it starts.

    Under pytest-xdist the workers take their controller's folder (``pytest_configure_node``):
    one session builds each corpus and compiles each kernel once, whatever the number of
    workers (the cache's writers rename finished files into place)."""
    worker = getattr(config, "workerinput", None)
    if worker is not None and WORKERS_COLUMNS in worker:
        if worker[WORKERS_COLUMNS] is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = worker[WORKERS_COLUMNS]
    shared = (worker or {}).get(WORKERS_CACHE)
    if shared:
        session_cache, kernels = Path(shared), Path(worker[WORKERS_KERNELS])
    else:
        user_cache = cache_root()
        session_cache = Path(tempfile.mkdtemp(prefix="sandbox-test-cache-"))
        link_downloaded_wheels(user_cache, session_cache)
        config.stash[OWNS_CACHE] = True
        kernels = kernels_dir(config, session_cache)
    os.environ[env_vars.CACHE] = str(session_cache)
    os.environ[env_vars.NUMBA_CACHE_DIR] = str(kernels)
    config.stash[SESSION_CACHE] = session_cache
    config.stash[KERNELS_DIR] = kernels


def kernels_dir(config, session_cache: Path) -> Path:
    """numba's cache folder for this session: ``<pytest cache>/d/sandbox-kernels/<digest>``,
    the digest of every source file under sandbox/ and of the numba and Python versions (numba
    checks only a kernel's own file: a changed module it calls or whose constants it reads
    would otherwise leave a stale kernel in use); the last few digests' folders are kept."""
    cache = getattr(config, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return session_cache / KERNELS
    from importlib.metadata import version

    digest = hashlib.sha256(f"{version('numba')} {sys.version}".encode())
    for f in sorted(SOURCES.rglob("*.py")):
        digest.update(str(f.relative_to(SOURCES)).encode() + b"\0" + f.read_bytes() + b"\0")
    root = cache.mkdir("sandbox-kernels")
    target = root / digest.hexdigest()[:16]
    target.mkdir(exist_ok=True)
    target.touch()  # the most recently used first
    for old in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)[3:]:
        shutil.rmtree(old, ignore_errors=True)
    return target


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): two workers for the fast tests (``-m 'not slow'``),
    which mostly wait on subprocesses and imports; none for a run that may select slow ones
    (``-m slow``, ``-m ''``): trainings, benchmarks and sweeps that size their threads to the
    CPUs they find free, which another worker would take. ``-n N`` chooses for itself."""
    expr = config.option.markexpr or ""
    fast_only = "not slow" in expr and "slow" not in expr.replace("not slow", "")
    return 2 if fast_only else 0


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: a worker shares the controller's cache root, kernels and COLUMNS."""
    node.workerinput[WORKERS_CACHE] = str(node.config.stash[SESSION_CACHE])
    node.workerinput[WORKERS_KERNELS] = str(node.config.stash[KERNELS_DIR])
    node.workerinput[WORKERS_COLUMNS] = COLUMNS


def pytest_unconfigure(config):
    """Remove the session's cache (the process that made it does)."""
    if config.stash.get(OWNS_CACHE, False):
        shutil.rmtree(config.stash[SESSION_CACHE], ignore_errors=True)


def link_downloaded_wheels(source: Path, target: Path) -> None:
    """Hard-link (copy across file systems) the wheels downloaded into ``source``'s ``wheels/``
    (what ``sandbox.data.wheels.fetch_wheel`` stores) into ``target``'s. A wheel file is only
    ever replaced there, never written into, so sharing it cannot alter the source."""
    (target / "wheels").mkdir(parents=True, exist_ok=True)
    for src in sorted((source / "wheels").glob("*.whl")):
        try:
            os.link(src, target / "wheels" / src.name)
        except OSError:
            shutil.copyfile(src, target / "wheels" / src.name)


@pytest.fixture(scope="session", autouse=True)
def session_cache(pytestconfig) -> Path:
    """The session's cache root (``$SANDBOX_CACHE``), shared by every test and subprocess."""
    return pytestconfig.stash[SESSION_CACHE]


@pytest.fixture(autouse=True)
def cache_root_is_the_sessions(session_cache, pytestconfig):
    """A run makes its ``cache_dir`` the process's cache root; put the session's back after each
    test, so that no test leaves the next one an empty cache (and a download)."""
    yield
    os.environ[env_vars.CACHE] = str(session_cache)
    os.environ[env_vars.NUMBA_CACHE_DIR] = str(pytestconfig.stash[KERNELS_DIR])


@pytest.fixture(scope="session")
def default_model(session_cache) -> Path:
    """The embedded default instruct model in the session's cache: hard links to the user's
    converted copy when there is one (the user's cache is only read), else converted here once
    (~30-90 s, from the PyPI wheel)."""
    from sandbox.infer.model import DEFAULT_MODEL_NAME, default_model_dir

    target = session_cache / "models" / DEFAULT_MODEL_NAME
    user = Path(os.environ.get("HOME", "~")).expanduser() / ".cache" / "sandbox" / "models" / \
        DEFAULT_MODEL_NAME
    if not target.exists() and (user / "config.json").is_file() and user != target:
        target.mkdir(parents=True)
        for f in user.iterdir():
            try:
                os.link(f, target / f.name)
            except OSError:
                shutil.copyfile(f, target / f.name)
    return default_model_dir(session_cache)


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made, once per session (per xdist worker): MLflow
    creates a new store by running its ~60 schema migrations, seconds of commits each time."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(tmp_path, empty_mlflow_store) -> str:
    """The URI of ``tmp_path/mlflow.db``, a copy of the session's empty store (what a new store
    is, without the migrations); tests/test_run.py's tests start from no store at all."""
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The config ``python -m sandbox OVERRIDES`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sandbox.context import register_resolvers

    register_resolvers()  # as sandbox.run does: ${ctx:...}, ${step:...} and friends resolve
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []),
                             return_hydra_config=return_hydra_config)


SENTENCES = [
    "The river runs through the old town and past the mill.",
    "Farmers bring their goods to the market every Saturday morning.",
    "A small library near the square lends books to children.",
    "The council met on Tuesday to discuss the new bridge.",
    "Rain fell across the valley for most of the afternoon.",
    "Students at the school planted trees along the road.",
    "The museum opened a new exhibition about local history.",
    "Fishermen repaired their nets before the season began.",
]


def step_env(tmp_path: Path, name: str):
    """A step environment in ``tmp_path/run/<name>`` over the session's cache (so the default
    model is found), without progress bars."""
    from sandbox.steps.base import StepEnv

    workdir = tmp_path / "run" / name
    workdir.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=workdir, run_dir=tmp_path / "run", cache_dir=cache_root(),
                   show_progress=False)


def read_jsonl(path) -> list[dict]:
    """The records of a jsonl file (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def reply_json(handler, status: int, payload, headers: dict | None = None) -> None:
    """Answer an ``http.server`` request with ``payload`` as JSON (test servers)."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def make_docs(n: int = 120, seed: int = 0) -> list[dict]:
    """Clean multi-sentence documents plus noise the default recipe should catch."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        k = rng.randint(3, 8)
        text = " ".join(rng.choice(SENTENCES) for _ in range(k))
        docs.append({"text": text, "id": i, "source": "clean"})
    noise = [
        "<div><p>Buy now!!!</p><a href='http://spam.example.com'>click</a></div>",
        "$$$ ### %%% &&& *** @@@ !!! ??? ((( ))) [[[ ]]] {{{ }}}",
        "ok",
        "spam " * 200,
        "Contact me at someone@example.com or visit www.example.com/offer now please",
    ]
    for j, t in enumerate(noise * 4):
        docs.append({"text": t, "id": n + j, "source": "noise"})
    docs.append(dict(docs[0], id=10_000))  # an exact duplicate
    rng.shuffle(docs)
    return docs


# A model that trains in seconds, for tests of what runs around it (the trainer has its own tests).
TINY_TRAINER = ["trainer.token_budget=4096", "trainer.log_every=2", "trainer.n_layer=1",
                "trainer.n_embd=32", "trainer.n_head=2", "trainer.vocab_size=300",
                "trainer.seq_len=32", "trainer.batch_size=8"]


def write_eval_files(folder: Path) -> list[str]:
    """Held-out text and a small sentiment task in ``folder``, so that evaluating a tiny model
    takes a second; returns the evaluator overrides that point at them."""
    held_out, train, test = (folder / n for n in ("eval.jsonl", "task_train.jsonl",
                                                  "task_test.jsonl"))
    held_out.write_text("".join(json.dumps({"text": " ".join(SENTENCES[i:i + 3])}) + "\n"
                                for i in range(0, 6)))
    words = {1: ["great", "wonderful", "superb", "lovely"],
             0: ["awful", "boring", "terrible", "dull"]}
    rows = [{"text": f"the film was {w} and {w}", "label": lab} for lab, ws in words.items()
            for w in ws for _ in range(5)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[::2]))
    choice = folder / "choice.jsonl"  # documents long enough for context + continuation
    choice.write_text("".join(json.dumps({"text": " ".join(SENTENCES[i:] + SENTENCES[:i])}) + "\n"
                              for i in range(8)))
    return [f"evaluator.eval_path={held_out}", f"evaluator.task_train_path={train}",
            f"evaluator.task_test_path={test}", f"evaluator.choice_path={choice}",
            "evaluator.choice_context_words=12", "evaluator.choice_continuation_words=6"]


def write_quality_reference(folder: Path) -> list[str]:
    """A small clean (1) / noisy (0) reference in ``folder`` for the data evaluator's quality
    classifier; returns the override that points at it."""
    reference = folder / "quality_reference.jsonl"
    noisy = ["$$$ ### %%%", "click here buy now", "<div></div> ok"] * 3
    reference.write_text("".join(json.dumps({"text": s, "label": 1}) + "\n" for s in SENTENCES) +
                         "".join(json.dumps({"text": t, "label": 0}) + "\n" for t in noisy))
    return [f"data_evaluator.reference_path={reference}"]


@pytest.fixture
def eval_files(tmp_path) -> list[str]:
    return write_eval_files(tmp_path)


@pytest.fixture
def docs_file(tmp_path) -> Path:
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in make_docs()), encoding="utf-8")
    return p


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test (``_thread.interrupt_main`` raises
    KeyboardInterrupt only under it; a library loaded earlier may have replaced it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
