"""Image deduplicators with Data-Juicer's names: ``image_deduplicator``. It computes its hashes
in the engine's workers and keeps the first sample (smallest row id) of each group among the
samples still alive; a sample without images, or with a file that cannot be read (its hash is
``"!<path>: <reason>"``), is never removed (``sandbox/ops/common/media.py``).
"""
from __future__ import annotations

import numpy as np

from sandbox.data.decode import load_image
from sandbox.data.media import media_list
from sandbox.ops.base import Deduplicator, TextViews
from sandbox.ops.common.media import keep_first_media, media_hashes
from sandbox.ops.registry import register
from sandbox.ops.text.deduplicators import DocumentDeduplicator

_HASH_SIZES = {"phash": (32, 32), "dhash": (9, 8), "ahash": (8, 8), "whash": (256, 256)}


def image_hash(array: np.ndarray, method: str) -> str:
    """imagededup's hashes (Data-Juicer's ``image_deduplicator`` uses them) of an RGB array:
    the image is resized with Lanczos to the method's size, converted to 8-bit grey, then
    ``phash``: 2-D DCT-II (scipy.fftpack), top-left 8x8, bit = coefficient >= median of the 63
    non-DC ones; ``dhash``: 9x8, bit = pixel > its left neighbour; ``ahash``: 8x8, bit = pixel >=
    mean; ``whash``: 256x256 /255, Haar wavelet (pywt, level 5), bit = LL >= its median. The
    64 bits are packed to 16 hex digits."""
    from PIL import Image  # only the image OPs need it (~20 ms to import)

    im = Image.fromarray(array.astype("uint8")).resize(_HASH_SIZES[method], Image.LANCZOS).convert("L")
    a = np.array(im).astype("uint8")
    if method == "phash":
        from scipy.fftpack import dct

        coef = dct(dct(a, axis=0), axis=1)[:8, :8]
        bits = coef >= np.median(np.ndarray.flatten(coef)[1:])
    elif method == "dhash":
        bits = a[:, 1:] > a[:, :-1]
    elif method == "ahash":
        bits = a >= np.mean(a)
    else:
        try:
            import pywt
        except ImportError:
            raise ImportError("image_deduplicator(method='whash') needs PyWavelets: "
                              "`pip install PyWavelets`.") from None
        ll = pywt.wavedec2(data=a / 255, wavelet="haar", level=5)[0]
        bits = ll >= np.median(np.ndarray.flatten(ll))
    return "".join("%0.2x" % x for x in np.packbits(bits))


def image_phash_of(path: str, method: str) -> str:
    """``image_hash`` of the image file at ``path`` (``MediaError`` when it cannot be read)."""
    return image_hash(np.array(load_image(path)), method)


@register
class ImageDeduplicator(Deduplicator):
    """Exact duplicates by perceptual image hash: a sample's hash is the concatenation of the
    ``method`` hashes (phash, dhash, whash, ahash; see ``image_hash``) of its distinct images (in
    first-appearance order), after loading each as RGB; with ``consider_text`` the text's md5 (as
    document_deduplicator) is part of the key. Samples without images are never removed, nor are
    samples with an image that cannot be read: their hash is ``"!<path>: <reason>"``. Hashes are
    computed in the engine's workers, each image decoded once per batch
    (``sandbox.data.decode``)."""

    name = "image_deduplicator"
    description = "Remove samples whose images have identical perceptual hashes (phash/dhash/...)."
    shuffle_key = "media"  # keep_first_media

    def __init__(self, method: str = "phash", consider_text: bool = False,
                 image_key: str = "images", **kwargs):
        super().__init__(**kwargs)
        if method not in _HASH_SIZES:
            raise ValueError(f"Keep strategy [{method}] is not supported. Can only be one of "
                             f"{sorted(_HASH_SIZES)}.")
        self.method = method
        self.consider_text = consider_text
        self.image_key = image_key
        self._text = DocumentDeduplicator() if consider_text else None

    def input_fields(self) -> tuple[str, ...]:
        return (self.image_key,)

    def hash_batch(self, views: TextViews) -> list:
        paths = [media_list(p) for p in views.field(self.image_key, self.name)]
        hashes = media_hashes(views, paths, image_phash_of, self.method)
        if self._text is None:
            return hashes
        return [[h, self._text.hash_text(t)] for h, t in zip(hashes, views.texts)]

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        return keep_first_media(hashes, alive)
