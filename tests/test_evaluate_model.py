"""LMEvaluator: word-level perplexity against a hand calculation, the downstream probe, errors."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.errors import DataError
from sandbox.steps.base import StepEnv
from sandbox.steps.evaluate.lm import LMEvaluator
from sandbox.steps.model.train import CausalLMTrainer

ANIMALS = ["cat", "dog", "horse", "bird", "rabbit", "goat", "sheep", "mouse", "fox", "duck"]
ANIMAL_VERBS = ["runs across", "sleeps in", "jumps over", "hides behind", "eats grass in"]
PLACES = ["the meadow", "the barn", "the old fence", "the garden", "the field"]
MARKET = ["stocks", "bonds", "prices", "shares", "markets", "rates", "profits", "funds"]
MARKET_VERBS = ["fell sharply", "rose again", "stayed flat", "recovered slowly", "dropped"]
WHEN = ["on monday", "after the report", "this quarter", "in early trading", "last year"]


def animal(rng):
    return f"The {rng.choice(ANIMALS)} {rng.choice(ANIMAL_VERBS)} {rng.choice(PLACES)}."


def finance(rng):
    return f"{rng.choice(MARKET).capitalize()} {rng.choice(MARKET_VERBS)} {rng.choice(WHEN)}."


def write_jsonl(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


class RecordingTracker:
    def __init__(self):
        self.metrics, self.artifacts = [], []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((metrics, step))

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(str(path))


def make_env(workdir: Path, seed: int = 3, show_progress=False) -> StepEnv:
    workdir.mkdir(parents=True, exist_ok=True)
    return StepEnv(name="evaluate", workdir=workdir, run_dir=workdir.parent,
                   cache_dir=workdir.parent, seed=seed, tracker=RecordingTracker(),
                   show_progress=show_progress)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("evaldata")
    rng = random.Random(0)
    pool = [" ".join((animal if rng.random() < 0.5 else finance)(rng) for _ in range(3))
            for _ in range(200)]
    pq.write_table(pa.table({"text": pool}), d / "pool.parquet")
    # eval docs: short ones, one longer than several windows, unicode (bytes != chars), a blank
    long_doc = " ".join(animal(rng) for _ in range(12))
    evals = [{"text": "The cat sleeps in the barn."}, {"text": long_doc},
             {"text": "Prices rose again — naïve café data."}, {"text": "   "},
             {"text": finance(rng) + " " + animal(rng)}]

    def task(n):
        rows = []
        for _ in range(n):
            label = int(rng.random() < 0.4)  # unbalanced: majority = 0.6
            rows.append({"text": finance(rng) if label else animal(rng), "label": label})
        return rows

    return {"pool": str(d / "pool.parquet"),
            "eval": write_jsonl(d / "eval.jsonl", evals),
            "train": write_jsonl(d / "task_train.jsonl", task(200)),
            "test": write_jsonl(d / "task_test.jsonl", task(100)),
            "eval_texts": [e["text"] for e in evals]}


@pytest.fixture(scope="module")
def model_dir(data, tmp_path_factory) -> str:
    env = StepEnv(name="train", workdir=tmp_path_factory.mktemp("train"), run_dir=Path("."),
                  cache_dir=Path("."), seed=0, show_progress=False)
    trainer = CausalLMTrainer(token_budget=12_000, seq_len=32, batch_size=8, n_layer=1, n_embd=32,
                              n_head=2, vocab_size=300, lr=1e-2, num_threads=1, log_every=10)
    return trainer.run(env, dataset=data["pool"])["model_dir"]


def hand_nll(model_dir: str, texts: list[str], L: int, S: int | None = None) -> tuple[float, int]:
    """Independent reference: each token's NLL from its own forward pass over the context its
    window gives it. ``BOS doc`` is scored in windows of L inputs; the first scores targets
    1..L, each next one the next S targets with the L inputs before them (S = L: disjoint
    windows, except that the last window of a document is filled up with earlier context)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    S = S or L
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            full = [tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]
            n = len(full) - 1
            for j in range(1, n + 1):  # predict full[j]
                end = min(L if j <= L else L + math.ceil((j - L) / S) * S, n)
                start = max(0, end - L)
                logits = model(torch.tensor([full[start:j]])).logits[0, -1]
                total -= torch.log_softmax(logits.double(), -1)[full[j]].item()
                count += 1
    return total, count


@pytest.mark.slow  # a forward pass per token of the reference loop
def test_word_perplexity_matches_hand_calculation(data, model_dir, tmp_path):
    L = 16  # shorter than the model's context: the long document spans several windows
    ev = LMEvaluator(choice=False, eval_path=data["eval"], seq_len=L, max_eval_words=None,
                     batch_size=3)
    env = make_env(tmp_path / "ev", show_progress=True)
    out = ev.run(env, model_dir=model_dir)
    report = json.load(open(out["report"]))
    lm = report["language_modeling"]

    texts = [t for t in data["eval_texts"] if t.split()]  # the blank doc is skipped
    total, n = hand_nll(model_dir, texts, L)
    words = sum(len(t.split()) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    assert lm["num_docs"] == 4 and lm["num_words"] == words and lm["num_bytes"] == nbytes
    assert lm["num_tokens"] == n and lm["num_windows"] > lm["num_docs"]
    assert lm["total_nll"] == pytest.approx(total, rel=1e-4)

    m = out["metrics"]
    assert m["perplexity"] == pytest.approx(math.exp(total / words), rel=1e-3)
    assert m["token_perplexity"] == pytest.approx(math.exp(total / n), rel=1e-3)
    assert m["eval_loss"] == pytest.approx(total / n, rel=1e-4)
    assert m["bits_per_byte"] == pytest.approx(total / math.log(2) / nbytes, rel=1e-4)
    assert Path(out["report"]).parent == Path(env.workdir)
    assert env.tracker.artifacts == [out["report"], out["doc_scores"]]


@pytest.mark.slow  # a forward pass per token of the reference loop
def test_overlapping_windows_match_hand_calculation(data, model_dir, tmp_path):
    texts = [t for t in data["eval_texts"] if t.split()]
    a = LMEvaluator(choice=False, eval_path=data["eval"], seq_len=16).run(
        make_env(tmp_path / "a"), model_dir=model_dir)
    b = LMEvaluator(choice=False, eval_path=data["eval"], seq_len=16, stride=5).run(
        make_env(tmp_path / "b"), model_dir=model_dir)
    lm_a = json.load(open(a["report"]))["language_modeling"]
    lm_b = json.load(open(b["report"]))["language_modeling"]
    assert lm_b["num_tokens"] == lm_a["num_tokens"] and lm_b["num_windows"] > lm_a["num_windows"]
    total, n = hand_nll(model_dir, texts, 16, 5)
    assert lm_b["num_tokens"] == n
    assert lm_b["total_nll"] == pytest.approx(total, rel=1e-4)
    # the model learned the templates: far better than guessing uniformly over its 300 tokens
    assert a["metrics"]["eval_loss"] < math.log(300) - 2


def test_word_budget_keeps_whole_documents(data, model_dir, tmp_path):
    out = LMEvaluator(choice=False, eval_path=data["eval"], max_eval_words=10).run(
        make_env(tmp_path / "ev"), model_dir=model_dir)
    lm = json.load(open(out["report"]))["language_modeling"]
    assert lm["num_docs"] == 1 and lm["num_words"] == 6  # the 2nd doc would pass the budget
    tiny = LMEvaluator(choice=False, eval_path=data["eval"], max_eval_words=1).run(
        make_env(tmp_path / "ev2"), model_dir=model_dir)
    assert json.load(open(tiny["report"]))["language_modeling"]["num_docs"] == 1  # at least one


def test_downstream_probe_beats_majority(data, model_dir, tmp_path):
    ev = LMEvaluator(choice=False, eval_path=data["eval"], task_train_path=data["train"], linear_probe=True,
                     task_test_path=data["test"])
    out = ev.run(make_env(tmp_path / "ev"), model_dir=model_dir)
    m = out["metrics"]
    assert 0.5 <= m["downstream_majority"] <= 0.75
    assert m["downstream_accuracy"] >= 0.95 > m["downstream_majority"]
    assert m["downstream_f1"] >= 0.9
    ds = json.load(open(out["report"]))["downstream"]
    assert ds["num_train"] == 200 and ds["num_test"] == 100 and ds["labels"] == [0, 1]
    # seeded and deterministic
    again = ev.run(make_env(tmp_path / "ev2"), model_dir=model_dir)["metrics"]
    assert again["downstream_accuracy"] == m["downstream_accuracy"]
    assert again["perplexity"] == pytest.approx(m["perplexity"], rel=1e-9)


def test_features_ignore_padding(data, model_dir):
    """A snippet's features do not depend on what it is batched with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ev = LMEvaluator(choice=False, batch_size=4)
    texts = ["The cat runs across the meadow.", "Stocks fell sharply on monday after the report.",
             "", "Bonds"]
    together = ev.features(model, tok, texts, 32, tok.bos_token_id)
    alone = np.stack([ev.features(model, tok, [t], 32, tok.bos_token_id)[0] for t in texts])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)


def test_errors(data, model_dir, tmp_path):
    blank = write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "  "}])
    with pytest.raises(DataError, match="no non-empty text"):
        LMEvaluator(choice=False, eval_path=blank).run(make_env(tmp_path / "a"), model_dir)
    nolabel = write_jsonl(tmp_path / "nolabel.jsonl", [{"text": "a b"}])
    with pytest.raises(DataError, match="label"):
        LMEvaluator(choice=False, eval_path=data["eval"], task_train_path=nolabel,
                    task_test_path=data["test"], linear_probe=True).run(make_env(tmp_path / "b"), model_dir)
    with pytest.raises(DataError, match="not a saved model"):
        LMEvaluator(choice=False, eval_path=data["eval"]).run(make_env(tmp_path / "c"),
                                                                   str(tmp_path))
    with pytest.raises(ValueError, match="exceeds"):
        LMEvaluator(choice=False, eval_path=data["eval"], seq_len=4096).run(
            make_env(tmp_path / "d"), model_dir)


def test_continuation_choice_items_and_scores(data, model_dir, tmp_path):
    """Items are fixed and well formed; a continuation's log-probability matches a direct
    per-token computation; the task's metrics, chance and intervals are reported."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sandbox.steps.evaluate.continuation_choice import _logprobs, build_items

    rng = random.Random(5)
    texts = [" ".join(animal(rng) if k % 2 else finance(rng) for _ in range(8)) for k in range(30)]
    items = build_items(texts, options=4, context_words=10, continuation_words=5)
    assert items == build_items(texts, 4, 10, 5) and len(items) == 30
    for (ctx, conts), text in zip(items, texts):
        words = text.split()
        assert ctx == " ".join(words[:10]) and conts[0] == " ".join(words[10:15])
        assert len(conts) == 4
    assert build_items(texts[:3], 4, 10, 5) == []  # fewer documents than options

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    bos = tok.bos_token_id
    prefix = [bos] + tok("The cat sleeps", add_special_tokens=False)["input_ids"]
    cont = tok(" in the barn.", add_special_tokens=False)["input_ids"]
    other = [bos] + tok("Stocks", add_special_tokens=False)["input_ids"]
    got = _logprobs(model, [(prefix, cont), (other, cont[:2])], L=32, batch_size=2)
    with torch.no_grad():
        seq = torch.tensor([prefix + cont])
        logp = torch.log_softmax(model(seq).logits[0].double(), -1)
        want = sum(logp[len(prefix) - 1 + j, t].item() for j, t in enumerate(cont))
    assert got[0] == pytest.approx(want, rel=1e-4)

    path = write_jsonl(tmp_path / "choice.jsonl", [{"text": t} for t in texts])
    ev = LMEvaluator(eval_path=data["eval"], choice_path=path,
                     choice_context_words=10, choice_continuation_words=5, bootstrap=200)
    m = ev.run(make_env(tmp_path / "ev"), model_dir=model_dir)["metrics"]
    assert m["choice_chance"] == 0.25 and 0 <= m["choice_accuracy"] <= 1
    assert m["choice_accuracy_ci_low"] <= m["choice_accuracy"] <= m["choice_accuracy_ci_high"]
    assert m["choice_logprob"] < 0 and m["choice_logprob_ci_low"] < m["choice_logprob_ci_high"]
    short = write_jsonl(tmp_path / "short.jsonl", [{"text": "too short"}] * 10)
    with pytest.raises(DataError, match="continuation-choice"):
        LMEvaluator(eval_path=data["eval"], choice_path=short).run(
            make_env(tmp_path / "e"), model_dir=model_dir)


def test_doc_scores_reduce_to_the_metrics(data, model_dir, tmp_path):
    """doc_scores.npz holds what each metric is computed from: reducing its arrays gives the
    reported values exactly (paired comparisons resample these documents)."""
    from sandbox.steps.evaluate.lm import DOC_METRICS, load_doc_scores

    out = LMEvaluator(eval_path=data["eval"], task_train_path=data["train"],
                      task_test_path=data["test"], linear_probe=True, bootstrap=0).run(
        make_env(tmp_path / "ev"), model_dir=model_dir)
    docs = load_doc_scores(out["doc_scores"])
    for name, (keys, stat) in DOC_METRICS.items():
        assert stat(*(docs[k] for k in keys)) == pytest.approx(out["metrics"][name], rel=1e-12)


def test_device_refusal_without_cuda(data, model_dir, tmp_path):
    import torch

    from sandbox.errors import ConfigError

    with pytest.raises(ConfigError, match="evaluator.device"):
        LMEvaluator(device="gpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"evaluator.device=cuda: CUDA is not available.*"
                                          r"evaluator.device=cpu"):
        LMEvaluator(eval_path=data["eval"], device="cuda").run(make_env(tmp_path / "ev"),
                                                               model_dir=model_dir)
