"""Video mappers with Data-Juicer's names: ``video_extract_frames_mapper``,
``video_resize_resolution_mapper`` and ``video_resize_aspect_ratio_mapper``. They write new media
files and change (or add) sample fields other than the text.
"""
from __future__ import annotations

import io
import math
import os
import re
from fractions import Fraction
from typing import Optional

from sandbox.data.decode import media_failure, open_video, memo, sample_frames, video_info
from sandbox.data.media import media_list
from sandbox.ops.base import MAXSIZE, Mapper, TextViews
from sandbox.ops.registry import register
from sandbox.utils import atomic_path, stable_hash


# ============================================================================ media mappers
# Mappers that write new media files and change (or add) sample fields other than the text.
# They implement ``process_fields(views) -> (texts, {field: values})`` and name the fields in
# ``output_fields()``; the engine writes those fields into the processed samples.
PRODUCED_DIR = "__dj__produced_data__"  # Data-Juicer's folder for files its OPs produce
SPECIAL_VIDEO, SPECIAL_EOC = "<__dj__video>", "<|__dj__eoc|>"


def produced_path(source: str, op_name: str, save_dir: str | None, params: dict,
                  suffix: str | None = None) -> str:
    """Where an OP writes the file it makes from ``source`` (Data-Juicer's
    ``transfer_filename``): ``save_dir``, else ``$DJ_PRODUCED_DATA_DIR/<op>``, else
    ``<source's folder>/__dj__produced_data__/<op>``; the name is the source's with
    ``__dj_hash_#<hash>#`` before its extension (an earlier such tag replaced). The hash is of
    the OP's parameters only (Data-Juicer adds the process id and time), so the same recipe
    writes the same file again and the stats cache stays valid."""
    if save_dir:
        folder = os.path.abspath(save_dir)
    elif os.environ.get("DJ_PRODUCED_DATA_DIR"):
        folder = os.path.join(os.path.abspath(os.environ["DJ_PRODUCED_DATA_DIR"]), op_name)
    else:
        folder = os.path.dirname(os.path.abspath(source))
        token = f"/{PRODUCED_DIR}/"
        if token in folder + "/":
            folder = (folder + "/").split(token)[0]
        folder = os.path.join(folder, PRODUCED_DIR, op_name)
    os.makedirs(folder, exist_ok=True)
    name, ext = os.path.splitext(os.path.basename(source))
    name = re.sub(r"__dj_hash_#.*?#.*$", "", name)
    return os.path.join(folder, f"{name}__dj_hash_#{stable_hash(params, n=32)}#{suffix or ext}")


class MediaMapper(Mapper):
    """Base of the mappers that change sample fields besides the text. The engine calls
    ``process_fields``; ``process_batch`` (text in, text out) cannot see the media and says so."""

    def output_fields(self) -> tuple[str, ...]:  # pragma: no cover - every subclass sets it
        raise NotImplementedError

    def process_fields(self, views: TextViews) -> tuple[list[str], dict[str, list]]:
        raise NotImplementedError  # pragma: no cover

    def process_batch(self, texts: list[str]) -> list[str]:
        raise NotImplementedError(
            f"{self.name} writes media files and changes the sample field(s) "
            f"{', '.join(self.output_fields())}: it runs through process_fields(views), which "
            f"the data engine calls for mappers that declare output_fields().")


def video_frames(path: str, method: str, frame_num: int) -> list:
    """The frames ``video_extract_frames_mapper`` takes from a video, as RGB ``PIL.Image``s:
    ``all_keyframes`` (key frames only; the first frame when there is none), ``all_frames``, or
    ``uniform`` (``sample_frames``). Raises ``MediaError``."""
    if method == "uniform":
        return sample_frames(path, frame_num)
    try:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            if method == "all_keyframes":
                stream.codec_context.skip_frame = "NONKEY"
            frames = [f.to_image() for f in container.decode(stream)]
            if not frames and method == "all_keyframes":
                stream.codec_context.skip_frame = "DEFAULT"
                container.seek(0)
                for f in container.decode(stream):
                    frames.append(f.to_image())
                    break
            return frames
        finally:
            container.close()
    except Exception as e:
        raise media_failure(path, e) from None


@register
class VideoExtractFramesMapper(MediaMapper):
    """Extracts frames from each video of a sample into ``frame_field`` (``video_frames``): one
    list per video, in the order of the videos, of JPEG file paths (``output_format: path``,
    written to ``frame_dir/<video name>/frame_<i>.jpg``; an existing file is kept) or of JPEG
    bytes (``bytes``). ``frame_sampling_method``: ``all_keyframes``, ``all_frames`` or
    ``uniform`` (``frame_num`` frames spread over the duration, see
    ``sandbox.data.decode.sample_frames``). With ``legacy_split_by_text_token`` (Data-Juicer's
    default) only the videos whose ``<__dj__video>`` token sits in a non-empty chunk of the text
    are read, the others get an empty list. A sample that already has frames is left as it is;
    a video that cannot be read gets an empty list. The text is unchanged. ``duration`` > 0
    (frames per segment) is not supported here."""

    name = "video_extract_frames_mapper"
    description = "Extract frames (key frames, all, or uniform) of each video into video_frames."

    def __init__(self, frame_sampling_method: str = "all_keyframes", output_format: str = "path",
                 frame_num: int = 3, duration: float = 0, frame_dir: Optional[str] = None,
                 frame_key: Optional[str] = None, frame_field: str = "video_frames",
                 legacy_split_by_text_token: bool = True, video_backend: str = "av",
                 video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        if output_format.lower() not in ("path", "bytes"):
            raise ValueError(f"output_format '{output_format}' is not supported. Can only be one "
                             f"of ['path', 'bytes'].")
        if frame_sampling_method not in ("all_keyframes", "all_frames", "uniform"):
            raise ValueError(f"Frame sampling method [{frame_sampling_method}] is not supported. "
                             f'Can only be one of ["all_keyframes", "all_frames", "uniform"].')
        if output_format.lower() == "path" and frame_dir is None:
            raise ValueError("'frame_dir' must be specified when output_format is in ['path'].")
        if duration and duration > 0:
            raise ValueError(f"{self.name}: duration={duration} (frames per segment) is not "
                             f"supported here; use duration: 0.")
        if frame_num < 1:
            raise ValueError(f"{self.name}: frame_num must be positive")
        if video_backend not in ("ffmpeg", "av"):
            raise ValueError(f"{self.name}: video_backend must be 'ffmpeg' or 'av'")
        self.frame_sampling_method, self.output_format = frame_sampling_method, output_format
        self.frame_num, self.duration, self.frame_dir = frame_num, duration, frame_dir
        self.frame_key, self.frame_field = frame_key, frame_field
        self.legacy_split_by_text_token = legacy_split_by_text_token
        self.video_backend = video_backend
        self.video_key = video_key
        self._field = frame_key or frame_field

    def input_fields(self) -> tuple[str, ...]:
        return (self.video_key,)

    def output_fields(self) -> tuple[str, ...]:
        return (self._field,)

    def _chosen(self, text: str, videos: list[str]) -> set[int]:
        """Indices of the videos to read (all, or those the text's tokens point at)."""
        if not self.legacy_split_by_text_token:
            return set(range(len(videos)))
        chosen, offset = set(), 0
        for chunk in text.split(SPECIAL_EOC):
            count = chunk.count(SPECIAL_VIDEO)
            if count == 0 or not chunk:
                continue
            for key in videos[offset:offset + count]:
                chosen.add(videos.index(key))
            offset += count
        return chosen

    def _save(self, path: str, frames: list) -> list:
        if self.output_format.lower() == "bytes":
            out = []
            for frame in frames:
                buf = io.BytesIO()
                frame.save(buf, format="jpeg")
                out.append(buf.getvalue())
            return out
        folder = os.path.join(self.frame_dir, os.path.splitext(os.path.basename(path))[0])
        os.makedirs(folder, exist_ok=True)
        out = []
        for i, frame in enumerate(frames):
            target = os.path.join(folder, f"frame_{i}.jpg")
            if not os.path.exists(target):
                frame.save(target)
            out.append(target)
        return out

    def process_fields(self, views: TextViews) -> tuple[list[str], dict[str, list]]:
        m = memo(views)
        existing = views.fields.get(self._field)
        out = []
        for i, (text, value) in enumerate(zip(views.texts, views.field(self.video_key, self.name))):
            if existing is not None and existing[i]:
                out.append(existing[i])
                continue
            videos = media_list(value)
            chosen = self._chosen(text, videos)
            row = []
            for k, path in enumerate(videos):
                frames = None
                if k in chosen:
                    frames, _ = m.try_get(video_frames, path, self.frame_sampling_method,
                                          self.frame_num)
                row.append(self._save(path, frames) if frames else [])
            out.append(row)
        return list(views.texts), {self._field: out}


def resized_resolution(width: int, height: int, min_width: int, max_width: int, min_height: int,
                       max_height: int, keep_ratio: str, divisible_by: int) -> tuple[int, int]:
    """Data-Juicer's ``video_resize_resolution_mapper`` arithmetic: the new (width, height) of a
    video outside the bounds, keeping its aspect ratio as far as the bounds allow and rounding
    to multiples of ``divisible_by`` (2 unless ``keep_ratio`` is decrease/increase)."""
    ratio = width / height
    if width < min_width:
        height, width = min_width / ratio, min_width
    if width > max_width:
        height, width = max_width / ratio, max_width
    if height < min_height:
        width, height = min_height * ratio, min_height
    if height > max_height:
        width, height = max_height * ratio, max_height
    d = 2 if keep_ratio == "disable" else divisible_by
    width = int(max(width, min_width))
    width = int(min(math.ceil(width / d) * d, max_width))
    width = int(width / d) * d
    height = int(max(height, min_height))
    height = int(min(math.ceil(height / d) * d, max_height))
    height = int(height / d) * d
    if keep_ratio == "increase":
        if width / height < ratio:
            width = height * ratio
        elif width / height > ratio:
            height = width / ratio
    elif keep_ratio == "decrease":
        if width / height < ratio:
            height = width / ratio
        elif width / height > ratio:
            width = height * ratio
    return int(round(width / d)) * d, int(round(height / d)) * d


def reencode_video(source: str, target: str, width: int, height: int) -> None:
    """Write the video stream of ``source`` scaled to ``width`` x ``height`` as H.264 (yuv420p)
    at the same frame rate to ``target`` (other streams are not copied). Raises
    ``MediaError``."""
    import av

    try:
        with atomic_path(target) as tmp:  # av picks the container by the temp's suffix
            _reencode(av, open_video(source), str(tmp), width, height)
    except Exception as e:
        raise media_failure(source, e) from None


def _reencode(av, src, tmp: str, width: int, height: int) -> None:
    try:
        s_in = src.streams.video[0]
        rate = s_in.average_rate or Fraction(25)
        with av.open(tmp, "w") as dst:
            s_out = dst.add_stream("libx264", rate=rate)
            s_out.width, s_out.height, s_out.pix_fmt = width, height, "yuv420p"
            for i, frame in enumerate(src.decode(s_in)):
                frame = frame.reformat(width=width, height=height, format="yuv420p")
                frame.pts, frame.time_base = i, 1 / Fraction(rate)  # constant frame rate
                for packet in s_out.encode(frame):
                    dst.mux(packet)
            for packet in s_out.encode():
                dst.mux(packet)
    finally:
        src.close()


class _VideoRewriteMapper(MediaMapper):
    """A mapper that re-encodes some videos of each sample (``new_size`` says which, and to what
    size) to ``produced_path`` and makes the sample's ``videos`` name the new files. Videos it
    leaves alone, and videos that cannot be read, keep their path; the text is unchanged."""

    def input_fields(self) -> tuple[str, ...]:
        return (self.video_key,)

    def output_fields(self) -> tuple[str, ...]:
        return (self.video_key,)

    def new_size(self, width: int, height: int) -> tuple[int, int] | None:  # pragma: no cover
        raise NotImplementedError

    def rewrite(self, path: str, *_key) -> str:
        """The path of the video to use instead of ``path`` (itself when unchanged). ``_key``
        (the parameters) only keys the batch memo."""
        info = video_info(path)
        size = self.new_size(info.width, info.height)
        if size is None:
            return path
        params = {k: v for k, v in self.config().items() if k not in ("save_dir", "text_key")}
        target = produced_path(path, self.name, self.save_dir, params)
        if not os.path.exists(target):
            reencode_video(path, target, *size)
        return target

    def process_fields(self, views: TextViews) -> tuple[list[str], dict[str, list]]:
        m = memo(views)
        key = tuple(str(v) for v in self.config().values())
        out = []
        for value in views.field(self.video_key, self.name):
            if value is None:
                out.append(None)
                continue
            new = []
            for p in media_list(value):
                target, err = m.try_get(self.rewrite, p, *key)
                new.append(p if err is not None else target)
            out.append(new[0] if isinstance(value, str) and new else new)
        return list(views.texts), {self.video_key: out}


@register
class VideoResizeResolutionMapper(_VideoRewriteMapper):
    """Videos wider or taller than the bounds (or narrower, shorter) are re-encoded at a size
    inside them (``resized_resolution``: Data-Juicer's arithmetic, aspect ratio kept as far as
    it can be, sizes even), as H.264 with PyAV, to ``produced_path`` (``save_dir``, else
    ``$DJ_PRODUCED_DATA_DIR``, else ``__dj__produced_data__`` beside the video); the sample's
    ``videos`` then name the new files. Videos already in bounds, and videos that cannot be
    read, keep their path. The text is unchanged."""

    name = "video_resize_resolution_mapper"
    description = "Re-encode videos outside [min, max] width/height to a size within them."

    def __init__(self, min_width: int = 1, max_width: int = MAXSIZE, min_height: int = 1,
                 max_height: int = MAXSIZE, force_original_aspect_ratio: str = "disable",
                 force_divisible_by: int = 2, save_dir: Optional[str] = None,
                 video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        keep = force_original_aspect_ratio.lower()
        if keep not in ("disable", "decrease", "increase"):
            raise ValueError(f"force_original_aspect_ratio [{force_original_aspect_ratio}] is not "
                             f"supported. Can only be one of ['disable', 'decrease', 'increase']. ")
        if (force_divisible_by <= 1 or force_divisible_by % 2 == 1) and keep != "disable":
            raise ValueError(f"force_divisible_by [{force_divisible_by}] must be a positive even "
                             f"number. ")
        self.min_width, self.max_width = min_width, max_width
        self.min_height, self.max_height = min_height, max_height
        self.force_original_aspect_ratio = force_original_aspect_ratio
        self.force_divisible_by = force_divisible_by
        self.save_dir, self.video_key = save_dir, video_key
        self._keep = keep

    def new_size(self, width: int, height: int) -> tuple[int, int] | None:
        if self.min_width <= width <= self.max_width and \
                self.min_height <= height <= self.max_height:
            return None
        return resized_resolution(width, height, self.min_width, self.max_width,
                                  self.min_height, self.max_height, self._keep,
                                  self.force_divisible_by)


def rescaled_for_ratio(width: int, height: int, min_ratio: Fraction, max_ratio: Fraction,
                       strategy: str) -> tuple[int, int]:
    """Data-Juicer's ``video_resize_aspect_ratio_mapper`` arithmetic: a frame narrower than
    ``min_ratio`` (w/h) gets a wider width (``increase``) or a smaller height (``decrease``) to
    meet it, one wider than ``max_ratio`` a taller height or a smaller width; the changed side
    rounded to even (up when increasing, down when decreasing), both at least 2."""
    ratio = Fraction(width, height)
    w, h = width, height
    if ratio < min_ratio:
        if strategy == "increase":
            w = math.ceil(height * min_ratio)
            w += w % 2
        else:
            h = math.floor(width / min_ratio)
            h -= h % 2
    elif ratio > max_ratio:
        if strategy == "increase":
            h = math.ceil(width / max_ratio)
            h += h % 2
        else:
            w = math.floor(height * max_ratio)
            w -= w % 2
    return max(2, w), max(2, h)


@register
class VideoResizeAspectRatioMapper(_VideoRewriteMapper):
    """Videos whose aspect ratio (w/h) is outside ``[min_ratio, max_ratio]`` (fractions, "9:21"
    or "9/21", compared exactly) are re-encoded, stretched to the nearest bound
    (``rescaled_for_ratio``: Data-Juicer's arithmetic; ``strategy`` increase or decrease), as
    H.264 with PyAV, to ``produced_path``; the sample's ``videos`` then name the new files.
    Videos in range, and videos that cannot be read, keep their path. The text is unchanged."""

    name = "video_resize_aspect_ratio_mapper"
    description = "Re-encode videos whose aspect ratio is outside [min_ratio, max_ratio] to meet it."

    def __init__(self, min_ratio: str = "9/21", max_ratio: str = "21/9", strategy: str = "increase",
                 save_dir: Optional[str] = None, video_key: str = "videos", **kwargs):
        super().__init__(**kwargs)
        if strategy.lower() not in ("decrease", "increase"):
            raise ValueError(f"force_original_aspect_ratio [{strategy}] is not supported. Can only "
                             f"be one of ['decrease', 'increase']. ")
        self.min_ratio, self.max_ratio, self.strategy = min_ratio, max_ratio, strategy
        self.save_dir, self.video_key = save_dir, video_key
        self._min = Fraction(str(min_ratio).replace(":", "/"))
        self._max = Fraction(str(max_ratio).replace(":", "/"))

    def new_size(self, width: int, height: int) -> tuple[int, int] | None:
        if self._min <= Fraction(width, height) <= self._max:
            return None
        return rescaled_for_ratio(width, height, self._min, self._max, self.strategy.lower())
