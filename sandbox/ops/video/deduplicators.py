"""Video deduplicators with Data-Juicer's names: ``video_deduplicator``. It computes its hashes
in the engine's workers and keeps the first sample (smallest row id) of each group among the
samples still alive; a sample without videos, or with a file that cannot be read (its hash is
``"!<path>: <reason>"``), is never removed (``sandbox/ops/common/media.py``).
"""
from __future__ import annotations

import hashlib

import numpy as np

from sandbox.data.decode import MediaError, video_packets_into
from sandbox.data.media import media_list
from sandbox.ops.base import Deduplicator, TextViews
from sandbox.ops.common.media import failed_hash, keep_first_media
from sandbox.ops.registry import register
from sandbox.ops.text.deduplicators import DocumentDeduplicator


@register
class VideoDeduplicator(Deduplicator):
    """Exact duplicates by video content: a sample's hash is Data-Juicer's ``videohash``, the md5
    of the bytes of the video-stream packets of its distinct videos, in order (container
    metadata and audio do not count, so a re-muxed copy is still a duplicate); with
    ``consider_text`` the text's md5 (as document_deduplicator) is part of the key. The first
    sample of each hash stays; samples without videos, or with one that cannot be read, stay."""

    name = "video_deduplicator"
    description = "Remove samples whose videos are identical (md5 of the video packets)."
    shuffle_key = "media"  # keep_first_media

    def __init__(self, consider_text: bool = False, video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        self.consider_text = consider_text
        self.video_key = video_key
        self._text = DocumentDeduplicator() if consider_text else None

    def input_fields(self) -> tuple[str, ...]:
        return (self.video_key,)

    @staticmethod
    def video_hash(paths: list[str]) -> str:
        """md5 over the video packets of ``paths`` (distinct, in order); ``""`` for none.
        Raises ``MediaError``."""
        if not paths:
            return ""
        digest = hashlib.md5()
        for p in dict.fromkeys(paths):
            video_packets_into(p, digest)
        return digest.hexdigest()

    def hash_batch(self, views: TextViews) -> list:
        out = []
        for t, value in zip(views.texts, views.field(self.video_key, self.name)):
            try:
                h = self.video_hash(media_list(value))
            except MediaError as e:
                h = failed_hash([e])
            out.append([h, self._text.hash_text(t)] if self._text is not None else h)
        return out

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        return keep_first_media(hashes, alive)
