"""Image filters: samples carry a list of image paths under ``image_key`` (``images``); the
stats are per image (aspect ratio, width and height, file size, model scores) and a sample is
kept when any or all of its images are in range; a sample without images is kept.

Every image filter also records ``media_error``: ``""`` for a sample whose images could all be
read, else ``"<path>: <reason>; ..."`` (file not found, cannot decode). The stat of an image that
cannot be read is NaN (-1 for pixel counts and sizes), which no range keeps: the sample is
dropped by that filter, with the reason beside it, instead of stopping the run. Images are read
through the batch's ``sandbox.data.decode`` memo, so OPs of one recipe open each image once. The
base of the media filters is ``sandbox/ops/common/media.py``.
"""
from __future__ import annotations

import os

import numpy as np

from sandbox.data.decode import MediaError, image_size, load_image, memo
from sandbox.errors import ConfigError
from sandbox.ops.base import MAXSIZE, TextViews
from sandbox.ops.common.media import (MEDIA_ERROR, any_all, MediaFilter, object_column,
                                      per_media_column, rows_of, usable)
from sandbox.ops.registry import register


def _image_sizes(paths: list[str]) -> dict[str, tuple[int, int]]:
    """(width, height) per distinct path, read from the file header (PIL, no full decode)."""
    return {p: image_size(p) for p in dict.fromkeys(paths)}


class _ImageFilter(MediaFilter):
    media_key_arg = "image_key"

    def _image_setup(self, any_or_all: str, image_key: str):
        self._media_setup(any_or_all, image_key)


@register
class ImageAspectRatioFilter(_ImageFilter):
    """``aspect_ratios``: width / height of each image of the sample (a list; empty without
    images). Kept when any (``any_or_all: any``) or all of the images have a ratio in
    ``[min_ratio, max_ratio]``; a sample without images is kept."""

    name = "image_aspect_ratio_filter"
    description = "Keep samples whose images' aspect ratio (w/h) is within [min_ratio, max_ratio]."
    stat_keys = ("aspect_ratios", MEDIA_ERROR)

    def __init__(self, min_ratio: float = 0.333, max_ratio: float = 3.0, any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        sizes, errors = self.per_media(views, image_size, (np.nan, np.nan))
        ratios = [[w / h for w, h in row] for row in sizes]
        return {"aspect_ratios": per_media_column(ratios, np.float64), MEDIA_ERROR: errors}

    def keep(self, stats):
        return self._keep_range(stats["aspect_ratios"], self.min_ratio, self.max_ratio)


@register
class ImageShapeFilter(_ImageFilter):
    """``image_width`` and ``image_height``: per image of the sample (lists). Kept when any/all
    images have width in ``[min_width, max_width]`` and height in ``[min_height, max_height]``;
    a sample without images is kept."""

    name = "image_shape_filter"
    description = "Keep samples whose images' width and height are within the given ranges."
    stat_keys = ("image_width", "image_height", MEDIA_ERROR)

    def __init__(self, min_width: int = 1, max_width: int = MAXSIZE, min_height: int = 1,
                 max_height: int = MAXSIZE, any_or_all: str = "any", image_key: str = "images",
                 **kwargs):
        super().__init__(**kwargs)
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        sizes, errors = self.per_media(views, image_size, (-1, -1))
        return {"image_width": per_media_column([[w for w, _ in r] for r in sizes], np.int64),
                "image_height": per_media_column([[h for _, h in r] for r in sizes], np.int64),
                MEDIA_ERROR: errors}

    def keep(self, stats):
        pairs = [list(zip(w, h)) for w, h in zip(rows_of(stats["image_width"]),
                                                 rows_of(stats["image_height"]))]
        return any_all(
            pairs,
            lambda wh: (usable(wh[0]) and usable(wh[1])
                        and self.min_width <= wh[0] <= self.max_width
                        and self.min_height <= wh[1] <= self.max_height),
            self.any_or_all == "any",
        )


def size_to_bytes(size: str) -> int:
    """Data-Juicer's ``size_to_bytes``: the digits of ``size`` form the number and its letters
    the unit (KB/KiB = 2**10, MB/MiB = 2**20, ... YB; none = bytes). Quirk: '1.5MB' reads as
    15 MB (the '.' is dropped), and KB means 1024."""
    letters = "".join(c for c in str(size) if c.isalpha()).lower()
    digits = "".join(c for c in str(size) if c.isdigit())
    if not digits:
        raise ValueError(f"Your input `size` does not contain numbers: {size}")
    n = int(float(digits))
    if not letters:
        return n
    units = ["kb", "mb", "gb", "tb", "pb", "eb", "zb", "yb"]
    for k, u in enumerate(units, start=1):
        if letters in (u, u[0] + "ib"):
            return n << (10 * k)
    raise ValueError(f"You specified unidentifiable unit: {letters}, expected in "
                     f"[KB, MB, GB, TB, PB, EB, ZB, YB], (case insensitive, counted by *Bytes*).")


@register
class ImageSizeFilter(_ImageFilter):
    """``image_sizes``: the file size in bytes of each image of the sample (a list). Kept when
    any/all sizes are in ``[min_size, max_size]``, given as strings with units ('100KB', '2MB';
    see ``size_to_bytes`` for Data-Juicer's parsing quirks); a sample without images is kept."""

    name = "image_size_filter"
    description = "Keep samples whose image file sizes are within [min_size, max_size]."
    stat_keys = ("image_sizes", MEDIA_ERROR)

    def __init__(self, min_size: str = "0", max_size: str = "1TB", any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_size = min_size
        self.max_size = max_size
        self._min, self._max = size_to_bytes(min_size), size_to_bytes(max_size)
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        sizes, errors = self.per_media(views, _file_size, -1)
        return {"image_sizes": per_media_column(sizes, np.int64), MEDIA_ERROR: errors}

    def keep(self, stats):
        return self._keep_range(stats["image_sizes"], self._min, self._max)


def _file_size(path: str) -> int:
    """The size of the file in bytes (not decoded, as Data-Juicer), or ``MediaError``."""
    try:
        return os.path.getsize(path)
    except OSError:
        raise MediaError(path, "file not found") from None


# ============================================================================ model-scored images
class _LocalModelImageFilter(_ImageFilter):
    """An image filter scored by a model the user has on disk (never downloaded here): the
    model's path is checked when the OP is built, before any work, and the model is loaded once
    per process (``preload``: before the engine forks its workers, which inherit it)."""

    model_arg = ""
    model_help = ""

    def _check_model(self, path: str) -> None:
        if not path or not os.path.isdir(os.path.expanduser(path)):
            given = f"{self.model_arg}={path!r} is not a directory" if path else \
                f"{self.model_arg} is not set"
            raise ConfigError(
                f"{self.name}: {given}. This OP scores images with a model you provide as a "
                f"local Hugging Face model directory (nothing is downloaded at run time): "
                f"{self.model_help} Set `{self.model_arg}: /path/to/model` in the recipe, or "
                f"remove the OP (`++recipe.ops.{self.name}._enabled=false`).")
        self._model_dir = os.path.expanduser(path)
        self._model = None

    def preload(self) -> None:
        self._loaded()

    def _loaded(self):
        if self._model is None:
            self._model = self._load(self._model_dir)
        return self._model

    def _scores(self, views: TextViews, stat: str) -> dict[str, np.ndarray]:
        """Every distinct readable image of the batch scored in one model call."""
        m = memo(views)
        rows = self._paths(views)
        images = {}
        for paths in rows:
            for p in paths:
                img, err = m.try_get(load_image, p)
                if err is None:
                    images.setdefault(p, img)
        scores = dict(zip(images, self._score(list(images.values())))) if images else {}
        errors = []
        for paths in rows:
            why = [str(m.try_get(load_image, p)[1]) for p in paths if p not in scores]
            errors.append("; ".join(dict.fromkeys(why)))
        values = [[scores.get(p, np.nan) for p in paths] for paths in rows]
        return {stat: per_media_column(values, np.float64), MEDIA_ERROR: object_column(errors)}


@register
class ImageAestheticsFilter(_LocalModelImageFilter):
    """``image_aesthetics_scores``: a predicted aesthetics score per image, from the local model
    at ``hf_scorer_model``. A LAION aesthetics predictor (a directory whose name holds
    ``aesthetics-predictor`` and ``v1``, ``v2`` + ``linear`` or ``v2`` + ``relu``, as Data-Juicer
    picks the class) runs through the ``simple-aesthetics-predictor`` package and its 0-10 score
    is divided by 10; any other directory is loaded as a transformers image-classification model
    with one output, which is the score. Kept when any/all scores are in
    ``[min_score, max_score]``."""

    name = "image_aesthetics_filter"
    description = "Keep samples whose images' aesthetics score (a local model) is in range."
    stat_keys = ("image_aesthetics_scores", MEDIA_ERROR)
    stat_args = ("hf_scorer_model", "trust_remote_code")
    model_arg = "hf_scorer_model"
    assets = {"local_model": "an image-aesthetics model directory on disk (hf_scorer_model)"}
    model_help = ("a LAION aesthetics predictor (e.g. a local copy of "
                  "shunk031/aesthetics-predictor-v2-sac-logos-ava1-l14-linearMSE, with "
                  "`pip install simple-aesthetics-predictor`) or a transformers image "
                  "classifier with one output.")

    def __init__(self, hf_scorer_model: str = "", trust_remote_code: bool = False,
                 min_score: float = 0.5, max_score: float = 1.0, any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.hf_scorer_model, self.trust_remote_code = hf_scorer_model, trust_remote_code
        self.min_score, self.max_score = min_score, max_score
        self._image_setup(any_or_all, image_key)
        self._check_model(hf_scorer_model)
        self._by_ten = "aesthetics-predictor" in hf_scorer_model

    def _load(self, path: str):
        import transformers

        name = os.path.basename(os.path.normpath(path))
        if "aesthetics-predictor" in name:
            try:
                import aesthetics_predictor as aes
            except ImportError:
                raise ConfigError(
                    f"{self.name}: {path} is a LAION aesthetics predictor, which needs the "
                    f"`simple-aesthetics-predictor` package: `pip install "
                    f"simple-aesthetics-predictor`.") from None
            if "v1" in name:
                cls = aes.AestheticsPredictorV1
            elif "v2" in name and "linear" in name:
                cls = aes.AestheticsPredictorV2Linear
            elif "v2" in name and "relu" in name:
                cls = aes.AestheticsPredictorV2ReLU
            else:
                raise ValueError(f"Not support {path}")
            processor = transformers.CLIPProcessor.from_pretrained(path)
        else:
            cls = transformers.AutoModelForImageClassification
            processor = transformers.AutoImageProcessor.from_pretrained(
                path, trust_remote_code=self.trust_remote_code)
        model = cls.from_pretrained(path, trust_remote_code=self.trust_remote_code).eval()
        return model, processor

    def _score(self, images: list) -> list[float]:
        import torch

        model, processor = self._loaded()
        with torch.no_grad():
            logits = model(**processor(images=images, return_tensors="pt")).logits
        scores = logits.reshape(len(images), -1)[:, 0].double()
        return (scores / 10.0 if self._by_ten else scores).tolist()

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return self._scores(views, "image_aesthetics_scores")

    def keep(self, stats):
        return self._keep_range(stats["image_aesthetics_scores"], self.min_score, self.max_score)


@register
class ImageNSFWFilter(_LocalModelImageFilter):
    """``image_nsfw_score``: per image, the softmax probability of class 1 (NSFW) of the local
    transformers image classifier at ``hf_nsfw_model`` (Data-Juicer's default is
    Falconsai/nsfw_image_detection: use a local copy of it). Kept when any/all scores are in
    ``[min_score, max_score]``."""

    name = "image_nsfw_filter"
    description = "Keep samples whose images' NSFW probability (a local model) is in range."
    stat_keys = ("image_nsfw_score", MEDIA_ERROR)
    stat_args = ("hf_nsfw_model", "trust_remote_code")
    model_arg = "hf_nsfw_model"
    assets = {"local_model": "an NSFW image classifier directory on disk (hf_nsfw_model)"}
    model_help = ("a transformers image classifier whose class 1 is NSFW, e.g. a local copy of "
                  "Falconsai/nsfw_image_detection.")

    def __init__(self, hf_nsfw_model: str = "Falconsai/nsfw_image_detection",
                 trust_remote_code: bool = False, min_score: float = 0.0, max_score: float = 0.5,
                 any_or_all: str = "any", image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.hf_nsfw_model, self.trust_remote_code = hf_nsfw_model, trust_remote_code
        self.min_score, self.max_score = min_score, max_score
        self._image_setup(any_or_all, image_key)
        self._check_model(hf_nsfw_model)

    def _load(self, path: str):
        import transformers

        processor = transformers.AutoImageProcessor.from_pretrained(
            path, trust_remote_code=self.trust_remote_code)
        model = transformers.AutoModelForImageClassification.from_pretrained(
            path, trust_remote_code=self.trust_remote_code).eval()
        return model, processor

    def _score(self, images: list) -> list[float]:
        import torch

        model, processor = self._loaded()
        with torch.no_grad():
            logits = model(**processor(images=images, return_tensors="pt")).logits
        return torch.softmax(logits, dim=-1)[:, 1].double().tolist()

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return self._scores(views, "image_nsfw_score")

    def keep(self, stats):
        return self._keep_range(stats["image_nsfw_score"], self.min_score, self.max_score)
