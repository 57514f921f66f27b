"""A step's identity covers the files it reads: a changed script or model dir re-runs the step
on resume instead of being silently reused."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sandbox.runner import run
from sandbox.runner.identity import read_paths, step_identity
from sandbox.steps.base import Step


class ScriptStep(Step):
    """Reads a script and a model dir (as an outside-program step would)."""

    outputs = ("text", "metrics")
    reads = ("script", "model_dir")

    def __init__(self, script: str, model_dir: str):
        self.script, self.model_dir = script, model_dir

    def run(self, env):
        files = sorted(p.name for p in Path(self.model_dir).iterdir())
        text = Path(self.script).read_text() + "|" + ",".join(files)
        return {"text": text, "metrics": {"chars": float(len(text))}}


def config(tmp_path: Path, script: Path, model_dir: Path):
    return OmegaConf.create({
        "cache_dir": str(tmp_path / "cache"), "resume": True, "progress": False,
        "pipeline": {"steps": {"run_script": {"component": {
            "_target_": f"{__name__}.ScriptStep", "script": str(script),
            "model_dir": str(model_dir)}}}}})


def test_read_paths_covers_every_path_key_and_the_named_reads(tmp_path):
    f = tmp_path / "recipe.yaml"
    f.write_text("process: []\n")
    values = {"recipe": {"path": str(f), "ops": {}}, "script": str(f),
              "missing": {"path": str(tmp_path / "nope")}, "other": str(f),
              "files": [str(f), 3]}
    assert read_paths(values, ("script", "files")) == {
        "recipe.path": str(f), "script": str(f), "files[0]": str(f)}


def test_identity_follows_file_and_directory_contents(tmp_path):
    script, model = tmp_path / "train.py", tmp_path / "model"
    script.write_text("print(1)\n")
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 10)
    cfg = {"_target_": "x", "script": str(script), "model_dir": str(model)}
    first = step_identity(ScriptStep, cfg, {}, [], tmp_path / "cache")
    assert step_identity(ScriptStep, cfg, {}, [], tmp_path / "cache") == first
    (model / "weights.bin").write_bytes(b"\x01" * 10)
    second = step_identity(ScriptStep, cfg, {}, [], tmp_path / "cache")
    assert second != first
    script.write_text("print(2)\n")
    assert step_identity(ScriptStep, cfg, {}, [], tmp_path / "cache") != second


def test_a_changed_script_is_rerun_on_resume(tmp_path):
    script, model = tmp_path / "train.py", tmp_path / "model"
    script.write_text("v1")
    model.mkdir()
    (model / "a.bin").write_text("a")
    run_dir = tmp_path / "run"
    assert run(config(tmp_path, script, model), run_dir)["chars"] == len("v1|a.bin")
    script.write_text("version 2")  # same config, new content: must not be "resumed"
    assert run(config(tmp_path, script, model), run_dir)["chars"] == len("version 2|a.bin")
    (model / "b.bin").write_text("b")
    assert run(config(tmp_path, script, model), run_dir)["chars"] == len("version 2|a.bin,b.bin")
