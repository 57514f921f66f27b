"""Probe with a model: the default probe's OP stats, plus per-sample scores from language models.

``ModelProbe`` runs the default probe (``sandbox.steps.data.probe.Probe``: every filter's stats on
every sample, after the mappers), then scores a seeded sample of the pool (``ratio`` of its
rows, as Data-Juicer's probe ratio) with a model, and stores the scores as two more stat columns
of the same ``stats.parquet``, summary and histograms, under the OP key ``model``
(``<op key>.<stat>``, like every stat column):

* ``model.perplexity``: ``exp`` of the mean negative log-likelihood per token of the sample's
  text under a pretrained causal LM (default: the embedded default model,
  SmolLM2-135M-Instruct; ``model`` takes any local Hugging Face causal-LM folder or a cached hub
  id). The text is tokenized the way the tokenizer adds special tokens by default and cut to
  ``max_length`` tokens; every token after the first is scored (as ``labels=input_ids`` does
  in transformers), so a text of fewer than two tokens has no perplexity (NaN, counted as
  ``too_short`` in the summary). Batched (sorted by length, so padding is small), with
  ``num_threads`` torch threads as the trainer.
* ``model.judge_score``: an LLM judge's quality score. The rubric prompt (``judge_prompt``, the
  text put where it says ``{text}``, cut to ``judge_max_chars``), after a system message and a
  few scored examples as earlier chat turns (``judge_system``, ``judge_examples``), goes
  through an ``infer`` backend (``judge_backend``: ``hf`` = transformers, greedy; ``api`` = any
  OpenAI-compatible server), and the answer is parsed **strictly**: after stripping surrounding
  whitespace it must be exactly one digit ``1``..``5``. Anything else (``"4."``,
  ``"Score: 4"``, ``"5/5"``, ``""``) is *unparsable*: NaN in the column, counted in the summary
  with a few examples, and every answer is kept in ``judge_answers.jsonl``. A request that
  failed (``api``) is NaN and counted as ``failed``, never as an answer.

Rows outside the sample get NaN in both columns; the summary's ``count`` is the rows that got a
value, and ``probed``/``pool_rows``/``missing`` say how many were sampled, how many there are,
and how many have no value. What reads the stats file and summary (histograms, pool
construction and ranking) works on the model stats as on the OP stats; their summary entries
carry what k-sigma reads (``count``, ``mean``, ``std``), but a refiner only moves thresholds of
the recipe's filters, and no filter bounds a ``model.*`` stat. Pool construction sorts NaN
last: with ``ratio < 1`` the unscored rows fall in the top pool, so split pools by a model stat
from a ``ratio: 1.0`` probe. The models read the text after the recipe's mappers, as the
filters do.

torch and transformers are imported inside the functions.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sandbox.console import console
from sandbox.data.io import read_parquet, write_parquet
from sandbox.engine import TEXT_COLUMN, engine_for, resolve_num_proc, stat_column
from sandbox.errors import ConfigError
from sandbox.infer.backends import APIBackend, HFBackend
from sandbox.recipe import Recipe
from sandbox.steps.base import StepEnv
from sandbox.steps.data.probe import Probe, write_csv, describe, plot_histograms
from sandbox.threads import parse_threads, torch_threads

MODEL_KEY = "model"  # the "OP key" of the model stats: columns model.perplexity, model.judge_score
PERPLEXITY = "perplexity"
JUDGE_SCORE = "judge_score"
EXAMPLES = 5  # unparsable answers quoted in the summary

DEFAULT_JUDGE_SYSTEM = "You grade text quality. Reply with one digit from 1 to 5 and nothing else."
DEFAULT_JUDGE_PROMPT = ("Text quality (1 = spam, gibberish or markup; 3 = acceptable; 5 = clear, "
                        "informative prose): {text}")
# (text, score) turns shown before the sample: a 135M model answers with a bare digit far more
# often after a few examples than after instructions alone
DEFAULT_JUDGE_EXAMPLES = [
    ["Buy cheap pills!!! click here $$$ www.example.com/offer", 1],
    ["The committee approved the new budget for the city's schools on Monday after a long "
     "debate about teacher salaries.", 5],
    ["home | about | contact | login | 2019 all rights reserved", 2],
]


def judge_chat(text: str, prompt: str = DEFAULT_JUDGE_PROMPT, system: str | None =
               DEFAULT_JUDGE_SYSTEM, examples: list | None = None,
               max_chars: int = 1000) -> list[dict]:
    """The judge's chat for one sample: the system message, one user/assistant turn per example
    (``[text, score]``), then the prompt with the sample (cut to ``max_chars``) at ``{text}``."""
    chat = [{"role": "system", "content": system}] if system else []
    for ex_text, ex_score in (DEFAULT_JUDGE_EXAMPLES if examples is None else examples):
        chat.append({"role": "user", "content": prompt.replace("{text}", str(ex_text))})
        chat.append({"role": "assistant", "content": str(ex_score)})
    chat.append({"role": "user", "content": prompt.replace("{text}", text[:max_chars])})
    return chat


_SCORE = re.compile(r"[1-5]")


def parse_judge_score(answer: Any) -> int | None:
    """The judge's score: the answer stripped of surrounding whitespace must be exactly one
    digit 1-5 (``"4"``, ``" 4\\n"``); anything else is None (unparsable): ``"4."``,
    ``"Score: 4"``, ``"5/5"``, ``"four"``, ``"6"``, ``""``, None."""
    if not isinstance(answer, str):
        return None
    s = answer.strip()
    return int(s) if _SCORE.fullmatch(s) else None


def sample_rows(n: int, ratio: float, seed: int) -> np.ndarray:
    """The pool rows a model probe scores: ``round(ratio * n)`` of them (at least one of a
    non-empty pool), drawn without replacement with ``seed``, in pool order."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = min(n, max(1, int(round(ratio * n))))
    if k == n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)).astype(np.int64)


def pool_texts(env: StepEnv, dataset: str, recipe: Recipe | None, text_key: str,
               rows: np.ndarray, batch_size: int = 512) -> list[str]:
    """The texts of ``rows`` of the pool as the recipe's filters see them: after its mappers
    (read from the engine's cached result file, which the probe has just written), else as in
    the pool."""
    computed = None
    if recipe is not None and recipe.ops:
        _, computed, _ = engine_for(env).compute_recipe(
            env, dataset, recipe, batch_size, "reading the mapped text")
    if computed is not None and computed.has_text:
        col = read_parquet(computed.path, columns=[TEXT_COLUMN]).column(0)
    else:
        table = read_parquet(dataset, columns=[text_key])
        col = table.column(0)
    taken = col.take(pa.array(rows, type=pa.int64())).to_pylist()
    return [t if isinstance(t, str) else "" for t in taken]


# ============================================================================ perplexity
def perplexities(model, tokenizer, texts: list[str], max_length: int = 64,
                 batch_size: int = 8) -> tuple[np.ndarray, int]:
    """Per-text perplexity (NaN for a text of fewer than two tokens) and the number of tokens
    scored. ``model`` is a causal LM in eval mode; the caller sets the threads."""
    import torch
    import torch.nn.functional as F

    if max_length < 2:
        raise ConfigError(f"probe.max_length={max_length}: at least 2 tokens are needed.")
    # every token holds (a byte of) at least one character, so the first max_length tokens come
    # from the first max_length characters; cutting at 8x that leaves them as they are and
    # spares tokenizing long texts whole
    ids = tokenizer([t[:8 * max_length] for t in texts], add_special_tokens=True)["input_ids"]
    ids = [list(x)[:max_length] for x in ids]
    out = np.full(len(texts), np.nan, dtype=np.float64)
    order = sorted((i for i in range(len(ids)) if len(ids[i]) >= 2), key=lambda i: -len(ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = 0
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            L = len(ids[idx[0]])
            x = torch.full((len(idx), L), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                x[r, :len(ids[i])] = torch.tensor(ids[i])
                mask[r, :len(ids[i])] = 1
            logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1),
                                  reduction="none").view(len(idx), L - 1)
            m = mask[:, 1:].to(nll.dtype)
            counts = m.sum(1)
            mean = (nll * m).sum(1) / counts
            scored += int(counts.sum())
            for r, i in enumerate(idx):
                out[i] = math.exp(float(mean[r]))
    return out, scored


# ============================================================================ the step
class ModelProbe(Probe):
    """The default probe plus ``model.perplexity`` and ``model.judge_score`` (module docstring).

    Parameters besides the default probe's:

    * ``ratio``: the fraction of the pool scored by the models (seeded with ``seed``; None: the
      run's seed); the other rows get NaN.
    * ``perplexity`` / ``judge``: compute that stat (both by default).
    * ``model``: the perplexity model, a local folder or a cached hub id; None: the default
      model. ``dtype``: float32 | bfloat16 | float16. ``max_length``: tokens scored per text
      (the first ones). ``lm_batch_size``: texts per forward pass. ``num_threads``: torch
      threads (``auto``: the CPUs other processes leave free).
    * ``judge_backend``: ``hf`` | ``api``. ``judge_model``: for ``hf`` a folder or hub id (None:
      the perplexity model, loaded once for both); for ``api`` the served model's name.
      ``judge_base_url``: the server (``api``; None: ``$OPENAI_BASE_URL``).
      ``judge_prompt``: the rubric, with ``{text}`` where the sample goes; ``judge_system``:
      the system message (None: none); ``judge_examples``: ``[text, score]`` pairs shown as
      earlier turns (None: the built-in three; ``[]``: none);
      ``judge_max_chars``: the sample is cut to this many characters in the prompt;
      ``judge_max_new_tokens``: tokens the judge may answer with (more than one digit is
      unparsable anyway); ``judge_batch_size``: prompts per backend call;
      ``judge_params``: more backend arguments (``api``: ``concurrency``, ``timeout_s``,
      ``max_retries``, ``api_key_env``...; ``hf``: ``sampling_params``, ``model_params``).
    """

    outputs = Probe.outputs + ("metrics",)
    reads = ("model", "judge_model")

    def __init__(self, text_key: str = "text", quantiles: list[float] | None = None,
                 plots: bool = True, batch_size: int = 512, ratio: float = 1.0,
                 seed: int | None = None, perplexity: bool = True, judge: bool = True,
                 model: str | None = None, dtype: str = "float32", max_length: int = 64,
                 lm_batch_size: int = 16, num_threads: int | str = "auto",
                 judge_backend: str = "hf", judge_model: str | None = None,
                 judge_base_url: str | None = None, judge_prompt: str = DEFAULT_JUDGE_PROMPT,
                 judge_system: str | None = DEFAULT_JUDGE_SYSTEM,
                 judge_examples: list | None = None,
                 judge_max_chars: int = 1000, judge_max_new_tokens: int = 4,
                 judge_batch_size: int = 8, judge_params: dict | None = None):
        super().__init__(text_key=text_key, quantiles=quantiles, plots=plots,
                         batch_size=batch_size)

        if not 0.0 < float(ratio) <= 1.0:
            raise ConfigError(f"probe.ratio={ratio}: give the fraction of the pool to score "
                              f"with the model, in (0, 1] (1.0 = every sample).")
        if judge_backend not in ("hf", "api"):
            raise ConfigError(f"probe.judge_backend={judge_backend!r}: give hf (transformers) or "
                              f"api (an OpenAI-compatible server, with probe.judge_base_url and "
                              f"probe.judge_model).")
        if judge and "{text}" not in str(judge_prompt):
            raise ConfigError("probe.judge_prompt has no {text} placeholder: write {text} where "
                              "the sample's text goes.")
        if int(max_length) < 2 or int(lm_batch_size) < 1 or int(judge_batch_size) < 1:
            raise ConfigError("probe: max_length must be >= 2 and lm_batch_size, "
                              "judge_batch_size >= 1.")
        self.ratio, self.seed = float(ratio), seed
        self.perplexity, self.judge = bool(perplexity), bool(judge)
        self.model, self.dtype = model, dtype
        self.max_length, self.lm_batch_size = int(max_length), int(lm_batch_size)
        self.num_threads = parse_threads(num_threads, "probe.num_threads")
        self.judge_backend, self.judge_model = judge_backend, judge_model
        self.judge_base_url, self.judge_prompt = judge_base_url, str(judge_prompt)
        self.judge_system = judge_system
        if judge_examples is not None and not all(
                isinstance(e, (list, tuple)) and len(e) == 2 for e in judge_examples):
            raise ConfigError("probe.judge_examples: give a list of [text, score] pairs (or [] "
                              "for none, null for the built-in ones).")
        self.judge_examples = None if judge_examples is None else [list(e) for e in judge_examples]
        self.judge_max_chars = int(judge_max_chars)
        self.judge_max_new_tokens = int(judge_max_new_tokens)
        self.judge_batch_size = int(judge_batch_size)
        self.judge_params = dict(judge_params or {})
        unknown = set(self.judge_params) - {"sampling_params", "model_params"}
        if judge_backend == "hf" and unknown:
            raise ConfigError(f"probe.judge_params {sorted(unknown)}: with judge_backend=hf it "
                              f"takes sampling_params and model_params (see conf/infer/hf.yaml).")

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, dataset: str, recipe: Recipe) -> dict[str, Any]:
        out = super().run(env, dataset, recipe)  # the OP stats, summary and histograms
        import pyarrow.parquet as pq

        n = pq.ParquetFile(dataset).metadata.num_rows
        seed = env.seed if self.seed is None else int(self.seed)
        rows = sample_rows(n, self.ratio, seed)
        texts = pool_texts(env, dataset, recipe, self.text_key, rows, self.batch_size)
        metrics: dict[str, float] = {"probed_rows": float(len(rows)), "probe_ratio": self.ratio}
        columns: dict[str, np.ndarray] = {}
        extra: dict[str, dict] = {}
        backend = None
        with torch_threads(self.num_threads, "probe.num_threads") as threads:
            if self.perplexity or (self.judge and self.judge_backend == "hf"
                                   and self.judge_model in (None, self.model)):
                backend = self._hf_backend(self.model, env)
            if self.perplexity:
                columns[PERPLEXITY], extra[PERPLEXITY] = self._perplexity(backend, texts, rows,
                                                                          n, metrics)
            if self.judge:
                judge = backend if backend is not None and self.judge_backend == "hf" and \
                    self.judge_model in (None, self.model) else self._judge_backend(env)
                columns[JUDGE_SCORE], extra[JUDGE_SCORE] = self._judge(env, judge, texts, rows,
                                                                      n, metrics, seed)
                if judge is not backend:
                    judge.close()
            metrics["num_threads"] = float(threads.threads)
        if backend is not None:
            backend.close()
        self._store(env, out, columns, extra, n, len(rows))
        return {**out, "metrics": metrics}

    def _hf_backend(self, model: str | None, env: StepEnv):
        """A loaded transformers backend (``sandbox.infer``): its model and tokenizer serve the
        perplexity, and it answers the judge's chats (greedy)."""
        extra = {} if self.judge_backend != "hf" else {
            k: v for k, v in self.judge_params.items() if k in ("sampling_params", "model_params")}
        backend = HFBackend(model=model, max_new_tokens=self.judge_max_new_tokens,
                            temperature=0.0, dtype=self.dtype, cache_dir=env.cache_dir, **extra)
        backend.load()
        return backend

    def _judge_backend(self, env: StepEnv):
        if self.judge_backend == "hf":
            return self._hf_backend(self.judge_model, env)

        try:
            backend = APIBackend(base_url=self.judge_base_url, model=self.judge_model,
                                 max_new_tokens=self.judge_max_new_tokens, temperature=0.0,
                                 seed=env.seed, **self.judge_params)
        except TypeError as e:
            raise ConfigError(f"probe.judge_params: {e}. See conf/infer/api.yaml for the keys "
                              f"an api backend takes.") from None
        backend.load()
        return backend

    def _perplexity(self, backend, texts: list[str], rows: np.ndarray, n: int,
                    metrics: dict) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        values, tokens = perplexities(backend.model, backend.tokenizer, texts, self.max_length,
                                      self.lm_batch_size)
        seconds = time.perf_counter() - t0
        col = np.full(n, np.nan)
        col[rows] = values
        short = int(np.isnan(values).sum())
        metrics.update({"perplexity_seconds": seconds,
                        "perplexity_docs_per_s": len(texts) / seconds if seconds > 0 else 0.0,
                        "perplexity_tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
                        "perplexity_mean": float(np.nanmean(values)) if short < len(values)
                        else float("nan")})
        return col, {"model": self.model or "default", "max_length": self.max_length,
                     "too_short": short}

    def _judge(self, env: StepEnv, backend, texts: list[str], rows: np.ndarray, n: int,
               metrics: dict, seed: int) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        col = np.full(n, np.nan)
        unparsable, failed, examples = 0, 0, []
        path = env.workdir / "judge_answers.jsonl"
        with open(path, "w", encoding="utf-8") as fh, \
                env.progress(len(texts), "judging samples") as advance:
            for b in range(0, len(texts), self.judge_batch_size):
                chunk = texts[b:b + self.judge_batch_size]
                chats = [judge_chat(t, self.judge_prompt, self.judge_system,
                                    self.judge_examples, self.judge_max_chars) for t in chunk]
                replies = backend.generate(chats, seed=seed + b)
                for j, reply in enumerate(replies):
                    row = int(rows[b + j])
                    score = parse_judge_score(reply.text) if reply.ok else None
                    if not reply.ok:
                        failed += 1
                    elif score is None:
                        unparsable += 1
                        if len(examples) < EXAMPLES:
                            examples.append({"row": row, "answer": reply.text})
                    if score is not None:
                        col[row] = score
                    fh.write(json.dumps({"row": row, "answer": reply.text, "score": score,
                                         **({"error": reply.error} if not reply.ok else {})},
                                        ensure_ascii=False) + "\n")
                advance(len(chunk))
        seconds = time.perf_counter() - t0
        metrics.update({"judge_seconds": seconds,
                        "judge_docs_per_s": len(texts) / seconds if seconds > 0 else 0.0,
                        "judge_unparsable": float(unparsable), "judge_failed": float(failed),
                        "judge_unparsable_rate": unparsable / max(1, len(texts))})
        if unparsable:
            console.print(f"[yellow]probe: {unparsable} of {len(texts)} judge answer(s) are not "
                          f"a single digit 1-5 (NaN in {stat_column(MODEL_KEY, JUDGE_SCORE)}); "
                          f"every answer is in {path}[/]")
        return col, {"backend": self.judge_backend, "unparsable": unparsable, "failed": failed,
                     "unparsable_examples": examples, "answers_path": str(path)}

    # ------------------------------------------------------------------ outputs
    def _store(self, env: StepEnv, out: dict, columns: dict[str, np.ndarray],
               extra: dict[str, dict], n: int, probed: int) -> None:
        """Append the model columns to ``stats.parquet``, their rows to the summary (dict and
        CSV), and their histograms."""
        if not columns:
            return
        stats_path = Path(out["stats"])
        table = read_parquet(stats_path)
        new = {stat_column(MODEL_KEY, stat): pa.array(col, pa.float64())
               for stat, col in columns.items()}
        if table.num_rows != n:  # a recipe without filters: the stats file has no rows
            table = pa.table(new)
        else:
            for name, col in new.items():
                table = table.append_column(name, col)
        write_parquet(table, stats_path)
        summary = out["summary"]
        numeric = {}
        for stat, col in columns.items():
            name = stat_column(MODEL_KEY, stat)
            values = col[~np.isnan(col)]
            numeric[name] = values
            row = describe(values, self.quantiles) | {
                "op": MODEL_KEY, "stat": stat, "probed": probed, "pool_rows": n,
                "missing": int(n - values.size), "ratio": self.ratio}
            row |= {k: v for k, v in extra[stat].items() if not isinstance(v, (list, dict))}
            summary[name] = row | {k: v for k, v in extra[stat].items()
                                   if isinstance(v, (list, dict))}
        rows = [{"column": c, **{k: v for k, v in s.items()
                                 if not isinstance(v, (list, dict))}} for c, s in summary.items()]
        write_csv(Path(out["summary_path"]), rows)
        if self.plots and numeric:
            plot_histograms({c: v for c, v in numeric.items() if v.size}, {},
                            Path(out["plots"]), resolve_num_proc(env.num_proc))
