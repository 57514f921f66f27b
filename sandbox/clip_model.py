"""Loading a CLIP checkpoint and embedding images and texts with it: shared by the CLIP trainer,
the retrieval evaluator and the CLIP-scored OPs.

A checkpoint is a folder that transformers' ``CLIPModel``, ``AutoTokenizer`` and
``AutoImageProcessor`` load: the sandbox's own (``trainer=clip`` writes one) or any
transformers CLIP checkpoint on disk (``openai/clip-vit-base-patch32`` and the like, by path, or
by name when it is already in the local Hugging Face cache: nothing is downloaded).
torch and transformers are imported inside the functions."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.image_text import to_rgb
from sandbox.device import autocast
from sandbox.errors import DataError

_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


class ClipNotFound(ValueError):
    """No CLIP checkpoint at the given path / name (a ValueError: recipe checks report it)."""


def _quiet_hf():
    from transformers.utils import logging as hf_logging

    class _Quiet:
        def __enter__(self):
            self.bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()

        def __exit__(self, *exc):
            if self.bars:
                hf_logging.enable_progress_bar()

    return _Quiet()


def load_clip(name_or_path: str, who: str = "CLIP"):
    """``(model, tokenizer, image_processor)`` of a CLIP checkpoint, loaded once per process.

    ``name_or_path``: a folder (``config.json`` of ``model_type: clip``) or a Hugging Face name
    already in the local cache. A clear ``ClipNotFound`` otherwise, saying what to pass."""
    key = str(name_or_path)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        p = Path(key).expanduser()
        local = p.is_dir()
        if not local and (p.suffix or key.startswith((".", "/", "~")) or key.count("/") != 1):
            raise ClipNotFound(
                f"{who}: {key!r} is not a folder. Give the path of a CLIP checkpoint: the "
                f"sandbox's own (`trainer=clip` saves one in the run dir as train/model), or a "
                f"transformers CLIP checkpoint saved on disk.")
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        kwargs = {} if local else {"local_files_only": True}
        src = str(p) if local else key
        try:
            with _quiet_hf():
                model = CLIPModel.from_pretrained(src, **kwargs)
                tok = AutoTokenizer.from_pretrained(src, **kwargs)
                proc = AutoImageProcessor.from_pretrained(src, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            where = "in the folder" if local else "in the local Hugging Face cache (no download)"
            raise ClipNotFound(
                f"{who}: could not load a transformers CLIP model, tokenizer and image processor "
                f"from {key!r} {where} ({str(e).splitlines()[0][:200]}). Give the path of a CLIP "
                f"checkpoint: the sandbox's own (`trainer=clip` saves one as train/model in the "
                f"run dir) or a transformers CLIP checkpoint saved with save_pretrained."
            ) from None
        model.eval()
        _LOADED[key] = (model, tok, proc)
        return _LOADED[key]


def open_images(paths: list[str], who: str = "") -> list:
    """PIL RGB images (transparent parts on white); a DataError naming a missing/bad file."""
    from PIL import Image, UnidentifiedImageError


    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(to_rgb(im))
        except FileNotFoundError:
            raise DataError(f"{who}image file {path} does not exist (a sample's `images` lists "
                            f"it). Fix the path in the pool, or drop the sample.") from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{who}image file {path} cannot be decoded ({e}). Replace or drop "
                            f"it.") from None
    return out


def pixel_values(processor, images: list):
    """The processor's tensors for ``images`` (resize, centre crop, normalise)."""
    return processor(images=images, return_tensors="pt")["pixel_values"]


def text_inputs(tokenizer, model, texts: list[str]) -> dict:
    max_len = model.config.text_config.max_position_embeddings
    return tokenizer(texts, padding=True, truncation=True, max_length=max_len,
                     return_tensors="pt")


def embed_images(model, processor, images: list, batch_size: int = 128) -> np.ndarray:
    """L2-normalised image embeddings (n, d) as float64."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            px = pixel_values(processor, images[i:i + batch_size]).to(model.device)
            with autocast(str(model.device)):
                feats = _features(model.get_image_features(pixel_values=px)).float()
            out.append(torch.nn.functional.normalize(feats, dim=-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.projection_dim))


def embed_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings (n, d) as float64."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = text_inputs(tokenizer, model, texts[i:i + batch_size]).to(model.device)
            with autocast(str(model.device)):
                feats = _features(model.get_text_features(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])).float()
            out.append(torch.nn.functional.normalize(feats, dim=-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.projection_dim))


def _features(out):
    """The projected embeddings: transformers 5 returns an output whose ``pooler_output``
    holds them, 4.x the tensor itself."""
    return getattr(out, "pooler_output", out)


def logit_scale(model) -> float:
    return float(model.logit_scale.detach().exp())
