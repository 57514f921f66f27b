"""evaluator=llm_judge (strict grade parsing, failure accounting) and experiment=prompt_optimization
(prompt proposals, the prompt x QA cartesian join, the grader, and the iterating pipeline end to
end with the embedded default model)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sandbox import run
from sandbox.errors import ConfigError, DataError
from sandbox.infer.backends import Reply
from sandbox.steps.evaluate.judge import LLMJudgeEvaluator, parse_grade
from sandbox.steps.pools import PoolCartesianJoin
from sandbox.steps.model.prompts import (ArithmeticQA, GradeNumbers, ProposePrompts, parse_prompts,
                                   prompt_name)
from tests.conftest import compose, read_jsonl, step_env


class ScriptedBackend:
    """Answers chats from a list, in order (None: a failed request), and keeps the chats."""

    def __init__(self, answers: list):
        self.answers, self.chats, self.loaded = list(answers), [], False

    def load(self):
        self.loaded = True

    def generate(self, chats, seed=None):
        self.chats.extend(chats)
        out = []
        for _ in chats:
            a = self.answers.pop(0)
            out.append(Reply(None, None, {"status": 503, "reason": "overloaded", "attempts": 6})
                       if a is None else Reply(a, 1))
        return out


# ============================================================================ llm judge
def test_parse_grade_is_strict():
    assert parse_grade("4", 1, 5) == (4, "")
    assert parse_grade("  5\n", 1, 5) == (5, "")
    assert parse_grade("-1", -2, 2) == (-1, "")
    for bad, reason in [("4.", "not a single integer"), ("Score: 4", "not a single integer"),
                        ("4/5", "not a single integer"), ("four", "not a single integer"),
                        ("4 5", "not a single integer"), ("4.0", "not a single integer"),
                        ("", "empty answer"), ("   ", "empty answer"), (None, "no answer"),
                        ("7", "out of range [1, 5]"), ("0", "out of range [1, 5]")]:
        assert parse_grade(bad, 1, 5) == (None, reason), bad


def write_answers(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_judge_counts_and_lists_unparsable_and_failed_rows(tmp_path):
    rows = [{"question": f"q{i}", "response": f"r{i}", "answer": f"a{i}"} for i in range(6)]
    data = write_answers(tmp_path / "answers.jsonl", rows)
    judge = LLMJudgeEvaluator(reference_key="answer", backend="api", bootstrap=200, batch_size=4)
    judge.backend = ScriptedBackend(["4", "Score: 5", "2", None, " 5 ", "9"])
    out = judge.run(step_env(tmp_path, "judge"), predicted_dataset_path=data)
    m = out["metrics"]
    # grades 4, 2, 5 parse; "Score: 5" and "9" (out of 1-5) do not; row 3's request failed
    assert m["judge/mean"] == pytest.approx(11 / 3)
    assert m["judge/unparsable"] == 2 and m["judge/failed"] == 1 and m["n"] == 3
    assert m["rows"] == 6 and m["judge/unparsable_rate"] == pytest.approx(2 / 6)
    assert m["judge/mean_ci_low"] <= m["judge/mean"] <= m["judge/mean_ci_high"]
    assert 2 <= m["judge/mean_ci_low"] and m["judge/mean_ci_high"] <= 5
    listed = read_jsonl(out["answers"])
    assert [(r["row"], r["status"]) for r in listed] == [
        (0, "ok"), (1, "unparsable"), (2, "ok"), (3, "failed"), (4, "ok"), (5, "unparsable")]
    assert listed[1]["answer"] == "Score: 5" and listed[1]["reason"] == "not a single integer"
    assert listed[5]["reason"] == "out of range [1, 5]" and "503" in listed[3]["reason"]
    assert out["results"][0]["unparsable_rows"] == [1, 5]
    assert out["results"][0]["failed_rows"] == [3]
    # the rubric holds the question, the response and the reference; the scale is filled in
    chat = judge.backend.chats[2]
    assert chat[0]["role"] == "system" and "from 1 to 5" in chat[0]["content"]
    assert chat[-1]["role"] == "user"
    assert "Question: q2\nResponse: r2\nReference answer: a2\n" in chat[-1]["content"]
    # the graded examples come first, as user turns answered by their grade
    assert [m["role"] for m in chat[1:-1]] == ["user", "assistant"] * 3
    assert chat[2]["content"] == "5" and "Reference answer: Rome" in chat[1]["content"]


def test_judge_without_reference_and_with_nothing_parsable(tmp_path):
    data = write_answers(tmp_path / "a.jsonl", [{"question": "q", "response": "r"}] * 2)
    judge = LLMJudgeEvaluator(backend="api", system=None, examples=[])
    assert "Reference" not in judge.chat({"question": "q", "response": "r"})[0]["content"]
    assert len(judge.chat({"question": "q", "response": "r"})) == 1  # no system message
    judge.backend = ScriptedBackend(["I think 4", "great"])
    with pytest.raises(DataError, match=r"no row .* got a grade \(2 unparsable, 0 failed of 2\)"):
        judge.run(step_env(tmp_path, "judge"), predicted_dataset_path=data)
    assert len(read_jsonl(tmp_path / "run" / "judge" / "judge_answers.jsonl")) == 2
    with pytest.raises(ConfigError, match="needs a response and an integer grade"):
        LLMJudgeEvaluator(examples=[{"question": "q", "response": "r", "grade": "five"}])
    with pytest.raises(ConfigError, match="min_score"):
        LLMJudgeEvaluator(min_score=5, max_score=5)
    with pytest.raises(ConfigError, match=r"\{response\}"):
        LLMJudgeEvaluator(prompt="Grade it.")


def test_judge_config_composes():
    cfg = compose(["pipeline=infer_eval", "evaluator=llm_judge", "tracking=none"])
    assert cfg.evaluator._target_.endswith("LLMJudgeEvaluator")
    assert cfg.evaluator.backend == "hf" and cfg.evaluator.backend_params.model is None
    from sandbox.runner.plan import plan

    assert [s.name for s in plan(cfg)] == ["load", "infer", "evaluate"]


# ============================================================================ proposals
def test_parse_prompts_handles_numbering_bullets_and_quotes():
    text = """Here are three new instructions:
1. Reply with only the final number.
2) "Give the result as digits, nothing else."
- **Prompt 3:** Answer with one number only.
* Answer with one number only.
• 'Write the answer as a single integer.'
Prompt 4: State the number and stop.
ok
(5) Never explain, just give the number.
"""
    assert parse_prompts(text) == [
        "Reply with only the final number.",
        "Give the result as digits, nothing else.",
        "Answer with one number only.",
        "Write the answer as a single integer.",
        "State the number and stop.",
        "Never explain, just give the number.",
    ]
    assert parse_prompts("") == [] and parse_prompts(None) == []
    assert parse_prompts("word " * 100) == []  # over max_chars
    assert parse_prompts("Sure:\n\nOK.") == []
    assert parse_prompts("Reply with ${oc.env:HOME} only.") == []


def test_propose_adds_new_prompts_and_falls_back_to_the_carried_ones(tmp_path):
    carried = [{"prompt": "Answer the question.", "mse": 23.4}, "Reply with only the number."]
    step = ProposePrompts(prompts=carried, n_new=2, backend="api", seed=3)
    step.backend = ScriptedBackend(["1. Reply with only the number.\n2. Use digits only, no words.",
                                    "- Use digits only, no words.\n- Say nothing but the result."])
    out = step.run(step_env(tmp_path, "propose"))
    texts = [p["prompt"] for p in out["prompts"]]
    # carried first (in order), then new ones not already there, at most n_new
    assert texts == ["Answer the question.", "Reply with only the number.",
                     "Use digits only, no words.", "Say nothing but the result."]
    assert [p["source"] for p in out["prompts"]] == ["carried"] * 2 + ["proposed"] * 2
    assert out["metrics"] == {"proposed": 2.0, "candidates": 4.0, "fallback": 0.0}
    # the model saw the prompts with their scores
    user = step.backend.chats[0][-1]["content"]
    assert '1. "Answer the question." (error 23.4)' in user
    assert '2. "Reply with only the number." (not scored yet)' in user
    # one single-row pool per prompt, named by its text
    for pool, p in zip(out["pools"], out["prompts"]):
        assert pool["name"] == p["name"] == prompt_name(p["prompt"])
        assert pq.read_table(pool["dataset"]).to_pylist() == [{"prompt": p["prompt"]}]
    assert len(read_jsonl(tmp_path / "run" / "propose" / "proposals.jsonl")) == 2

    # nothing usable (junk, a repeat, a failed request): the carried prompts alone, said so
    step = ProposePrompts(prompts=carried, n_new=3, backend="api")
    step.backend = ScriptedBackend(["ok", "1. Answer the question.", None])
    out = step.run(step_env(tmp_path, "propose2"))
    assert [p["prompt"] for p in out["prompts"]] == ["Answer the question.",
                                                     "Reply with only the number."]
    assert out["metrics"]["fallback"] == 1.0 and len(out["pools"]) == 2
    with pytest.raises(ConfigError, match="prompts is empty"):
        ProposePrompts(prompts=[], backend="api")


# ============================================================================ QA, join, grader
def test_generated_qa_joined_with_prompt_pools(tmp_path):
    qa = ArithmeticQA(n=3, seed=5).run(step_env(tmp_path, "qa"))
    rows = pq.read_table(qa["dataset"]).to_pylist()
    assert len(rows) == 3
    for r in rows:  # the answers are exact
        a, op, b, eq = r["question"].split()
        assert eq == "=" and r["answer"] == float(int(a) + int(b) if op == "+" else int(a) - int(b))
        assert r["answer"] >= 0
    assert rows == pq.read_table(ArithmeticQA(n=3, seed=5).run(
        step_env(tmp_path, "qa2"))["dataset"]).to_pylist()  # seeded
    prompts = ProposePrompts(prompts=["First prompt here.", "Second prompt here."], n_new=0,
                             backend="api").run(step_env(tmp_path, "propose"))
    joined = PoolCartesianJoin().run(step_env(tmp_path, "join"), left=prompts["pools"],
                                     right=qa["pools"])["pools"]
    assert [p["parts"] for p in joined] == [[p["name"], "qa"] for p in prompts["pools"]]
    for pool, text in zip(joined, ["First prompt here.", "Second prompt here."]):
        t = pq.read_table(pool["dataset"]).to_pylist()
        assert t == [{"prompt": text, **r} for r in rows] and pool["size"] == 3


def test_grader_parses_numbers_and_penalizes_format_errors(tmp_path):
    rows = [{"question": "7 + 6 =", "answer": 13.0, "response": "13"},
            {"question": "4 + 8 =", "answer": 12.0, "response": "The answer is 10."},
            {"question": "9 - 3 =", "answer": 6.0, "response": "To find 9 - 3,"},
            {"question": "5 - 2 =", "answer": 3.0, "response": "no idea"}]
    data = write_answers(tmp_path / "inf.jsonl", rows)
    out = GradeNumbers(unparsable_error=50.0).run(step_env(tmp_path, "grade"), dataset=data)
    # squared errors 0, 4, (9-6)^2 = 9 (the first number), and a format error worth 50
    assert out["metrics"] == {"mse": pytest.approx((0 + 4 + 9 + 50) / 4), "format_errors": 1.0,
                              "n": 4.0, "mse_parsed": pytest.approx(13 / 3)}
    graded = read_jsonl(out["graded"])
    assert [g["parsed"] for g in graded] == [13.0, 10.0, 9.0, None]


# ============================================================================ end to end
@pytest.mark.slow
def test_prompt_optimization_iterates_with_the_default_model(default_model, tmp_path):
    cfg = compose(["experiment=prompt_optimization", "tracking=none", "progress=false",
                   "pipeline.max_iter=2", "pipeline.stop_when='select.min_mse < 0'",
                   "prompt_optimization.qa.n=3", "prompt_optimization.n_new=1",
                   "prompt_optimization.top_k=1",
                   "prompt_optimization.prompts=[Reply with only the final number.]",
                   "prompt_optimization.propose.backend_params.max_new_tokens=24",
                   "infer.num_threads=1"])
    assert compose(["experiment=prompt_optimization"]).pipeline.stop_when == \
        "select.min_mse <= 0.2"
    run_dir = tmp_path / "run"
    metrics = run(cfg, run_dir=run_dir)
    ctx = json.loads((run_dir / "context.json").read_text())
    steps = ctx["steps"]
    assert ctx["meta"]["iterations"]["pipeline"] == 2
    first, second = steps["select@1"]["outputs"], steps["select@2"]["outputs"]
    # iteration 1: the seed prompt and (unless the model gave nothing usable) one new prompt
    cands1 = steps["propose@1"]["outputs"]["prompts"]
    assert cands1[0]["prompt"] == "Reply with only the final number."
    assert len(cands1) in (1, 2) and len(first["prompts"]) == 1  # top_k
    # the top prompts, with their MSE, were carried into iteration 2's proposals
    cands2 = steps["propose@2"]["outputs"]["prompts"]
    assert [(c["prompt"], c["mse"]) for c in cands2 if c["source"] == "carried"] == \
        [(p["prompt"], p["mse"]) for p in first["prompts"]]
    # each prompt's MSE is the grader's, recomputed here from its answers
    for result in steps["grade@2"]["outputs"]["results"]:
        graded = read_jsonl(result["graded"])
        assert len(graded) == 3 and all(g["prompt"] for g in graded)
        assert result["metrics"]["mse"] == pytest.approx(
            np.mean([g["squared_error"] for g in graded]))
    ranked = [p["mse"] for p in second["prompts"]]
    assert ranked == sorted(ranked) and second["min_mse"] == ranked[0]
    assert metrics["min_mse"] == second["min_mse"] <= first["min_mse"]
    assert (run_dir / "iter2" / "select" / "prompts.md").is_file()

    # the judge grades the same answers with the default model; every row is accounted for
    answers = steps["infer@2"]["outputs"]["dataset"][0]
    judge = LLMJudgeEvaluator(reference_key="answer", num_threads=1, bootstrap=0)
    try:
        out = judge.run(step_env(tmp_path, "judge"), predicted_dataset_path=answers)
        m = out["metrics"]
        assert m["n"] + m["judge/unparsable"] + m["judge/failed"] == 3
        assert 1 <= m["judge/mean"] <= 5
    except DataError as e:  # a 135M judge may answer nothing usable: then it says so
        assert "got a grade (3 unparsable, 0 failed of 3)" in str(e)
    assert len(read_jsonl(tmp_path / "run" / "judge" / "judge_answers.jsonl")) == 3
