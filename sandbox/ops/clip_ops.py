"""OPs scored by a CLIP model: ``image_text_similarity_filter``, ``image_text_matching_filter`` and
``video_frames_text_similarity_filter``, with Data-Juicer's names, parameters and stat keys.

The model is any transformers CLIP checkpoint on disk (``hf_clip`` / ``hf_blip``: a folder, or a
name already in the local Hugging Face cache), in particular the one ``trainer=clip`` saves
(``<run dir>/train/model``). Nothing is downloaded: a missing model is an error when the recipe is
checked, before any data is read. The model loads once per process (``sandbox.clip_model``) and
the engine's forked workers inherit it (``preload``).

Samples are Data-Juicer's: the text is cut into chunks at ``<|__dj__eoc|>``; a chunk with k
``<__dj__image>`` (``<__dj__video>``) tokens owns the next k images (videos) of the sample, and
its text without the tokens is scored against them. The stat is a list with one value per chunk
that has both (``reduce_mode`` folds a chunk's several images or frames into one value: ``avg``,
``max``, ``min``); a sample is kept when any/all of its values are in ``[min_score, max_score]``,
and a sample with no such chunk is kept. An image or video that cannot be read gives NaN (never
kept) and its reason in ``media_error``.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from sandbox.data.decode import MediaError, load_image, memo
from sandbox.data.image_text import EOC_TOKEN, remove_special_tokens
from sandbox.ops.base import TextViews
from sandbox.ops.filters.image import MEDIA_ERROR, _MediaFilter, _object_column, rows_of, usable
from sandbox.ops.registry import register

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


class _ClipFilter(_MediaFilter):
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
        return {self.score_key: _object_column(out), MEDIA_ERROR: _object_column(errors)}

    def _extra(self, model, tok):
        return None

    def keep(self, stats):
        return self._keep_range(stats[self.score_key], self.min_score, self.max_score)


@register
class ImageTextSimilarityFilter(_ClipFilter):
    """``image_text_similarity``: per chunk, the cosine similarity of its text and its images'
    CLIP embeddings (several images: ``reduce_mode``). Data-Juicer divides CLIP's logits by 100,
    which is the same number for checkpoints whose logit scale is 100 (OpenAI's); for other
    models the cosine keeps the stat in [-1, 1] whatever their temperature."""

    name = "image_text_similarity_filter"
    description = "Keep samples whose image-text CLIP similarity is within [min_score, max_score]."
    stat_keys = ("image_text_similarity", MEDIA_ERROR)
    score_key = "image_text_similarity"
    assets = {"clip": "a CLIP checkpoint on disk (hf_clip: e.g. <run>/train/model of trainer=clip)"}

    def __init__(self, hf_clip: str = "openai/clip-vit-base-patch32",
                 trust_remote_code: bool = False,
                 min_score: float = 0.1, max_score: float = 1.0, horizontal_flip: bool = False,
                 vertical_flip: bool = False, any_or_all: str = "any", reduce_mode: str = "avg",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.trust_remote_code = trust_remote_code
        self._clip_setup(hf_clip, min_score, max_score, horizontal_flip, vertical_flip,
                         any_or_all, reduce_mode, image_key)


@register
class ImageTextMatchingFilter(_ClipFilter):
    """``image_text_matching_score``: per chunk, the probability that its text matches its images.
    Data-Juicer reads it from a BLIP model's image-text-matching head; a CLIP has no such head, so
    here it is CLIP's own two-way choice between the text and an empty text:
    ``softmax(scale * [cos(image, text), cos(image, "")])[0]``, with the model's logit ``scale``.
    0.5 means the text fits the image no better than no text at all. ``hf_blip`` names the
    checkpoint (a CLIP on disk; a BLIP checkpoint is not read)."""

    name = "image_text_matching_filter"
    description = ("Keep samples whose image-text matching probability is within "
                   "[min_score, max_score].")
    stat_keys = ("image_text_matching_score", MEDIA_ERROR)
    score_key = "image_text_matching_score"
    model_arg = "hf_blip"
    assets = {"clip": "a CLIP checkpoint on disk (hf_blip: e.g. <run>/train/model of trainer=clip)"}

    def __init__(self, hf_blip: str = "Salesforce/blip-itm-base-coco",
                 trust_remote_code: bool = False, min_score: float = 0.003,
                 max_score: float = 1.0, horizontal_flip: bool = False,
                 vertical_flip: bool = False, any_or_all: str = "any", reduce_mode: str = "avg",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.trust_remote_code = trust_remote_code
        self._clip_setup(hf_blip, min_score, max_score, horizontal_flip, vertical_flip,
                         any_or_all, reduce_mode, image_key)

    def _extra(self, model, tok):
        from sandbox.clip_model import embed_texts, logit_scale

        return embed_texts(model, tok, [""])[0], logit_scale(model)

    def _score(self, model, img, txt, tok, extra):
        empty, scale = extra
        a, b = scale * (img @ txt), scale * (img @ empty)
        return 1.0 / (1.0 + np.exp(b - a))  # softmax over the two, first entry


@register
class VideoFramesTextSimilarityFilter(_ClipFilter):
    """``video_frames_text_similarity``: per chunk, the cosine similarity of its text and frames of
    its videos (``frame_sampling_method``: ``uniform``, ``frame_num`` frames spread over the
    duration as Data-Juicer picks them, or ``all_keyframes``), reduced over the frames."""

    name = "video_frames_text_similarity_filter"
    description = ("Keep samples whose video frames' CLIP similarity to the text is within "
                   "[min_score, max_score].")
    stat_keys = ("video_frames_text_similarity", MEDIA_ERROR)
    score_key = "video_frames_text_similarity"
    media_key_arg = "video_key"
    token = VIDEO_TOKEN
    assets = {"clip": "a CLIP checkpoint on disk (hf_clip: e.g. <run>/train/model of trainer=clip)"}

    def __init__(self, hf_clip: str = "openai/clip-vit-base-patch32",
                 trust_remote_code: bool = False,
                 min_score: float = 0.1, max_score: float = 1.0,
                 frame_sampling_method: str = "all_keyframes", frame_num: int = 3,
                 horizontal_flip: bool = False, vertical_flip: bool = False,
                 any_or_all: str = "any", reduce_mode: str = "avg", video_key: str = "videos",
                 **kwargs):
        super().__init__(**kwargs)
        if frame_sampling_method not in ("all_keyframes", "uniform"):
            raise ValueError(f"{self.name}: frame_sampling_method must be 'all_keyframes' or "
                             f"'uniform', got {frame_sampling_method!r}")
        if int(frame_num) < 1:
            raise ValueError(f"{self.name}: frame_num must be >= 1, got {frame_num}")
        self.trust_remote_code = trust_remote_code
        self.frame_sampling_method, self.frame_num = frame_sampling_method, int(frame_num)
        self._clip_setup(hf_clip, min_score, max_score, horizontal_flip, vertical_flip,
                         any_or_all, reduce_mode, video_key)

    def stat_config(self) -> dict:
        return {**super().stat_config(), "frame_sampling_method": self.frame_sampling_method,
                "frame_num": self.frame_num}

    def _pictures(self, views: TextViews, path: str) -> list:
        from sandbox.data.decode import sample_frames

        if self.frame_sampling_method == "uniform":
            return memo(views).get(sample_frames, path, self.frame_num)
        return memo(views).get(key_frames, path)


def key_frames(path: str) -> list:
    """Every key frame of the video's first video stream, as RGB PIL images (PyAV decodes only
    the key frames). Raises ``MediaError``."""
    from sandbox.data.decode import _fail, _open_video

    try:
        container = _open_video(path)
        try:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            return [f.to_image() for f in container.decode(stream)]
        finally:
            container.close()
    except Exception as e:
        raise _fail(path, e) from None


__all__ = ["ImageTextSimilarityFilter", "ImageTextMatchingFilter",
           "VideoFramesTextSimilarityFilter", "key_frames", "usable", "rows_of"]
