"""Video-caption OPs scored by a CLIP model: ``video_frames_text_similarity_filter``, with
Data-Juicer's name, parameters and stat key. The model, the chunks of a sample's text and the
keep rule are those of the image-caption CLIP filters (``sandbox/ops/common/clip.py``); the
pictures of a video are its frames.
"""
from __future__ import annotations

from sandbox.data.decode import media_failure, open_video, memo, sample_frames
from sandbox.ops.base import TextViews
from sandbox.ops.common.clip import VIDEO_TOKEN, _ClipFilter
from sandbox.ops.common.media import MEDIA_ERROR
from sandbox.ops.registry import register


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
        if self.frame_sampling_method == "uniform":
            return memo(views).get(sample_frames, path, self.frame_num)
        return memo(views).get(key_frames, path)


def key_frames(path: str) -> list:
    """Every key frame of the video's first video stream, as RGB PIL images (PyAV decodes only
    the key frames). Raises ``MediaError``."""
    try:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            return [f.to_image() for f in container.decode(stream)]
        finally:
            container.close()
    except Exception as e:
        raise media_failure(path, e) from None
