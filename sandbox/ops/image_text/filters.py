"""Image-caption OPs scored by a CLIP model: ``image_text_similarity_filter`` and
``image_text_matching_filter``, with Data-Juicer's names, parameters and stat keys.

The model is any transformers CLIP checkpoint on disk (``hf_clip`` / ``hf_blip``: a folder, or a
name already in the local Hugging Face cache), in particular the one ``trainer=clip`` saves
(``<run dir>/train/model``). Nothing is downloaded: a missing model is an error when the recipe is
checked, before any data is read. The model loads once per process (``sandbox.clip_model``) and
the engine's forked workers inherit it (``preload``); the code the CLIP filters share is in
``sandbox/ops/common/clip.py``.

Samples are Data-Juicer's: the text is cut into chunks at ``<|__dj__eoc|>``; a chunk with k
``<__dj__image>`` (``<__dj__video>``) tokens owns the next k images (videos) of the sample, and
its text without the tokens is scored against them. The stat is a list with one value per chunk
that has both (``reduce_mode`` folds a chunk's several images or frames into one value: ``avg``,
``max``, ``min``); a sample is kept when any/all of its values are in ``[min_score, max_score]``,
and a sample with no such chunk is kept. An image or video that cannot be read gives NaN (never
kept) and its reason in ``media_error``.
"""
from __future__ import annotations

import numpy as np

from sandbox.ops.common.clip import _ClipFilter
from sandbox.ops.common.media import MEDIA_ERROR
from sandbox.ops.registry import register


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
