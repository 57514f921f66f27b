"""An infer backend as a step's config names it (``backend`` + ``backend_params``), the torch
threads it runs with, and prompt templates filled from a row: what the steps that talk to a model
themselves (the LLM judge, the prompt steps) share."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sandbox.errors import ConfigError
from sandbox.infer import backends
from sandbox.threads import parse_threads, torch_threads


def make_backend(kind: str, params: dict, seed: int | None, cache_dir: Path | None,
                 where: str):
    """An infer backend (``sandbox.infer.backends``) of ``kind`` hf | api | vllm built from
    ``params`` (the keys of conf/infer/<kind>.yaml that the backend takes)."""
    params = dict(params or {})
    try:
        if kind == "hf":
            return backends.HFBackend(cache_dir=cache_dir, **params)
        if kind == "api":
            return backends.APIBackend(seed=seed, **params)
        if kind == "vllm":
            backends.VLLMBackend.check_installed()
            return backends.VLLMBackend(seed=42 if seed is None else seed, cache_dir=cache_dir,
                                        **params)
    except TypeError as e:
        raise ConfigError(f"{where}.backend_params: {e}. See conf/infer/{kind}.yaml for the keys "
                          f"a {kind} backend takes.") from None
    raise ConfigError(f"{where}.backend={kind!r}: use hf (transformers, the default model), api "
                      f"(an OpenAI-compatible server) or vllm.")


def backend_threads(kind: str, num_threads: Any, key: str):
    """torch threads for a local transformers backend; nothing for the others."""
    if kind != "hf":
        return contextlib.nullcontext()

    return torch_threads(parse_threads(num_threads, key), key)


def fill(template: str, values: dict[str, Any]) -> str:
    """``template`` with each ``{name}`` of ``values`` replaced (other braces are left alone, so a
    rubric may contain JSON or code)."""
    out = template
    for k, v in values.items():
        out = out.replace("{" + k + "}", str(v))
    return out
