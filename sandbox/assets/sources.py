"""Where Data-Juicer keeps and gets its assets: file names, cache folders and public URLs.

These are facts about Data-Juicer (py-data-juicer 1.6.1), so that a cache prepared for it works
here unchanged and a download fetches the very same files:

* model files (``lid.176.bin``, ``{lang}.sp.model``, ``{lang}.arpa.bin``, ``punkt.{lang}.pickle``)
  live in ``$DATA_JUICER_MODELS_CACHE`` (default ``$DATA_JUICER_CACHE_HOME/models``, itself
  ``$CACHE_HOME/data_juicer`` or ``~/.cache/data_juicer``), and also in the folders of
  ``$DATA_JUICER_EXTERNAL_MODELS_HOME`` (``os.pathsep``-separated), under the same names;
* word lists (``*stopwords*.json``, ``*flagged_words*.json`` shaped ``{lang: [words]}``) live in
  ``$DATA_JUICER_ASSETS_CACHE`` (default ``$DATA_JUICER_CACHE_HOME/assets``);
* Hugging Face models are looked up as ``$DATA_JUICER_EXTERNAL_MODELS_HOME/<repo id>`` before the
  Hugging Face cache.

Data-Juicer downloads a missing model from its own bucket and falls back to a backup URL per file
pattern; neither publishes checksums, so a download is checked against what the server says (its
length, and the sha256 that Hugging Face sends for large files) and recorded in the sandbox's
manifest (``python -m sandbox.assets list``).
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

# Data-Juicer's environment variables (data_juicer/utils/cache_utils.py)
CACHE_HOME = "CACHE_HOME"
DJ_CACHE_HOME = "DATA_JUICER_CACHE_HOME"
DJ_MODELS_CACHE = "DATA_JUICER_MODELS_CACHE"
DJ_ASSETS_CACHE = "DATA_JUICER_ASSETS_CACHE"
DJ_EXTERNAL_MODELS_HOME = "DATA_JUICER_EXTERNAL_MODELS_HOME"

# Data-Juicer's download locations (data_juicer/utils/model_utils.py, asset_utils.py)
DJ_BUCKET = "https://dail-wlcb.oss-cn-wulanchabu.aliyuncs.com/data_juicer/"
DJ_MODEL_LINKS = DJ_BUCKET + "models/"
DJ_BACKUP_MODEL_LINKS = {
    "lid.176.bin": "https://dl.fbaipublicfiles.com/fasttext/supervised-models/",
    "*.sp.model": "https://huggingface.co/edugp/kenlm/resolve/main/wikipedia/",
    "*.arpa.bin": "https://huggingface.co/edugp/kenlm/resolve/main/wikipedia/",
    "punkt.*.pickle": DJ_MODEL_LINKS,
}
DJ_WORDS_LINKS = {
    "flagged_words": DJ_BUCKET + "flagged_words.json",
    "stopwords": DJ_BUCKET + "stopwords.json",
}
HF_HUB = "https://huggingface.co/"
# the tokenizer files fetched for a Hugging Face repo id (never the weights)
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def dj_cache_home() -> Path:
    base = os.environ.get(CACHE_HOME) or "~/.cache"
    return Path(os.environ.get(DJ_CACHE_HOME) or os.path.join(base, "data_juicer")).expanduser()


def dj_models_dirs() -> list[tuple[Path, str]]:
    """Data-Juicer's model folders, in the order it looks: ``(folder, how it is named)``."""
    out: list[tuple[Path, str]] = []
    for part in (os.environ.get(DJ_EXTERNAL_MODELS_HOME) or "").split(os.pathsep):
        if part.strip():
            out.append((Path(part.strip()).expanduser(), f"${DJ_EXTERNAL_MODELS_HOME}"))
    if os.environ.get(DJ_MODELS_CACHE):
        out.append((Path(os.environ[DJ_MODELS_CACHE]).expanduser(), f"${DJ_MODELS_CACHE}"))
    default = dj_cache_home() / "models"
    if all(default != d for d, _ in out):
        out.append((default, "Data-Juicer's default model cache"))
    return out


def dj_assets_dirs() -> list[tuple[Path, str]]:
    """Data-Juicer's word-list folders: ``$DATA_JUICER_ASSETS_CACHE``, then its default."""
    out: list[tuple[Path, str]] = []
    if os.environ.get(DJ_ASSETS_CACHE):
        out.append((Path(os.environ[DJ_ASSETS_CACHE]).expanduser(), f"${DJ_ASSETS_CACHE}"))
    default = dj_cache_home() / "assets"
    if all(default != d for d, _ in out):
        out.append((default, "Data-Juicer's default assets cache"))
    return out


def model_urls(name: str) -> list[str]:
    """Data-Juicer's download URLs for model file ``name``: its bucket, then the backup."""
    urls = [DJ_MODEL_LINKS + name]
    for pattern, base in DJ_BACKUP_MODEL_LINKS.items():
        if fnmatch.fnmatch(name, pattern) and base + name not in urls:
            urls.append(base + name)
            break
    return urls


def hf_urls(repo_id: str, filename: str) -> list[str]:
    return [f"{HF_HUB}{repo_id}/resolve/main/{filename}"]
