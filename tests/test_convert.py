"""Format conversions (sandbox.steps.external.formats): Data-Juicer pools <-> EasyAnimate, InternVL COCO
caption, VBench info files, on small real files; and the conf/convert options composing and
planning inside a pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import StepEnv
from sandbox.steps.external.formats import (CocoCaptionMeta, CocoCaptionToDj, DjToCocoCaption,
                                            DjToEasyAnimate, PromptsToVbenchInfo)
from tests.conftest import CONF_DIR, read_jsonl


def step_env(tmp_path: Path, name: str = "convert") -> StepEnv:
    work = tmp_path / "run" / name
    work.mkdir(parents=True)
    return StepEnv(name=name, workdir=work, run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def video_pool(tmp_path) -> Path:
    """A Data-Juicer video pool next to its clips: relative paths, an absolute one, and the
    records a conversion must not take silently (no video, only tokens, a missing file)."""
    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    for n in ("a.mp4", "b.mp4"):
        (data / "clips" / n).write_bytes(b"\0")
    other = tmp_path / "elsewhere" / "c.mp4"
    other.parent.mkdir()
    other.write_bytes(b"\0")
    return write_jsonl(data / "pool.jsonl", [
        {"videos": ["clips/a.mp4"], "text": "<__dj__video> a cat runs <|__dj__eoc|>", "id": 1,
         "__dj__stats__": {"video_duration": [3.5]}},
        {"videos": [str(other)], "text": "<__dj__video>  two dogs\nplay <|__dj__eoc|>", "id": 2},
        {"videos": [], "text": "<__dj__video> nothing here", "id": 3},
        {"text": "no video key", "id": 4},
        {"videos": ["clips/b.mp4"], "text": "<__dj__video> <|__dj__eoc|>", "id": 5},
        {"videos": ["clips/missing.mp4"], "text": "<__dj__video> gone", "id": 6},
    ])


def test_dj_to_easyanimate_writes_a_json_array_and_lists_every_skipped_record(tmp_path,
                                                                             video_pool):
    env = step_env(tmp_path)
    out = DjToEasyAnimate().run(env, dataset=str(video_pool))
    path = Path(out["dataset"])
    assert path.name == "pool_ea_fmt.json" and path.parent == env.workdir
    records = json.loads(path.read_text())  # EasyAnimate calls json.load: one JSON array
    assert isinstance(records, list) and [r["id"] for r in records] == [1, 2]
    first, second = records
    clip_a = str((video_pool.parent / "clips" / "a.mp4").resolve())
    assert first["file_path"] == clip_a and first["videos"] == [clip_a]
    assert first["text"] == "a cat runs" and first["type"] == "video"
    assert first["__dj__stats__"] == {"video_duration": [3.5]}  # other fields kept
    assert second["text"] == "two dogs play"
    assert second["file_path"] == str(tmp_path / "elsewhere" / "c.mp4")

    skipped = read_jsonl(out["skipped"])
    assert [s["raw"]["id"] for s in skipped] == [3, 4, 5, 6]
    reasons = [s["reason"] for s in skipped]
    assert reasons[0].startswith("no video") and reasons[1].startswith("no video")
    assert reasons[2].startswith("empty caption")
    assert reasons[3].startswith("video file not found") and "missing.mp4" in reasons[3]
    assert skipped[0]["record"] == "line 3" and skipped[0]["file"] == str(video_pool)
    assert out["metrics"] == {"convert/records": 6.0, "convert/converted": 2.0,
                              "convert/skipped": 4.0}
    assert out["pools"] == [{"name": "pool", "dataset": str(path), "size": 2}]


def test_dj_to_easyanimate_relative_to_video_root_and_from_parquet_pools(tmp_path, video_pool):
    data = video_pool.parent
    table = pa.Table.from_pylist([
        {"videos": [str(data / "clips" / "a.mp4")], "text": "<__dj__video> a", "__row__": 0},
        {"videos": [str(data / "clips" / "b.mp4")], "text": "<__dj__video> b", "__row__": 1}])
    pq.write_table(table, tmp_path / "p.parquet")
    pools = [{"name": "text_len.high", "dataset": str(tmp_path / "p.parquet"), "size": 2},
             {"name": "random", "dataset": str(tmp_path / "p.parquet"), "size": 2}]
    out = DjToEasyAnimate(video_root=str(data)).run(step_env(tmp_path), dataset=pools)
    assert [Path(p).name for p in out["dataset"]] == ["text_len.high_ea_fmt.json",
                                                      "random_ea_fmt.json"]
    records = json.loads(Path(out["dataset"][0]).read_text())
    assert [r["file_path"] for r in records] == ["clips/a.mp4", "clips/b.mp4"]
    assert all("__row__" not in r for r in records)
    assert [p["name"] for p in out["pools"]] == ["text_len.high", "random"]


def test_dj_to_easyanimate_writes_videos_whatever_the_pools_video_key(tmp_path, video_pool):
    """The patched VideoDataset reads `videos[0]`: a pool with its videos under another key
    still gives EasyAnimate a `videos` field."""
    clip = str(video_pool.parent / "clips" / "a.mp4")
    pool = write_jsonl(tmp_path / "clips.jsonl", [{"clips": [clip], "text": "a cat"}])
    out = DjToEasyAnimate(video_key="clips").run(step_env(tmp_path), dataset=str(pool))
    record, = json.loads(Path(out["dataset"]).read_text())
    assert record["videos"] == [clip] == record["clips"] and record["file_path"] == clip


def test_dj_to_easyanimate_with_nothing_convertible_fails_naming_the_skip_list(tmp_path):
    pool = write_jsonl(tmp_path / "p.jsonl", [{"videos": [], "text": "x"}])
    with pytest.raises(DataError, match="skipped.jsonl"):
        DjToEasyAnimate().run(step_env(tmp_path), dataset=str(pool))


INTERNVL = [
    {"id": 0, "image": "train2014/COCO_train2014_000000000009.jpg",
     "conversations": [{"from": "human", "value": "<image>\nProvide a one-sentence caption."},
                       {"from": "gpt", "value": "A plate of food with broccoli."}]},
    {"id": 1, "image": "train2014/COCO_train2014_000000000025.jpg",
     "conversations": [{"from": "human", "value": "<image>\nProvide a one-sentence caption."},
                       {"from": "gpt", "value": "A giraffe eating leaves."}]},
    {"id": 2, "image": "train2014/x.jpg", "conversations": [{"from": "human", "value": "hi"}]},
]


def test_coco_caption_round_trip_through_data_juicer_format(tmp_path):
    src = write_jsonl(tmp_path / "coco_karpathy_train.jsonl", INTERNVL)
    to_dj = CocoCaptionToDj().run(step_env(tmp_path, "to_dj"), dataset=str(src))
    dj = read_jsonl(to_dj["dataset"])
    assert Path(to_dj["dataset"]).name == "coco_karpathy_train_dj_fmt.jsonl"
    assert dj[0]["images"] == ["train2014/COCO_train2014_000000000009.jpg"]
    assert dj[0]["text"] == "<__dj__image> A plate of food with broccoli."
    assert to_dj["metrics"]["to_dj/skipped"] == 1.0  # the record without an answer
    assert read_jsonl(to_dj["skipped"])[0]["reason"].startswith("no caption")

    back = DjToCocoCaption().run(step_env(tmp_path, "to_coco"), dataset=to_dj["dataset"])
    assert read_jsonl(back["dataset"]) == INTERNVL[:2]  # the records come back unchanged


def test_dj_to_coco_caption_builds_the_conversation_and_splits_chunks(tmp_path):
    img = tmp_path / "coco" / "val" / "a.jpg"
    pool = write_jsonl(tmp_path / "pool.jsonl", [
        {"images": [str(img)], "text": "<__dj__image> A red bus. <|__dj__eoc|>"},
        {"images": ["b.jpg", "c.jpg"],
         "text": "<__dj__image> first <|__dj__eoc|> <__dj__image> second <|__dj__eoc|>"},
    ])
    out = DjToCocoCaption(image_root=str(tmp_path / "coco"), prompt="Describe it.").run(
        step_env(tmp_path), dataset=str(pool))
    rows = read_jsonl(out["dataset"])
    assert rows[0] == {"id": 0, "image": "val/a.jpg", "conversations": [
        {"from": "human", "value": "<image>\nDescribe it."},
        {"from": "gpt", "value": "A red bus."}]}
    assert [(r["image"], r["conversations"][1]["value"]) for r in rows[1:]] == [
        ("b.jpg", "first"), ("c.jpg", "second")]


def test_coco_caption_meta_is_internvl_format_and_checks_its_input(tmp_path):
    root = tmp_path / "InternVL" / "internvl_chat"
    ann = write_jsonl(root / "data" / "coco" / "annotations" / "train_part.jsonl", INTERNVL)
    out = CocoCaptionMeta(data_root=str(root)).run(step_env(tmp_path), dataset=[str(ann)])
    meta = json.loads(Path(out["dataset"][0]).read_text())
    assert meta == {"train_part": {"root": "data/coco/",
                                   "annotation": "data/coco/annotations/train_part.jsonl",
                                   "data_augment": False, "repeat_time": 1, "length": 3}}
    assert Path(out["dataset"][0]).name == "train_part_meta.json"

    dj = write_jsonl(tmp_path / "dj.jsonl", [{"images": ["a.jpg"], "text": "x"}])
    with pytest.raises(DataError, match="dj_to_coco_caption"):
        CocoCaptionMeta().run(step_env(tmp_path, "m2"), dataset=str(dj))
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"image": "a.jpg"}]), parquet)
    with pytest.raises(DataError, match=r"\.jsonl"):
        CocoCaptionMeta().run(step_env(tmp_path, "m3"), dataset=str(parquet))


def test_prompts_to_vbench_info_skips_prompts_that_cannot_name_a_video(tmp_path):
    pool = write_jsonl(tmp_path / "prompts.jsonl", [
        {"text": "a cat playing piano"}, {"text": "a cat playing piano"},
        {"text": "left/right"}, {"text": "x" * 260}, {"text": "  a red car  "}])
    out = PromptsToVbenchInfo(dimensions=["temporal_flickering", "subject_consistency"]).run(
        step_env(tmp_path), dataset=str(pool))
    info = json.loads(Path(out["dataset"]).read_text())
    assert info == [{"prompt_en": "a cat playing piano",
                     "dimension": ["temporal_flickering", "subject_consistency"]},
                    {"prompt_en": "a red car",
                     "dimension": ["temporal_flickering", "subject_consistency"]}]
    assert [s["reason"].split(":")[0] for s in read_jsonl(out["skipped"])] == [
        "duplicate prompt", "prompt contains '/'", "prompt too long"]
    with pytest.raises(ConfigError, match="auxiliary_info"):
        PromptsToVbenchInfo(dimensions=["color"])


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("option", ["dj_to_easyanimate", "coco_caption_to_dj",
                                    "dj_to_coco_caption", "coco_caption_meta",
                                    "prompts_to_vbench_info"])
def test_every_conversion_option_composes_and_instantiates(option):
    cfg = _compose([f"+convert={option}"])
    step = instantiate(OmegaConf.to_container(cfg.convert, resolve=True))
    assert step.outputs == ("dataset", "pools", "metrics", "skipped")


def test_a_conversion_step_runs_in_a_pipeline(tmp_path, video_pool):
    """pipeline=process, then the conversion reads the processed pool (Parquet, absolute media
    paths): the plan checks its wiring, the run writes EasyAnimate's file."""
    from sandbox.runner import run

    overrides = [
        "pipeline=process", "data_pool=jsonl", f"data_pool.path={video_pool}", "recipe=none",
        "data_pool.check_media=false",  # the pool's missing clip is the conversion's to list
        "+convert=dj_to_easyanimate", "tracking=none", f"hydra.run.dir={tmp_path / 'out'}",
        "+pipeline.steps.to_ea.component=${convert}",
        "+pipeline.steps.to_ea.inputs.dataset=${ctx:process.dataset}"]
    cfg = _compose(overrides)
    run(cfg, run_dir=tmp_path / "out")
    ctx = json.loads((tmp_path / "out" / "context.json").read_text())
    out = ctx["steps"]["to_ea"]["outputs"]
    records = json.loads(Path(out["dataset"]).read_text())
    assert [r["text"] for r in records] == ["a cat runs", "two dogs play"]
    assert out["metrics"]["to_ea/skipped"] == 4.0
