"""Data-Juicer's sample conventions: the special tokens that mark media in a text (chunks ended by
``<|__dj__eoc|>``), media fields as lists, and the image-caption pairs of an image-text record."""
from __future__ import annotations

from typing import Any

VIDEO_TOKEN = "<__dj__video>"
IMAGE_TOKEN = "<__dj__image>"
EOC_TOKEN = "<|__dj__eoc|>"
DJ_TOKENS = (VIDEO_TOKEN, IMAGE_TOKEN, "<__dj__audio>", EOC_TOKEN)


def strip_tokens(text: str, tokens=DJ_TOKENS) -> str:
    """``text`` without Data-Juicer's special tokens, whitespace runs made one space."""
    for tok in tokens:
        text = text.replace(tok, " ")
    return " ".join(text.split())


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def dj_caption_pairs(rec: dict, text_key: str, image_key: str,
                     token: str = IMAGE_TOKEN) -> list[tuple[str, str]]:
    """``[(image, caption)]`` of a Data-Juicer image-text record. One image: the whole text
    (tokens stripped). Several images and as many chunks (``<|__dj__eoc|>``-separated), each with
    its image token: one pair per chunk. Otherwise the first image with the whole text."""
    images = [i for i in as_list(rec.get(image_key)) if isinstance(i, str) and i]
    text = rec.get(text_key)
    if not images or not isinstance(text, str):
        return []
    if len(images) > 1:
        chunks = [c for c in text.split(EOC_TOKEN) if c.strip()]
        if len(chunks) == len(images) and all(token in c for c in chunks):
            return [(img, strip_tokens(c)) for img, c in zip(images, chunks)]
    return [(images[0], strip_tokens(text))]
