"""Which torch device a built-in trainer or evaluator runs on: ``auto`` (CUDA when this process
sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. Asking for CUDA where there is none is a
one-paragraph refusal before any work. On CUDA the forward passes run under bf16 autocast (the
weights and the optimizer stay in float32); on the CPU nothing changes, so CPU results stay
identical to the digit whatever this module decides."""
from __future__ import annotations

import contextlib
import re

from sandbox.errors import ConfigError

DEVICES = "auto | cpu | cuda | cuda:N"


def parse_device(value, key: str) -> str:
    """The config's value checked (not resolved: resolving imports torch)."""
    text = str(value).strip().lower()
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise ConfigError(f"{key}={value!r}: give one of {DEVICES}.")


def resolve_device(spec: str, key: str) -> str:
    """``spec`` (a ``parse_device`` value) as a torch device string; a refusal that names the fix
    when CUDA is asked for and is not there."""
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    if not torch.cuda.is_available():
        build = torch.version.cuda
        why = (f"this torch ({torch.__version__}) is a CPU-only build" if build is None else
               f"torch {torch.__version__} (CUDA {build}) sees no GPU (driver, "
               f"CUDA_VISIBLE_DEVICES)")
        raise ConfigError(
            f"{key}={spec}: CUDA is not available here: {why}. Run with {key}=cpu (or auto, "
            f"which picks CUDA when there is one), or install a CUDA build of torch "
            f"(https://pytorch.org/get-started/locally/) on a machine with an NVIDIA GPU.")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{key}={spec}: this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1}).")
    return spec


def autocast(device: str):
    """bf16 autocast on CUDA; a no-op context on the CPU."""
    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)
