"""Train a small causal LM from scratch on the processed pool, at a fixed token budget.

Every recipe's pool trains its own byte-level BPE tokenizer and a small GPT-2 for *the same
number of training tokens*, so recipes are compared at equal compute whatever their retention:
a pool with fewer tokens than the budget is repeated (``epochs`` > 1, with a warning), a larger one
is sub-sampled. The result is a Hugging Face model folder that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load.

torch, transformers and tokenizers are imported inside the methods: importing this module (and
starting the CLI) stays fast.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.io import read_table
from sandbox.device import autocast, parse_device, resolve_device
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.threads import parse_threads, torch_threads
from sandbox.utils import atomic_path

log = logging.getLogger(__name__)

EOT = "<|endoftext|>"

# ``size`` presets: GPT-2 shapes (layers, width, heads) after the model ladder DataDecide trained
# (arXiv 2504.11393; OLMo's ladder: 4M is 8 layers of width 64 ... 150M is 12 of width 768). Our
# blocks are GPT-2's (4x MLP, learned positions) and the vocabulary is the pool's BPE (4096 by
# default, not 50k), so the parameter counts are ours (``num_params``), not the names'. ``1m`` is
# the CPU default shape. With a preset, the token budget is ``tokens_per_param`` x parameters.
SIZES = {
    "1m": (2, 128, 4),
    "4m": (8, 64, 8),
    "6m": (8, 96, 8),
    "8m": (8, 128, 8),
    "10m": (8, 144, 8),
    "14m": (8, 192, 8),
    "16m": (8, 208, 8),
    "20m": (16, 192, 8),
    "60m": (16, 384, 12),
    "90m": (16, 528, 12),
    "150m": (12, 768, 12),
}


def train_bpe_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``, with ``<|endoftext|>`` as id 0.

    Deterministic: the trainer breaks ties between equally frequent pairs by the pair's ids, and
    the initial alphabet (all 256 byte symbols) is fixed, so the same texts give the same merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def wrap_tokenizer(tok):
    """Wrap a ``tokenizers.Tokenizer`` as a ``PreTrainedTokenizerFast`` (BOS = EOS = pad = EOT)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT, unk_token=None,
        model_max_length=int(1e9), clean_up_tokenization_spaces=False,
    )


def gpt2_params(n_layer: int, n_embd: int, vocab: int, seq_len: int) -> int:
    """Parameters of ``GPT2LMHeadModel`` with tied embeddings: token and position embeddings,
    ``n_layer`` blocks (attention 4 d^2 + MLP 8 d^2 weights, their biases, two LayerNorms) and the
    final LayerNorm."""
    d = n_embd
    block = 12 * d * d + 13 * d
    return vocab * d + seq_len * d + n_layer * block + 2 * d


def budget_for(n_layer: int, n_embd: int, vocab: int, seq_len: int, tokens_per_param: float) -> int:
    """The token budget of a ``size`` preset: ``tokens_per_param`` x the model's parameters."""
    return int(round(tokens_per_param * gpt2_params(n_layer, n_embd, vocab, seq_len)))


class ThreadedTrainer(Step):
    """A trainer whose ``_run(env, dataset, seed)`` runs with its ``num_threads`` torch threads
    and its ``seed`` (None: the run's); the thread count used is reported as a metric."""

    seeded = True
    num_threads: Any = "auto"
    seed: int | None = None

    def run(self, env: StepEnv, dataset: str) -> dict[str, Any]:
        seed = env.seed if self.seed is None else int(self.seed)
        with torch_threads(self.num_threads, "trainer.num_threads") as threads:
            out = self._run(env, dataset, seed)
        # the thread count changes float summation order: runs that differ in the last digits
        # (far below seed noise) show why; pin trainer.num_threads for bit-identical reruns
        out["metrics"]["num_threads"] = float(threads.threads)
        return out

    def _run(self, env: StepEnv, dataset: str, seed: int) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - each trainer's own training

    def _adamw(self, model, no_decay: str, betas: tuple[float, float], eps: float):
        """AdamW with decoupled weight decay (``weight_decay``) on weight matrices only: not on
        biases, norms, nor parameters whose name holds ``no_decay`` (position embeddings)."""
        import torch

        decay, rest = [], []
        for name, p in model.named_parameters():
            (decay if p.dim() >= 2 and no_decay not in name else rest).append(p)
        return torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                  {"params": rest, "weight_decay": 0.0}],
                                 lr=self.lr, betas=betas, eps=eps, foreach=True)

    def _set_lr(self, opt, step: int, total: int) -> float:
        """The schedule's (``_lr_at``) learning rate for ``step``, set in every group of
        ``opt``; returned."""
        lr = self._lr_at(step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    def _warmup_steps(self, total: int) -> int:
        """Warmup steps: ``warmup_frac`` of the ``total`` steps, or a fixed count of tokens
        (``warmup_tokens``, where the trainer has it) that does not change with the budget."""
        tokens = getattr(self, "warmup_tokens", None)
        if tokens is not None:
            per_step = self.batch_size * self.seq_len
            return max(1, int(round(int(tokens) / per_step))) if int(tokens) > 0 else 0
        return max(1, int(round(self.warmup_frac * total))) if self.warmup_frac > 0 else 0

    def _decay_start(self, total: int) -> int:
        """The first step of a warmup-stable-decay schedule's decay: the last ``decay_frac``
        of the steps (at least one)."""
        decay = max(1, int(round(float(getattr(self, "decay_frac", 0.2)) * total)))
        return max(self._warmup_steps(total), total - decay)

    def _lr_at(self, step: int, total: int) -> float:
        """Linear warmup (``_warmup_steps``), then cosine decay to ``min_lr_frac * lr``
        (``step`` counts from 0; the trainer's ``lr``, ``warmup_frac`` and ``min_lr_frac``).
        ``schedule="wsd"`` (warmup-stable-decay): the peak ``lr`` holds until the last
        ``decay_frac`` of the steps, which decay linearly to ``min_lr_frac * lr``; a run
        continued to a larger budget from the checkpoint taken where the decay starts follows the
        same schedule as one trained straight through."""
        warm = self._warmup_steps(total)
        if step < warm:
            return self.lr * (step + 1) / warm
        if getattr(self, "schedule", "cosine") == "wsd":
            start = self._decay_start(total)
            if step < start:
                return self.lr
            progress = (step - start + 1) / max(1, total - start)
            return self.lr * (1.0 - (1.0 - self.min_lr_frac) * min(1.0, progress))
        progress = (step - warm) / max(1, total - warm)
        cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.lr * (self.min_lr_frac + (1.0 - self.min_lr_frac) * cos)


class CausalLMTrainer(ThreadedTrainer):
    """Tokenizer + small GPT-2 trained from scratch on the pool for a fixed number of tokens.

    Parameters (all flat, so sweeps can reach them as ``train.<name>``):

    * ``text_key``: the column of the Parquet dataset holding the text.
    * ``token_budget``: training tokens (compute) per run. Training runs exactly
      ``ceil(token_budget / (batch_size * seq_len))`` optimizer steps, whatever the size of the
      pool: a smaller pool is repeated (a logged warning, and the ``epochs`` metric = passes over
      the pool), a larger one only partly seen (``epochs`` < 1).
    * ``seq_len``: tokens per training block (also the model's context length).
    * ``batch_size``: blocks per optimizer step.
    * ``n_layer``, ``n_embd``, ``n_head``: GPT-2 shape (defaults: ~0.94M parameters).
    * ``vocab_size``: BPE vocabulary size (including the 256 byte symbols and ``<|endoftext|>``);
      a small pool may yield fewer tokens, and the model is sized to the real vocabulary.
    * ``lr``: peak AdamW learning rate; ``warmup_frac`` of the steps warm up linearly, the rest
      decay on a cosine to ``min_lr_frac * lr``. 2e-3 did best of 1e-3..1e-2 for the default
      shape at 1M tokens (lower it for wider/deeper models).
    * ``schedule``: ``cosine`` (the above, the default) or ``wsd`` (warmup-stable-decay: the
      peak ``lr`` until the last ``decay_frac`` of the steps, then a linear decay to
      ``min_lr_frac * lr``). A ``wsd`` run keeps ``checkpoint.pt`` (model, optimizer, step)
      taken where its decay starts; ``resume_from`` (that file) continues it to this run's
      larger budget, with the same result as training straight through: the data order is the
      same prefix, and the warmup must not depend on the budget (``warmup_tokens``).
    * ``warmup_tokens``: warm up over this many tokens instead of ``warmup_frac`` of the budget.
    * ``weight_decay``: AdamW decoupled weight decay, on weight matrices only (not on biases,
      LayerNorm or position embeddings).
    * ``grad_clip``: clip the global gradient norm (0 or None: off).
    * ``num_threads``: ``torch.set_num_threads`` during the step (restored after). ``auto``:
      the CPUs other processes are not using when the step starts (``sandbox.threads``): OpenMP
      threads collapse when another process competes for the cores. The console says when the
      machine is oversubscribed.
    * ``seed``: seeds tokenizer sampling, block shuffling and model init; None: the run's seed.
    * ``tokenizer_sample_chars``: train the tokenizer on a seeded sample of at most this many
      characters of the pool (BPE training time grows with it; the model sees the whole pool).
    * ``log_every``: log ``train_loss`` (mean over the last ``log_every`` steps) every this many
      steps, to the tracker (step = tokens seen) and to ``loss_curve.csv``.
    * ``device``: ``auto`` (CUDA when there is one) | ``cpu`` | ``cuda`` | ``cuda:N``; on CUDA the
      forward pass runs under bf16 autocast (``sandbox.device``). CPU results do not change.
    * ``size``: a preset shape (``SIZES``: ``1m`` ... ``150m``) that replaces ``n_layer``,
      ``n_embd``, ``n_head`` and sets ``token_budget`` to ``tokens_per_param`` x the model's
      parameters (20: Chinchilla's rule; DataDecide trained at 100). None: the explicit fields.
    """

    outputs = ("model_dir", "tokens_seen", "final_loss", "loss_curve", "metrics", "checkpoint")
    seeded = True  # `seeds=N` trains N models (init and data order), evaluated each

    def __init__(
        self,
        text_key: str = "text",
        token_budget: int = 1_000_000,
        seq_len: int = 128,
        batch_size: int = 16,
        n_layer: int = 2,
        n_embd: int = 128,
        n_head: int = 4,
        vocab_size: int = 4096,
        lr: float = 2e-3,
        warmup_frac: float = 0.05,
        min_lr_frac: float = 0.1,
        weight_decay: float = 0.1,
        grad_clip: float | None = 1.0,
        num_threads: int | str = "auto",
        seed: int | None = None,
        tokenizer_sample_chars: int = 5_000_000,
        log_every: int = 20,
        device: str = "auto",
        size: str | None = None,
        tokens_per_param: float = 20.0,
        schedule: str = "cosine",
        decay_frac: float = 0.2,
        warmup_tokens: int | None = None,
        resume_from: str | None = None,
    ):
        if size is not None:
            key = str(size).lower()
            if key not in SIZES:
                raise ConfigError(f"trainer.size={size!r}: give one of {', '.join(SIZES)} (or null "
                                  f"for the explicit n_layer/n_embd/n_head/token_budget).")
            n_layer, n_embd, n_head = SIZES[key]
            if not float(tokens_per_param) > 0:
                raise ConfigError(f"trainer.tokens_per_param={tokens_per_param}: give a number > 0.")
            token_budget = budget_for(n_layer, n_embd, vocab_size, seq_len, tokens_per_param)
        self.size, self.tokens_per_param = size, float(tokens_per_param)
        self.device = parse_device(device, "trainer.device")
        if token_budget <= 0 or seq_len < 2 or batch_size <= 0:
            raise ValueError("train: token_budget and batch_size must be > 0 and seq_len >= 2")
        if n_embd % n_head:
            raise ValueError(f"train: n_embd={n_embd} must be a multiple of n_head={n_head}")
        if vocab_size < 258:
            raise ValueError(f"train: vocab_size={vocab_size} must be >= 258 (256 bytes + EOT + 1)")
        self.text_key = text_key
        self.token_budget = int(token_budget)
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.n_layer, self.n_embd, self.n_head = int(n_layer), int(n_embd), int(n_head)
        self.vocab_size = int(vocab_size)
        self.lr, self.warmup_frac, self.min_lr_frac = float(lr), float(warmup_frac), float(min_lr_frac)
        self.weight_decay = float(weight_decay)
        self.grad_clip = grad_clip
        self.num_threads = parse_threads(num_threads, "trainer.num_threads")
        self.seed = seed
        self.tokenizer_sample_chars = int(tokenizer_sample_chars)
        self.log_every = max(1, int(log_every))
        if schedule not in ("cosine", "wsd"):
            raise ConfigError(f"trainer.schedule={schedule!r}: give cosine (the default) or wsd "
                              f"(warmup-stable-decay, which a fidelity search continues).")
        if not 0.0 < float(decay_frac) < 1.0:
            raise ConfigError(f"trainer.decay_frac={decay_frac}: give the share of the steps "
                              f"that decay, between 0 and 1 (0.2: the last fifth).")
        if resume_from and schedule != "wsd":
            raise ConfigError("trainer.resume_from continues a warmup-stable-decay run: set "
                              "trainer.schedule=wsd (a cosine schedule cannot be continued).")
        self.schedule, self.decay_frac = schedule, float(decay_frac)
        self.warmup_tokens = None if warmup_tokens is None else int(warmup_tokens)
        self.resume_from = str(resume_from) if resume_from else None

    # ------------------------------------------------------------------ helpers
    @property
    def num_steps(self) -> int:
        return math.ceil(self.token_budget / (self.batch_size * self.seq_len))

    def _read_texts(self, dataset: str) -> list[str]:
        table = read_table(dataset, text_key=self.text_key)
        texts = [t for t in table.column(self.text_key).to_pylist() if t and t.strip()]
        if not texts:
            raise DataError(
                f"train: {dataset} has {table.num_rows} record(s) but no text in {self.text_key!r} "
                f"(all empty). The recipe filtered everything out: loosen it."
            )
        return texts

    def _tokenizer_sample(self, texts: list[str], rng: np.random.Generator) -> list[str]:
        total = sum(len(t) for t in texts)
        if total <= self.tokenizer_sample_chars:
            return texts
        out, n = [], 0
        for i in rng.permutation(len(texts)):
            t = texts[i]
            out.append(t)
            n += len(t)
            if n >= self.tokenizer_sample_chars:
                break
        return out


    def _run(self, env: StepEnv, dataset: str, seed: int) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F
        from transformers import GPT2Config, GPT2LMHeadModel

        t_setup = time.perf_counter()
        device = resolve_device(self.device, "trainer.device")
        workdir = Path(env.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)

        # 1. tokenizer, trained on (a seeded sample of) the pool
        texts = self._read_texts(dataset)
        raw_tok = train_bpe_tokenizer(self._tokenizer_sample(texts, rng), self.vocab_size)
        eot_id = raw_tok.token_to_id(EOT)
        vocab = raw_tok.get_vocab_size()

        # 2. the pool as one token stream: EOT doc EOT doc ... (every doc starts after an EOT,
        #    as at evaluation, where each document gets a BOS = EOT in front)
        parts = []
        for i in range(0, len(texts), 2048):  # chunks: Encoding objects are heavy (~100 B/token)
            for e in raw_tok.encode_batch_fast(texts[i:i + 2048]):  # parallel, no offsets
                parts.append(np.array([eot_id] + e.ids, dtype=np.int64))
        stream = np.concatenate(parts)
        del parts
        L, B = self.seq_len, self.batch_size
        n_blocks = len(stream) // L
        if n_blocks < 1:
            raise DataError(
                f"train: the pool {dataset} has {len(stream)} tokens, fewer than one block of "
                f"seq_len={L}. Use more data, a looser recipe or a smaller train.seq_len."
            )

        # 3. which blocks each step sees: each pass over the pool shuffles the blocks and cuts
        #    them at a fresh random offset (so repeated data is not the very same blocks)
        steps = self.num_steps
        need = steps * B
        starts_parts, have, passes = [], 0, 0
        while have < need:
            offset = int(rng.integers(0, L)) if passes > 0 else 0
            nb = (len(stream) - offset) // L
            if nb < 1:  # stream shorter than L + offset: fall back to offset 0
                offset, nb = 0, n_blocks
            perm = rng.permutation(nb)
            starts_parts.append(offset + perm * L)
            have += nb
            passes += 1
        starts = torch.from_numpy(np.concatenate(starts_parts)[:need].reshape(steps, B))
        epochs = need / n_blocks
        if epochs > 1.0:
            msg = (f"train: the pool has {len(stream):,} tokens ({n_blocks:,} blocks) but the "
                   f"token budget is {steps * B * L:,}: the data is repeated {epochs:.2f} times.")
            log.warning(msg)
        stream_t = torch.from_numpy(stream).to(device)
        offsets = torch.arange(L, device=device)
        starts = starts.to(device)

        # 4. the model
        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=vocab, n_positions=L, n_embd=self.n_embd, n_layer=self.n_layer,
            n_head=self.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=eot_id, eos_token_id=eot_id, tie_word_embeddings=True,
        )
        model = GPT2LMHeadModel(config).to(device)
        # pad = EOT for generate(); left out of the model config, where it only triggers a
        # "padding without attention mask?" check on every forward (blocks start with EOT)
        model.generation_config.pad_token_id = eot_id
        model.train()
        num_params = sum(p.numel() for p in model.parameters())
        opt = self._adamw(model, "wpe", betas=(0.9, 0.95), eps=1e-8)
        setup_seconds = time.perf_counter() - t_setup

        # 5. the loop: nothing but gather -> forward -> backward -> step; the loss is read
        #    (a no-op sync on CPU) only every log_every steps
        first = self._resume(model, opt, steps) if self.resume_from else 0
        checkpoint = workdir / "checkpoint.pt"
        decay_start = self._decay_start(steps) if self.schedule == "wsd" else None
        curve_path = workdir / "loss_curve.csv"
        curve: list[tuple[int, int, float, float]] = []
        loss_acc = torch.zeros((), dtype=torch.float64, device=device)
        acc_n = 0
        clip = float(self.grad_clip) if self.grad_clip else 0.0
        tokens_per_step = B * L
        t0 = time.perf_counter()
        with env.progress(steps, f"training {steps} steps × {tokens_per_step} tokens") as advance:
            advance(first)
            for step in range(first, steps):
                if step == decay_start:  # where a larger budget's run continues from
                    self._save_checkpoint(checkpoint, model, opt, step, steps)
                lr = self._set_lr(opt, step, steps)
                x = stream_t[starts[step].unsqueeze(1) + offsets]  # (B, L)
                with autocast(device):
                    logits = model(input_ids=x).logits
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                       x[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
                opt.step()
                loss_acc += loss.detach()
                acc_n += 1
                if (step + 1) % self.log_every == 0 or step + 1 == steps:
                    mean_loss = float(loss_acc) / acc_n
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(
                            f"train: the loss diverged ({mean_loss}) at step {step + 1}; lower "
                            f"train.lr (now {self.lr}).")
                    seen = (step + 1) * tokens_per_step
                    curve.append((step + 1, seen, mean_loss, lr))
                    env.tracker.log_metrics({"train_loss": mean_loss, "lr": lr}, step=seen)
                    env.report("train_loss", mean_loss, seen)  # a sweep may prune here
                    loss_acc.zero_()
                    acc_n = 0
                advance(1)
        train_seconds = time.perf_counter() - t0
        tokens_seen = steps * tokens_per_step
        final_loss = curve[-1][2] if curve else float("nan")

        # 6. outputs: curve (csv + png) and the model + tokenizer, written atomically
        with atomic_path(curve_path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["step", "tokens_seen", "train_loss", "lr"])
                w.writerows(curve)
        png = self._plot(curve, workdir / "loss_curve.png")
        model_dir = workdir / "model"
        model.cpu().eval()
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Writing model shards" for a single small file
        try:
            with atomic_path(model_dir) as tmp:
                model.save_pretrained(tmp)
                wrap_tokenizer(raw_tok).save_pretrained(tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        env.tracker.log_artifact(curve_path)
        if png is not None:
            env.tracker.log_artifact(png)

        metrics = {
            "train_loss_final": final_loss,
            "train_tokens_per_s": (steps - first) * tokens_per_step / train_seconds
            if train_seconds > 0 else float("nan"),
            "epochs": epochs,
            "train_seconds": train_seconds,
            "setup_seconds": setup_seconds,
            "num_params": float(num_params),
            "pool_tokens": float(len(stream)),
            "vocab_size": float(vocab),
        }
        out = {
            "model_dir": str(model_dir),
            "tokens_seen": tokens_seen,
            "final_loss": final_loss,
            "loss_curve": str(curve_path),
            "metrics": metrics,
        }
        # a wsd run's checkpoint where its decay started (None: cosine, or no decay reached)
        out["checkpoint"] = str(checkpoint) if decay_start is not None and checkpoint.is_file() \
            else None
        return out

    def _save_checkpoint(self, path: Path, model, opt, step: int, steps: int) -> None:
        """Model, optimizer and step where the decay starts (``schedule=wsd``)."""
        import torch

        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "warmup_steps": self._warmup_steps(steps), "lr": self.lr,
                 "batch_size": self.batch_size, "seq_len": self.seq_len}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _resume(self, model, opt, steps: int) -> int:
        """Load ``resume_from`` into ``model`` and ``opt``; the step to continue from."""
        import torch

        path = Path(self.resume_from)
        if not path.is_file():
            raise ConfigError(f"trainer.resume_from={path}: no such checkpoint. Give the "
                              f"checkpoint.pt of a trainer.schedule=wsd run on the same pool.")
        state = torch.load(path, map_location="cpu", weights_only=False)
        same = {k: getattr(self, k) for k in ("lr", "batch_size", "seq_len")}
        differs = {k: (state.get(k), v) for k, v in same.items() if state.get(k) != v}
        if self._warmup_steps(steps) != state.get("warmup_steps"):
            differs["warmup steps"] = (state.get("warmup_steps"), self._warmup_steps(steps))
        if state["step"] > self._decay_start(steps):
            differs["budget"] = (f"checkpoint at step {state['step']}",
                                 f"decay starting at step {self._decay_start(steps)}")
        if differs:
            raise ConfigError(
                f"trainer.resume_from={path}: the checkpoint's run does not continue into this "
                f"one ({'; '.join(f'{k}: {a} there, {b} here' for k, (a, b) in differs.items())})."
                f" Resume with the same lr, batch_size, seq_len and trainer.warmup_tokens, to a "
                f"budget at least as large.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        return int(state["step"])

    @staticmethod
    def _plot(curve, path: Path) -> Path | None:
        """``loss_curve.png`` through matplotlib's object API (no pyplot, no global backend)."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            return None
        fig = Figure(figsize=(6, 3.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot([c[1] for c in curve], [c[2] for c in curve], marker="." if len(curve) < 50 else None)
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("train loss (nats/token)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        return path
