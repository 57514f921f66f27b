"""Finding an asset an operator needs, in Data-Juicer's order plus the sandbox's own cache.

For every asset (a model file such as ``en.sp.model``, a Hugging Face tokenizer, a word list):

1. the explicit path the recipe gives (``model_path=``, ``stopwords_dir=``, ...): used as is, no
   fallback;
2. Data-Juicer's caches, under Data-Juicer's file names (``sandbox.assets.sources``);
3. the sandbox's own cache (``<cache>/models``, ``<cache>/assets``), where ``python -m
   sandbox.assets fetch`` puts what it downloads, and word lists built from PyPI packages;
4. a download from Data-Juicer's public locations into the sandbox's cache, unless downloads
   are off (``SANDBOX_OFFLINE=1``) or the network does not answer.

``resolve`` returns where the asset is and where that came from; ``check`` resolves every asset
of a recipe and raises one ``AssetMissing`` listing all those that cannot be had, with the fetch
command and the folders to copy them to.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

# the package itself, read at call time: it imports this module before defining builtin_words_dir
import sandbox.assets as assets_package
from sandbox import env_vars
from sandbox.assets import sources
from sandbox.assets.download import DownloadError, download
from sandbox.cache import cache_root
from sandbox.console import console
from sandbox.errors import SandboxError
from sandbox.utils import atomic_write_text

_LOCK = threading.Lock()


class AssetMissing(SandboxError, RuntimeError):
    """An operator needs a file that is not available offline; the message says how to provide it."""


@dataclass(frozen=True)
class AssetRef:
    """One asset an OP needs. ``kind``: ``model`` (a file named ``name`` in a model folder),
    ``hf`` (a Hugging Face tokenizer, ``name`` a repo id) or ``words`` (a word list, ``name``
    ``stopwords``/``flagged_words``, needing language ``lang``). ``explicit`` is a path the
    recipe gave in argument ``arg``."""

    kind: str
    name: str
    explicit: str | None = None
    arg: str | None = None
    lang: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "words":
            return f"{self.name} word list ({self.lang})"
        if self.kind == "hf":
            return f"Hugging Face tokenizer {self.name}"
        return self.name


@dataclass(frozen=True)
class Resolved:
    path: Path
    origin: str  # "explicit path", "$DATA_JUICER_MODELS_CACHE", "sandbox cache", "download", ...

    def fingerprint(self) -> str:
        """Path, size and modification time: part of a stats cache key, so that stats computed
        with one file are not reused after another one takes its place."""
        try:
            st = self.path.stat()
            return f"{self.path}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return str(self.path)


def models_dir() -> Path:
    """``<cache root>/models``: model files fetched by the sandbox or put there by the user."""
    return cache_root() / "models"


def assets_dir() -> Path:
    """``<cache root>/assets``: word lists (built from PyPI packages, or Data-Juicer's, fetched)."""
    return cache_root() / "assets"


def downloads_allowed() -> bool:
    return os.environ.get(env_vars.OFFLINE, "").strip().lower() not in ("1", "true", "yes")


# ----------------------------------------------------------------------------- manifest
def manifest_path() -> Path:
    return cache_root() / "assets-manifest.json"


def read_manifest() -> dict:
    try:
        return json.loads(manifest_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _record(path: Path, url: str, sha256: str) -> None:
    with _LOCK:
        m = read_manifest()
        m[str(path)] = {"url": url, "sha256": sha256, "size": path.stat().st_size,
                        "fetched": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(manifest_path(), json.dumps(m, indent=1, sort_keys=True))


def _intact(path: Path) -> bool:
    """Whether ``path``, a file this cache downloaded, is there and still the size the manifest
    recorded. One that is not (cut short by a full disk, a copy, a crash outside the download's
    own checks) is said, deleted and so downloaded again: it is never read as the model."""
    if not path.is_file():
        return False
    recorded = read_manifest().get(str(path), {}).get("size")
    size = path.stat().st_size
    if recorded is None or recorded == size:
        return True
    console.print(f"[yellow]warning:[/] the cached asset {escape(str(path))} is damaged "
                  f"({size} bytes, {recorded} when it was downloaded); it is deleted and "
                  f"downloaded again.", soft_wrap=True)
    path.unlink(missing_ok=True)
    return False


def _fetch_first(urls: list[str], dest: Path, progress: bool, errors: list[str]) -> Path | None:
    for url in urls:
        try:
            digest = download(url, dest, progress=progress)
        except DownloadError as e:
            errors.append(str(e))
            continue
        _record(dest, url, digest)
        return dest
    return None


# ----------------------------------------------------------------------------- models
def resolve(ref: AssetRef, allow_download: bool | None = None, progress: bool = True,
            errors: list[str] | None = None) -> Resolved:
    """Where ``ref`` is (see the module's docstring for the order); ``AssetMissing`` if nowhere."""
    errors = [] if errors is None else errors
    allow = downloads_allowed() if allow_download is None else allow_download
    if ref.kind == "model":
        found = _resolve_model(ref, allow, progress, errors)
    elif ref.kind == "hf":
        found = _resolve_hf(ref, allow, progress, errors)
    elif ref.kind == "words":
        found = _resolve_words(ref, allow, progress, errors)
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown asset kind {ref.kind!r}")
    if found is None:
        raise AssetMissing(missing_paragraph([(ref, [])], errors=errors))
    return found


def _explicit(ref: AssetRef) -> Resolved | None:
    if ref.explicit is None:
        return None
    p = Path(ref.explicit).expanduser()
    ok = p.is_dir() if ref.kind in ("words", "hf") else p.is_file()
    if ok and ref.kind == "words" and not _words_in(p, ref):
        ok = False
    return Resolved(p, f"explicit path ({ref.arg})") if ok else None


def _resolve_model(ref, allow, progress, errors) -> Resolved | None:
    if ref.explicit is not None:
        return _explicit(ref)
    for d, label in sources.dj_models_dirs():
        if (d / ref.name).is_file():
            return Resolved(d / ref.name, label)
    own = models_dir() / ref.name
    if _intact(own):
        return Resolved(own, "sandbox cache")
    if allow and _fetch_first(sources.model_urls(ref.name), own, progress, errors):
        return Resolved(own, "download")
    return None


def _is_tokenizer_dir(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()


def hf_own_dir(repo_id: str) -> Path:
    return models_dir() / "hf" / repo_id


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists() or \
        name.count("/") > 1


def _resolve_hf(ref, allow, progress, errors) -> Resolved | None:
    p = Path(ref.explicit or ref.name).expanduser()
    if p.is_dir() and _is_tokenizer_dir(p):
        return Resolved(p, "explicit path" + (f" ({ref.arg})" if ref.arg else ""))
    if _looks_like_path(ref.explicit or ref.name):
        return None  # a local path that holds no tokenizer: nothing else to try
    for d, label in sources.dj_models_dirs():
        if label == f"${sources.DJ_EXTERNAL_MODELS_HOME}" and _is_tokenizer_dir(d / ref.name):
            return Resolved(d / ref.name, label)
    own = hf_own_dir(ref.name)
    if _is_tokenizer_dir(own):
        return Resolved(own, "sandbox cache")
    cached = _hf_cache_dir(ref.name)
    if cached is not None:
        return Resolved(cached, "Hugging Face cache")
    if allow:
        for f in sources.HF_TOKENIZER_FILES:  # the optional ones may 404: that is fine
            _fetch_first(sources.hf_urls(ref.name, f), own / f, progress, errors)
        if _is_tokenizer_dir(own):
            return Resolved(own, "download")
    return None


def _hf_cache_dir(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache, if its tokenizer is
    there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - comes with transformers
        return None
    for f in ("tokenizer.json", "tokenizer_config.json"):
        try:
            hit = try_to_load_from_cache(repo_id, f)
        except Exception:  # a name that is not a repo id
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


# ----------------------------------------------------------------------------- word lists
def read_words_dir(d: Path, words_type: str) -> dict[str, list[str]]:
    """Data-Juicer's ``load_words_asset`` reading: every ``*.json`` of ``d`` whose name contains
    ``words_type``, lists of the same language concatenated, in ``os.listdir`` order."""
    words: dict[str, list[str]] = {}
    if d.is_dir():
        for name in os.listdir(d):
            if name.endswith(".json") and words_type in name:
                loaded = json.loads((d / name).read_text(encoding="utf-8"))
                for lang, ws in loaded.items():
                    words[lang] = words.get(lang, []) + list(ws)
    return words


def _words_in(d: Path, ref: AssetRef) -> bool:
    lists = read_words_dir(d, ref.name)
    return bool(lists) and (ref.lang in (None, "all") or ref.lang in lists)


def dj_words_own_dir() -> Path:
    """``<cache>/assets/dj``: Data-Juicer's own word lists, as fetched."""
    return assets_dir() / "dj"


def _resolve_words(ref, allow, progress, errors) -> Resolved | None:
    if ref.explicit is not None:
        return _explicit(ref)
    for d, label in sources.dj_assets_dirs():
        if _words_in(d, ref):
            return Resolved(d, label)
    own = dj_words_own_dir()
    if _words_in(own, ref):
        return Resolved(own, "sandbox cache (Data-Juicer's list)")
    built = assets_package.builtin_words_dir(ref.name, ref.lang)  # lists built from PyPI packages
    if built is not None and _words_in(built, ref):
        return Resolved(built, "built-in (PyPI packages)")
    url = sources.DJ_WORDS_LINKS.get(ref.name)
    if allow and url and _fetch_first([url], own / f"{ref.name}.json", progress, errors) \
            and _words_in(own, ref):
        return Resolved(own, "download")
    return None


# ----------------------------------------------------------------------------- a recipe's assets
def where_to_copy(ref: AssetRef) -> str:
    if ref.kind == "words":
        return f"{dj_words_own_dir()} (or ${sources.DJ_ASSETS_CACHE})"
    if ref.kind == "hf":
        return f"{hf_own_dir(ref.name)} (tokenizer.json, tokenizer_config.json)"
    return f"{models_dir()} (or ${sources.DJ_MODELS_CACHE})"


def what_was_tried(errors: list[str], where: str = "") -> str:
    """The sentence of a missing-asset paragraph that says why nothing was downloaded: the
    failed attempts (``where`` they were made), or that downloads are off; else nothing."""
    if errors:
        return (f" Downloading {where}failed ({len(errors)} "
                f"attempt{'s' if len(errors) > 1 else ''}; first: {errors[0]}).")
    if not downloads_allowed():
        return f" Downloads are off ({env_vars.OFFLINE}=1)."
    return ""


def missing_paragraph(missing: list[tuple[AssetRef, list[str]]], source: str = "",
                      fetch_args: str = "", errors: list[str] | None = None) -> str:
    """One paragraph naming every missing asset, who needs it, the fetch command and where to
    copy the files."""
    items = []
    for ref, users in missing:
        who = f" (needed by {', '.join(users)})" if users else ""
        if ref.explicit is not None:
            there = Path(ref.explicit).expanduser().exists()
            what = (f"holds no {ref.name} list for lang={ref.lang!r}" if there and
                    ref.kind == "words" else "holds no tokenizer" if there else "does not exist")
            items.append(f"{ref.label}: {ref.arg}={ref.explicit} {what}{who}")
        elif ref.kind == "hf" and _looks_like_path(ref.name):
            items.append(f"{ref.label}: no tokenizer there; give {ref.arg or 'hf_tokenizer'}=PATH "
                         f"to a local tokenizer directory (tokenizer.json){who}")
        else:
            also = f", or give {ref.arg}=PATH" if ref.arg else ""
            items.append(f"{ref.label} -> copy to {where_to_copy(ref)}{also}{who}")
    n = len(missing)
    head = (f"{source} needs {n} asset{'s' if n > 1 else ''} that "
            f"{'are' if n > 1 else 'is'} not on this machine" if source else
            f"{n} asset{'s are' if n > 1 else ' is'} not on this machine")
    fetch = fetch_args or " ".join(
        f"--op {u} --lang {r.lang}" if r.lang else f"--op {u}"
        for r, us in missing[:1] for u in us[:1]) or "--recipe FILE"
    tried = what_was_tried(errors, "from Data-Juicer's locations ")
    return (f"{head}: {'; '.join(items)}.{tried} Nothing was loaded. On a machine that is online, "
            f"run `python -m sandbox.assets fetch {fetch}` and copy the files it lists (`python -m "
            f"sandbox.assets list`) into the folders named above; a Data-Juicer cache that already "
            f"holds them is read as is (set {sources.DJ_MODELS_CACHE} / {sources.DJ_ASSETS_CACHE}).")


def check(needs: list[tuple[str, AssetRef]], source: str = "", fetch_args: str = "",
          allow_download: bool | None = None, progress: bool = True) -> dict[AssetRef, Resolved]:
    """Resolve every ``(user, ref)``; raise one ``AssetMissing`` listing all that are missing."""
    by_key: dict[tuple, tuple[AssetRef, list[str]]] = {}  # one entry per file, whoever asks
    for user, ref in needs:
        _, users = by_key.setdefault((ref.kind, ref.name, ref.explicit, ref.lang), (ref, []))
        if user not in users:
            users.append(user)
    found, missing, errors = {}, [], []
    for first, users in by_key.values():
        try:
            where = resolve(first, allow_download, progress, errors)
        except AssetMissing:
            missing.append((first, users))
            continue
        for _, ref in needs:
            if (ref.kind, ref.name, ref.explicit, ref.lang) == \
                    (first.kind, first.name, first.explicit, first.lang):
                found[ref] = where
    if missing:
        raise AssetMissing(missing_paragraph(missing, source, fetch_args, errors))
    return found
