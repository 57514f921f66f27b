"""Image filters: samples carry a list of image paths under ``image_key`` (``images``); the
stats are per image (aspect ratio, width and height, file size) and a sample is kept when any or
all of its images are in range.
"""
from __future__ import annotations

import os

import numpy as np

from sandbox.ops.base import MAXSIZE, Filter, TextViews
from sandbox.ops.registry import register


def _image_sizes(paths: list[str]) -> dict[str, tuple[int, int]]:
    """(width, height) per distinct path, read from the file header (PIL, no full decode)."""
    from PIL import Image  # only the image OPs need it (~20 ms to import)

    out = {}
    for p in paths:
        if p not in out:
            with Image.open(p) as im:
                out[p] = im.size
    return out


def _any_all(lists, ok, any_mode: bool) -> np.ndarray:
    out = np.ones(len(lists), dtype=bool)
    for i, values in enumerate(lists):
        bools = [ok(v) for v in values]
        if bools:
            out[i] = any(bools) if any_mode else all(bools)
    return out


def _object_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values if values else []
    return out


class _ImageFilter(Filter):
    """Stats are lists (one value per image), so these filters declare no ``thresholds``: the
    k-sigma refiner leaves them alone; ``keep`` applies the bounds with any/all semantics."""

    def stat_config(self) -> dict:
        return {"image_key": self.image_key}

    def _image_setup(self, any_or_all: str, image_key: str):
        if any_or_all not in ("any", "all"):
            raise ValueError(f"{self.name}: any_or_all must be 'any' or 'all', got {any_or_all!r}")
        self.any_or_all = any_or_all
        self.image_key = image_key

    def input_fields(self) -> tuple[str, ...]:
        return (self.image_key,)

    def _paths(self, views: TextViews) -> list[list[str]]:
        return [list(p) if p is not None else [] for p in views.field(self.image_key, self.name)]


@register
class ImageAspectRatioFilter(_ImageFilter):
    """``aspect_ratios``: width / height of each image of the sample (a list; empty without
    images). Kept when any (``any_or_all: any``) or all of the images have a ratio in
    ``[min_ratio, max_ratio]``; a sample without images is kept."""

    name = "image_aspect_ratio_filter"
    description = "Keep samples whose images' aspect ratio (w/h) is within [min_ratio, max_ratio]."
    stat_keys = ("aspect_ratios",)

    def __init__(self, min_ratio: float = 0.333, max_ratio: float = 3.0, any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = []
        for paths in self._paths(views):
            wh = _image_sizes(paths)
            out.append([wh[p][0] / wh[p][1] for p in paths])
        return {"aspect_ratios": _object_column(out)}

    def keep(self, stats):
        return _any_all(stats["aspect_ratios"], lambda r: self.min_ratio <= r <= self.max_ratio,
                        self.any_or_all == "any")


@register
class ImageShapeFilter(_ImageFilter):
    """``image_width`` and ``image_height``: per image of the sample (lists). Kept when any/all
    images have width in ``[min_width, max_width]`` and height in ``[min_height, max_height]``;
    a sample without images is kept."""

    name = "image_shape_filter"
    description = "Keep samples whose images' width and height are within the given ranges."
    stat_keys = ("image_width", "image_height")

    def __init__(self, min_width: int = 1, max_width: int = MAXSIZE, min_height: int = 1,
                 max_height: int = MAXSIZE, any_or_all: str = "any", image_key: str = "images",
                 **kwargs):
        super().__init__(**kwargs)
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        ws, hs = [], []
        for paths in self._paths(views):
            wh = _image_sizes(paths)
            ws.append([wh[p][0] for p in paths])
            hs.append([wh[p][1] for p in paths])
        return {"image_width": _object_column(ws), "image_height": _object_column(hs)}

    def keep(self, stats):
        pairs = [list(zip(w, h)) for w, h in zip(stats["image_width"], stats["image_height"])]
        return _any_all(
            pairs,
            lambda wh: (self.min_width <= wh[0] <= self.max_width
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
    stat_keys = ("image_sizes",)

    def __init__(self, min_size: str = "0", max_size: str = "1TB", any_or_all: str = "any",
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        self.min_size = min_size
        self.max_size = max_size
        self._min, self._max = size_to_bytes(min_size), size_to_bytes(max_size)
        self._image_setup(any_or_all, image_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        return {"image_sizes": _object_column([[os.path.getsize(p) for p in paths]
                                               for paths in self._paths(views)])}

    def keep(self, stats):
        return _any_all(stats["image_sizes"], lambda s: self._min <= s <= self._max,
                        self.any_or_all == "any")
