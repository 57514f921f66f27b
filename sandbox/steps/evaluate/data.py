"""Data evaluation: how much survived the recipe, how clean and how diverse it is.

``DataEvaluator`` compares the processed pool (``dataset``) with the pool it came from
(``source_dataset``), both Parquet files, and reports flat metrics:

``retention``
    rows out / rows in; with a ``source`` column, also ``retention/<source>`` per source.
``quality_score``
    mean P(clean) over a seeded sample of at most ``quality_sample`` documents, from a quality
    classifier in the spirit of GPT-3's and Data-Juicer's: logistic regression on hashed character
    3-grams and word 1-2-grams of a document's first ``MAX_CHARS`` characters, trained to tell
    clean reference text (label 1) from raw, noisy text (label 0). The reference defaults to the
    default corpus's ``quality_reference.jsonl``, whose articles and stories are disjoint from its
    pool. The trained weights are cached in
    ``env.cache_dir`` keyed by the reference file's content hash.
``diversity``
    distinct word bigrams / all word bigrams over a seeded sample of ``diversity_words`` words
    (whole documents in random order, the last one cut; bigrams never cross documents). A fixed
    number of words makes pools of different sizes comparable; ``diversity_words_used`` says how
    many words were actually there when the pool holds fewer.
``num_samples``, ``num_tokens_approx``
    rows and whitespace-separated words of the processed pool.
``quality_score_before``, ``diversity_before``
    the same two scores on the unprocessed pool, for comparison.

Everything goes into ``report`` (a JSON file in the step's workdir) as well.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.data.corpus import default_corpus
from sandbox.data.io import read_parquet, read_table
from sandbox.errors import DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path, atomic_write_json, sha256_file

CLASSIFIER_VERSION = "1"
MAX_CHARS = 2000  # characters of a document the quality classifier looks at
N_FEATURES = 2 ** 18  # per feature family (characters, words)
_WORD_RE = re.compile(r"\w+")


def _vectorizers():
    from sklearn.feature_extraction.text import HashingVectorizer

    common = dict(n_features=N_FEATURES, alternate_sign=False, norm="l2", dtype=np.float32)
    return (HashingVectorizer(analyzer="char", ngram_range=(3, 3), lowercase=False, **common),
            HashingVectorizer(analyzer="word", ngram_range=(1, 2), lowercase=True,
                              token_pattern=r"(?u)\b\w+\b", **common))


def quality_features(texts: list[str]):
    """Sparse features of the quality classifier: hashed char 3-grams | word 1-2-grams."""
    from scipy.sparse import hstack

    texts = [t[:MAX_CHARS] for t in texts]
    chars, words = _vectorizers()
    return hstack([chars.transform(texts), words.transform(texts)], format="csr")


class QualityClassifier:
    """Logistic regression on ``quality_features``; ``score`` returns P(clean) per text."""

    def __init__(self, coef: np.ndarray, intercept: float, info: dict | None = None):
        self.coef = np.asarray(coef, dtype=np.float32).ravel()
        self.intercept = float(intercept)
        self.info = info or {}

    @classmethod
    def train(cls, texts: list[str], labels: list[int], seed: int = 0) -> "QualityClassifier":
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(labels, dtype=int)
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("the quality reference needs both labels, 1 (clean) and 0 (noisy)")
        x = quality_features(texts)
        # held-out accuracy on a seeded 20% split, for the report; then fit on everything
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(y))
        cut = max(1, len(y) // 5)
        test, train = idx[:cut], idx[cut:]

        def fit(rows):
            model = LogisticRegression(C=4.0, solver="liblinear", random_state=seed)
            return model.fit(x[rows], y[rows])

        held_out = None
        if len(set(y[train])) == 2:
            held_out = float((fit(train).predict(x[test]) == y[test]).mean())
        model = fit(np.arange(len(y)))
        info = {"train_docs": int(len(y)), "clean_docs": int(y.sum()),
                "held_out_accuracy": held_out}
        return cls(model.coef_, model.intercept_[0], info)

    def score(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        z = quality_features(texts) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, coef=self.coef, intercept=np.float64(self.intercept),
                                info=np.array(json.dumps(self.info)))

    @classmethod
    def load(cls, path: Path) -> "QualityClassifier":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["coef"], float(z["intercept"]), json.loads(str(z["info"])))



def load_reference(path: Path, text_key: str = "text") -> tuple[list[str], list[int]]:
    table = read_table(path, None, text_key)
    if "label" not in table.column_names:
        raise DataError(f"quality reference {path} needs a 'label' field (1 = clean, 0 = noisy); "
                        f"it has {', '.join(table.column_names)}.")
    return table.column(text_key).to_pylist(), [int(v) for v in table.column("label").to_pylist()]


def quality_classifier(reference: Path, cache_dir: Path | None, text_key: str = "text",
                       seed: int = 0) -> tuple[QualityClassifier, Path | None]:
    """Train (or load from ``cache_dir``) the classifier for a reference file."""
    key = hashlib.sha256(json.dumps([CLASSIFIER_VERSION, sha256_file(reference), text_key, seed,
                                     MAX_CHARS, N_FEATURES]).encode()).hexdigest()[:16]
    cached = Path(cache_dir) / "quality_classifier" / f"{key}.npz" if cache_dir else None
    if cached is not None and cached.is_file():
        try:
            return QualityClassifier.load(cached), cached
        except Exception:  # a damaged cache entry is retrained, never trusted
            pass
    texts, labels = load_reference(reference, text_key)
    clf = QualityClassifier.train(texts, labels, seed)
    clf.info["reference"] = str(reference)
    if cached is not None:
        clf.save(cached)
    return clf, cached


def bigram_diversity(texts: list[str], max_words: int, seed: int) -> tuple[float, int]:
    """Distinct / total word bigrams over the first ``max_words`` words of the documents taken in
    a seeded random order (lower-cased ``\\w+`` words; bigrams stay inside a document).
    Returns (diversity, words used)."""
    order = np.random.default_rng(seed).permutation(len(texts))
    seen: set[tuple[str, str]] = set()
    total = used = 0
    for i in order:
        if used >= max_words:
            break
        words = _WORD_RE.findall(texts[i].lower())[: max_words - used]
        used += len(words)
        bigrams = list(zip(words, words[1:]))
        total += len(bigrams)
        seen.update(bigrams)
    return (len(seen) / total if total else 0.0), used


def _sample(texts: list[str], n: int, seed: int) -> list[str]:
    if len(texts) <= n:
        return texts
    idx = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
    return [texts[i] for i in idx]


def _read(path: str, text_key: str) -> tuple[list[str], list[str] | None]:
    try:
        table = read_parquet(path)
    except Exception as e:
        raise DataError(f"{path} is not a readable Parquet file: {e}") from None
    if text_key not in table.column_names:
        raise DataError(f"{path} has no field {text_key!r} (fields: "
                        f"{', '.join(table.column_names)}); set text_key=FIELD.")
    texts = ["" if t is None else t for t in table.column(text_key).to_pylist()]
    sources = None
    if "source" in table.column_names:
        sources = [str(s) for s in table.column("source").to_pylist()]
    return texts, sources


class DataEvaluator(Step):
    """Retention, quality, diversity and size of a processed pool against its source pool."""

    outputs = ("metrics", "report")
    reads = ("reference_path",)

    def __init__(self, text_key: str = "text", quality_sample: int = 2000,
                 diversity_words: int = 50000, reference_path: str | None = None,
                 corpus_seed: int = 0, compare_source: bool = True):
        """``reference_path``: jsonl/parquet/csv with ``text`` and ``label`` (1 clean, 0 noisy);
        None means the default corpus's ``quality_reference.jsonl`` built with ``corpus_seed``
        (use the pool's corpus seed: only then are its articles disjoint from the pool's).
        ``compare_source``: also score the unprocessed pool (``*_before`` metrics)."""
        self.text_key = text_key
        self.quality_sample, self.diversity_words = int(quality_sample), int(diversity_words)
        self.reference_path, self.corpus_seed = reference_path, corpus_seed
        self.compare_source = compare_source

    def _reference(self) -> Path:
        if self.reference_path is not None:
            return Path(self.reference_path)
        return default_corpus(seed=self.corpus_seed).quality_reference

    def run(self, env: StepEnv, dataset: str, source_dataset: str) -> dict[str, Any]:
        texts, sources = _read(dataset, self.text_key)
        src_texts, src_sources = _read(source_dataset, self.text_key)
        reference = self._reference()
        # the classifier's own seed is fixed: runs with different seeds score with one classifier
        clf, clf_path = quality_classifier(reference, env.cache_dir, "text", seed=0)

        def scores(docs: list[str], path: str) -> dict[str, float]:
            # cached by file content: a sweep scores the same source pool in every trial
            cached = None
            if clf_path is not None:
                key = hashlib.sha256(json.dumps(
                    [clf_path.stem, sha256_file(Path(path)), self.text_key, self.quality_sample,
                     self.diversity_words, env.seed]).encode()).hexdigest()[:16]
                cached = Path(env.cache_dir) / "data_eval" / f"{key}.json"
                if cached.is_file():
                    try:
                        return json.loads(cached.read_text(encoding="utf-8"))
                    except ValueError:
                        pass
            sample = _sample(docs, self.quality_sample, env.seed)
            quality = float(clf.score(sample).mean()) if sample else 0.0
            diversity, used = bigram_diversity(docs, self.diversity_words, env.seed)
            out = {"quality_score": quality, "diversity": diversity,
                   "diversity_words_used": float(used), "quality_docs": float(len(sample))}
            if cached is not None:
                atomic_write_json(cached, out)
            return out

        after = scores(texts, dataset)
        metrics: dict[str, float] = {
            "retention": len(texts) / len(src_texts) if src_texts else 0.0,
            "quality_score": after["quality_score"],
            "diversity": after["diversity"],
            "diversity_words_used": after["diversity_words_used"],
            "num_samples": float(len(texts)),
            "num_tokens_approx": float(sum(len(t.split()) for t in texts)),
        }
        if self.compare_source:
            before = scores(src_texts, source_dataset)
            metrics["quality_score_before"] = before["quality_score"]
            metrics["diversity_before"] = before["diversity"]
        per_source: dict[str, dict[str, int]] = {}
        if src_sources is not None:
            for s in src_sources:
                per_source.setdefault(s, {"in": 0, "out": 0})["in"] += 1
            for s in sources or []:
                per_source.setdefault(s, {"in": 0, "out": 0})["out"] += 1
            if sources is not None:
                for s, c in sorted(per_source.items()):
                    if c["in"]:
                        metrics[f"retention/{s}"] = c["out"] / c["in"]
        metrics = {k: float(v) for k, v in metrics.items()}

        report = {
            "metrics": metrics,
            "dataset": str(dataset),
            "source_dataset": str(source_dataset),
            "per_source": per_source,
            "quality_classifier": {
                "reference": str(reference), "cache": str(clf_path) if clf_path else None,
                "features": f"hashed char 3-grams + word 1-2-grams ({N_FEATURES} each), "
                            f"first {MAX_CHARS} characters",
                "model": "logistic regression (C=4)", **clf.info},
            "params": {"text_key": self.text_key, "quality_sample": self.quality_sample,
                       "diversity_words": self.diversity_words, "seed": env.seed},
        }
        path = Path(env.workdir) / "data_report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return {"metrics": metrics, "report": str(path)}
