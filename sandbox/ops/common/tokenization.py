"""``tokenization=True``: the words of a text as Data-Juicer's filters count them then.

Data-Juicer splits the text into the pieces of its sentencepiece model for ``lang``
(``{lang}.sp.model``, ``encode_as_pieces``) instead of on whitespace; the pieces are then refined
as words are (lower-cased for the word-list and repetition filters, stripped of
``SPECIAL_CHARACTERS``, empty ones dropped). ``alphanumeric_filter`` counts the tokens of the
Hugging Face tokenizer ``EleutherAI/pythia-6.9b-deduped`` (``tokenizer.tokenize``).

Models are found by ``sandbox.assets`` (explicit path, Data-Juicer's caches, the sandbox's,
download). One exception, kept from before: for ``lang='zh'`` without ``zh.sp.model``, jieba's
segmentation stands in (a documented difference from Data-Juicer; with the model present the
counts are Data-Juicer's).
"""
from __future__ import annotations

from sandbox.assets import (AssetMissing, AssetRef, Resolved, hf_ref, resolve, sentencepiece_model,
                            sp_ref)
from sandbox.ops.base import TextViews
from sandbox.ops.common.models import load_tokenizer

PYTHIA = "EleutherAI/pythia-6.9b-deduped"  # Data-Juicer's tokenizer for alpha_token_ratio


def _jieba_words(text: str) -> list[str]:
    import jieba  # ~40 ms to import; only the zh fallback needs it

    jieba.setLogLevel(60)
    return jieba.lcut(text)


def sp_needs(lang: str, tokenization: bool) -> list[AssetRef]:
    """The asset a word-counting OP needs for ``tokenization`` (none for zh: jieba stands in)."""
    if not tokenization:
        return []
    ref = sp_ref(lang)
    if lang == "zh":
        try:
            resolve(ref, allow_download=False)
        except AssetMissing:
            return []  # jieba
    return [ref]


class Tokenizer:
    """The word splitter of an OP built with ``tokenization=True`` for ``lang``: resolved (and
    loaded) when the OP is built, so a missing model fails before any data is read."""

    def __init__(self, op: str, lang: str):
        self.lang = lang
        try:
            self.resolved: Resolved | None = resolve(sp_ref(lang))
        except AssetMissing as e:
            if lang != "zh":
                raise AssetMissing(f"{op}(tokenization=True, lang={lang!r}): {e}") from None
            self.resolved = None  # jieba
        if self.resolved is not None:
            sentencepiece_model(self.resolved.path)  # load now: a bad file fails here

    @property
    def key(self) -> str:
        """Names the splitter in view keys and stats cache keys."""
        return self.resolved.fingerprint() if self.resolved else "jieba"

    def words(self, views: TextViews) -> list[list[str]]:
        """The pieces of every text of the batch, computed once per batch and model."""
        if self.resolved is None:
            return views.get(("words", "jieba"), _jieba_words)
        sp = sentencepiece_model(self.resolved.path)
        return views.get(("words", "sp", self.key), sp.encode_as_pieces)


class HFTokenizer:
    """Data-Juicer's ``alphanumeric_filter`` tokenizer (``tokenize``), resolved when built."""

    def __init__(self, op: str, name: str = PYTHIA):
        try:
            self.resolved = resolve(hf_ref(name))
        except AssetMissing as e:
            raise AssetMissing(f"{op}(tokenization=True): {e}") from None

        self.tok = load_tokenizer(str(self.resolved.path), op)

    @property
    def key(self) -> str:
        return str(self.resolved.path)

    def token_counts(self, views: TextViews) -> list[int]:
        return views.get(("tokens", "hf", self.key), lambda t: len(self.tok.tokenize(t)))
