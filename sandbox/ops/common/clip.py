"""What the CLIP-scored filters share (``image_text_similarity_filter``,
``image_text_matching_filter``, ``video_frames_text_similarity_filter``): loading the model,
cutting a sample's text into chunks that own its images or videos, flips, ``reduce_mode``, and
the any/all keep over the chunks' scores. The model loads once per process
(``sandbox.clip_model``) and the engine's forked workers inherit it (``preload``).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from sandbox.data.decode import MediaError, load_image, memo
from sandbox.data.image_text import EOC_TOKEN, remove_special_tokens
from sandbox.ops.base import TextViews
from sandbox.ops.common.media import MEDIA_ERROR, MediaFilter, object_column

VIDEO_TOKEN = "<__dj__video>"
IMAGE_TOKEN = "<__dj__image>"


def _chunks(text: str, paths: list[str], token: str) -> list[tuple[str, list[str]]]:
    out, offset = [], 0
    for chunk in (text or "").split(EOC_TOKEN):
        count = chunk.count(token)
        if count and chunk:
            out.append((remove_special_tokens(chunk), paths[offset:offset + count]))
        offset += count
    return out


def _model_fingerprint(name: str) -> str:
    """The model's identity for the stats cache: its folder's files (name, size, mtime), or the
    hub name of a cached model."""
    p = Path(name).expanduser()
    if not p.is_dir():
        return name
    parts = []
    for f in sorted(p.iterdir()):
        if f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return f"{os.path.abspath(p)}|{'|'.join(parts)}"


@contextlib.contextmanager
def _one_thread():
    """One torch thread while scoring: the engine runs OPs in forked worker processes, where
    OpenMP pools inherited from the parent can hang (Data-Juicer does the same)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class _ClipFilter(MediaFilter):
    """Shared by the CLIP-scored filters: model loading, chunking, flips, reduce, keep."""

    model_arg = "hf_clip"
    token = IMAGE_TOKEN
    score_key = ""

    def _clip_setup(self, model: str, min_score, max_score, horizontal_flip, vertical_flip,
                    any_or_all, reduce_mode, key):
        if reduce_mode not in ("avg", "max", "min"):
            raise ValueError(f"{self.name}: reduce_mode must be 'avg', 'max' or 'min', got "
                             f"{reduce_mode!r}")
        self._media_setup(any_or_all, key)
        setattr(self, self.model_arg, model)
        self.min_score, self.max_score = min_score, max_score
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.reduce_mode = reduce_mode
        self.preload()  # a missing model fails now, when the recipe is checked

    def preload(self) -> None:
        from sandbox.clip_model import load_clip

        self._clip = load_clip(getattr(self, self.model_arg), f"{self.name}({self.model_arg})")

    def stat_config(self) -> dict:
        return {**super().stat_config(), "model": _model_fingerprint(getattr(self, self.model_arg)),
                "horizontal_flip": self.horizontal_flip, "vertical_flip": self.vertical_flip,
                "reduce_mode": self.reduce_mode}

    def _flip(self, im):
        from PIL import ImageOps

        if self.horizontal_flip:
            im = ImageOps.mirror(im)
        if self.vertical_flip:
            im = ImageOps.flip(im)
        return im

    def _reduce(self, values: np.ndarray) -> float:
        if values.size == 0 or np.isnan(values).any():
            return float("nan")
        return float({"avg": np.mean, "max": np.max, "min": np.min}[self.reduce_mode](values))

    def _pictures(self, views: TextViews, path: str) -> list:
        """The pictures one media path stands for (an image: itself; a video: its frames)."""
        return [memo(views).get(load_image, path)]

    def _score(self, model, img: np.ndarray, txt: np.ndarray, tok, texts) -> np.ndarray:
        """Scores of images (rows of ``img``) against one chunk's text embedding ``txt``."""
        return img @ txt

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        from sandbox.clip_model import embed_images, embed_texts

        model, tok, proc = self._clip
        rows, errors = [], []
        pictures, texts = [], {}
        for text, paths in zip(views.texts, self._paths(views)):
            row, why = [], []
            for caption, media in _chunks(text, paths, self.token):
                idx = []
                for p in media:
                    try:
                        pics = self._pictures(views, p)
                    except MediaError as e:
                        why.append(str(e))
                        idx = None
                        break
                    idx += list(range(len(pictures), len(pictures) + len(pics)))
                    pictures += [self._flip(im) for im in pics]
                texts.setdefault(caption, len(texts))
                row.append((caption, idx))
            rows.append(row)
            errors.append("; ".join(dict.fromkeys(why)))
        with _one_thread():
            img = embed_images(model, proc, pictures) if pictures else np.zeros((0, 1))
            txt = embed_texts(model, tok, list(texts)) if texts else np.zeros((0, 1))
            extra = self._extra(model, tok)
        out = []
        for row in rows:
            values = []
            for caption, idx in row:
                if idx is None or not idx:
                    values.append(float("nan"))
                    continue
                s = self._score(model, img[idx], txt[texts[caption]], tok, extra)
                values.append(self._reduce(np.asarray(s, dtype=np.float64)))
            out.append(np.asarray(values, dtype=np.float64))
        return {self.score_key: object_column(out), MEDIA_ERROR: object_column(errors)}

    def _extra(self, model, tok):
        return None

    def keep(self, stats):
        return self._keep_range(stats[self.score_key], self.min_score, self.max_score)
