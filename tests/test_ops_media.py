"""Image and video OPs on real media the tests make themselves: PNG images written with PIL and
short H.264 mp4 videos written with PyAV, of known size, duration and frame rate, a static and a
moving one for the motion score. Hand-checked stats for each OP, duplicates found, missing and
corrupt files reported per sample, and a Data-Juicer multimodal recipe through
``pipeline=process``. Parity with Data-Juicer's own OPs runs when its virtualenv is there
(``bench/dj_env.sh``)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from sandbox.data import decode
from sandbox.data.decode import MediaError, MediaMemo, sample_frames, video_info
from sandbox.errors import ConfigError, DataError
from sandbox.ops import TextViews, get_op_class
from sandbox.steps.base import StepEnv
from sandbox.steps.data.load import FilePool

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ media makers
def write_image(path: Path, w: int, h: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[: h // 2] = rng.integers(0, 255, 3, dtype=np.uint8)  # two flat halves, seeded colours
    arr[h // 2:] = rng.integers(0, 255, 3, dtype=np.uint8)
    arr[:, : w // 3, 1] = 200
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return str(path)


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random texture (optical flow needs gradients everywhere)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8), dtype=np.uint8)
    grey = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.dstack([grey, 255 - grey, grey // 2 + 64])


def write_video(path: Path, w: int = 96, h: int = 64, fps: int = 10, frames: int = 20,
                shift: int = 0, seed: int = 0) -> str:
    """An H.264 mp4 of ``frames`` frames at ``fps``: a texture moving ``shift`` pixels to the
    right per frame (0: a static video)."""
    base = texture(h, w, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, k * shift, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def junk(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a picture nor a movie" * 10)
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("media")
    m = {
        "img": write_image(d / "img.png", 64, 48, seed=1),
        "tiny": write_image(d / "tiny.png", 10, 10, seed=2),
        "wide": write_image(d / "wide.png", 200, 20, seed=3),
        "other": write_image(d / "other.png", 48, 64, seed=4),
        "moving": write_video(d / "moving.mp4", shift=1),
        "static": write_video(d / "static.mp4", shift=0, seed=5),
        "short": write_video(d / "short.mp4", frames=5, shift=1, seed=6),
        "tall": write_video(d / "tall.mp4", w=48, h=96, fps=25, frames=25, seed=7),
        "bad_img": junk(d / "bad.png"),
        "bad_vid": junk(d / "bad.mp4"),
        "gone": str(d / "gone.mp4"),
    }
    # the same pixels in another file (re-saved, other bytes): a duplicate for image_deduplicator
    Image.open(m["img"]).save(d / "img_copy.png", optimize=True)
    m["img_copy"] = str(d / "img_copy.png")
    # the same video stream in another container: a duplicate for video_deduplicator
    with av.open(m["moving"]) as src, av.open(str(d / "moving_copy.mkv"), "w") as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for packet in src.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            dst.mux(packet)
    m["moving_copy"] = str(d / "moving_copy.mkv")
    return m


def run_filter(name: str, field: str, rows: list, **kw):
    op = get_op_class(name)(**kw)
    stats = op.compute_stats_batch(TextViews([""] * len(rows), {field: rows}))
    return op, stats, op.keep(stats).tolist()


def lists(col) -> list:
    return [list(np.asarray(v).tolist()) if not isinstance(v, str) else v for v in col]


# ------------------------------------------------------------------------------ decoding
def test_video_info_and_uniform_frames(media):
    info = video_info(media["moving"])
    assert (info.duration, info.fps, info.frames, info.width, info.height) == (2.0, 10.0, 20, 96, 64)
    assert video_info(media["tall"]) == decode.VideoInfo(1.0, 25.0, 25, 48, 96)
    frames = sample_frames(media["moving"], 3)  # 0 s, 1 s, 2 s: frames 0, 10 and the last (19)
    assert [f.size for f in frames] == [(96, 64)] * 3 and all(f.mode == "RGB" for f in frames)
    with av.open(media["moving"]) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert [np.array_equal(np.asarray(f), every[i]) for f, i in zip(frames, (0, 10, 19))] == \
        [True] * 3
    assert np.array_equal(np.asarray(sample_frames(media["moving"], 1)[0]), every[10])  # middle
    assert len(sample_frames(media["short"], 50)) == 5  # at most the video's frames
    for key, why in (("bad_vid", "cannot decode"), ("gone", "file not found")):
        with pytest.raises(MediaError, match=why):
            sample_frames(media[key], 2)
        with pytest.raises(MediaError, match=why):
            video_info(media[key])


def test_memo_decodes_once_and_remembers_failures(media, monkeypatch):
    calls = []
    real = decode.image_size

    def counting(path):
        calls.append(path)
        return real(path)

    counting.__name__ = "image_size"
    m = MediaMemo()
    assert m.get(counting, media["img"]) == (64, 48) == m.get(counting, media["img"])
    assert m.try_get(counting, media["bad_img"])[1] is not None
    assert m.try_get(counting, media["bad_img"])[1] is not None
    assert calls == [media["img"], media["bad_img"]]
    small = MediaMemo(max_pixels=100)  # decoded pixels beyond the budget are not kept
    small.get(decode.load_image, media["img"])
    assert len(small) == 0 and small.pixels == 0


def test_one_batch_shares_decodes_across_ops(media, monkeypatch):
    from sandbox.ops.video import filters as video_ops

    opened = []
    real = decode.open_video
    monkeypatch.setattr(decode, "open_video", lambda p: opened.append(p) or real(p))
    views = TextViews(["a", "b"], {"videos": [[media["moving"]], [media["moving"], media["tall"]]]})
    for name in ("video_duration_filter", "video_resolution_filter", "video_aspect_ratio_filter"):
        get_op_class(name)().compute_stats_batch(views)
    assert sorted(opened) == sorted([media["moving"], media["tall"]])  # once each, for 3 OPs
    assert video_ops.VideoDurationFilter.stat_keys[0] == "video_duration"


# ------------------------------------------------------------------------------ image filters
def test_image_filters_stats_and_corrupt_files(media):
    rows = [[media["img"]], [media["tiny"], media["wide"]], [], [media["bad_img"], media["img"]],
            [media["gone"]]]
    _, s, keep = run_filter("image_shape_filter", "images", rows, min_width=20)
    assert lists(s["image_width"]) == [[64], [10, 200], [], [-1, 64], [-1]]
    assert lists(s["image_height"]) == [[48], [10, 20], [], [-1, 48], [-1]]
    assert keep == [True, True, True, True, False]
    assert s["media_error"][0] == "" and "bad.png: cannot decode" in s["media_error"][3]
    assert s["media_error"][4].endswith("gone.mp4: file not found")
    _, s, keep = run_filter("image_shape_filter", "images", rows, min_width=20, any_or_all="all")
    assert keep == [True, False, True, False, False]
    _, s, keep = run_filter("image_aspect_ratio_filter", "images", rows, any_or_all="all")
    assert lists(s["aspect_ratios"])[:3] == [[64 / 48], [1.0, 10.0], []]
    assert math.isnan(s["aspect_ratios"][3][0]) and keep == [True, False, True, False, False]
    _, s, keep = run_filter("image_size_filter", "images", rows, max_size="1KB")
    assert s["image_sizes"][0][0] == os.path.getsize(media["img"])
    assert s["image_sizes"][4][0] == -1 and keep[4] is False


def test_model_scored_image_filters_need_a_local_model(tmp_path):
    with pytest.raises(ConfigError, match="hf_scorer_model is not set.*local Hugging Face model"):
        get_op_class("image_aesthetics_filter")()
    with pytest.raises(ConfigError, match="hf_nsfw_model='Falconsai/nsfw_image_detection' is not"):
        get_op_class("image_nsfw_filter")()


@pytest.mark.slow
def test_model_scored_image_filters_with_a_local_classifier(media, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    # a tiny randomly initialised ViT classifier saved on disk stands in for a user's model
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=16, hidden_size=16,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, num_labels=2)
    model = transformers.ViTForImageClassification(cfg).eval()
    folder = tmp_path / "nsfw"
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    rows = [[media["img"], media["other"]], [], [media["bad_img"]]]
    op, s, keep = run_filter("image_nsfw_filter", "images", rows, hf_nsfw_model=str(folder),
                             min_score=0.0, max_score=1.0)
    proc = transformers.ViTImageProcessor.from_pretrained(folder)
    imgs = [Image.open(media[k]).convert("RGB") for k in ("img", "other")]
    with torch.no_grad():
        want = torch.softmax(model(**proc(images=imgs, return_tensors="pt")).logits, -1)[:, 1]
    assert np.allclose(s["image_nsfw_score"][0], want.numpy(), atol=1e-6)
    assert keep == [True, True, False] and "cannot decode" in s["media_error"][2]


# ------------------------------------------------------------------------------ video filters
def test_video_header_filters(media):
    rows = [[media["moving"]], [media["short"], media["tall"]], [], [media["bad_vid"]],
            media["static"]]  # a single path string counts as one video
    _, s, keep = run_filter("video_duration_filter", "videos", rows, min_duration=1.0)
    assert lists(s["video_duration"])[:3] == [[2.0], [0.5, 1.0], []]
    assert math.isnan(s["video_duration"][3][0]) and list(s["video_duration"][4]) == [2.0]
    assert keep == [True, True, True, False, True]
    assert "bad.mp4: cannot decode" in s["media_error"][3]
    _, s, keep = run_filter("video_duration_filter", "videos", rows, min_duration=1.0,
                            any_or_all="all")
    assert keep == [True, False, True, False, True]
    _, s, keep = run_filter("video_resolution_filter", "videos", rows, min_width=64)
    assert lists(s["video_width"])[:4] == [[96], [96, 48], [], [-1]]
    assert lists(s["video_height"])[:4] == [[64], [64, 96], [], [-1]]
    assert keep == [True, True, True, False, True]
    _, s, keep = run_filter("video_aspect_ratio_filter", "videos", rows, min_ratio="1:1",
                            max_ratio="3/2", any_or_all="all")
    assert lists(s["video_aspect_ratios"])[:3] == [[1.5], [1.5, 0.5], []]
    assert keep == [True, False, True, False, True]  # 3/2 inclusive, compared exactly


def test_video_motion_score(media):
    rows = [[media["moving"]], [media["static"]], [media["bad_vid"]], []]
    op, s, keep = run_filter("video_motion_score_filter", "videos", rows)
    moving, static = s["video_motion_score"][0][0], s["video_motion_score"][1][0]
    # 10 fps sampled at 2 fps: frames 0, 1, 5, 10, 15 (Data-Juicer's order), so the texture
    # moved 1, 4, 5 and 5 px between them: 3.75 px on average (Farneback finds a bit less)
    assert 3.0 < moving < 4.0 and static < 0.05
    assert math.isnan(s["video_motion_score"][2][0]) and keep == [True, False, False, True]
    _, s, _ = run_filter("video_motion_score_filter", "videos", rows[:1], relative=True)
    assert s["video_motion_score"][0][0] == pytest.approx(moving / math.hypot(64, 96), rel=1e-6)
    _, s, _ = run_filter("video_motion_score_filter", "videos", rows[:1], sampling_fps=10)
    assert 0.8 < s["video_motion_score"][0][0] < 1.2  # every frame: 1 px apart
    one = write_video(Path(media["moving"]).parent / "one.mp4", frames=1)
    _, s, keep = run_filter("video_motion_score_filter", "videos", [[one]])
    assert list(s["video_motion_score"][0]) == [-1.0] and keep == [False]  # no pair: -1 (DJ)
    with pytest.raises(ValueError, match="if_output_optical_flow"):
        get_op_class("video_motion_score_filter")(if_output_optical_flow=True)


def test_motion_score_from_frame_images(media, tmp_path):
    with av.open(media["moving"]) as c:
        paths = []
        for k, f in enumerate(c.decode(video=0)):
            paths.append(str(tmp_path / f"f{k}.png"))
            f.to_image().save(paths[-1])
    op, s, _ = run_filter("video_motion_score_filter", "frames", [[paths]], frame_field="frames",
                          original_fps=10)
    assert op.input_fields() == ("frames",)
    assert 4.0 < s["video_motion_score"][0][0] < 5.5


# ------------------------------------------------------------------------------ deduplicators
def test_image_deduplicator_finds_copies_and_keeps_unreadable(media):
    rows = [[media["img"]], [media["other"]], [media["img_copy"]], [], [media["bad_img"]],
            [media["bad_img"]], []]
    assert open(media["img"], "rb").read() != open(media["img_copy"], "rb").read()
    for method in ("phash", "dhash", "ahash", "whash"):
        op = get_op_class("image_deduplicator")(method=method)
        h = op.hash_batch(TextViews([""] * len(rows), {"images": rows}))
        assert h[0] == h[2] != h[1] and len(h[0]) == 16 and h[3] == ""
        assert h[4].startswith("!") and "cannot decode" in h[4]
        assert op.keep_mask(h, np.ones(7, bool)).tolist() == [True, True, False, True, True,
                                                               True, True]
        # among the alive samples only: the copy stays when the original is gone
        alive = np.array([False, True, True, True, True, True, True])
        assert op.keep_mask(h, alive).tolist()[2] is True


def test_video_deduplicator_is_the_md5_of_the_video_packets(media):
    with av.open(media["moving"]) as c:
        md5 = hashlib.md5(b"".join(bytes(p) for p in c.demux() if p.stream.type == "video"))
    rows = [[media["moving"]], [media["static"]], [media["moving_copy"]], [], [media["bad_vid"]],
            [media["gone"]], [media["moving"], media["static"], media["moving"]]]
    op = get_op_class("video_deduplicator")()
    h = op.hash_batch(TextViews([""] * len(rows), {"videos": rows}))
    assert h[0] == md5.hexdigest() == h[2] != h[1]  # another container, the same stream
    assert h[3] == "" and h[4].startswith("!") and h[5].endswith("file not found")
    assert op.keep_mask(h, np.ones(7, bool)).tolist() == [True, True, False, True, True, True,
                                                           True]
    op = get_op_class("video_deduplicator")(consider_text=True)
    h = op.hash_batch(TextViews(["a", "b", "a "], {"videos": rows[:3]}))
    assert op.keep_mask(h, np.ones(3, bool)).tolist() == [True, True, False]
    h = op.hash_batch(TextViews(["a", "b", "c"], {"videos": rows[:3]}))
    assert op.keep_mask(h, np.ones(3, bool)).tolist() == [True, True, True]


# ------------------------------------------------------------------------------ loading
def env(tmp_path: Path) -> StepEnv:
    wd = tmp_path / "load"
    wd.mkdir(parents=True, exist_ok=True)
    return StepEnv(name="load", workdir=wd, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   show_progress=False)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loading_reports_missing_media_per_sample(media, tmp_path):
    folder = Path(media["img"]).parent
    pool = write_jsonl(folder / "pools" / "p.jsonl", [
        {"text": "<__dj__image> ok <|__dj__eoc|>", "images": ["../img.png"]},
        {"text": "<__dj__image> gone", "images": ["../img.png", "../nope.png"]},
        {"text": "no media"},
        {"text": "<__dj__video> gone too", "videos": ["../gone.mp4"]},
    ])
    with pytest.raises(DataError) as e:
        FilePool(path=str(pool), check_media=True).run(env(tmp_path))
    msg = str(e.value)
    assert str(pool) in msg and "2 sample(s)" in msg and "record 2:" in msg and "record 4:" in msg
    assert f"{folder}/nope.png" in msg and "on_bad_record=skip" in msg
    out = FilePool(path=str(pool), check_media=True, on_bad_record="skip").run(env(tmp_path))
    assert out["rejected"] == 2 and out["num_samples"] == 2
    rejects = [json.loads(line) for line in Path(out["rejects"]).read_text().splitlines()]
    assert [r["record"] for r in rejects] == [2, 4]
    assert rejects[0]["reason"] == f"missing media file(s): {folder}/nope.png"
    assert pq.read_table(out["dataset"]).column("text").to_pylist() == \
        ["<__dj__image> ok <|__dj__eoc|>", "no media"]
    # unchecked, the samples load as they are (the OPs then report the files per sample)
    assert FilePool(path=str(pool)).run(env(tmp_path))["num_samples"] == 4


# ------------------------------------------------------------------------------ a recipe end to end
RECIPE = """\
# a Data-Juicer multimodal recipe, unchanged
process:
  - image_shape_filter:
      min_width: 20
  - image_aspect_ratio_filter:
      min_ratio: 0.5
      max_ratio: 2.0
  - image_size_filter:
      max_size: 1MB
  - image_deduplicator:
      method: phash
  - video_duration_filter:
      min_duration: 1.0
  - video_resolution_filter:
      min_width: 32
  - video_aspect_ratio_filter:
      min_ratio: "1/2"
      max_ratio: "2/1"
  - video_motion_score_filter:
      min_score: 0.5
  - video_deduplicator: {}
"""


@pytest.mark.slow
def test_multimodal_recipe_through_the_process_pipeline(media, tmp_path):
    from conftest import compose

    from sandbox import run

    folder = tmp_path / "pool"
    (folder / "media").mkdir(parents=True)
    for key in ("img", "tiny", "wide", "img_copy", "moving", "static", "short", "moving_copy",
                "bad_img", "tall"):
        shutil.copy(media[key], folder / "media" / Path(media[key]).name)
    img, vid = "<__dj__image>", "<__dj__video>"
    rows = [
        {"text": f"{img} a picture <|__dj__eoc|>", "images": ["media/img.png"]},
        {"text": f"{img} tiny", "images": ["media/tiny.png"]},
        {"text": f"{img} wide", "images": ["media/wide.png"]},
        {"text": f"{img} the same picture", "images": ["media/img_copy.png"]},
        {"text": f"{vid} a moving texture", "videos": ["media/moving.mp4"]},
        {"text": f"{vid} nothing moves", "videos": ["media/static.mp4"]},
        {"text": f"{vid} too short", "videos": ["media/short.mp4"]},
        {"text": f"{vid} the same video", "videos": ["media/moving_copy.mkv"]},
        {"text": f"{img} broken", "images": ["media/bad.png"]},
        {"text": "just text"},
        {"text": f"{vid} portrait, still", "videos": ["media/tall.mp4"]},
    ]
    pool = write_jsonl(folder / "pool.jsonl", rows)
    recipe = tmp_path / "mm.yaml"
    recipe.write_text(RECIPE)
    export = tmp_path / "out" / "kept.jsonl"
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={pool}", "recipe=dj",
                   f"recipe.path={recipe}", "tracking=none", "progress=false", "num_proc=2",
                   "process.batch_size=3", "engine.span_rows=3", "process.keep_stats=true",
                   f"process.export_path={export}"])
    run(cfg, run_dir=tmp_path / "run")
    out = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]["process"]["outputs"]
    kept = pq.read_table(out["dataset"]).column("text").to_pylist()
    assert kept == [rows[i]["text"] for i in (0, 4, 9)]
    dropped = {r["text"]: r for r in pq.read_table(out["dropped"]).to_pylist()}
    by = {t: r["dropped_by"] for t, r in dropped.items()}
    assert by == {rows[1]["text"]: "image_shape_filter", rows[2]["text"]: "image_aspect_ratio_filter",
                  rows[3]["text"]: "image_deduplicator", rows[5]["text"]: "video_motion_score_filter",
                  rows[6]["text"]: "video_duration_filter", rows[7]["text"]: "video_deduplicator",
                  rows[8]["text"]: "image_shape_filter", rows[10]["text"]: "video_motion_score_filter"}
    broken = dropped[rows[8]["text"]]
    assert "bad.png: cannot decode" in broken["__stats__.image_shape_filter.media_error"]
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert [r.get("images") or r.get("videos") for r in exported] == \
        [[f"{folder}/media/img.png"], [f"{folder}/media/moving.mp4"], None]


# ------------------------------------------------------------------------------ Data-Juicer parity
DJ_PYTHON = ROOT / "bench" / ".work" / "dj-venv" / "bin" / "python"

DJ_SCRIPT = r"""
import json, sys
from fractions import Fraction
import numpy as np
from data_juicer.utils.constant import Fields, HashKeys
import data_juicer.utils.mm_utils as mm
import data_juicer.utils.video_utils as vu

def close_video(container):  # Data-Juicer 1.6.1 pins av 13; av 18's streams have no close()
    container.close()

mm.close_video = vu.close_video = close_video
from data_juicer.ops.filter.image_aspect_ratio_filter import ImageAspectRatioFilter
from data_juicer.ops.filter.image_shape_filter import ImageShapeFilter
from data_juicer.ops.filter.image_size_filter import ImageSizeFilter
from data_juicer.ops.filter.video_duration_filter import VideoDurationFilter
from data_juicer.ops.filter.video_resolution_filter import VideoResolutionFilter
from data_juicer.ops.filter.video_aspect_ratio_filter import VideoAspectRatioFilter
from data_juicer.ops.filter.video_motion_score_filter import VideoMotionScoreFilter
from data_juicer.ops.deduplicator.video_deduplicator import VideoDeduplicator
from data_juicer.utils.mm_utils import extract_video_frames_uniformly

job = json.loads(sys.stdin.read())
def plain(v):
    return np.asarray(v).tolist() if isinstance(v, (list, np.ndarray)) else v
out = {"stats": [], "hashes": [], "frames": []}
for name, kw, field, rows in job["filters"]:
    op = {c.__name__: c for c in (ImageAspectRatioFilter, ImageShapeFilter, ImageSizeFilter,
          VideoDurationFilter, VideoResolutionFilter, VideoAspectRatioFilter,
          VideoMotionScoreFilter)}[name](**kw)
    if op.is_batched_op():
        batch = {"text": [""] * len(rows), field: rows, Fields.stats: [{} for _ in rows]}
        batch = op.compute_stats_batched(batch)
        keeps = list(op.process_batched(batch))
        res = [[{k: plain(v) for k, v in st.items()}, bool(k)]
               for st, k in zip(batch[Fields.stats], keeps)]
    else:
        res = []
        for r in rows:
            s = op.compute_stats_single({"text": "", field: r, Fields.stats: {}})
            res.append([{k: plain(v) for k, v in s[Fields.stats].items()},
                        bool(op.process_single(s))])
    out["stats"].append(res)
for name, kw, field, rows in job["dedups"]:
    op = {"VideoDeduplicator": VideoDeduplicator}[name](**kw)
    out["hashes"].append([op.compute_hash({"text": "", field: r})[HashKeys.videohash]
                          for r in rows])
from data_juicer.ops.mapper.video_resize_aspect_ratio_mapper import rescale
out["rescale"] = [list(rescale(w, h, Fraction(w, h), Fraction(lo), Fraction(hi), st))
                  for w, h, lo, hi, st in job["rescale"]]
for path, n in job["frames"]:
    out["frames"].append([f.to_ndarray(format="rgb24").tolist() for f in
                          extract_video_frames_uniformly(path, n)])
print("@@" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def dj_extra(tmp_path_factory):
    """A folder to put on Data-Juicer's PYTHONPATH holding this environment's ``av`` and
    ``cv2`` (its virtualenv ships neither; same Python version), so its video OPs run."""
    if not DJ_PYTHON.exists():
        pytest.skip("Data-Juicer's virtualenv is absent (bench/dj_env.sh makes it)")
    d = tmp_path_factory.mktemp("djextra")
    site = Path(av.__file__).resolve().parents[1]
    for name in ("av", "av.libs", "cv2", "opencv_python_headless.libs"):
        if (site / name).exists():
            (d / name).symlink_to(site / name)
    return d


@pytest.mark.slow
def test_parity_with_data_juicer(media, dj_extra):
    imgs = [[media["img"]], [media["tiny"], media["wide"]], [], [media["other"], media["img"]]]
    vids = [[media["moving"]], [media["static"], media["tall"]], [], [media["short"]]]
    filters = [
        ("ImageAspectRatioFilter", "image_aspect_ratio_filter", {"min_ratio": 0.5}, "images", imgs),
        ("ImageShapeFilter", "image_shape_filter", {"min_width": 20}, "images", imgs),
        ("ImageSizeFilter", "image_size_filter", {"max_size": "1KB"}, "images", imgs),
        ("VideoDurationFilter", "video_duration_filter", {"min_duration": 1}, "videos", vids),
        ("VideoResolutionFilter", "video_resolution_filter", {"min_width": 64}, "videos", vids),
        ("VideoAspectRatioFilter", "video_aspect_ratio_filter", {"max_ratio": "1/1"}, "videos",
         vids),
        ("VideoMotionScoreFilter", "video_motion_score_filter", {}, "videos", vids),
        ("VideoMotionScoreFilter", "video_motion_score_filter",
         {"size": 40, "relative": True, "sampling_fps": 5, "min_score": 0.01}, "videos", vids),
        ("VideoMotionScoreFilter", "video_motion_score_filter",
         {"max_size": 60, "divisible": 4}, "videos", vids),
        ("VideoMotionScoreFilter", "video_motion_score_filter", {"sampling_fps": 30}, "videos",
         vids),
    ]
    # (Data-Juicer's image_deduplicator cannot run there: imagededup imports torchvision, whose
    # build does not match that virtualenv's torch; tests/test_ops_dj_parity.py checks hashes)
    dedups = [("VideoDeduplicator", "video_deduplicator", {}, "videos",
               vids + [[media["moving_copy"]]])]
    frames = [(media["moving"], n) for n in (1, 2, 3, 7)] + [(media["tall"], 4)]
    dj_kw = lambda kw: {**kw, "video_backend": "av"} if "min_duration" in kw else kw  # noqa: E731
    rescale = [(w, h, lo, hi, st) for w, h in ((48, 96), (200, 20), (33, 100), (101, 7))
               for lo, hi in (("9/16", "16/9"), ("1/3", "2/1")) for st in ("increase", "decrease")
               if Fraction(lo) > Fraction(w, h) or Fraction(w, h) > Fraction(hi)]
    job = {"filters": [(c, dj_kw(kw), f, rows) for c, _, kw, f, rows in filters],
           "dedups": [(c, kw, f, rows) for c, _, kw, f, rows in dedups],
           "frames": frames, "rescale": rescale}
    env_ = dict(os.environ, PYTHONPATH=str(dj_extra))
    r = subprocess.run([str(DJ_PYTHON), "-c", DJ_SCRIPT], input=json.dumps(job), text=True,
                       capture_output=True, env=env_, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    dj = json.loads(r.stdout.split("@@", 1)[1])
    for (_, name, kw, field, rows), theirs in zip(filters, dj["stats"]):
        op, s, keep = run_filter(name, field, rows, **kw)
        for i, (dj_stats, dj_keep) in enumerate(theirs):
            assert keep[i] == dj_keep, (name, kw, i)
            for key, value in dj_stats.items():
                assert np.allclose(np.asarray(s[key][i], dtype=float), np.asarray(value, dtype=float),
                                   rtol=1e-9, atol=1e-9), (name, kw, i, key, s[key][i], value)
    for (_, name, kw, field, rows), theirs in zip(dedups, dj["hashes"]):
        op = get_op_class(name)(**kw)
        assert op.hash_batch(TextViews([""] * len(rows), {field: rows})) == theirs, (name, kw)
    from sandbox.ops.video.mappers import rescaled_for_ratio

    assert dj["rescale"] and dj["rescale"] == [
        list(rescaled_for_ratio(w, h, Fraction(lo), Fraction(hi), st))
        for w, h, lo, hi, st in rescale]
    for (path, n), theirs in zip(frames, dj["frames"]):
        ours = [np.asarray(f).tolist() for f in sample_frames(path, n)]
        assert ours == theirs, (path, n)


# ------------------------------------------------------------------------------ media mappers
def test_resized_resolution_is_data_juicers_arithmetic():
    from sandbox.ops.video.mappers import resized_resolution

    assert resized_resolution(96, 64, 1, 48, 1, 10**9, "disable", 2) == (48, 32)
    assert resized_resolution(96, 64, 1, 10**9, 100, 10**9, "disable", 2) == (150, 100)
    assert resized_resolution(100, 30, 1, 64, 1, 64, "decrease", 4) == (64, 20)
    assert resized_resolution(33, 33, 40, 10**9, 1, 10**9, "increase", 4) == (40, 40)


def test_video_resize_resolution_mapper_writes_new_videos(media, tmp_path):
    op = get_op_class("video_resize_resolution_mapper")(max_width=48, save_dir=str(tmp_path))
    rows = [[media["moving"], media["tall"]], None, media["moving"], [media["bad_vid"]]]
    texts, fields = op.process_fields(TextViews(["a", "b", "c", "d"], {"videos": rows}))
    assert texts == ["a", "b", "c", "d"] and list(fields) == ["videos"]
    new = fields["videos"]
    assert new[0][1] == media["tall"] and new[1] is None and new[3] == [media["bad_vid"]]
    assert new[2] == new[0][0] and Path(new[2]).parent == tmp_path  # a single path stays one
    assert Path(new[2]).name.startswith("moving__dj_hash_#") and new[2].endswith("#.mp4")
    info = video_info(new[2])
    assert (info.width, info.height, info.frames, info.fps) == (48, 32, 20, 10.0)
    again = op.process_fields(TextViews(["c"], {"videos": [media["moving"]]}))[1]["videos"]
    assert again == [new[2]]  # the same parameters name the same file


def test_video_resize_aspect_ratio_mapper(media, tmp_path):
    from fractions import Fraction

    from sandbox.ops.video.mappers import rescaled_for_ratio

    lo, hi = Fraction(9, 16), Fraction(16, 9)
    assert rescaled_for_ratio(48, 96, lo, hi, "increase") == (54, 96)  # ceil(96 * 9/16) = 54
    assert rescaled_for_ratio(48, 96, lo, hi, "decrease") == (48, 84)  # floor(85.3) -> even
    assert rescaled_for_ratio(200, 20, lo, hi, "increase") == (200, 114)  # ceil(112.5) -> even
    assert rescaled_for_ratio(200, 20, lo, hi, "decrease") == (34, 20)
    op = get_op_class("video_resize_aspect_ratio_mapper")(min_ratio="9:16", save_dir=str(tmp_path))
    rows = [[media["tall"], media["moving"]]]
    new = op.process_fields(TextViews(["x"], {"videos": rows}))[1]["videos"][0]
    assert new[1] == media["moving"] and Path(new[0]).parent == tmp_path  # 3:2 is in range
    info = video_info(new[0])
    assert (info.width, info.height, info.frames, info.fps) == (54, 96, 25, 25.0)


def test_video_extract_frames_mapper(media, tmp_path):
    op = get_op_class("video_extract_frames_mapper")(
        frame_sampling_method="uniform", frame_num=3, frame_dir=str(tmp_path / "frames"))
    vid = "<__dj__video>"
    texts = [f"{vid} moving <|__dj__eoc|> {vid} tall", f"{vid} only the first",
             "no token", f"{vid} broken"]
    rows = [[media["moving"], media["tall"]], [media["moving"], media["short"]],
            [media["moving"]], [media["bad_vid"]]]
    out, fields = op.process_fields(TextViews(texts, {"videos": rows}))
    frames = fields["video_frames"]
    assert out == texts and op.output_fields() == ("video_frames",)
    assert [len(f) for f in frames[0]] == [3, 3] and frames[1][1] == [] and frames[2] == [[]]
    assert frames[3] == [[]]
    assert frames[0][0] == [str(tmp_path / "frames" / "moving" / f"frame_{i}.jpg") for i in range(3)]
    saved = np.asarray(Image.open(frames[0][0][0]), dtype=float)  # a JPEG of frame 0
    want = [np.asarray(f, dtype=float) for f in sample_frames(media["moving"], 3)]
    assert np.abs(saved - want[0]).mean() < 0.5 * np.abs(saved - want[1]).mean()
    keyframes = get_op_class("video_extract_frames_mapper")(output_format="bytes",
                                                           legacy_split_by_text_token=False)
    got = keyframes.process_fields(TextViews(["x"], {"videos": [[media["moving"]]]}))[1]
    assert len(got["video_frames"][0][0]) == 1  # one key frame (x264's first) in 20 frames
    assert Image.open(__import__("io").BytesIO(got["video_frames"][0][0][0])).size == (96, 64)
    with pytest.raises(ValueError, match="frame_dir"):
        get_op_class("video_extract_frames_mapper")()


ENGINE_WRITES_FIELDS = "output_fields" in vars(__import__("sandbox.ops.base").ops.base.Mapper)


@pytest.mark.slow
@pytest.mark.skipif(not ENGINE_WRITES_FIELDS, reason="the engine does not write mapper fields")
def test_media_mappers_through_the_process_pipeline(media, tmp_path):
    from conftest import compose

    from sandbox import run

    pool = write_jsonl(tmp_path / "pool.jsonl", [
        {"text": "<__dj__video> moving", "videos": [media["moving"]]},
        {"text": "<__dj__video> tall", "videos": [media["tall"]]},
        {"text": "<__dj__video> static", "videos": [media["static"]]},
    ])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "process:\n"
        f"  - video_resize_resolution_mapper: {{max_width: 48, save_dir: {tmp_path / 'small'}}}\n"
        f"  - video_extract_frames_mapper: {{frame_sampling_method: uniform, frame_num: 4,"
        f" frame_dir: {tmp_path / 'frames'}, frame_field: frames}}\n"
        "  - video_resolution_filter: {max_width: 48}\n"
        "  - video_motion_score_filter: {frame_field: frames, original_fps: 2, min_score: 0.5}\n")
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={pool}", "recipe=dj",
                   f"recipe.path={recipe}", "tracking=none", "progress=false", "num_proc=1"])
    run(cfg, run_dir=tmp_path / "run")
    out = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]["process"]["outputs"]
    kept = pq.read_table(out["dataset"]).to_pylist()
    dropped = pq.read_table(out["dropped"]).to_pylist()
    assert [r["text"] for r in kept] == ["<__dj__video> moving"]
    assert Path(kept[0]["videos"][0]).parent == tmp_path / "small"  # the resized copy
    assert video_info(kept[0]["videos"][0]).width == 48
    assert [len(f) for f in kept[0]["frames"]] == [4]  # a new field, one list per video
    assert [(r["text"], r["dropped_by"]) for r in dropped] == [
        ("<__dj__video> tall", "video_motion_score_filter"),
        ("<__dj__video> static", "video_motion_score_filter")]
    assert dropped[0]["videos"] == [media["tall"]]  # 48 wide already: not re-encoded
