"""Video filters: samples carry a list of video paths under ``video_key`` (``videos``); the stats
are per video (duration, resolution, aspect ratio, motion) and a sample is kept when any or all
of its videos are in range; a sample without videos is kept.

Headers are read with PyAV and frames for optical flow decoded with OpenCV, as Data-Juicer
does, through the batch's ``sandbox.data.decode`` memo (one read per video for all the OPs of a
batch). Like the image filters, each records ``media_error`` and gives a video that cannot be
read a NaN stat (-1 for pixel counts), which no range keeps.
"""
from __future__ import annotations

import os
import sys
from fractions import Fraction
from typing import Optional, Sequence, Union

import numpy as np

from sandbox.data.decode import MediaError, video_info
from sandbox.ops.base import MAXSIZE, TextViews
from sandbox.ops.common.media import (MEDIA_ERROR, any_all, MediaFilter, per_media_column,
                                      rows_of, usable)
from sandbox.ops.registry import register


class _VideoFilter(MediaFilter):
    media_key_arg = "video_key"

    def _infos(self, views: TextViews):
        """Per sample, the ``VideoInfo`` of each video (None where it cannot be read)."""
        return self.per_media(views, video_info, None)


@register
class VideoDurationFilter(_VideoFilter):
    """``video_duration``: each video's duration in seconds (the video stream's, else the
    container's). Kept when any/all durations are in ``[min_duration, max_duration]``.
    ``video_backend`` (ffmpeg/av) is accepted for Data-Juicer recipes; both read the same
    header value."""

    name = "video_duration_filter"
    description = "Keep samples whose videos last between min_duration and max_duration seconds."
    stat_keys = ("video_duration", MEDIA_ERROR)

    def __init__(self, min_duration: float = 0, max_duration: float = MAXSIZE,
                 any_or_all: str = "any", video_backend: str = "ffmpeg",
                 video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        if video_backend not in ("ffmpeg", "av"):
            raise ValueError(f"{self.name}: video_backend must be 'ffmpeg' or 'av'")
        self.min_duration, self.max_duration = min_duration, max_duration
        self.video_backend = video_backend
        self._media_setup(any_or_all, video_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        infos, errors = self._infos(views)
        values = [[i.duration if i else np.nan for i in row] for row in infos]
        return {"video_duration": per_media_column(values, np.float64), MEDIA_ERROR: errors}

    def keep(self, stats):
        return self._keep_range(stats["video_duration"], self.min_duration, self.max_duration)


@register
class VideoResolutionFilter(_VideoFilter):
    """``video_width`` and ``video_height``: each video's frame size in pixels (its codec's).
    Kept when any/all videos have width in ``[min_width, max_width]`` and height in
    ``[min_height, max_height]``."""

    name = "video_resolution_filter"
    description = "Keep samples whose videos' width and height are within the given ranges."
    stat_keys = ("video_width", "video_height", MEDIA_ERROR)

    def __init__(self, min_width: int = 1, max_width: int = MAXSIZE, min_height: int = 1,
                 max_height: int = MAXSIZE, any_or_all: str = "any", video_key: str = "videos",
                 **kwargs):
        super().__init__(**kwargs)
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height
        self._media_setup(any_or_all, video_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        infos, errors = self._infos(views)
        ws = [[i.width if i else -1 for i in row] for row in infos]
        hs = [[i.height if i else -1 for i in row] for row in infos]
        return {"video_width": per_media_column(ws, np.int64),
                "video_height": per_media_column(hs, np.int64), MEDIA_ERROR: errors}

    def keep(self, stats):
        pairs = [list(zip(w, h)) for w, h in zip(rows_of(stats["video_width"]),
                                                 rows_of(stats["video_height"]))]
        return any_all(
            pairs,
            lambda wh: (usable(wh[0]) and usable(wh[1])
                        and self.min_width <= wh[0] <= self.max_width
                        and self.min_height <= wh[1] <= self.max_height),
            self.any_or_all == "any")


@register
class VideoAspectRatioFilter(_VideoFilter):
    """``video_aspect_ratios``: width / height of each video. Kept when any/all ratios are in
    ``[min_ratio, max_ratio]``, given as fractions ("9/21" or "9:21") and compared exactly."""

    name = "video_aspect_ratio_filter"
    description = "Keep samples whose videos' aspect ratio (w/h) is in [min_ratio, max_ratio]."
    stat_keys = ("video_aspect_ratios", MEDIA_ERROR)

    def __init__(self, min_ratio: str = "9/21", max_ratio: str = "21/9", any_or_all: str = "any",
                 video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        self.min_ratio, self.max_ratio = min_ratio, max_ratio
        self._min = Fraction(str(min_ratio).replace(":", "/"))
        self._max = Fraction(str(max_ratio).replace(":", "/"))
        self._media_setup(any_or_all, video_key)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        infos, errors = self._infos(views)
        values = [[i.width / i.height if i else np.nan for i in row] for row in infos]
        return {"video_aspect_ratios": per_media_column(values, np.float64), MEDIA_ERROR: errors}

    def keep(self, stats):
        return self._keep_range(stats["video_aspect_ratios"], self._min, self._max)


# ---------------------------------------------------------------------------------- motion
def resized_dimensions(original_size: tuple[int, int], target_size, max_length=None,
                       divisible: int = 1) -> tuple[int, int]:
    """Data-Juicer's ``calculate_resized_dimensions``: ``(short, long)`` edges for a landscape
    frame, ``(long, short)`` for a portrait one, from ``target_size`` (an int or a 1-tuple: the
    short edge, the long one scaled; a 2-tuple: its min and max), capped at ``max_length`` on
    the long edge and floored to multiples of ``divisible``. Quirk kept for parity: Data-Juicer
    hands this pair to ``cv2.resize``, which reads it as (width, height), so a landscape frame is
    resized to short-edge width and long-edge height."""
    height, width = original_size
    short_edge, long_edge = sorted((width, height))
    if isinstance(target_size, int):
        target_size = (target_size,)
    if target_size:
        if len(target_size) == 1:
            new_short = target_size[0]
            new_long = int(new_short * long_edge / short_edge)
        else:
            new_short, new_long = min(target_size), max(target_size)
    else:
        new_short, new_long = short_edge, long_edge
    if max_length is not None and new_long > max_length:
        new_short = int(new_short * max_length / new_long)
        new_long = max_length
    dims = (new_short, new_long) if width >= height else (new_long, new_short)
    return tuple(int(d / divisible) * divisible for d in dims)


@register
class VideoMotionScoreFilter(_VideoFilter):
    """``video_motion_score``: per video, the mean magnitude of Farneback dense optical flow
    (OpenCV, Data-Juicer's parameters) between consecutive sampled frames, averaged over the
    frame pairs. Frames are read with OpenCV: frames 0 and 1, then every
    ``s = round(fps / min(sampling_fps, fps))`` frames (s, 2s, ...; s is at most ``frames - 1``),
    exactly as Data-Juicer's loop reads them (its first pair is two adjacent frames), converted
    to grey, optionally resized
    (``size``/``max_size``/``divisible``, see ``resized_dimensions``); with ``relative`` each
    pair's score is divided by the frame diagonal. A video with a single frame scores -1, as in
    Data-Juicer. With ``frame_field``, the frames are image paths in that sample field (one list
    per video), sampled every ``round(original_fps / sampling_fps)`` when ``original_fps`` is
    given. Kept when any/all scores are in ``[min_score, max_score]``. The flows themselves are
    not stored (``if_output_optical_flow`` must stay false)."""

    name = "video_motion_score_filter"
    description = "Keep samples whose videos' optical-flow motion score is in range."
    stat_keys = ("video_motion_score", MEDIA_ERROR)
    stat_args = ("frame_field", "sampling_fps", "original_fps", "size", "max_size", "divisible",
                 "relative", "pyr_scale", "levels", "winsize", "iterations", "poly_n",
                 "poly_sigma", "flags")

    def __init__(self, min_score: float = 0.25, max_score: float = sys.float_info.max,
                 frame_field: Optional[str] = None, sampling_fps: float = 2,
                 original_fps: Optional[float] = None,
                 size: Union[int, Sequence[int], None] = None, max_size: Optional[int] = None,
                 divisible: int = 1, relative: bool = False, any_or_all: str = "any",
                 if_output_optical_flow: bool = False,
                 optical_flow_key: str = "video_optical_flow", pyr_scale: float = 0.5,
                 levels: int = 3, winsize: int = 15, iterations: int = 3, poly_n: int = 5,
                 poly_sigma: float = 1.2, flags: int = 0, video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, (list, tuple)) and len(size) not in (1, 2):
            raise ValueError(f"Size must be an int or a 1 or 2 element tuple/list,not a "
                             f"{len(size)} element tuple/list.")
        if if_output_optical_flow:
            raise ValueError(f"{self.name}: if_output_optical_flow=true is not supported here "
                             f"(the flows are not stored with the samples); remove it.")
        if sampling_fps <= 0:
            raise ValueError(f"{self.name}: sampling_fps must be positive, got {sampling_fps}")
        self.min_score, self.max_score = min_score, max_score
        self.frame_field, self.sampling_fps = frame_field, sampling_fps
        self.original_fps = original_fps
        self.size = list(size) if isinstance(size, (list, tuple)) else size
        self.max_size, self.divisible, self.relative = max_size, divisible, relative
        self.if_output_optical_flow = if_output_optical_flow
        self.optical_flow_key = optical_flow_key
        self.pyr_scale, self.levels, self.winsize = pyr_scale, levels, winsize
        self.iterations, self.poly_n = iterations, poly_n
        self.poly_sigma, self.flags = poly_sigma, flags
        self._size = (size,) if isinstance(size, int) else (tuple(size) if size else None)
        self._media_setup(any_or_all, video_key)

    def input_fields(self) -> tuple[str, ...]:
        return (self.frame_field,) if self.frame_field else (self.video_key,)

    def _flow_args(self) -> dict:
        return dict(pyr_scale=self.pyr_scale, levels=self.levels, winsize=self.winsize,
                    iterations=self.iterations, poly_n=self.poly_n, poly_sigma=self.poly_sigma,
                    flags=self.flags)

    def _pair_scores(self, frames) -> float:
        """Mean over consecutive frames (BGR arrays, already resized) of the mean flow
        magnitude; -1 without a pair."""
        import cv2

        scores, prev = [], None
        for frame in frames:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if prev is not None:
                flow = cv2.calcOpticalFlowFarneback(prev, grey, None, **self._flow_args())
                mag, _ = cv2.cartToPolar(flow[..., 0], flow[..., 1])
                score = float(np.mean(mag))
                if self.relative:
                    score /= float(np.hypot(*frame.shape[:2]))
                scores.append(score)
            prev = grey
        return float(np.mean(scores or [-1]))

    def _resize(self, frame, shape):
        """``frame`` resized for ``shape`` (the size the new one is computed from), if asked."""
        import cv2

        if not (self._size or self.max_size):
            return frame
        new = resized_dimensions(shape, self._size, self.max_size, self.divisible)
        return frame if new == tuple(shape) else cv2.resize(frame, new,
                                                            interpolation=cv2.INTER_AREA)

    def motion_score(self, path: str, *_key) -> float:
        """The score of the video file at ``path`` (``MediaError`` when OpenCV cannot open it).
        ``_key`` (the parameters) only keys the batch memo."""
        import cv2

        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise MediaError(path, "file not found" if not _exists(path)
                                 else "OpenCV cannot open it as a video")
            fps = cap.get(cv2.CAP_PROP_FPS)
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            step = round(fps / min(self.sampling_fps, fps)) if fps > 0 else 1
            step = max(min(step, total - 1), 1)
            # the new size comes from the header's size, for every frame (as Data-Juicer)
            shape = (cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FRAME_WIDTH))

            def frames():
                # Data-Juicer reads frame 0, then frame 1, then seeks to s, 2s, ... (the k-th
                # frame read, from k = 2, is (k - 1) * s; with s = 1 frame 1 comes twice).
                # Skipping forward with grab() (decode, no conversion) reads the same frames
                # without a seek, which restarts decoding at the last key frame each time.
                k, nxt = 0, 0  # frames yielded; the next frame the reader gives
                while True:
                    wanted = k if k < 2 else (k - 1) * step
                    if wanted < nxt:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, wanted)
                        nxt = wanted
                    while nxt < wanted:
                        if not cap.grab():
                            return
                        nxt += 1
                    ok, frame = cap.read()
                    if not ok:
                        return
                    nxt += 1
                    k += 1
                    yield self._resize(frame, shape)

            return self._pair_scores(frames())
        finally:
            cap.release()

    def _frames_score(self, paths: list) -> float:
        import cv2

        step = 1
        if self.original_fps is not None and self.original_fps > 0:
            step = max(round(self.original_fps / min(self.sampling_fps, self.original_fps)), 1)
        frames = []
        for k, p in enumerate(paths):
            if step > 1 and k % step:
                continue
            if isinstance(p, bytes):
                frame = cv2.imdecode(np.frombuffer(p, dtype=np.uint8), cv2.IMREAD_COLOR)
            else:
                frame = cv2.imread(p)
            if frame is None:
                raise MediaError(str(p)[:200], "cannot decode the frame image")
            frames.append(self._resize(frame, frame.shape[:2]))
        return self._pair_scores(frames)

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        import cv2

        cv2.setNumThreads(1)  # one engine worker per core already
        if self.frame_field:
            values, errors = [], []
            for videos in views.field(self.frame_field, self.name):
                row, why = [], []
                for frames in videos or []:
                    try:
                        row.append(self._frames_score(list(frames or [])))
                    except MediaError as e:
                        row.append(np.nan)
                        why.append(str(e))
                values.append(row)
                errors.append("; ".join(why))
            return {"video_motion_score": per_media_column(values, np.float64),
                    MEDIA_ERROR: np.array(errors, dtype=object)}
        key = tuple(str(v) for v in self.stat_config().values())
        values, errors = self.per_media(views, self.motion_score, np.nan, *key)
        return {"video_motion_score": per_media_column(values, np.float64), MEDIA_ERROR: errors}

    def keep(self, stats):
        lo, hi = self.min_score, self.max_score  # -1 (no frame pair) is a score, as in DJ
        return any_all(rows_of(stats["video_motion_score"]),
                        lambda v: v is not None and v == v and lo <= v <= hi,
                        self.any_or_all == "any")


def _exists(path: str) -> bool:
    return os.path.exists(path)
