"""Evaluate a trained causal LM: held-out likelihood and a frozen-feature downstream probe.

Each recipe trains its own tokenizer, so token-level perplexities of two recipes are not
comparable (a tokenizer with longer tokens has fewer, harder tokens). The headline
``perplexity`` is therefore **word-level**: ``exp(total NLL of the eval text / whitespace words)``,
as in lm-evaluation-harness' ``word_perplexity``; ``bits_per_byte`` is the other
tokenizer-independent view. ``token_perplexity`` and ``eval_loss`` (nats per token) are reported
for reference.

Every eval document is scored as ``BOS doc`` (BOS = the tokenizer's BOS/EOS token, as the
trainer puts one before each document) in windows of ``seq_len`` tokens, so every token of the
document is scored exactly once: the first window scores its ``seq_len`` tokens, each next one the
next ``stride`` tokens (default ``seq_len``: disjoint windows) with the ``seq_len`` tokens before
them as input; a document's last window is filled up with earlier context, as in
lm-evaluation-harness' rolling windows. ``stride < seq_len`` gives every token more context
(slower, usually a lower perplexity).

``downstream_accuracy``/``downstream_f1`` (``linear_probe=True``; off by default: on the default ladder
it does not rank recipes, see docs/metrics.md): a logistic regression (scikit-learn, seeded) on the
mean-pooled last hidden states of the frozen model, fitted on ``task_train`` and scored on
``task_test`` (jsonl/parquet with a text field and a ``label`` field);
``downstream_majority`` is the accuracy of always answering the most frequent training label
(chance level); ``downstream_logprob`` is the mean log probability the probe gives the right label
(a continuous view, which ranks training data more reliably than accuracy).

``choice_accuracy``: which of ``choice_options`` continuations follows a held-out context
(``sandbox.steps.evaluate.continuation_choice``; ``choice_chance`` beside it), ``choice_logprob`` its
continuous view. At the default scale the sentiment probe does not beat an untrained model's
features (measured: 0.530 vs 0.559, chance 0.5); the choice task does (0.48 vs 0.24-0.28,
chance 0.25).

Each held-out metric gets a 95% bootstrap interval over the evaluated documents (examples).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.corpus import default_corpus
from sandbox.data.io import read_table
from sandbox.device import autocast, parse_device, resolve_device
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.evaluate.common import ci_metrics
from sandbox.threads import parse_threads, torch_threads
from sandbox.utils import atomic_path, atomic_write_json

# Held-out LM metrics from per-document NLL (nats), words, tokens and bytes: each a ratio of sums,
# so a bootstrap over documents resamples the sums.
LM_METRICS = {
    "perplexity": lambda nll, w, t, b: math.exp(nll.sum() / w.sum()),
    "token_perplexity": lambda nll, w, t, b: math.exp(nll.sum() / t.sum()),
    "bits_per_byte": lambda nll, w, t, b: nll.sum() / math.log(2) / b.sum(),
    "eval_loss": lambda nll, w, t, b: nll.sum() / t.sum(),
}


DOC_SCORES = "doc_scores.npz"
# How each metric is computed from the per-document arrays of ``doc_scores.npz``: the arrays it
# needs and the reduction (a paired comparison resamples the documents and reduces again).
DOC_METRICS = {
    **{name: (("lm_nll", "lm_words", "lm_tokens", "lm_bytes"), stat)
       for name, stat in LM_METRICS.items()},
    "choice_accuracy": (("choice_correct",), np.mean),
    "choice_logprob": (("choice_logprob",), np.mean),
    "downstream_accuracy": (("downstream_correct",), np.mean),
    "downstream_logprob": (("downstream_logprob",), np.mean),
}


def save_doc_scores(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The per-document arrays as one ``.npz``, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    return path


def load_doc_scores(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


class LMEvaluator(Step):
    """Word-level perplexity, bits per byte and a linear-probe downstream accuracy.

    Parameters:

    * ``text_key``: the text field of the eval and task files.
    * ``eval_path``: held-out text (jsonl/parquet); None: the built-in corpus' eval split.
    * ``task_train_path``, ``task_test_path``: a binary classification task (text + ``label``);
      None: the built-in corpus' task (movie-review sentiment). ``linear_probe=True`` runs
      that probe (off by default: its accuracy does not rank training data, docs/metrics.md).
    * ``max_eval_words``: score whole documents, in file order, until this many whitespace
      words (at least one document). A *word* budget, not a token budget: the documents scored
      must not depend on the recipe's tokenizer, or perplexities would not be comparable.
      None: all documents.
    * ``batch_size``: windows (or snippets) per forward pass.
    * ``num_threads``: ``torch.set_num_threads`` during the step (restored after); ``auto``:
      the CPUs other processes leave free (``sandbox.threads``).
    * ``seq_len``: window length; None: the model's context length (``n_positions``).
    * ``stride``: tokens newly scored per window; None: ``seq_len`` (non-overlapping windows).
    * ``label_key``: the label field of the task files.
    * ``probe_C``: inverse L2 strength of the logistic regression (features are standardised).
    * ``seed``: the probe's seed; None: the run's seed.
    * ``choice``: the continuation-choice task (``sandbox.steps.evaluate.continuation_choice``) on
      ``choice_path`` (held-out documents, jsonl/parquet; None: the built-in corpus' clean
      quality-reference documents, disjoint from the pool), ``choice_options`` candidates of
      ``choice_continuation_words`` words after ``choice_context_words`` words of context.
    * ``device``: ``auto`` (CUDA when there is one) | ``cpu`` | ``cuda`` | ``cuda:N``
      (``sandbox.device``; bf16 autocast on CUDA).
    * ``primary``: the metric the closing verdict against the baseline rests on (the others are
      Holm-corrected); ``signal``: each metric's measured decision accuracy on the default
      transfer ladder (``bench/transfer.py`` writes it into conf/evaluator/lm.yaml): a metric
      whose interval reaches chance gets no verdict.
    * ``bootstrap``: resamples for the 95% intervals of the held-out metrics over evaluated
      documents (and task examples): ``NAME_ci_low``/``NAME_ci_high``. They cover which documents
      were evaluated, not seed variance (``seeds=N`` measures that). 0: no intervals.
    """

    outputs = ("metrics", "report", "doc_scores")
    reads = ("eval_path", "task_train_path", "task_test_path", "choice_path")

    def __init__(
        self,
        text_key: str = "text",
        eval_path: str | None = None,
        task_train_path: str | None = None,
        task_test_path: str | None = None,
        max_eval_words: int | None = 200_000,
        batch_size: int = 32,
        num_threads: int | str = "auto",
        seq_len: int | None = None,
        stride: int | None = None,
        linear_probe: bool = False,
        label_key: str = "label",
        probe_C: float = 1.0,
        seed: int | None = None,
        corpus_seed: int = 0,
        bootstrap: int = 1000,
        choice: bool = True,
        choice_path: str | None = None,
        choice_options: int = 4,
        choice_context_words: int = 48,
        choice_continuation_words: int = 16,
        device: str = "auto",
        primary: str = "bits_per_byte",
        signal: dict | None = None,
    ):
        if batch_size <= 0:
            raise ValueError("evaluate: batch_size must be > 0")
        self.text_key = text_key
        self.eval_path, self.task_train_path, self.task_test_path = eval_path, task_train_path, task_test_path
        self.max_eval_words = None if max_eval_words is None else int(max_eval_words)
        self.batch_size = int(batch_size)
        self.num_threads = parse_threads(num_threads, "evaluator.num_threads")
        self.seq_len = None if seq_len is None else int(seq_len)
        self.stride = None if stride is None else int(stride)
        self.linear_probe = bool(linear_probe)
        self.label_key = label_key
        self.probe_C = float(probe_C)
        self.seed = seed
        self.corpus_seed = corpus_seed  # built-in sets: the pool's corpus seed keeps them disjoint
        self.bootstrap = int(bootstrap)
        self.choice, self.choice_path = bool(choice), choice_path
        self.choice_options = int(choice_options)
        self.choice_context_words = int(choice_context_words)
        self.choice_continuation_words = int(choice_continuation_words)
        self.device = parse_device(device, "evaluator.device")
        if primary not in DOC_METRICS:
            raise ConfigError(f"evaluator.primary={primary!r}: give one of "
                              f"{', '.join(DOC_METRICS)}.")
        # read by the closing table (sandbox.console.print_summary), not by the evaluation
        self.primary, self.signal = primary, dict(signal or {})
        if self.choice and (self.choice_options < 2 or self.choice_context_words < 1
                            or self.choice_continuation_words < 1):
            raise ValueError("evaluate: choice_options must be >= 2 and choice_context_words, "
                             "choice_continuation_words >= 1")

    # ------------------------------------------------------------------ inputs
    def _paths(self) -> tuple[str, str | None, str | None]:
        paths = [self.eval_path, self.task_train_path, self.task_test_path]
        needed = [paths[0]] + (paths[1:] if self.linear_probe else [])
        if any(p is None for p in needed):
            corpus = default_corpus(seed=self.corpus_seed)
            defaults = [corpus.eval_text, corpus.task_train, corpus.task_test]
            paths = [str(d) if p is None else p for p, d in zip(paths, defaults)]
        return paths[0], paths[1], paths[2]

    def _read(self, path: str, with_labels: bool = False):
        table = read_table(path, text_key=self.text_key)
        texts = table.column(self.text_key).to_pylist()
        if not with_labels:
            return texts, None
        if self.label_key not in table.column_names:
            raise DataError(
                f"evaluate: {path} has no label field {self.label_key!r} (fields: "
                f"{', '.join(table.column_names)}). Set evaluate.label_key."
            )
        labels = table.column(self.label_key).to_pylist()
        if any(v is None for v in labels):
            raise DataError(f"evaluate: {path} has records without a {self.label_key!r}.")
        return texts, np.asarray(labels)

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, model_dir: str) -> dict[str, Any]:
        import torch

        with torch_threads(self.num_threads, "evaluator.num_threads"), torch.inference_mode():
            return self._run(env, model_dir)

    def _run(self, env: StepEnv, model_dir: str) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        t0 = time.perf_counter()
        device = resolve_device(self.device, "evaluator.device")
        if not Path(model_dir, "config.json").is_file():
            raise DataError(f"evaluate: {model_dir} is not a saved model (no config.json).")
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" bar for a tiny model
        try:
            tok = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForCausalLM.from_pretrained(model_dir)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        model.to(device).eval()
        # windows start with BOS (= pad for these tokenizers): don't let transformers warn about
        # "padding without an attention mask" (right padding is never attended to, see _nll)
        model.config.pad_token_id = None
        n_pos = getattr(model.config, "n_positions", None) or getattr(
            model.config, "max_position_embeddings", None)
        L = self.seq_len or n_pos
        if not L:
            raise ValueError("evaluate: the model has no context length; set evaluate.seq_len")
        if n_pos and L > n_pos:
            raise ValueError(f"evaluate: seq_len={L} exceeds the model's context ({n_pos} tokens)")
        S = self.stride or L
        if not 0 < S <= L:
            raise ValueError(f"evaluate: stride={S} must be in 1..seq_len={L}")
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if bos is None:
            raise ValueError(f"evaluate: the tokenizer in {model_dir} has no BOS/EOS token")
        eval_path, train_path, test_path = self._paths()
        load_seconds = time.perf_counter() - t0

        t1 = time.perf_counter()
        lm = self.score_text(env, model, tok, eval_path, L, S, bos)
        lm_seconds = time.perf_counter() - t1

        per_doc = (lm.pop("_doc_nll"), lm.pop("_doc_words"), lm.pop("_doc_tokens"),
                   lm.pop("_doc_bytes"))
        # per-document scores, kept for paired comparisons (two runs on the same documents)
        docs: dict[str, np.ndarray] = dict(zip(("lm_nll", "lm_words", "lm_tokens", "lm_bytes"),
                                               per_doc))
        metrics: dict[str, float] = {}
        for name, stat in LM_METRICS.items():
            metrics[name] = stat(*per_doc)
            metrics.update(self._interval(name, stat, per_doc))
        report: dict[str, Any] = {
            "model_dir": str(model_dir), "eval_path": str(eval_path), "seq_len": L, "stride": S,
            "language_modeling": lm,
        }
        ds_seconds = 0.0
        if self.linear_probe:
            t2 = time.perf_counter()
            seed = env.seed if self.seed is None else int(self.seed)
            ds = self.probe(env, model, tok, train_path, test_path, L, bos, seed)
            ds_seconds = time.perf_counter() - t2
            metrics.update({k: ds[k] for k in ("downstream_accuracy", "downstream_f1",
                                                "downstream_logprob", "downstream_majority")})
            correct, true_logprob = ds.pop("_correct"), ds.pop("_true_logprob")
            docs.update(downstream_correct=correct, downstream_logprob=true_logprob)
            metrics.update(self._interval("downstream_accuracy", np.mean, (correct,)))
            metrics.update(self._interval("downstream_logprob", np.mean, (true_logprob,)))
            report["downstream"] = {"task_train_path": str(train_path),
                                    "task_test_path": str(test_path), **ds}
        if self.choice:
            t3 = time.perf_counter()
            choice = self.continuation_choice(model, tok, L, bos)
            metrics.update(choice.pop("metrics"))
            docs.update(choice.pop("_docs"))
            report["choice"] = choice
            ds_seconds += time.perf_counter() - t3
        metrics["eval_seconds"] = time.perf_counter() - t0
        report["metrics"] = metrics
        report["timings"] = {"load_seconds": load_seconds, "lm_seconds": lm_seconds,
                             "downstream_seconds": ds_seconds, "total_seconds": metrics["eval_seconds"]}
        out = atomic_write_json(Path(env.workdir) / "eval_report.json", report)
        env.tracker.log_artifact(out)
        scores = save_doc_scores(Path(env.workdir) / DOC_SCORES, docs)
        env.tracker.log_artifact(scores)
        return {"metrics": metrics, "report": str(out), "doc_scores": str(scores)}

    def _interval(self, name: str, stat, arrays: tuple) -> dict[str, float]:
        """``NAME_ci_low``/``NAME_ci_high``: bootstrap over documents (fixed resampling seed, so
        two runs on the same documents resample alike)."""
        return ci_metrics(name, stat, arrays, self.bootstrap)

    # ------------------------------------------------------------------ likelihood
    def score_text(self, env, model, tok, path: str, L: int, S: int, bos: int) -> dict[str, Any]:
        """Total NLL (nats) of the documents in ``path`` plus the counts that normalise it."""
        texts, _ = self._read(path)
        docs, words = [], 0
        for t in texts:
            w = len(t.split())
            if w == 0:
                continue  # nothing to score, and would add bytes but no words
            if docs and self.max_eval_words is not None and words + w > self.max_eval_words:
                break
            docs.append(t)
            words += w
        if not docs:
            raise DataError(f"evaluate: {path} holds no non-empty text in {self.text_key!r}.")
        ids = tok(docs, add_special_tokens=False)["input_ids"]
        windows, owner = [], []  # (input ids, target ids, first scored position); its doc
        for d, toks in enumerate(ids):
            full = [bos] + list(toks)
            n = len(toks)
            scored = 0
            while scored < n:
                end = min(scored + S if scored else L, n)  # last target index (into full)
                start = max(0, end - L)
                windows.append((full[start:end], full[start + 1:end + 1], scored - start))
                owner.append(d)
                scored = end
        window_nll, window_tokens = self._nll(env, model, windows)
        doc_nll = np.zeros(len(docs))
        np.add.at(doc_nll, np.asarray(owner, dtype=np.int64), window_nll)
        num_tokens = int(window_tokens.sum())
        expect = sum(len(t) for t in ids)
        assert num_tokens == expect, (num_tokens, expect)
        return {
            "total_nll": float(doc_nll.sum()), "num_tokens": num_tokens, "num_words": words,
            "num_bytes": sum(len(t.encode("utf-8")) for t in docs), "num_docs": len(docs),
            "num_docs_available": len(texts), "num_windows": len(windows),
            # per document, for intervals over the evaluated documents (not saved in the report)
            "_doc_nll": doc_nll, "_doc_words": np.array([len(t.split()) for t in docs], float),
            "_doc_bytes": np.array([len(t.encode("utf-8")) for t in docs], float),
            "_doc_tokens": np.array([len(t) for t in ids], float),
        }

    def _nll(self, env, model, windows) -> tuple[np.ndarray, np.ndarray]:
        """Summed NLL (nats) and scored-token count of each window."""
        import torch
        import torch.nn.functional as F

        order = sorted(range(len(windows)), key=lambda i: -len(windows[i][0]))
        nll_of = np.zeros(len(windows))
        count_of = np.zeros(len(windows), dtype=np.int64)
        with torch.inference_mode(), env.progress(len(windows), "scoring eval text") as advance:
            for b in range(0, len(order), self.batch_size):
                chunk = [windows[i] for i in order[b:b + self.batch_size]]
                width = len(chunk[0][0])
                x = torch.zeros((len(chunk), width), dtype=torch.long)
                y = torch.full((len(chunk), width), -100, dtype=torch.long)
                for r, (inp, tgt, first) in enumerate(chunk):
                    x[r, :len(inp)] = torch.tensor(inp)
                    y[r, first:len(tgt)] = torch.tensor(tgt[first:])
                # right padding needs no attention mask in a causal model: real positions never
                # attend to the pads after them, and pad positions are not scored
                with autocast(str(model.device)):
                    logits = model(input_ids=x.to(model.device)).logits
                y = y.to(model.device)
                nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                      ignore_index=-100, reduction="none").view(y.shape)
                rows = order[b:b + self.batch_size]
                nll_of[rows] = nll.double().sum(1).cpu().numpy()
                count_of[rows] = (y != -100).sum(1).cpu().numpy()
                advance(len(chunk))
        return nll_of, count_of

    # ------------------------------------------------------------------ downstream
    def continuation_choice(self, model, tok, L: int, bos: int) -> dict[str, Any]:
        from sandbox.steps.evaluate.continuation_choice import build_items, score_items

        if self.choice_path is None:
            path = default_corpus(seed=self.corpus_seed).quality_reference
            table = read_table(path, text_key=self.text_key)
            texts = [t for t, y in zip(table.column(self.text_key).to_pylist(),
                                       table.column("label").to_pylist()) if y == 1]
        else:
            path = self.choice_path
            texts, _ = self._read(path)
        items = build_items(texts, self.choice_options, self.choice_context_words,
                            self.choice_continuation_words)
        if not items:
            raise DataError(
                f"evaluate: {path} has fewer than {self.choice_options} documents of at least "
                f"{self.choice_context_words + self.choice_continuation_words} words, too few "
                f"for the continuation-choice task. Give a longer choice_path, lower "
                f"choice_context_words/choice_continuation_words, or set evaluator.choice=false.")
        correct, right = score_items(model, tok, items, L, bos, self.batch_size)
        metrics = {"choice_accuracy": float(correct.mean()),
                   "choice_chance": 1.0 / self.choice_options,
                   "choice_logprob": float(right.mean())}
        metrics.update(self._interval("choice_accuracy", np.mean, (correct,)))
        metrics.update(self._interval("choice_logprob", np.mean, (right,)))
        return {"metrics": metrics, "path": str(path), "items": len(items),
                "options": self.choice_options,
                "_docs": {"choice_correct": correct, "choice_logprob": right}}

    def features(self, model, tok, texts: list[str], L: int, bos: int) -> np.ndarray:
        """Mean of the last hidden states over each text's tokens (BOS excluded), truncated to
        the model's context."""
        ids = tok(list(texts), add_special_tokens=False)["input_ids"]
        seqs = [[bos] + list(t[:L - 1]) for t in ids]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        base = model.base_model
        feats = np.zeros((len(seqs), model.config.hidden_size), dtype=np.float64)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            feats[idx] = self._pooled(base, [seqs[i] for i in idx], bos)
        return feats

    @staticmethod
    def _pooled(base, batch: list[list[int]], bos: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            width = max(len(s) for s in batch)
            x = torch.full((len(batch), width), bos, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.float32)
            for r, s in enumerate(batch):
                x[r, :len(s)] = torch.tensor(s)
                if len(s) > 1:
                    mask[r, 1:len(s)] = 1.0
                else:  # an empty text: its only state is BOS's
                    mask[r, 0] = 1.0
            with autocast(str(base.device)):  # causal + right padding: no mask needed
                h = base(input_ids=x.to(base.device)).last_hidden_state.float()
            mask = mask.to(h.device)
            pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            return pooled.double().cpu().numpy()

    def probe(self, env, model, tok, train_path: str, test_path: str, L: int, bos: int,
              seed: int) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        tr_x, tr_y = self._read(train_path, with_labels=True)
        te_x, te_y = self._read(test_path, with_labels=True)
        classes = np.unique(tr_y)
        if len(classes) < 2:
            raise DataError(f"evaluate: {train_path} has a single label ({classes}); need two+.")
        with env.progress(2, "downstream probe") as advance:
            f_tr = self.features(model, tok, tr_x, L, bos)
            f_te = self.features(model, tok, te_x, L, bos)
            advance(1)
            clf = make_pipeline(StandardScaler(), LogisticRegression(
                C=self.probe_C, max_iter=2000, random_state=seed))
            clf.fit(f_tr, tr_y)
            pred = clf.predict(f_te)
            advance(1)
        values, counts = np.unique(tr_y, return_counts=True)
        majority = values[np.argmax(counts)]
        binary = len(classes) == 2
        pos = 1 if binary and 1 in set(classes.tolist()) else (classes[-1] if binary else None)
        f1 = (f1_score(te_y, pred, pos_label=pos, zero_division=0) if binary
              else f1_score(te_y, pred, average="macro", zero_division=0))
        # the continuous view (DataDecide: it ranks data better than accuracy does): the log
        # probability the probe gives the right label, per test example
        proba = clf.predict_proba(f_te)
        col = {c: i for i, c in enumerate(clf.classes_.tolist())}
        true_logprob = np.log(np.clip(
            proba[np.arange(len(te_y)), [col.get(v, 0) for v in te_y.tolist()]], 1e-12, 1.0))
        return {
            "downstream_accuracy": float(accuracy_score(te_y, pred)),
            "downstream_f1": float(f1),
            "downstream_logprob": float(true_logprob.mean()),
            "_correct": (pred == te_y).astype(float), "_true_logprob": true_logprob,
            "downstream_majority": float(np.mean(te_y == majority)),
            "train_accuracy": float(accuracy_score(tr_y, clf.predict(f_tr))),
            "num_train": int(len(tr_y)), "num_test": int(len(te_y)),
            "labels": [v.item() if hasattr(v, "item") else v for v in classes],
        }
