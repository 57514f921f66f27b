"""``evaluator=llm_judge``: a language model grades every row's response against a rubric.

For each row of the predicted dataset (a pool file, or a list of them, as the label evaluators
take; in a pipeline wired to the infer step: ``inputs: {predicted_dataset_path:
"${ctx:infer.dataset}"}``), the rubric ``prompt`` gets the row's question (``question_key``), its
response (``response_key``) and, when ``reference_key`` is set, the reference answer (the text
``reference_block`` is put where the prompt says ``{reference}``; without a reference it is
left out). After the optional ``system`` message and a few graded ``examples`` (each shown as
an earlier user turn and the grade as the model's answer: a small model answers with a bare
integer far more often after them), the chat goes through an infer backend
(``backend: hf`` = transformers, the embedded default model unless ``backend_params.model`` names
another; ``api`` = any OpenAI-compatible server; ``vllm``), greedy by default.

The grade is parsed **strictly**: the answer, stripped of surrounding whitespace, must be one
integer (an optional sign and digits, nothing else) between ``min_score`` and ``max_score``.
``"4"`` is 4; ``"4."``, ``"Score: 4"``, ``"4/5"``, ``"four"``, ``""`` and ``"7"`` on a 1-5 scale
are *unparsable*: counted, and listed with the row and the reason in ``judge_answers.jsonl``
(every answer is there) and the first few in the console. A request that failed (``api``) is
counted as ``failed`` with its status and reason, never as a grade. A judge that is asked to say
"4" and says "Score: 4" is not doing what the rubric asks; guessing would hide it.

Metrics (of the best file when given several: highest mean): ``judge/mean`` over the parsed
grades with its 95% bootstrap interval over rows (``judge/mean_ci_low``/``_ci_high``,
``sandbox.verdict``), ``judge/unparsable`` and ``judge/failed`` (counts),
``judge/unparsable_rate`` (of all rows), ``n`` (rows graded), ``rows``. When no row gets a
grade the step fails and names the answers file, rather than report a mean of nothing.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.console import console
from sandbox.data.rows import iter_rows, nested_query
from sandbox.errors import ConfigError, DataError
from sandbox.infer.build import backend_threads, fill, make_backend
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.evaluate.common import as_list
from sandbox.utils import atomic_write_json
from sandbox.verdict import bootstrap_interval

DEFAULT_SYSTEM = ("You are a strict grader. Reply with a single integer from {min} to {max} and "
                  "nothing else.")
DEFAULT_PROMPT = ("Question: {question}\nResponse: {response}\n{reference}"
                  "Grade the response from {min} (wrong or useless) to {max} (correct and "
                  "complete). Reply with one integer only.")
DEFAULT_REFERENCE = "Reference answer: {reference}\n"
EXAMPLES = 5  # unparsable answers shown on the console
# graded examples shown as earlier chat turns before the row: a small model answers with a bare
# integer far more often after a few of them than after the instructions alone
DEFAULT_EXAMPLES = [
    {"question": "What is the capital of Italy?", "response": "The capital of Italy is Rome.",
     "reference": "Rome", "grade": 5},
    {"question": "3 + 5 =", "response": "The answer is 9.", "reference": "8", "grade": 1},
    {"question": "Name two primary colors.", "response": "Red and green.",
     "reference": "two of red, yellow, blue", "grade": 3},
]

_INTEGER = re.compile(r"[+-]?\d+")


def parse_grade(answer: Any, min_score: int, max_score: int) -> tuple[int | None, str]:
    """``(grade, "")`` when ``answer`` is exactly one integer in ``[min_score, max_score]``
    (surrounding whitespace aside); ``(None, reason)`` otherwise."""
    if answer is None:
        return None, "no answer"
    text = str(answer).strip()
    if not text:
        return None, "empty answer"
    if not _INTEGER.fullmatch(text):
        return None, "not a single integer"
    value = int(text)
    if not min_score <= value <= max_score:
        return None, f"out of range [{min_score}, {max_score}]"
    return value, ""


class LLMJudgeEvaluator(Step):
    """``evaluator=llm_judge``; see the module docstring."""

    outputs = ("metrics", "results", "report", "answers")
    reads = ("predicted_dataset_path",)

    def __init__(self, predicted_dataset_path: Any = None, question_key: str = "question",
                 response_key: str = "response", reference_key: str | None = None,
                 min_score: int = 1, max_score: int = 5, system: str | None = DEFAULT_SYSTEM,
                 prompt: str = DEFAULT_PROMPT, reference_block: str = DEFAULT_REFERENCE,
                 examples: list | None = None,
                 backend: str = "hf", backend_params: dict | None = None,
                 num_threads: int | str = "auto", batch_size: int = 8, bootstrap: int = 1000,
                 seed: int = 0):
        if int(min_score) >= int(max_score):
            raise ConfigError(f"evaluator.min_score={min_score} must be below "
                              f"evaluator.max_score={max_score}.")
        if "{response}" not in prompt:
            raise ConfigError("evaluator.prompt must contain {response} (where the graded answer "
                              "goes); see conf/evaluator/llm_judge.yaml.")
        if int(batch_size) < 1:
            raise ConfigError("evaluator.batch_size must be >= 1.")
        self.predicted_dataset_path = predicted_dataset_path
        self.question_key, self.response_key = question_key, response_key
        self.reference_key = reference_key
        self.min_score, self.max_score = int(min_score), int(max_score)
        self.system, self.prompt, self.reference_block = system, prompt, reference_block
        self.examples = [dict(e) for e in (DEFAULT_EXAMPLES if examples is None else examples)]
        for e in self.examples:
            if parse_grade(e.get("grade"), self.min_score, self.max_score)[0] is None \
                    or "response" not in e:
                raise ConfigError(f"evaluator.examples: {e!r} needs a response and an integer "
                                  f"grade from {min_score} to {max_score} (and a question, and a "
                                  f"reference when reference_key is set); [] for none.")
        self.backend_kind = backend
        self.backend_params = {"max_new_tokens": 8, "temperature": 0.0,
                               **dict(backend_params or {})}
        self.num_threads, self.batch_size = num_threads, int(batch_size)
        self.bootstrap, self.seed = int(bootstrap), int(seed)
        self.backend = None

    def user_message(self, question: Any, response: Any, reference: Any) -> str:
        ref = fill(self.reference_block, {"reference": "" if reference is None else reference}) \
            if self.reference_key else ""
        return fill(self.prompt, {"min": self.min_score, "max": self.max_score,
                                  "question": "" if question is None else question,
                                  "response": "" if response is None else response,
                                  "reference": ref})

    def chat(self, row: dict) -> list[dict]:
        """The judge's chat for one row: the system message, each example as a user turn and
        the grade as the assistant's answer, then the row."""
        scale = {"min": self.min_score, "max": self.max_score}
        chat = [{"role": "system", "content": fill(self.system, scale)}] if self.system else []
        for e in self.examples:
            chat.append({"role": "user", "content": self.user_message(
                e.get("question"), e["response"], e.get("reference"))})
            chat.append({"role": "assistant", "content": str(int(str(e["grade"]).strip()))})
        question = nested_query(row, self.question_key) if self.question_key else None
        reference = nested_query(row, self.reference_key) if self.reference_key else None
        return chat + [{"role": "user", "content": self.user_message(
            question, nested_query(row, self.response_key), reference)}]

    def grade_rows(self, rows: list[dict]) -> list[dict]:
        """One record per row: ``{row, answer, grade, status, reason}``; status ``ok``,
        ``unparsable`` or ``failed``."""
        records = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            replies = self.backend.generate([self.chat(r) for r in chunk], seed=self.seed + start)
            for i, reply in enumerate(replies, start):
                if not reply.ok:
                    records.append({"row": i, "answer": None, "grade": None, "status": "failed",
                                    "reason": f"{reply.error.get('status')}: "
                                              f"{reply.error.get('reason')}"})
                    continue
                grade, reason = parse_grade(reply.text, self.min_score, self.max_score)
                records.append({"row": i, "answer": reply.text, "grade": grade,
                                "status": "ok" if grade is not None else "unparsable",
                                "reason": reason})
        return records

    def run(self, env: StepEnv, predicted_dataset_path: Any = None, **unknown) -> dict[str, Any]:
        if unknown:
            raise ConfigError(
                f"evaluator=llm_judge grades a dataset of responses: its input is "
                f"predicted_dataset_path, not {', '.join(sorted(unknown))}. Use it after an infer "
                f"step (inputs: {{predicted_dataset_path: \"${{ctx:infer.dataset}}\"}}).")
        paths = as_list(predicted_dataset_path if predicted_dataset_path is not None
                         else self.predicted_dataset_path)
        if not paths:
            raise ConfigError("evaluator=llm_judge: give predicted_dataset_path (a file or a "
                              "list), or wire it: inputs: {predicted_dataset_path: "
                              "\"${ctx:infer.dataset}\"}.")
        for p in paths:
            if not Path(p).is_file():
                raise DataError(f"evaluator=llm_judge: {p} does not exist. Check "
                                f"predicted_dataset_path.")
        if self.backend is None:  # (a backend object may be given instead, as tests do)
            self.backend = make_backend(self.backend_kind, self.backend_params, self.seed,
                                        env.cache_dir, "evaluator")
        results, answer_files = [], []
        with backend_threads(self.backend_kind, self.num_threads, "evaluator.num_threads"):
            self.backend.load()
            for k, p in enumerate(paths):
                rows = list(iter_rows(Path(p)))
                for i, row in enumerate(rows):
                    if nested_query(row, self.response_key) is None:
                        raise DataError(f"evaluator=llm_judge: {p}, row {i} has no "
                                        f"{self.response_key!r} field; set "
                                        f"evaluator.response_key to the field with the answer.")
                records = self.grade_rows(rows)
                name = "judge_answers.jsonl" if len(paths) == 1 else f"judge_answers_{k}.jsonl"
                answers = env.workdir / name
                with open(answers, "w", encoding="utf-8") as fh:
                    for r in records:
                        fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                answer_files.append(str(answers))
                results.append({"pred_path": str(p), **self.summarize(records, p, answers)})
        best = int(np.argmax([r["judge/mean"] for r in results]))
        metrics = {k: float(v) for k, v in results[best].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics["best_index"] = float(best)
        report = atomic_write_json(env.workdir / "llm_judge.json",
                                   {"best_index": best, "results": results})
        return {"metrics": metrics, "results": results, "report": str(report),
                "answers": answer_files[0] if len(paths) == 1 else answer_files}

    def summarize(self, records: list[dict], path: Any, answers: Path) -> dict:
        grades = np.asarray([r["grade"] for r in records if r["status"] == "ok"], dtype=float)
        bad = [r for r in records if r["status"] == "unparsable"]
        failed = [r for r in records if r["status"] == "failed"]
        for r in bad[:EXAMPLES]:
            console.print(f"[yellow]llm_judge: row {r['row']}: unparsable answer "
                          f"{str(r['answer'])[:80]!r} ({r['reason']})[/]")
        if bad or failed:
            console.print(f"[yellow]llm_judge: {len(bad)} unparsable and {len(failed)} failed "
                          f"of {len(records)} row(s); every answer is in {answers}[/]")
        if grades.size == 0:
            raise DataError(
                f"evaluator=llm_judge: no row of {path} got a grade ({len(bad)} unparsable, "
                f"{len(failed)} failed of {len(records)}); the judge's answers are in {answers}. "
                f"The answer must be one integer from {self.min_score} to {self.max_score}: "
                f"tighten evaluator.system / evaluator.prompt, or use a stronger judge "
                f"(evaluator.backend_params.model=..., or evaluator.backend=api).")
        out: dict[str, Any] = {"judge/mean": float(grades.mean())}
        if self.bootstrap > 0 and grades.size >= 2:
            lo, hi = bootstrap_interval(np.mean, (grades,), n_boot=self.bootstrap, seed=self.seed)
            if not math.isnan(lo):
                out["judge/mean_ci_low"], out["judge/mean_ci_high"] = lo, hi
        out.update({"judge/unparsable": len(bad), "judge/failed": len(failed),
                    "judge/unparsable_rate": len(bad) / len(records), "n": int(grades.size),
                    "rows": len(records),
                    "unparsable_rows": [r["row"] for r in bad],
                    "failed_rows": [r["row"] for r in failed]})
        return out
