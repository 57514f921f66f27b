"""The infer step: message builders, output parsers, the transformers backend on the embedded
default model, resume after an interruption, and the API backend against real HTTP servers on
loopback: `transformers serve` with the default model (end to end), and small `http.server`
servers that answer 429/500 before 200, fail some rows, check the key, or go away mid-run."""
from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sandbox import run
from sandbox.errors import ConfigError, DataError
from sandbox.infer import messages as M
from sandbox.infer.backends import APIBackend, backoff_delay, parse_retry_after
from sandbox.steps.model.infer import APIInfer, _scan_partial
from tests.conftest import compose, read_jsonl, reply_json, step_env


# ============================================================================ builders / parsers
def test_build_messages_system_and_query():
    item = {"system": "Be brief.", "query": "Capital of France?"}
    assert M.build_messages(item) == [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Capital of France?"}]
    # no (or an empty) system field: no system message
    assert M.build_messages({"query": "hi", "system": ""}) == [{"role": "user", "content": "hi"}]
    assert M.build_messages({"q": "hi", "sys": "S"}, system_key="sys", query_key="q") == \
        [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]


def test_build_messages_missing_query_names_the_key():
    with pytest.raises(DataError, match=r"no 'query' field.*query_key"):
        M.build_messages({"text": "hello"})


def test_build_messages_for_math_qa():
    item = {"query": "2+2?", "response": "4", "system": "Grade it."}
    assert M.build_messages_for_math_qa(item) == [
        {"role": "system", "content": "Grade it."},
        {"role": "user", "content": "Question: 2+2?\nAnswer: 4"}]
    assert M.build_messages_for_math_qa({"q": "1+1?", "a": 2}, query_key="q", response_key="a") \
        == [{"role": "user", "content": "Question: 1+1?\nAnswer: 2"}]
    with pytest.raises(DataError, match="response_key"):
        M.build_messages_for_math_qa({"query": "2+2?"})


def test_parsers():
    assert M.parse_output(" as is ", {}) == " as is "
    assert M.parse_number("The answer is 4.", {}) == 4.0
    assert M.parse_number("-1.5e2 points", {}) == -150.0
    assert M.parse_number("no idea", {}) == "no idea"


def own_builder(item, prefix="Q: ", **kwargs):
    """A user's builder that returns two chats per row (the response becomes a list)."""
    return [[{"role": "user", "content": prefix + item["text"]}],
            [{"role": "user", "content": item["text"].upper()}]]


def test_resolve_functions_by_name_path_and_partial():
    assert M.resolve_function("build_messages", M.BUILDERS, "k") is M.build_messages
    assert M.resolve_function("tests.test_infer.own_builder", M.BUILDERS, "k").__name__ == \
        "own_builder"
    part = functools.partial(own_builder, prefix="P: ")  # what `_partial_: true` builds
    assert M.resolve_function(part, M.BUILDERS, "k") is part
    with pytest.raises(ConfigError, match="build_input"):
        M.resolve_function("build_input", M.BUILDERS, "infer.build_messages_func")
    chats, several = M.as_chats(own_builder({"text": "a"}), "row 0")
    assert several and len(chats) == 2
    chats, several = M.as_chats(M.build_messages({"query": "a"}), "row 0")
    assert not several and chats == [[{"role": "user", "content": "a"}]]
    with pytest.raises(DataError, match="must return a chat"):
        M.as_chats("just text", "row 0")


def test_infer_options_compose():
    for option in ("hf", "vllm", "api"):
        cfg = compose(["pipeline=infer", f"infer={option}", "data_pool=jsonl",
                       "data_pool.path=x.jsonl"])
        assert cfg.infer._target_.startswith("sandbox.steps.model.infer.")
        steps = OmegaConf.to_container(cfg.pipeline, resolve=False)["steps"]
        assert steps["infer"]["inputs"]["dataset"] == "${ctx:load.dataset}"
        assert cfg.infer.func_kwargs.query_key == "text"


# ============================================================================ loopback servers
class Stub:
    """An OpenAI-compatible chat endpoint on loopback (``http.server`` in a thread). ``script(n,
    body)`` -> ``(status, headers, payload)`` for the n-th request (0-based), or None to drop the
    connection without an answer (a server process dying mid-request); the default answers
    ``"echo: <last user message>"`` with a usage count."""

    def __init__(self, script=None, port: int = 0):
        self.script = script or (lambda n, body: (200, {}, echo(body)))
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.requests)
                    stub.requests.append(body)
                    stub.headers.append(dict(self.headers))
                answer = stub.script(n, body)
                if answer is None:
                    self.close_connection = True
                    return
                status, headers, payload = answer
                reply_json(self, status, payload, headers)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def echo(body: dict) -> dict:
    text = "echo: " + body["messages"][-1]["content"]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"completion_tokens": len(text.split())}}


@pytest.fixture
def stub():
    servers = []

    def start(script=None, port=0):
        s = Stub(script, port)
        servers.append(s)
        return s

    yield start
    for s in servers:
        try:
            s.stop()
        except OSError:
            pass


def write_rows(path: Path, n: int, marker: dict | None = None) -> Path:
    rows = [{"text": f"question {i}" + (marker or {}).get(i, ""), "id": i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def api_step(base_url, **kw) -> APIInfer:
    args = dict(base_url=base_url, model="m", func_kwargs={"query_key": "text"}, batch_size=2,
                concurrency=2, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, seed=0)
    args.update(kw)
    return APIInfer(**args)


# ============================================================================ retries and failures
def test_retry_honours_retry_after_then_backs_off(stub):
    def script(n, body):
        if n == 0:
            return 429, {"Retry-After": "3"}, {"error": "slow down"}
        if n == 1:
            return 500, {}, {"error": "boom"}
        return 200, {}, echo(body)

    server = stub(script)
    backend = APIBackend(base_url=server.base_url, model="m", max_retries=3, backoff_base_s=0.4,
                         backoff_max_s=10, seed=1)
    waits = []
    backend.sleep = waits.append  # observe the waits instead of sleeping
    backend.load()
    [reply] = backend.generate([[{"role": "user", "content": "hi"}]])
    assert reply.ok and reply.text == "echo: hi" and reply.tokens == 2
    assert len(server.requests) == 3
    assert waits[0] == 3.0  # the server's Retry-After, not the backoff
    assert 0.4 <= waits[1] <= 0.8  # second try: base * 2**1 = 0.8, jittered into [0.4, 0.8]


def test_backoff_and_retry_after_parsing():
    import random

    rng = random.Random(0)
    for attempt in range(8):
        d = min(5.0, 0.5 * 2 ** attempt)
        assert d / 2 <= backoff_delay(attempt, 0.5, 5.0, rng) <= d
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_retries_give_up_and_client_errors_are_not_retried(stub):
    server = stub(lambda n, body: (503, {}, {"error": "down"}) if "a" in body["messages"][-1][
        "content"] else (400, {}, {"error": "bad request"}))
    backend = APIBackend(base_url=server.base_url, model="m", max_retries=2, backoff_base_s=0.001)
    backend.load()
    r503, r400 = backend.generate([[{"role": "user", "content": "a"}],
                                   [{"role": "user", "content": "b"}]])
    assert r503.error["status"] == 503 and r503.error["attempts"] == 3 and r503.text is None
    assert r400.error["status"] == 400 and r400.error["attempts"] == 1
    assert "bad request" in r400.error["reason"]
    assert len(server.requests) == 4


def test_failure_accounting_and_max_failure_rate(stub, tmp_path):
    server = stub(lambda n, body: (500, {}, {"error": "model crashed"})
                  if "FAIL" in body["messages"][-1]["content"] else (200, {}, echo(body)))
    data = write_rows(tmp_path / "q.jsonl", 4, {2: " FAIL"})
    # 1 of 4 rows fails: allowed at max_failure_rate=0.25
    out = api_step(server.base_url, max_failure_rate=0.25, max_retries=1).run(
        step_env(tmp_path, "a"), dataset=str(data))
    rows = read_jsonl(out["dataset"])
    assert [r["response"] for r in rows] == ["echo: question 0", "echo: question 1", None,
                                             "echo: question 3"]
    assert [r["id"] for r in rows] == [0, 1, 2, 3]  # every input row, in order
    [record] = read_jsonl(out["failures"])
    assert record["row"] == 2 and record["status"] == 500 and record["attempts"] == 2
    assert "model crashed" in record["reason"]
    assert out["metrics"]["failures"] == 1 and out["metrics"]["failure_rate"] == 0.25
    assert out["metrics"]["generated_tokens"] == 9  # 3 answered rows x "echo: question N"
    # the same failure is too many at max_failure_rate=0: the step stops, naming both files
    with pytest.raises(DataError, match=r"1 of 4 row\(s\) failed.*max_failure_rate=0.*"
                                        r"status 500.*_failures.jsonl.*resume=true"):
        api_step(server.base_url, max_retries=0).run(step_env(tmp_path, "b"), dataset=str(data))


def test_bad_answers_are_failures_not_empty_strings(stub, tmp_path):
    server = stub(lambda n, body: (200, {}, {"choices": []}))
    data = write_rows(tmp_path / "q.jsonl", 2)
    out = api_step(server.base_url, max_failure_rate=1.0).run(step_env(tmp_path, "infer"), dataset=str(data))
    assert [r["response"] for r in read_jsonl(out["dataset"])] == [None, None]
    assert all("choices.0.message.content" in f["reason"] for f in read_jsonl(out["failures"]))


def test_server_dies_mid_run_then_resume(stub, tmp_path):
    """The server goes away after 4 answers: the step fails with a clear error, the output
    holds the answered rows; a re-run against a new server continues from the first row
    without a response and asks only for the rest."""
    data = write_rows(tmp_path / "q.jsonl", 7)
    first = stub(lambda n, body: (200, {}, echo(body)) if n < 4 else None)
    env = step_env(tmp_path, "infer")
    step = api_step(first.base_url, concurrency=1, max_retries=1)
    with pytest.raises(DataError, match=r"connection to .* failed") as err:
        step.run(env, dataset=str(data))
    assert "resume=true" in str(err.value)
    first.stop()
    out = env.workdir / "q_inference.jsonl"
    partial = read_jsonl(out)
    assert [r["response"] for r in partial[:4]] == [f"echo: question {i}" for i in range(4)]
    assert all(r["response"] is None for r in partial[4:])  # the failed batch is on disk too
    second = stub()
    result = api_step(second.base_url, concurrency=1, max_retries=1).run(env, dataset=str(data))
    rows = read_jsonl(result["dataset"])
    assert [r["response"] for r in rows] == [f"echo: question {i}" for i in range(7)]
    assert [b["messages"][-1]["content"] for b in second.requests] == \
        [f"question {i}" for i in range(4, 7)]
    assert result["metrics"]["resumed_rows"] == 4


INTERRUPT_AT: list[int] = []


def interrupting_builder(item, **kwargs):
    """build_messages, but Ctrl-C arrives when it reaches the row id in INTERRUPT_AT."""
    if item["id"] in INTERRUPT_AT:
        raise KeyboardInterrupt
    return M.build_messages(item, **kwargs)


def test_interrupted_run_resumes_from_the_first_row_without_a_response(stub, tmp_path):
    server = stub()
    data = write_rows(tmp_path / "q.jsonl", 5)
    env = step_env(tmp_path, "infer")
    INTERRUPT_AT[:] = [3]
    step = api_step(server.base_url, build_messages_func=interrupting_builder)
    with pytest.raises(KeyboardInterrupt):
        step.run(env, dataset=str(data))
    assert len(read_jsonl(env.workdir / "q_inference.jsonl")) == 2  # the first batch is on disk
    INTERRUPT_AT[:] = []
    out = step.run(env, dataset=str(data))
    assert [r["response"] for r in read_jsonl(out["dataset"])] == \
        [f"echo: question {i}" for i in range(5)]
    assert len(server.requests) == 5  # rows 0-1 were not asked again
    assert out["metrics"]["resumed_rows"] == 2


def test_scan_partial_cuts_a_half_written_line(tmp_path):
    out = tmp_path / "x_inference.jsonl"
    out.write_text('{"id": 0, "response": "a"}\n{"id": 1, "response": null}\n'
                   '{"id": 2, "response": "c"}\n{"id": 3, "resp')
    start, answered = _scan_partial(out, "response", 10)
    assert start == 1 and answered == {0: "a", 2: "c"}
    assert out.read_text() == '{"id": 0, "response": "a"}\n'


def test_resume_starts_over_when_the_config_changed(stub, tmp_path):
    server = stub()
    data = write_rows(tmp_path / "q.jsonl", 3)
    env = step_env(tmp_path, "infer")
    api_step(server.base_url).run(env, dataset=str(data))
    n = len(server.requests)
    api_step(server.base_url).run(env, dataset=str(data))  # same config: nothing to ask
    assert len(server.requests) == n
    api_step(server.base_url, max_new_tokens=7).run(env, dataset=str(data))  # changed: redo
    assert len(server.requests) == n + 3
    assert all(b["max_tokens"] == 7 for b in server.requests[n:])


def test_several_chats_per_row_and_a_list_of_inputs(stub, tmp_path):
    server = stub()
    a, b = write_rows(tmp_path / "a.jsonl", 2), write_rows(tmp_path / "b.jsonl", 1)
    step = api_step(server.base_url, build_messages_func="tests.test_infer.own_builder")
    out = step.run(step_env(tmp_path, "infer"), dataset=[str(a), str(b)])
    assert [Path(p).name for p in out["dataset"]] == ["a_inference.jsonl", "b_inference.jsonl"]
    assert read_jsonl(out["dataset"][0])[1]["response"] == ["echo: Q: question 1",
                                                            "echo: QUESTION 1"]
    assert out["metrics"]["rows"] == 3


def test_api_key_is_sent_but_never_written(stub, tmp_path, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    server = stub(lambda n, body: (200, {}, echo(body)))
    data = write_rows(tmp_path / "q.jsonl", 2)
    cfg = compose(["pipeline=infer", "infer=api", f"infer.base_url={server.base_url}",
                   "infer.model=m", "infer.api_key_env=MY_LLM_KEY", "data_pool=jsonl",
                   f"data_pool.path={data}", "tracking=none"])
    run(cfg, run_dir=tmp_path / "run")
    assert all(h.get("Authorization") == f"Bearer {secret}" for h in server.headers)
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


def test_api_needs_an_address_and_a_model(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="base_url"):
        APIBackend(model="m").load()
    with pytest.raises(ConfigError, match="infer.model"):
        APIBackend(base_url="http://127.0.0.1:1/v1").load()


def test_vllm_missing_fails_before_any_work(tmp_path, docs_file):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    cfg = compose(["pipeline=infer", "infer=vllm", "data_pool=jsonl",
                   f"data_pool.path={docs_file}", "tracking=none"])
    with pytest.raises(ConfigError, match=r"NVIDIA GPU.*pip install vllm.*infer=hf"):
        run(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "infer").exists() or \
        not list((tmp_path / "run" / "infer").glob("*.jsonl"))


# ============================================================================ the default model
HF_ANSWERS: list = []  # the hf test's greedy answers, which the server's must equal
QUESTIONS = [{"text": "What is the capital of France?", "answer": "Paris"},
             {"text": "What color is the sky on a clear day?", "answer": "blue",
              "system": "Answer in one word."}]


@pytest.mark.slow
def test_hf_default_model_answers_every_row(default_model, serve_process, tmp_path):
    # (serve_process: the server of the next test starts loading meanwhile)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    cfg = compose(["pipeline=infer", "data_pool=jsonl", f"data_pool.path={data}",
                   "tracking=none", "infer.max_new_tokens=8", "infer.num_threads=1"])
    assert cfg.infer.model is None  # no model argument: the embedded default
    metrics = run(cfg, run_dir=tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "infer" / "pool_inference.jsonl")
    assert len(rows) == 2 and all(isinstance(r["response"], str) and r["response"] for r in rows)
    assert "Paris" in rows[0]["response"]  # greedy decoding of SmolLM2-135M-Instruct
    assert rows[1]["answer"] == "blue"  # every input field is kept
    assert metrics["rows"] == 2 and metrics["failures"] == 0
    assert 0 < metrics["generated_tokens"] <= 16 and metrics["tokens_per_s"] > 0
    HF_ANSWERS[:] = [r["response"] for r in rows]


# ============================================================================ transformers serve
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_process(default_model):
    """`transformers serve` (an OpenAI-compatible server) with the default model, on loopback,
    offline; started without waiting (it loads while other tests run), stopped after the
    module."""
    exe = Path(sys.executable).parent / "transformers"
    try:
        import fastapi  # noqa: F401  the `transformers[serving]` extra
        import uvicorn  # noqa: F401
    except ImportError:
        pytest.skip("transformers[serving] is not installed")
    port = free_port()
    log = open(default_model.parent / f"serve-{port}.log", "w")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(exe), "serve", str(default_model), "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield f"http://127.0.0.1:{port}", str(default_model), proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def transformers_server(serve_process):
    """The server above once it answers ``/health``."""
    base, model, proc, log = serve_process
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return base + "/v1", model
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.flush()
            pytest.fail("transformers serve did not start: " + Path(log.name).read_text()[-2000:])
        time.sleep(0.5)


@pytest.mark.slow
def test_api_end_to_end_against_transformers_serve(transformers_server, tmp_path):
    base_url, model = transformers_server
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    cfg = compose(["pipeline=infer", "infer=api", f"infer.base_url={base_url}",
                   f"infer.model={model}", "infer.max_new_tokens=8", "infer.concurrency=1",
                   "data_pool=jsonl", f"data_pool.path={data}", "tracking=none"])
    metrics = run(cfg, run_dir=tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "infer" / "pool_inference.jsonl")
    assert "Paris" in rows[0]["response"]
    assert all(isinstance(r["response"], str) and r["response"] for r in rows)
    assert metrics["failures"] == 0 and 0 < metrics["generated_tokens"] <= 16
    if HF_ANSWERS:  # the same weights, greedy, the same chat template: the same answers
        assert [r["response"] for r in rows] == HF_ANSWERS
