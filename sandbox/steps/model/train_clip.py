"""``trainer=clip``: a small CLIP trained from scratch on CPU on the processed image-text pool, at
a fixed *sample budget* (image-caption pairs seen), so recipes compare at equal compute whatever
they keep: a smaller pool is repeated (``epochs`` > 1), a larger one only partly seen.

The model is transformers' ``CLIPModel`` with a tiny ``CLIPConfig`` (a ViT over
``image_size``-pixel images in ``patch_size`` patches, a causal text transformer), the tokenizer a
lower-cased BPE trained on the pool's captions, the image processor a ``CLIPImageProcessor``
(shortest side to ``image_size``, centre crop, OpenAI's normalisation). All three are saved with
``save_pretrained`` in ``model/``: ``CLIPModel``, ``AutoTokenizer`` and ``AutoImageProcessor``
load it, as the retrieval evaluator and the CLIP-scored OPs do (``hf_clip: <run>/train/model``).

Each sample is one (caption, image) pair per Data-Juicer chunk: the text is split at
``<|__dj__eoc|>`` and a chunk's ``<__dj__image>`` tokens own the next images of the sample."""
from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.image_text import chunks
from sandbox.data.io import read_table
from sandbox.device import autocast, parse_device, resolve_device
from sandbox.errors import DataError
from sandbox.steps.base import StepEnv
from sandbox.steps.model.train import ThreadedTrainer
from sandbox.threads import parse_threads
from sandbox.utils import atomic_path

log = logging.getLogger(__name__)

SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]
# OpenAI CLIP's normalisation, kept so a from-scratch model preprocesses like the public ones
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def train_caption_tokenizer(captions: list[str], vocab_size: int, max_len: int):
    """A lower-cased BPE over whitespace/punctuation-split words of the captions, wrapped as a
    ``PreTrainedTokenizerFast`` that adds ``<bos>``/``<eos>`` and pads with ``<pad>`` (id 0).
    Deterministic for the same captions (ties broken by ids)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL,
                                  show_progress=False)
    tok.train_from_iterator(captions, trainer=trainer, length=len(captions))
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", model_max_length=max_len, clean_up_tokenization_spaces=False)


def read_pairs(dataset: str, text_key: str, image_key: str, who: str) -> tuple[list, list]:
    """(captions, image paths): one pair per image of every chunk of every sample."""
    table = read_table(dataset, text_key=text_key)
    if image_key not in table.column_names:
        raise DataError(f"{who}: {dataset} has no `{image_key}` column (fields: "
                        f"{', '.join(table.column_names)}). An image-text pool lists each "
                        f"sample's image paths there (data_pool=image_text, or Data-Juicer's "
                        f"multimodal jsonl).")
    captions, paths = [], []
    texts = table.column(text_key).to_pylist()
    for text, images in zip(texts, table.column(image_key).to_pylist()):
        for caption, imgs in chunks(text or "", list(images or [])):
            for im in imgs:
                if caption:
                    captions.append(caption)
                    paths.append(im)
    return captions, paths


class CLIPTrainer(ThreadedTrainer):
    """A tiny CLIP from scratch at a fixed number of image-caption pairs seen.

    * ``sample_budget``: pairs seen in training (compute): ``ceil(sample_budget / batch_size)``
      optimizer steps whatever the pool's size.
    * ``batch_size``: pairs per step (the contrastive loss's negatives come from the batch).
    * ``image_size``, ``patch_size``: the ViT's input side and patch side (pixels).
    * ``hidden_size``, ``num_layers``, ``num_heads``, ``projection_dim``: both towers' shape.
    * ``vocab_size``, ``max_len``: caption tokenizer size and the text tower's context.
    * ``lr``, ``warmup_frac``, ``min_lr_frac``, ``weight_decay``: AdamW with linear warmup then
      cosine decay; ``grad_clip``: global norm clip (0: off).
    * ``device``: ``auto`` (CUDA when there is one) | ``cpu`` | ``cuda`` | ``cuda:N``; bf16
      autocast on CUDA (``sandbox.device``).
    * ``num_threads``: torch threads during the step (``auto``: the CPUs other processes leave
      free, ``sandbox.threads``).
    * ``seed``: model init and batch order; None: the run's seed.
    * ``token_budget``, ``n_layer``: the text trainer's names for compute and depth, which
      pipelines written for it set (``experiment=bottom_up``, its scale stage): given, they
      replace ``sample_budget`` by ``token_budget / max_len`` (pairs of ``max_len`` caption
      tokens) and ``num_layers`` by ``n_layer``.
    """

    outputs = ("model_dir", "samples_seen", "final_loss", "loss_curve", "metrics")
    seeded = True  # `seeds=N` trains N models (init and data order), evaluated each

    def __init__(self, text_key: str = "text", image_key: str = "images",
                 sample_budget: int = 16_000, batch_size: int = 64, image_size: int = 32,
                 patch_size: int = 8, hidden_size: int = 128, num_layers: int = 2,
                 num_heads: int = 4, projection_dim: int = 64, vocab_size: int = 2000,
                 max_len: int = 32, lr: float = 1e-3, warmup_frac: float = 0.05,
                 min_lr_frac: float = 0.1, weight_decay: float = 0.1,
                 grad_clip: float | None = 1.0, num_threads: int | str = "auto",
                 seed: int | None = None, log_every: int = 20, token_budget: int | None = None,
                 n_layer: int | None = None, device: str = "auto"):
        self.device = parse_device(device, "trainer.device")
        if token_budget is not None:
            sample_budget = max(1, int(token_budget) // int(max_len))
        if n_layer is not None:
            num_layers = int(n_layer)
        if sample_budget <= 0 or batch_size < 2:
            raise ValueError("train: sample_budget must be > 0 and batch_size >= 2")
        if image_size % patch_size:
            raise ValueError(f"train: image_size={image_size} must be a multiple of "
                             f"patch_size={patch_size}")
        if hidden_size % num_heads:
            raise ValueError(f"train: hidden_size={hidden_size} must be a multiple of "
                             f"num_heads={num_heads}")
        self.text_key, self.image_key = text_key, image_key
        self.sample_budget, self.batch_size = int(sample_budget), int(batch_size)
        self.image_size, self.patch_size = int(image_size), int(patch_size)
        self.hidden_size, self.num_layers = int(hidden_size), int(num_layers)
        self.num_heads, self.projection_dim = int(num_heads), int(projection_dim)
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.lr, self.warmup_frac = float(lr), float(warmup_frac)
        self.min_lr_frac = float(min_lr_frac)
        self.weight_decay, self.grad_clip = float(weight_decay), grad_clip
        self.num_threads = parse_threads(num_threads, "trainer.num_threads")
        self.seed, self.log_every = seed, max(1, int(log_every))

    @property
    def num_steps(self) -> int:
        return math.ceil(self.sample_budget / self.batch_size)

    def image_processor(self):
        try:  # the PIL backend by name: without torchvision the plain class warns and uses it
            from transformers import CLIPImageProcessorPil as CLIPImageProcessor
        except ImportError:  # transformers < 5
            from transformers import CLIPImageProcessor

        s = self.image_size
        return CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s},
                                  image_mean=MEAN, image_std=STD)

    def _run(self, env: StepEnv, dataset: str, seed: int) -> dict[str, Any]:
        import torch
        from transformers import CLIPConfig, CLIPModel

        from sandbox.clip_model import open_images, pixel_values

        t_setup = time.perf_counter()
        device = resolve_device(self.device, "trainer.device")
        workdir = Path(env.workdir)
        captions, paths = read_pairs(dataset, self.text_key, self.image_key, "train")
        if len(captions) < 2:
            raise DataError(f"train: {dataset} holds {len(captions)} image-caption pair(s); "
                            f"contrastive training needs at least 2. The recipe kept too little: "
                            f"loosen it.")
        # every distinct image decoded and preprocessed once
        uniq = sorted(set(paths))
        where = {p: i for i, p in enumerate(uniq)}
        proc = self.image_processor()
        pixels = torch.cat([pixel_values(proc, open_images(uniq[i:i + 256], "train: "))
                            for i in range(0, len(uniq), 256)])
        image_of = torch.tensor([where[p] for p in paths])
        tok = train_caption_tokenizer(captions, self.vocab_size, self.max_len)
        enc = tok(captions, padding=True, truncation=True, max_length=self.max_len,
                  return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]

        rng = np.random.default_rng(seed)
        n, B, steps = len(captions), self.batch_size, self.num_steps
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * B / n))])
        order = torch.from_numpy(order[:steps * B].reshape(steps, B))
        epochs = steps * B / n
        if epochs > 1.0:
            log.warning(f"train: the pool has {n:,} pairs but the sample budget is "
                        f"{steps * B:,}: the data is repeated {epochs:.2f} times.")

        torch.manual_seed(seed)
        h = self.hidden_size
        common = dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=self.num_layers,
                      num_attention_heads=self.num_heads, attention_dropout=0.0)
        config = CLIPConfig(
            text_config=dict(vocab_size=len(tok), max_position_embeddings=self.max_len,
                             pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, **common),
            vision_config=dict(image_size=self.image_size, patch_size=self.patch_size,
                               num_channels=3, **common),
            projection_dim=self.projection_dim)
        model = CLIPModel(config).to(device)
        model.train()
        ids, mask, pixels = ids.to(device), mask.to(device), pixels.to(device)
        image_of, order = image_of.to(device), order.to(device)
        opt = self._adamw(model, "embedding", betas=(0.9, 0.98), eps=1e-6)
        num_params = sum(p.numel() for p in model.parameters())
        setup_seconds = time.perf_counter() - t_setup

        curve: list[tuple[int, int, float, float]] = []
        acc, acc_n = 0.0, 0
        clip = float(self.grad_clip) if self.grad_clip else 0.0
        t0 = time.perf_counter()
        with env.progress(steps, f"training {steps} steps × {B} pairs") as advance:
            for step in range(steps):
                lr = self._set_lr(opt, step, steps)
                idx = order[step]
                with autocast(device):
                    out = model(input_ids=ids[idx], attention_mask=mask[idx],
                                pixel_values=pixels[image_of[idx]], return_loss=True)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
                opt.step()
                with torch.no_grad():  # CLIP clamps its temperature at 100
                    model.logit_scale.clamp_(0, math.log(100))
                acc += float(out.loss.detach())
                acc_n += 1
                if (step + 1) % self.log_every == 0 or step + 1 == steps:
                    mean = acc / acc_n
                    if not math.isfinite(mean):
                        raise FloatingPointError(f"train: the loss diverged ({mean}) at step "
                                                 f"{step + 1}; lower trainer.lr (now {self.lr}).")
                    seen = (step + 1) * B
                    curve.append((step + 1, seen, mean, lr))
                    env.tracker.log_metrics({"train_loss": mean, "lr": lr}, step=seen)
                    env.report("train_loss", mean, seen)
                    acc, acc_n = 0.0, 0
                advance(1)
        train_seconds = time.perf_counter() - t0

        curve_path = workdir / "loss_curve.csv"
        with atomic_path(curve_path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["step", "samples_seen", "train_loss", "lr"])
                w.writerows(curve)
        env.tracker.log_artifact(curve_path)
        model.cpu().eval()
        model_dir = workdir / "model"
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            with atomic_path(model_dir) as tmp:
                model.save_pretrained(tmp)
                tok.save_pretrained(tmp)
                proc.save_pretrained(tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        seen = steps * B
        metrics = {
            "train_loss_final": curve[-1][2],
            "train_pairs_per_s": seen / train_seconds if train_seconds > 0 else float("nan"),
            "epochs": epochs,
            "train_seconds": train_seconds,
            "setup_seconds": setup_seconds,
            "num_params": float(num_params),
            "pool_pairs": float(n),
            "vocab_size": float(len(tok)),
            "logit_scale": float(model.logit_scale.detach().exp()),
        }
        return {"model_dir": str(model_dir), "samples_seen": seen, "final_loss": curve[-1][2],
                "loss_curve": str(curve_path), "metrics": metrics}
