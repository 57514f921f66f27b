"""Decoding the media of samples: images with PIL, videos with PyAV (``av``).

The image and video OPs never open files themselves: they ask this module, through the
``MediaMemo`` of their batch (``memo(views)``), so that when several OPs of a recipe read the same
image or video in a batch it is opened and decoded once (Data-Juicer calls this the context of
fused OPs). The memo also remembers failures: a file that cannot be read raises the same
``MediaError`` (its path and the reason) for every OP that asks, without a second attempt.

``video_info`` reads a video's header (no frame is decoded); ``sample_frames`` decodes frames
uniformly over the duration, as Data-Juicer's ``extract_video_frames_uniformly`` picks them.
``av``, ``PIL`` and ``cv2`` are imported inside the functions: a text-only run never pays for
them.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

MEMO_KEY = ("__media_memo__",)  # the TextViews key the batch's memo lives under


class MediaError(Exception):
    """A media file that cannot be used: missing, or not decodable. ``str()`` is
    ``"<path>: <reason>"``, what the OPs record per sample."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def media_failure(path: str, e: BaseException) -> MediaError:
    if isinstance(e, MediaError):
        return e
    if not os.path.exists(path):
        return MediaError(path, "file not found")
    reason = " ".join(str(e).split()) or type(e).__name__
    return MediaError(path, f"cannot decode ({type(e).__name__}: {reason[:200]})")


# ------------------------------------------------------------------------------------ images
def load_image(path: str):
    """The image at ``path`` as an RGB ``PIL.Image`` (fully decoded), or ``MediaError``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on broken files
        raise media_failure(path, e) from None


def image_size(path: str) -> tuple[int, int]:
    """``(width, height)`` from the image's header (no full decode), or ``MediaError``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:
        raise media_failure(path, e) from None


# ------------------------------------------------------------------------------------ videos
@dataclass(frozen=True)
class VideoInfo:
    """A video's first video stream: ``duration`` in seconds, ``fps`` (average frame rate),
    ``frames`` (count), ``width`` and ``height`` in pixels."""

    duration: float
    fps: float
    frames: int
    width: int
    height: int


def open_video(path: str):
    import av

    av.logging.set_level(av.logging.PANIC)  # broken files are reported by us, not on stderr
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise MediaError(path, "no video stream")
    return container


def video_info(path: str) -> VideoInfo:
    """Header facts of the video at ``path``, as Data-Juicer reads them: the stream's duration
    (the container's when the stream has none), its average frame rate, its frame count (from
    duration x fps when the header has none) and the codec's width and height. Raises
    ``MediaError``."""
    try:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = 0.0
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            frames = int(stream.frames or 0)
            if frames <= 0 and duration > 0 and fps > 0:
                frames = int(round(duration * fps))
            ctx = stream.codec_context
            return VideoInfo(duration, fps, frames, int(ctx.width), int(ctx.height))
        finally:
            container.close()
    except Exception as e:
        raise media_failure(path, e) from None


def sample_frames(path: str, num_frames: int) -> list:
    """``num_frames`` frames of the video at ``path``, as RGB ``PIL.Image``s, uniformly over its
    duration (Data-Juicer's rule): one frame at the middle for 1; otherwise the frames at
    ``i * duration / (num_frames - 1)`` seconds, first and last included. Each is the first
    frame at or after its time, a frame is used at most once, and when the video ends before
    every time is met its last frame is added (once), so the list can be shorter than asked.
    ``num_frames`` above the video's frame count is lowered to it. Raises ``MediaError``."""
    if num_frames < 1:
        raise ValueError(f"sample_frames: num_frames must be at least 1, got {num_frames}")
    try:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            n = min(num_frames, total) if total > 0 else num_frames
            duration = (stream.duration * stream.time_base if stream.duration is not None
                        else container.duration / 1_000_000)
            times = ([duration / 2] if n == 1 else
                     [duration / (n - 1) * i for i in range(n)])
            base = stream.time_base
            out, k, last = [], 0, None
            for frame in container.decode(stream):
                last = frame
                if frame.pts is not None and frame.pts >= times[k] / base:
                    out.append(frame.to_image())
                    k += 1
                    if k == len(times):
                        break
            if k < len(times) and last is not None:
                out.append(last.to_image())
            return out
        finally:
            container.close()
    except Exception as e:
        raise media_failure(path, e) from None


def video_stream_md5(path: str) -> str:
    """md5 of the bytes of the video's video-stream packets, in file order (Data-Juicer's
    ``video_deduplicator`` hash of one video; audio and container metadata do not count).
    Raises ``MediaError``."""
    digest = hashlib.md5()
    video_packets_into(path, digest)
    return digest.hexdigest()


def video_packets_into(path: str, digest) -> None:
    """Feed the video-stream packets of ``path`` into ``digest`` (a hashlib object)."""
    try:
        container = open_video(path)
        try:
            for packet in container.demux():
                if packet.stream.type == "video":
                    digest.update(bytes(packet))
        finally:
            container.close()
    except Exception as e:
        raise media_failure(path, e) from None


# ------------------------------------------------------------------------------------ the memo
# Decoded pixels a batch's memo keeps (RGB, 3 bytes each: ~200 MB); images and frames beyond
# it are decoded again when a second OP asks, so memory stays bounded whatever the batch holds.
MEMO_MAX_PIXELS = 64_000_000


def _pixels(value) -> int:
    if isinstance(value, list):
        return sum(_pixels(v) for v in value)
    size = getattr(value, "size", None)  # a PIL image
    return size[0] * size[1] if isinstance(size, tuple) and len(size) == 2 else 0


class MediaMemo:
    """Results of decoding functions by ``(name, path, *args)`` for one batch; failures are
    remembered too and raised again. Decoded images and frames are kept up to
    ``max_pixels`` in all."""

    def __init__(self, max_pixels: int = MEMO_MAX_PIXELS):
        self._done: dict[tuple, Any] = {}
        self.max_pixels, self.pixels = max_pixels, 0

    def get(self, fn: Callable, path: str, *args):
        key = (fn.__name__, path, *args)
        if key in self._done:
            value = self._done[key]
        else:
            try:
                value = fn(path, *args)
            except MediaError as e:
                value = e
            px = _pixels(value)
            if self.pixels + px <= self.max_pixels:
                self._done[key] = value
                self.pixels += px
        if isinstance(value, MediaError):
            raise value
        return value

    def try_get(self, fn: Callable, path: str, *args):
        """``(value, None)``, or ``(None, MediaError)`` when the file cannot be used."""
        try:
            return self.get(fn, path, *args), None
        except MediaError as e:
            return None, e

    def __len__(self) -> int:
        return len(self._done)


def memo(views) -> MediaMemo:
    """The ``MediaMemo`` of a batch (``sandbox.ops.TextViews``): one per batch, shared by every
    OP that runs on it."""
    return views.shared(MEMO_KEY, lambda texts: MediaMemo())
