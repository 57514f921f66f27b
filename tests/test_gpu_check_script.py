"""bench/gpu_check.sh, the checks a GPU machine runs, here without one: it parses, and in its
``--cfg`` mode every command it would run composes (``python -m sandbox ... --cfg job``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def test_the_script_parses():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_command_composes(tmp_path):
    missing = [f"{group}/{name}" for group, name in (("trainer", "gpt2"), ("trainer", "clip"),
                                                    ("evaluator", "lm"))
               if "device" not in yaml.safe_load((ROOT / "conf" / group / f"{name}.yaml")
                                                 .read_text())]
    if missing:
        pytest.skip(f"the script passes trainer.device / evaluator.device, which "
                    f"{', '.join(missing)} do not have yet")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(["bash", str(SCRIPT), "--cfg"], capture_output=True, text=True,
                          env=env, timeout=300)
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines] == [
        "text_trainer", "clip_trainer", "infer_hf", "vbench_temporal_flickering"]
    assert done.returncode == 0 and all(line.startswith("ok") for line in lines), done.stdout
    job = (tmp_path / "text_trainer.log").read_text()
    assert yaml.safe_load(job)["trainer"]["device"] == "cuda"
