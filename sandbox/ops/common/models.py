"""Loading the Hugging Face tokenizers of the OPs that count tokens (``token_num_filter``):
offline only, one copy per process.
"""
from __future__ import annotations

from typing import Any

from sandbox.assets import AssetMissing

_TOKENIZERS: dict[str, Any] = {}


def load_tokenizer(name_or_path: str, op: str):
    """A Hugging Face tokenizer from a local directory or the local HF cache, never the hub."""
    if name_or_path not in _TOKENIZERS:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            _TOKENIZERS[name_or_path] = AutoTokenizer.from_pretrained(name_or_path,
                                                                      local_files_only=True)
        except Exception as e:
            raise AssetMissing(
                f"{op}: tokenizer {name_or_path!r} is not available offline ({type(e).__name__}). "
                f"Give hf_tokenizer=PATH to a local tokenizer directory (one holding "
                f"tokenizer.json or tokenizer_config.json, e.g. a trained model's dir such as "
                f"outputs/.../train/model), or put that hub tokenizer in the local Hugging Face "
                f"cache first (HF_HOME)."
            ) from None
        finally:
            hf_logging.set_verbosity(verbosity)
    return _TOKENIZERS[name_or_path]
