"""Steps of the prompt-optimization experiment (Data-Juicer's auto-prompt demo):
``conf/pipeline/prompt_optimization.yaml`` wires them with the generic pool, infer and ranking
steps into an iterating pipeline.

* ``ArithmeticQA``: a QA pool with exactly known numeric answers, *generated* (seeded): tiny
  additions and subtractions such as ``7 - 3 =`` -> 4. Nothing to download, and the truth
  is exact, so the MSE measures the prompt and the model, not label noise. ``path`` takes your
  own QA file instead (jsonl/json/parquet/csv with ``question_key`` and ``answer_key``).
* ``ProposePrompts``: a model reads the best prompts so far (with their MSE) and proposes new
  ones; the candidates of this iteration are the carried prompts plus the new ones, one pool
  (a one-row Parquet file with a ``prompt`` column) per prompt, ready for
  ``sandbox.steps.pools.PoolCartesianJoin`` with the QA pool.
* ``GradeNumbers``: the grader: the first number of each response (``parse_number``) against the
  truth: squared errors, format errors, MSE.
* ``TopPrompts``: from the ranking of the prompt pools, the best ``top_k`` prompts with their
  MSE (what the pipeline carries into the next iteration) and ``min_mse`` (what ``stop_when``
  reads).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.console import console
from sandbox.data.io import write_parquet
from sandbox.data.rows import iter_rows, nested_query
from sandbox.errors import ConfigError, DataError
from sandbox.infer.build import backend_threads, fill, make_backend
from sandbox.infer.messages import parse_number
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_write_json, stable_hash

PROMPT_COLUMN = "prompt"


def _jsonl(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return str(path)


# ============================================================================ QA rows
class ArithmeticQA(Step):
    """A QA pool of ``n`` generated questions (``template`` with ``{a}``, ``{op}``, ``{b}``; the
    default ``A + B =`` is the form the default model most often answers with a number; operands
    1..``max_operand``, results never negative) with their exact answers, seeded; or the rows of
    ``path``. Outputs ``dataset`` (Parquet: ``question_key``, ``answer_key``), ``pools`` (a list
    of that one pool, for a cartesian join) and ``pool``."""

    outputs = ("dataset", "pools", "pool")
    reads = ("path",)

    def __init__(self, n: int = 4, ops: list[str] | None = None, max_operand: int = 9,
                 seed: int = 0, path: str | None = None, question_key: str = "question",
                 answer_key: str = "answer", name: str = "qa",
                 template: str = "{a} {op} {b} ="):
        self.ops = list(ops or ["+", "-"])
        if not set(self.ops) <= {"+", "-", "*"} or not self.ops:
            raise ConfigError(f"prompt_optimization.qa.ops={self.ops}: use +, - and/or *.")
        if int(n) < 1 or int(max_operand) < 1:
            raise ConfigError("prompt_optimization: the QA set needs n >= 1 and max_operand >= 1.")
        self.n, self.max_operand, self.seed = int(n), int(max_operand), int(seed)
        self.path, self.question_key, self.answer_key = path, question_key, answer_key
        self.name, self.template = name, template

    def rows(self) -> list[dict]:
        if self.path:
            rows = list(iter_rows(Path(self.path)))
            for i, r in enumerate(rows):
                if r.get(self.question_key) is None or r.get(self.answer_key) is None:
                    raise DataError(f"{self.path}, row {i}: needs {self.question_key!r} and "
                                    f"{self.answer_key!r}; set question_key / answer_key.")
            return [{self.question_key: str(r[self.question_key]),
                     self.answer_key: float(r[self.answer_key])} for r in rows]
        rng = np.random.default_rng(self.seed)
        out = []
        for _ in range(self.n):
            op = self.ops[int(rng.integers(len(self.ops)))]
            a, b = (int(x) for x in rng.integers(1, self.max_operand + 1, size=2))
            if op == "-" and b > a:
                a, b = b, a
            value = a + b if op == "+" else a - b if op == "-" else a * b
            out.append({self.question_key: fill(self.template, {"a": a, "op": op, "b": b}),
                        self.answer_key: float(value)})
        return out

    def run(self, env: StepEnv) -> dict[str, Any]:
        rows = self.rows()
        table = pa.Table.from_pylist(rows)
        path = str(write_parquet(table, env.workdir / f"{self.name}.parquet"))
        _jsonl(env.workdir / f"{self.name}.jsonl", rows)
        pool = {"name": self.name, "kind": "qa", "size": len(rows), "dataset": path}
        return {"dataset": path, "pools": [pool], "pool": pool}


# ============================================================================ proposals
DEFAULT_TASK = ("answers short arithmetic questions such as \"7 + 6 =\" and must reply with only "
                "the resulting number")
DEFAULT_SYSTEM = "You write instructions for an AI assistant."
DEFAULT_INSTRUCTION = (
    "An assistant {task}. These instructions were given to it as its system prompt, best first, "
    "with the mean squared error of its answers (lower is better):\n{examples}\n"
    "Write one new instruction that would make its answers more accurate. Reply with the "
    "instruction only.")

# leading list markers: "1.", "2)", "(3)", "-", "*", "•", "a)", "Prompt 2:", "New instruction:"
_MARKER = re.compile(r"^\s*(?:[-*•>#]+|\(?\d{1,3}[.):]|\(?[a-zA-Z][.)]\s|"
                     r"(?:new\s+|improved\s+)?(?:system\s+)?(?:prompt|instruction)s?"
                     r"\s*\d*\s*[:.\-–])\s*", re.I)
_QUOTES = "\"'`“”‘’*_"


def clean_prompt_line(line: str) -> str:
    """One line of a model's answer without list markers, emphasis and surrounding quotes."""
    text = line.strip()
    for _ in range(3):  # "1. **Prompt:** ..." has several markers
        new = _MARKER.sub("", text, count=1).strip().strip(_QUOTES).strip()
        if new == text:
            break
        text = new
    return text


def parse_prompts(text: str | None, min_words: int = 3, max_chars: int = 300) -> list[str]:
    """The prompts in a model's answer: one per line, list markers (numbers, bullets,
    ``Prompt 1:``) and quotes removed; lines that introduce a list (ending with ``:``), shorter
    than ``min_words`` words or longer than ``max_chars`` characters are left out, and so are
    lines with ``${`` (carried into the config, they would read as an interpolation);
    duplicates (ignoring case) kept once, in order."""
    out, seen = [], set()
    for line in (text or "").splitlines():
        cand = clean_prompt_line(line)
        if not cand or cand.endswith(":") or len(cand.split()) < min_words \
                or len(cand) > max_chars or "${" in cand:
            continue
        key = " ".join(cand.lower().split())
        if key not in seen:
            seen.add(key)
            out.append(cand)
    return out


def as_scored(prompts: Any) -> list[dict]:
    """Carried prompts (strings, or ``{prompt, mse}`` dicts from ``TopPrompts``) as dicts."""
    if prompts is None:
        return []
    if isinstance(prompts, (str, dict)):
        prompts = [prompts]
    out = []
    for p in prompts:
        if isinstance(p, str):
            out.append({"prompt": p})
        elif isinstance(p, dict) and isinstance(p.get("prompt"), str):
            out.append(dict(p))
        else:
            raise ConfigError(f"prompt_optimization.prompts: {p!r} is neither a prompt string "
                              f"nor a {{prompt: ..., mse: ...}} mapping.")
    return [p for p in out if p["prompt"].strip()]


def prompt_name(text: str) -> str:
    """A stable pool name for a prompt (the same text gets the same name in every iteration)."""
    return "p-" + stable_hash(" ".join(text.split()), 8)


class ProposePrompts(Step):
    """A model proposes ``n_new`` prompts from the best ones so far.

    ``prompts``: the carried prompts, best first (strings or ``{prompt, mse}``; the pipeline's
    ``carry`` replaces them with ``TopPrompts.prompts`` after each iteration). The model gets
    ``instruction`` (``{task}`` and ``{examples}``, the prompts with their MSE, filled in) and
    answers ``n_new`` times, sampled (``backend_params.temperature``, seeded with ``seed`` plus a
    hash of the chat, so every iteration samples anew and a re-run samples the same);
    ``parse_prompts`` takes the prompts out of its answers. The candidates are the carried
    prompts (``keep_carried``) plus the new ones not already among them. When no answer holds a
    usable prompt, the candidates are the carried prompts alone: said on the console and in
    ``metrics.fallback``; never an empty list. Every answer and what was taken from it is in
    ``proposals.jsonl``.

    Outputs: ``pools`` (one single-row Parquet pool per candidate, column ``prompt``, named
    ``p-<hash of the text>``), ``prompts`` (``{name, prompt, source, mse?}``), ``metrics``
    (``proposed``, ``candidates``, ``fallback``)."""

    outputs = ("pools", "prompts", "metrics")

    def __init__(self, prompts: Any = None, n_new: int = 2, keep_carried: bool = True,
                 task: str = DEFAULT_TASK, system: str | None = DEFAULT_SYSTEM,
                 instruction: str = DEFAULT_INSTRUCTION, backend: str = "hf",
                 backend_params: dict | None = None, num_threads: int | str = "auto",
                 min_words: int = 3, max_chars: int = 300, seed: int = 0):
        self.prompts = as_scored(prompts)
        if not self.prompts:
            raise ConfigError("prompt_optimization.prompts is empty: give at least one seed "
                              "prompt, e.g. prompt_optimization.prompts='[\"Answer with the "
                              "number only.\"]'.")
        if int(n_new) < 0:
            raise ConfigError("prompt_optimization.n_new must be >= 0.")
        if "{examples}" not in instruction:
            raise ConfigError("prompt_optimization.instruction must contain {examples} (where "
                              "the best prompts so far go).")
        self.n_new, self.keep_carried = int(n_new), bool(keep_carried)
        self.task, self.system, self.instruction = task, system, instruction
        self.backend_kind = backend
        self.backend_params = {"max_new_tokens": 48, "temperature": 0.8,
                               **dict(backend_params or {})}
        self.num_threads = num_threads
        self.min_words, self.max_chars, self.seed = int(min_words), int(max_chars), int(seed)
        self.backend = None  # built in run(); a backend object may be given instead

    def chat(self) -> list[dict]:
        lines = []
        for i, p in enumerate(self.prompts, 1):
            score = p.get("mse")
            tail = f"(error {float(score):.3g})" if isinstance(score, (int, float)) \
                and math.isfinite(float(score)) else "(not scored yet)"
            lines.append(f"{i}. \"{p['prompt']}\" {tail}")
        user = fill(self.instruction, {"task": self.task, "examples": "\n".join(lines)})
        chat = [{"role": "system", "content": self.system}] if self.system else []
        return chat + [{"role": "user", "content": user}]

    def propose(self, env: StepEnv) -> tuple[list[str], list[dict]]:
        """New prompts (not among the carried ones) and one log record per answer."""
        if self.n_new == 0:
            return [], []
        backend = self.backend or make_backend(self.backend_kind, self.backend_params, self.seed,
                                               env.cache_dir, "prompt_optimization.propose")
        with backend_threads(self.backend_kind, self.num_threads,
                             "prompt_optimization.propose.num_threads"):
            backend.load()
            # the seed moves with the carried prompts: each iteration samples afresh, and a
            # re-run with the same prompts samples the same proposals
            chat = self.chat()
            seed = self.seed + int(stable_hash(chat, 6), 16)
            replies = backend.generate([chat] * self.n_new, seed=seed)
        known = {" ".join(p["prompt"].lower().split()) for p in self.prompts}
        new, log = [], []
        for k, reply in enumerate(replies):
            found = parse_prompts(reply.text, self.min_words, self.max_chars) if reply.ok else []
            taken = []
            for cand in found:
                key = " ".join(cand.lower().split())
                if key not in known and len(new) < self.n_new:
                    known.add(key)
                    new.append(cand)
                    taken.append(cand)
            log.append({"answer": k, "text": reply.text, "error": reply.error, "parsed": found,
                        "taken": taken})
        return new, log

    def run(self, env: StepEnv) -> dict[str, Any]:
        new, log = self.propose(env)
        _jsonl(env.workdir / "proposals.jsonl", log)
        fallback = self.n_new > 0 and not new
        if fallback:
            console.print(f"[yellow]propose: none of the model's {len(log)} answer(s) held a "
                          f"usable prompt (see {env.workdir / 'proposals.jsonl'}); this "
                          f"iteration tries the {len(self.prompts)} carried prompt(s) only[/]")
        cands = [dict(p, source="carried") for p in self.prompts] \
            if self.keep_carried or fallback else []
        cands += [{"prompt": t, "source": "proposed"} for t in new]
        folder = env.workdir / "pools"
        folder.mkdir(parents=True, exist_ok=True)
        pools, prompts = [], []
        for c in cands:
            name = prompt_name(c["prompt"])
            path = write_parquet(pa.table({PROMPT_COLUMN: [c["prompt"]]}),
                                 folder / f"{name}.parquet")
            pools.append({"name": name, "kind": "prompt", "size": 1, "dataset": str(path)})
            prompts.append(dict(c, name=name))
        atomic_write_json(env.workdir / "candidates.json", prompts)
        return {"pools": pools, "prompts": prompts,
                "metrics": {"proposed": float(len(new)), "candidates": float(len(prompts)),
                            "fallback": float(fallback)}}


# ============================================================================ grader
class GradeNumbers(Step):
    """The grader: each response's first number (``parse_number``) against the truth.

    A response without a number is a *format error*; in ``mse`` it counts as a squared error of
    ``unparsable_error`` (so a prompt that makes the model ramble ranks below one whose numbers
    are a little off, and every prompt gets a score); ``mse_parsed`` is Data-Juicer's MSE, over
    the parsed rows only. Writes ``graded.jsonl`` (each row with ``parsed`` and
    ``squared_error``). Metrics: ``mse``, ``mse_parsed`` (when a row parsed), ``format_errors``,
    ``n``."""

    outputs = ("metrics", "graded")
    reads = ("dataset",)

    def __init__(self, response_key: str = "response", truth_key: str = "answer",
                 unparsable_error: float = 100.0):
        self.response_key, self.truth_key = response_key, truth_key
        self.unparsable_error = float(unparsable_error)

    def run(self, env: StepEnv, dataset: str) -> dict[str, Any]:
        rows, errs, parsed_errs, fmt = [], [], [], 0
        for i, row in enumerate(iter_rows(Path(dataset))):
            truth = nested_query(row, self.truth_key)
            try:
                truth = float(truth)
            except (TypeError, ValueError):
                raise DataError(f"grader: {dataset}, row {i} has no number under "
                                f"{self.truth_key!r} ({truth!r}); set truth_key.") from None
            raw = nested_query(row, self.response_key)
            value = raw if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
                else parse_number(str(raw) if raw is not None else "", row)
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                err = (float(value) - truth) ** 2
                parsed_errs.append(err)
            else:
                value, err = None, self.unparsable_error
                fmt += 1
            errs.append(err)
            rows.append(dict(row, parsed=value, squared_error=err))
        if not rows:
            raise DataError(f"grader: {dataset} has no rows.")
        graded = _jsonl(env.workdir / "graded.jsonl", rows)
        metrics = {"mse": float(np.mean(errs)), "format_errors": float(fmt),
                   "n": float(len(rows))}
        if parsed_errs:
            metrics["mse_parsed"] = float(np.mean(parsed_errs))
        return {"metrics": metrics, "graded": graded}


# ============================================================================ selection
class TopPrompts(Step):
    """The best ``top_k`` prompts of a ranking (``PoolRanking`` over the joined prompt x QA
    pools; a joined pool's first part is its prompt pool). Outputs ``prompts`` (``{prompt,
    mse, format_errors}``, best first: what the next iteration starts from), ``best_prompt``,
    ``min_mse`` (the best prompt's ``key``), ``table`` (``prompts.md``) and ``metrics``."""

    outputs = ("prompts", "best_prompt", "min_mse", "table", "metrics")

    def __init__(self, top_k: int = 2, key: str = "mse"):
        if int(top_k) < 1:
            raise ConfigError("prompt_optimization.top_k must be >= 1.")
        self.top_k, self.key = int(top_k), key

    def run(self, env: StepEnv, ranking: list, pools: list, prompts: list) -> dict[str, Any]:
        by_name = {p["name"]: p for p in prompts}
        part = {p["name"]: (p.get("parts") or [p["name"]])[0] for p in pools}
        ranked = []
        for row in ranking:
            pname = part.get(row["pool"], str(row["pool"]).split("*")[0])
            if pname not in by_name:
                raise ConfigError(f"prompt selection: ranked pool {row['pool']!r} is not one of "
                                  f"the proposed prompts; wire `prompts` to the propose step and "
                                  f"`ranking`/`pools` to the ranking of their joined pools.")
            ranked.append({"prompt": by_name[pname]["prompt"], "name": pname,
                           "source": by_name[pname].get("source"),
                           self.key: float(row[self.key]),
                           **({"format_errors": float(row["format_errors"])}
                              if "format_errors" in row else {})})
        if not ranked:
            raise DataError("prompt selection: the ranking is empty.")
        top = ranked[:self.top_k]
        lines = [f"| rank | {self.key} | format errors | source | prompt |",
                 "|---|---|---|---|---|"]
        for i, r in enumerate(ranked, 1):
            text = r["prompt"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {i} | {r[self.key]:.4g} | {r.get('format_errors', '')} | "
                         f"{r['source']} | {text} |")
        table = env.workdir / "prompts.md"
        table.write_text("\n".join(lines) + "\n", encoding="utf-8")
        best = ranked[0]
        metrics = {"min_mse": best[self.key], "candidates": float(len(ranked)),
                   "best_is_new": float(best["source"] == "proposed")}
        if "format_errors" in best:
            metrics["best_format_errors"] = best["format_errors"]
        return {"prompts": [{k: v for k, v in r.items() if k != "name"} for r in top],
                "best_prompt": best["prompt"], "min_mse": best[self.key], "table": str(table),
                "metrics": metrics}
