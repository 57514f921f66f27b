"""Media paths (``images`` / ``videos`` / ``audios``, Data-Juicer's format) travel with the
samples: relative paths are made absolute against the pool file's directory at load, and made
relative again for an export, so an exported jsonl next to its media reads back the same."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.data import stream
from sandbox.data.media import MEDIA_KEYS, media_base_dir, relativize_media, resolve_media
from sandbox.steps.base import StepEnv
from sandbox.steps.data.load import FilePool, HFDiskPool

RECORDS = [
    {"text": "a cat", "images": ["img/a.png"], "videos": "clips/a.mp4"},
    {"text": "two", "images": ["/abs/b.png", "http://example.org/c.png"], "videos": None},
    {"text": "none", "images": [], "videos": "../shared/d.mp4"},
    {"text": "null", "images": None, "videos": ""},
]


def expected(base: Path) -> list[dict]:
    return [
        {"text": "a cat", "images": [f"{base}/img/a.png"], "videos": f"{base}/clips/a.mp4"},
        {"text": "two", "images": ["/abs/b.png", "http://example.org/c.png"], "videos": None},
        {"text": "none", "images": [], "videos": f"{base}/../shared/d.mp4"},
        {"text": "null", "images": None, "videos": ""},
    ]


def env(tmp_path: Path, name: str = "load") -> StepEnv:
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=workdir, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                   show_progress=False)


def write_pool(folder: Path, fmt: str, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pool.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(records), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    return path


def loaded(out: dict) -> list[dict]:
    return pq.read_table(out["dataset"]).to_pylist()


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet"])
def test_file_pool_makes_media_paths_absolute_against_the_pool_file(tmp_path, monkeypatch, fmt,
                                                                    streamed):
    if streamed:
        monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    write_pool(tmp_path / "data", fmt, RECORDS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a relative pool path: its directory counts, not the cwd
    out = FilePool(path=f"../data/pool.{fmt}").run(env(tmp_path))
    assert loaded(out) == expected(tmp_path / "data")


def test_csv_pool_resolves_a_single_path_per_sample(tmp_path):
    path = tmp_path / "data" / "pool.csv"
    path.parent.mkdir()
    path.write_text("text,images\nfirst,img/a.png\nsecond,/abs/b.png\n", encoding="utf-8")
    out = FilePool(path=str(path)).run(env(tmp_path))
    assert [r["images"] for r in loaded(out)] == [f"{path.parent}/img/a.png", "/abs/b.png"]


def test_skipping_bad_records_still_resolves_media(tmp_path):
    path = write_pool(tmp_path / "data", "jsonl", RECORDS)
    with open(path, "a", encoding="utf-8") as f:
        f.write("{oops\n")
    out = FilePool(path=str(path), on_bad_record="skip").run(env(tmp_path))
    assert out["rejected"] == 1
    assert loaded(out) == expected(tmp_path / "data")


def test_hf_disk_pool_resolves_against_the_dataset_directory(tmp_path):
    datasets = pytest.importorskip("datasets")

    saved = tmp_path / "saved"
    datasets.Dataset.from_list(RECORDS[:2]).save_to_disk(str(saved))
    out = HFDiskPool(path=str(saved)).run(env(tmp_path))
    assert loaded(out) == expected(saved)[:2]


def test_relativize_inverts_resolve_and_an_export_reads_back(tmp_path):
    table = pa.Table.from_pylist(RECORDS)
    absolute = resolve_media(table, tmp_path / "data")
    assert absolute.to_pylist() == expected(tmp_path / "data")
    assert relativize_media(absolute, tmp_path / "data").equals(table)
    # exported elsewhere: paths outside the export's directory stay absolute ...
    moved = relativize_media(absolute, tmp_path / "export")
    assert moved.to_pylist() == absolute.to_pylist()
    # ... and a jsonl written beside its media loads back to the same absolute paths
    export = write_pool(tmp_path / "export", "jsonl",
                        relativize_media(absolute, tmp_path / "data").to_pylist())
    assert loaded(FilePool(path=str(export)).run(env(tmp_path))) == expected(tmp_path / "export")


def test_types_that_hold_no_paths_are_left_alone(tmp_path):
    table = pa.table({
        "text": ["a", "b"],
        "images": pa.array([[], []], pa.list_(pa.null())),  # every list empty in the file
        "videos": pa.array([{"path": "v.mp4", "bytes": None}] * 2),  # a datasets Video struct
        "audios": pa.array(["a.wav", "b.wav"], pa.large_string()),
    })
    got = resolve_media(table.slice(1), tmp_path)
    assert got.schema == table.schema
    assert got.column("images").equals(table.slice(1).column("images"))
    assert got.column("videos").equals(table.slice(1).column("videos"))
    assert got.column("audios").to_pylist() == [f"{tmp_path}/b.wav"]
    assert "audios" in MEDIA_KEYS


def test_text_only_pools_are_untouched(tmp_path):
    table = pa.table({"text": ["a", "b"], "meta": ["img/a.png", "x"]})
    assert resolve_media(table, tmp_path) is table  # no media column: nothing done at all
    assert relativize_media(table, tmp_path) is table
    assert media_base_dir(tmp_path) == tmp_path and media_base_dir(tmp_path / "f.jsonl") == tmp_path


def test_streamed_pools_with_media_are_fingerprinted_by_their_directory(tmp_path, monkeypatch):
    """Equal files in two directories name different media files: their pools must not share a
    stats-cache entry (text-only copies do, see test_engine_stream)."""
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 0)
    a = write_pool(tmp_path / "a", "jsonl", RECORDS)
    b = write_pool(tmp_path / "b", "jsonl", RECORDS)
    first = FilePool(path=str(a)).run(env(tmp_path, "load_a"))["fingerprint"]
    assert FilePool(path=str(b)).run(env(tmp_path, "load_b"))["fingerprint"] != first
    assert FilePool(path=str(a)).run(env(tmp_path, "load_c"))["fingerprint"] == first
