"""probe=model: perplexity under the default model and an LLM judge's strictly parsed 1-5 score,
stored as stat columns beside the OP stats."""
from __future__ import annotations

import csv
import json
import math
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import SENTENCES, compose, reply_json
from sandbox.errors import ConfigError
from sandbox.recipe import load_recipe
from sandbox.steps.base import StepEnv
from sandbox.steps.data.probe_model import (ModelProbe, judge_chat, parse_judge_score, perplexities,
                                       sample_rows)


# ============================================================================ judge parsing
@pytest.mark.parametrize("answer, score", [
    ("4", 4), (" 4\n", 4), ("1", 1), ("5", 5),  # one digit 1-5 once stripped: parsable
    ("4.", None), ("Score: 4", None), ("5/5", None), ("", None), ("   ", None), ("6", None),
    ("0", None), ("15", None), ("4 4", None), ("four", None), ("\uff14", None), (None, None),
])
def test_judge_answers_are_parsed_strictly(answer, score):
    assert parse_judge_score(answer) == score


def test_judge_chat_shows_examples_then_the_sample():
    chat = judge_chat("x" * 50, prompt="Rate: {text}", system="S", examples=[["good", 5]],
                      max_chars=10)
    assert chat == [{"role": "system", "content": "S"},
                    {"role": "user", "content": "Rate: good"},
                    {"role": "assistant", "content": "5"},
                    {"role": "user", "content": "Rate: " + "x" * 10}]


def test_sample_rows_is_seeded_and_sized():
    a = sample_rows(100, 0.25, seed=3)
    assert len(a) == 25 and list(a) == sorted(set(a.tolist()))
    assert np.array_equal(a, sample_rows(100, 0.25, seed=3))
    assert not np.array_equal(a, sample_rows(100, 0.25, seed=4))
    assert list(sample_rows(5, 1.0, 0)) == [0, 1, 2, 3, 4]
    assert len(sample_rows(5, 0.01, 0)) == 1 and len(sample_rows(0, 0.5, 0)) == 0
    with pytest.raises(ConfigError, match="probe.ratio"):
        ModelProbe(ratio=0)


# ============================================================================ the default model
SENTENCE = "The children walked to the library after school to borrow books about the ocean."


def check_perplexities(model, tok, texts: list[str]) -> np.ndarray:
    """What ``perplexities`` must give any causal LM: exp(mean NLL of every token after the
    first), as transformers' labels= loss; the same value alone as padded in a batch; NaN for a
    one-token text (``texts[3]``); only the first max_length tokens scored."""
    import torch

    ppl, scored = perplexities(model, tok, texts, max_length=64, batch_size=4)
    full = tok(texts[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = math.exp(float(model(input_ids=full, labels=full).loss))
    assert ppl[0] == pytest.approx(ref, rel=1e-4)
    assert scored == sum(len(tok(t)["input_ids"]) - 1 for t in texts[:3])
    alone, _ = perplexities(model, tok, texts[2:3], max_length=64, batch_size=1)
    assert ppl[2] == pytest.approx(alone[0], rel=1e-4)
    assert math.isnan(ppl[3]) and len(tok(texts[3])["input_ids"]) < 2
    cut, n = perplexities(model, tok, texts[:1], max_length=5, batch_size=1)
    assert n == 4 and cut[0] != pytest.approx(ppl[0])
    return ppl


def test_perplexity_is_the_mean_token_nll_and_batch_invariant_on_a_tiny_model():
    """The arithmetic of ``perplexities`` on a randomly initialised one-layer Llama and a BPE
    tokenizer trained here (a second); the default model's perplexities are the slow test's."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sandbox.steps.model.train import train_bpe_tokenizer, wrap_tokenizer

    torch.manual_seed(0)
    tok = wrap_tokenizer(train_bpe_tokenizer(SENTENCES + [SENTENCE], vocab_size=300))
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tok.pad_token_id)).eval()
    check_perplexities(model, tok, [SENTENCE, "library books " * 3,
                                    "Hello there, how are you today?", "x"])


@pytest.mark.slow
def test_perplexity_english_below_shuffled_tokens_and_batch_invariant(default_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(default_model)
    model = AutoModelForCausalLM.from_pretrained(default_model).eval()
    ids = tok(SENTENCE, add_special_tokens=False)["input_ids"]
    shuffled_ids = list(ids)
    random.Random(0).shuffle(shuffled_ids)
    shuffled = tok.decode(shuffled_ids)
    texts = [SENTENCE, shuffled, "Hello there, how are you today?", "x"]
    ppl, scored = perplexities(model, tok, texts, max_length=64, batch_size=4)
    assert ppl[0] < ppl[1] / 5  # real English: far less surprising than its shuffled tokens
    # the value is exp(mean NLL of every token after the first), as transformers' labels= loss
    full = tok(SENTENCE, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = math.exp(float(model(input_ids=full, labels=full).loss))
    assert ppl[0] == pytest.approx(ref, rel=1e-4)
    # padding in a batch changes nothing; a one-token text has no perplexity
    alone, _ = perplexities(model, tok, texts[2:3], max_length=64, batch_size=1)
    assert ppl[2] == pytest.approx(alone[0], rel=1e-4)
    assert math.isnan(ppl[3]) and len(tok("x")["input_ids"]) < 2
    # truncation: only the first max_length tokens are scored
    cut, n = perplexities(model, tok, [SENTENCE], max_length=5, batch_size=1)
    assert n == 4 and cut[0] != pytest.approx(ppl[0])


# ============================================================================ the step, api judge
ANSWERS = {"alpha": "4", "beta": "Score: 4", "gamma": "5/5", "delta": "", "epsilon": " 2\n",
           "zeta": "4.", "eta": None}  # None: the server answers 400 (a failed request)


class JudgeServer(BaseHTTPRequestHandler):
    """A stand-in for an OpenAI-compatible server: the answer depends on the sample's first
    word, the request bodies are recorded."""

    bodies: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        word = body["messages"][-1]["content"].split(": ", 1)[1].split()[0]
        answer = ANSWERS[word]
        if answer is None:
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "bad request"}')
            return
        reply_json(self, 200, {"choices": [{"message": {"role": "assistant", "content": answer}}],
                               "usage": {"completion_tokens": 1}})

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), JudgeServer)
    JudgeServer.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def step_env(tmp_path: Path, name: str) -> StepEnv:
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=workdir, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   seed=0, num_proc=1, show_progress=False)


RECIPE = load_recipe({"ops": {"text_length_filter": {"min_len": 1}}})


def test_judge_through_api_unparsable_and_failed_are_counted(tmp_path, judge_server):
    from sandbox.steps.pools import PoolConstruction

    words = list(ANSWERS)
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": [f"{w} is a sample about the river." for w in words]}), pool)
    probe = ModelProbe(perplexity=False, judge_backend="api", judge_base_url=judge_server,
                       judge_model="judge", judge_params={"max_retries": 0}, judge_batch_size=3,
                       plots=True)
    out = probe.run(step_env(tmp_path, "probe"), dataset=str(pool), recipe=RECIPE)

    stats = pq.read_table(out["stats"])
    assert stats.column_names == ["text_length_filter.text_len", "model.judge_score"]
    got = stats.column("model.judge_score").to_pylist()
    assert got[0] == 4.0 and got[4] == 2.0
    assert all(math.isnan(v) for i, v in enumerate(got) if i not in (0, 4))
    s = out["summary"]["model.judge_score"]
    assert (s["count"], s["mean"], s["unparsable"], s["failed"]) == (2, 3.0, 4, 1)
    assert (s["probed"], s["pool_rows"], s["missing"], s["op"], s["stat"]) == \
        (7, 7, 5, "model", "judge_score")
    assert [e["answer"] for e in s["unparsable_examples"]] == ["Score: 4", "5/5", "", "4."]
    assert out["summary"]["text_length_filter.text_len"]["count"] == 7  # the OP stats are kept
    rows = {r["column"]: r for r in csv.DictReader(open(out["summary_path"]))}
    judge_row = rows["model.judge_score"]
    assert judge_row["unparsable"] == "4" and judge_row["count"] == "2"
    answers = [json.loads(line) for line in open(s["answers_path"])]
    assert [a["score"] for a in answers] == [4, None, None, None, 2, None, None]
    assert answers[6]["error"]["status"] == 400
    assert (Path(out["plots"]) / "model.judge_score.png").is_file()
    m = out["metrics"]
    assert (m["judge_unparsable"], m["judge_failed"], m["probed_rows"]) == (4.0, 1.0, 7.0)
    # what the server was asked: the system message, the three examples, then the sample
    body = JudgeServer.bodies[0]
    assert body["model"] == "judge" and body["max_tokens"] == 4 and body["temperature"] == 0.0
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]

    # the model stat splits into pools like any stat (NaN rows sort last)
    pools = PoolConstruction(stats=["model.judge_score"], split_ratios=[2 / 7], random_pool=False,
                             equal_size=False).run(step_env(tmp_path, "pools"), str(pool),
                                                   out["stats"])
    low = pools["pools"][0]
    assert low["size"] == 2 and low["bounds"] == {"model.judge_score": [2.0, 4.0]}

    # probe.ratio: only a seeded sample gets model stats, the summary says how many
    JudgeServer.bodies = []
    half = ModelProbe(perplexity=False, judge_backend="api", judge_base_url=judge_server,
                      judge_model="judge", judge_params={"max_retries": 0}, ratio=0.5, seed=1,
                      plots=False).run(step_env(tmp_path, "half"), dataset=str(pool),
                                       recipe=load_recipe({"ops": {}}))
    assert pq.read_table(half["stats"]).column_names == ["model.judge_score"]  # no OP stats
    s = half["summary"]["model.judge_score"]
    assert s["probed"] == 4 and len(JudgeServer.bodies) == 4 and s["pool_rows"] == 7
    asked = sorted(words.index(b["messages"][-1]["content"].split(": ", 1)[1].split()[0])
                   for b in JudgeServer.bodies)
    assert asked == sample_rows(7, 0.5, 1).tolist()


# ============================================================================ end to end
@pytest.mark.slow
def test_run_probe_model_then_model_feedback(tmp_path, default_model):
    from tests.conftest import make_docs
    from sandbox import run

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in make_docs(40)))
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text("".join(json.dumps({"text": d["text"]}) + "\n"
                                 for d in make_docs(8, seed=5) if d["source"] == "clean"))
    cfg = compose([
        "pipeline=data_only", "probe=model", "refine=model_feedback", "data_pool=jsonl",
        f"data_pool.path={data}", "tracking=none", "recipe=none", "data_evaluator._target_=null",
        "+recipe.ops.special_characters_filter={max_ratio: 0.9}",
        "probe.ratio=0.05", "probe.num_threads=1", "probe.max_length=32",
        "probe.judge_max_new_tokens=2", "probe.plots=false",
        "refine.bins=2", "refine.min_bin_size=5", f"refine.eval_path={eval_path}",
        "refine.trainer.token_budget=4096", "refine.trainer.seq_len=32",
        "refine.trainer.batch_size=8", "refine.trainer.n_layer=1", "refine.trainer.n_embd=32",
        "refine.trainer.vocab_size=300", "refine.trainer.num_threads=1",
        "refine.evaluator.bootstrap=20", "refine.evaluator.num_threads=1",
    ])
    metrics = run(cfg, run_dir=tmp_path / "run")
    probe_dir = tmp_path / "run" / "probe"
    stats = pq.read_table(probe_dir / "stats.parquet")
    ppl = np.array(stats.column("model.perplexity").to_pylist(), dtype=float)
    probed = round(0.05 * stats.num_rows)
    assert np.isfinite(ppl).sum() == probed and (ppl[np.isfinite(ppl)] > 1).all()
    judged = [json.loads(line) for line in open(probe_dir / "judge_answers.jsonl")]
    assert len(judged) == probed and all(isinstance(a["answer"], str) for a in judged)
    scores = stats.column("model.judge_score").to_pylist()
    for a in judged:  # the column holds exactly the strictly parsed answers
        assert a["score"] == parse_judge_score(a["answer"])
        assert (math.isnan(scores[a["row"]]) if a["score"] is None else
                scores[a["row"]] == a["score"])
    assert metrics["perplexity_docs_per_s"] > 0 and metrics["trainings"] == 3  # 2 bins + baseline
    bins = list(csv.DictReader(open(tmp_path / "run" / "refine" / "bins.csv")))
    assert [b["bin"] for b in bins] == ["random", "0", "1"]
    assert (tmp_path / "run" / "refine" / "recipe.yaml").is_file()
    assert (tmp_path / "run" / "process").is_dir()
