"""COCO-caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) of generated captions, computed by
pycocoevalcap, the scorer InternVL's ``evaluate.sh caption-coco`` and the COCO leaderboard use.

Inputs: a predictions file (jsonl of ``{image or image_id, caption}``, or the COCO results JSON
array ``[{"image_id", "caption"}]`` that InternVL's evaluation writes) and references (COCO
annotations ``{"images", "annotations"}``, or a jsonl/json/parquet pool with several captions per
image: Data-Juicer's ``images`` + ``<__dj__image> caption`` text, InternVL's ``image`` +
``conversations``, or ``{image, caption | captions}``). A prediction is matched to its
references by image id, by path, or by file name, and, for COCO file names
(``COCO_val2014_000000391895.jpg``), by the numeric id InternVL derives from them. Metrics are
over the predicted images that have references, as in pycocoevalcap's ``COCOEvalCap``.

Tokenisation: Stanford's PTB tokenizer (pycocoevalcap's, a Java program) when Java is there;
without Java a lower-casing word/punctuation splitter that drops the punctuation PTB drops, and
METEOR (also Java) is skipped. Both are said on the console and in the metrics
(``caption/ptb_tokenizer``: 1 or 0; ``caption/avg_over``: how many metrics ``avg_score``
averages). SPICE is off: it downloads Stanford CoreNLP at first use.

``caption/avg_score`` is the mean of the metrics computed (Data-Juicer's ``avg_score``; the
same name ``evaluator=internvl_coco_caption`` gives it, so pools rank alike whichever scored
them). BLEU-n, ROUGE-L and CIDEr get 95%
bootstrap intervals over images (``_ci_low``/``_ci_high``): BLEU from resampled per-image n-gram
counts and lengths (the corpus formula, not a mean of sentence BLEUs), ROUGE-L and CIDEr as the
mean of per-image scores with CIDEr's document frequencies held at the full set's. METEOR gets
none: its corpus score is METEOR's own aggregate of alignment statistics, not a mean a resample
could recompute without re-running the Java scorer a thousand times.

``parse_caption_metrics`` reads the ``"%s: %0.3f"`` lines pycocoevalcap prints, for a stack whose
own evaluation script prints them (the last occurrence of each wins).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sandbox.console import console
from sandbox.data.dj_samples import IMAGE_TOKEN, as_list, dj_caption_pairs, strip_tokens
from sandbox.data.rows import read_records
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_write_json
from sandbox.verdict import bootstrap_interval

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
_PRINTED = re.compile(r"(?:^|\s)(Bleu_[1-4]|METEOR|ROUGE_L|CIDEr|SPICE):\s*"
                      r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)\s*$")
# the tokens PTBTokenizer removes after tokenising (pycocoevalcap's PUNCTUATIONS)
PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",",
                   ":", "-", "--", "...", ";"}
_WORDS = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]+|_+")


# ============================================================================ log parsing
def parse_caption_metrics(lines: Iterable[str] | str, prefix: str = "caption/") -> dict[str, float]:
    """Metrics from pycocoevalcap's printed ``NAME: VALUE`` lines (``Bleu_1`` ... ``CIDEr``,
    ``SPICE``), as ``{prefix}NAME``, plus ``{prefix}avg_score``: the mean of those of the seven
    standard metrics found (SPICE is left out of it, as Data-Juicer does). Other lines are
    ignored; a metric printed several times (a log appended to by re-runs) takes its last value.
    No metric found: ``{}`` (never a division by zero)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    found: dict[str, float] = {}
    for raw in lines:
        for line in str(raw).replace("\r", "\n").split("\n"):
            m = _PRINTED.search(line.rstrip())
            if m:
                found[m.group(1)] = float(m.group(2))
    out = {prefix + k: v for k, v in found.items()}
    standard = [found[k] for k in CAPTION_METRICS if k in found]
    if standard:
        out[prefix + "avg_score"] = float(sum(standard) / len(standard))
        out[prefix + "avg_over"] = float(len(standard))
    return out


# ============================================================================ Java
_JAVA: dict[str, Any] = {}


def java_status() -> str | None:
    """None when a working ``java`` is on PATH, else why not (once per process)."""
    if "status" not in _JAVA:
        java = shutil.which("java")
        if java is None:
            _JAVA["status"] = ("no `java` on PATH (Debian/Ubuntu: apt-get install "
                               "default-jre-headless)")
        else:
            try:
                r = subprocess.run([java, "-version"], capture_output=True, timeout=60)
                _JAVA["status"] = None if r.returncode == 0 else \
                    f"`java -version` failed (exit {r.returncode})"
            except (OSError, subprocess.TimeoutExpired) as e:
                _JAVA["status"] = f"`java -version` failed ({e})"
    return _JAVA["status"]


# ============================================================================ reading
def _numeric_coco_id(name: str) -> str | None:
    """InternVL's image id of a COCO file name: ``..._000000391895.jpg`` -> ``391895``."""
    stem = os.path.splitext(os.path.basename(name))[0]
    tail = stem.rsplit("_", 1)[-1]
    return str(int(tail)) if tail.isdigit() and "_" in stem else None


class _Index:
    """Reference captions by image key, and every other name an image goes by."""

    def __init__(self):
        self.refs: dict[str, list[str]] = {}
        self.alias: dict[str, str] = {}

    def add(self, key: Any, caption: str, names: Iterable[str] = ()) -> None:
        key = str(key)
        caption = caption.strip()
        if not caption:
            return
        self.refs.setdefault(key, []).append(caption)
        for name in [key, *names]:
            if not name:
                continue
            for alias in (name, os.path.basename(name), _numeric_coco_id(name)):
                if alias:
                    self.alias.setdefault(alias, key)

    def find(self, names: Iterable[str]) -> str | None:
        for name in names:
            if not name:
                continue
            for alias in (name, os.path.basename(name), _numeric_coco_id(name)):
                if alias and alias in self.alias:
                    return self.alias[alias]
        return None


def _image_names(rec: dict) -> list[str]:
    names = []
    # image ids and paths first: a record's own `id` may be a record number
    for k in ("image_id", "image", "file_name", "images", "id"):
        for v in as_list(rec.get(k)) if k == "images" else [rec.get(k)]:
            if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                names.append(str(v))
    return names


def load_references(path: str | Path, text_key: str = "text") -> _Index:
    """Reference captions of ``path`` (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"evaluator: references {path} do not exist. Set evaluator.references "
                        f"to COCO caption annotations or a jsonl pool with captions.")
    index = _Index()
    if path.suffix == ".json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}).") from None
        if isinstance(doc, dict) and "annotations" in doc:  # COCO caption annotations
            files = {str(i.get("id")): i.get("file_name") or i.get("image") or ""
                     for i in doc.get("images") or [] if isinstance(i, dict)}
            for ann in doc["annotations"]:
                if isinstance(ann, dict) and isinstance(ann.get("caption"), str):
                    key = str(ann.get("image_id"))
                    index.add(key, ann["caption"], [files.get(key, "")])
            return _nonempty(index, path)
    for where, rec in read_records(path):
        if not isinstance(rec, dict):
            continue
        if rec.get("images") is not None and isinstance(rec.get(text_key), str):
            for image, caption in dj_caption_pairs(rec, text_key, "images", IMAGE_TOKEN):
                index.add(image, caption)
            continue
        names = _image_names(rec)
        if not names:
            continue
        captions = []
        if isinstance(rec.get("conversations"), list):
            captions = [t["value"] for t in rec["conversations"]
                        if isinstance(t, dict) and t.get("from") == "gpt"
                        and isinstance(t.get("value"), str)]
        for k in ("captions", "caption", "sentences", text_key):
            captions += [c for c in as_list(rec.get(k)) if isinstance(c, str)]
        for c in captions:
            index.add(names[0], strip_tokens(c), names[1:])
    return _nonempty(index, path)


def _nonempty(index: _Index, path: Path) -> _Index:
    if not index.refs:
        raise DataError(f"{path} holds no reference captions: expected COCO annotations "
                        f"({{images, annotations: [{{image_id, caption}}]}}) or records with an "
                        f"image (images/image/image_id) and captions (text/caption/captions).")
    return index


def load_predictions(path: str | Path, text_key: str = "text") -> list[tuple[list[str], str]]:
    """``[(names of the image, caption)]`` of a predictions file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"evaluator: predictions {path} do not exist. Give the file of generated "
                        f"captions (evaluator.predictions or the step's `predictions` input).")
    out = []
    for where, rec in read_records(path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}, {where}: expected an object with an image and a caption.")
        caption = next((rec[k] for k in ("caption", "prediction", "response", "answer", text_key)
                        if isinstance(rec.get(k), str)), None)
        names = _image_names(rec)
        if caption is None or not names:
            raise DataError(f"{path}, {where}: a prediction needs an image (image_id, image or "
                            f"images) and a caption (caption, prediction, response or "
                            f"{text_key}); got fields {', '.join(rec) or 'none'}.")
        out.append((names, strip_tokens(caption)))
    if not out:
        raise DataError(f"{path} holds no predictions.")
    return out


# ============================================================================ tokenising
def simple_tokenize(caption: str) -> str:
    """The tokenizer used without Java (the metrics say so): lower case, words and punctuation
    split, the punctuation PTB drops dropped."""
    toks = _WORDS.findall(caption.lower().replace("\n", " "))
    return " ".join(t for t in toks if t not in PTB_PUNCTUATION and re.search(r"\w", t))


def tokenize(captions: dict[str, list[str]], use_ptb: bool) -> dict[str, list[str]]:
    if not use_ptb:
        return {k: [simple_tokenize(c) for c in v] for k, v in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    n = sum(len(v) for v in captions.values())
    try:
        out = PTBTokenizer().tokenize({k: [{"caption": c} for c in v]
                                       for k, v in captions.items()})
    except OSError as e:
        raise DataError(f"evaluator: the PTB tokenizer (pycocoevalcap, Java) could not run: {e}. "
                        f"It writes a temporary file next to its jar, so the package folder must "
                        f"be writable; or set evaluator.tokenizer=simple.") from None
    if sum(len(v) for v in out.values()) != n:
        raise DataError(f"evaluator: the PTB tokenizer returned {sum(len(v) for v in out.values())}"
                        f" captions for {n} (a Java failure). Check `java -version`, or set "
                        f"evaluator.tokenizer=simple.")
    return out


# ============================================================================ scores
_TINY, _SMALL = 1e-15, 1e-9  # BleuScorer's guards


def bleu_stats(gts: dict[str, list[str]], res: dict[str, list[str]]) -> np.ndarray:
    """Per-image BLEU statistics, in pycocoevalcap's way (``closest`` reference length):
    columns testlen, reflen, guess_1..4, correct_1..4."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for k in gts:
        scorer += (res[k][0], gts[k])
    rows = []
    for comps in scorer.ctest:
        t = comps["testlen"]
        reflen = min((abs(r - t), r) for r in comps["reflen"])[1]
        rows.append([t, reflen, *comps["guess"], *comps["correct"]])
    return np.asarray(rows, dtype=float)


def corpus_bleu(stats: np.ndarray, n: int) -> float:
    """BLEU-n of summed per-image statistics (pycocoevalcap's formula)."""
    tot = stats.sum(axis=0)
    score = 1.0
    for k in range(n):
        score *= (tot[6 + k] + _TINY) / (tot[2 + k] + _SMALL)
    score **= 1.0 / n
    ratio = (tot[0] + _TINY) / (tot[1] + _SMALL)
    return float(score * math.exp(1 - 1 / ratio)) if ratio < 1 else float(score)


class CocoCaptionEvaluator(Step):
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of a predictions file against references
    (pycocoevalcap), or the same metrics parsed from a stack's evaluation log.

    Parameters:

    * ``references``: COCO caption annotations or a pool with captions (module docstring).
    * ``predictions``: the generated captions; the step's ``predictions`` input wins.
    * ``tokenizer``: ``auto`` (PTB when Java works, else ``simple``), ``ptb`` (Java required) or
      ``simple``.
    * ``meteor``: ``auto`` (when Java works), ``true`` (Java required) or ``false``.
    * ``bootstrap``: resamples for the intervals over images (0: none).
    * ``prediction_glob``, ``log_name``: with only ``model_dir`` as input (a stack's
      checkpoint), the newest file matching ``prediction_glob`` under it is scored (InternVL's
      evaluation writes ``coco_<time>.json``); failing that, its ``log_name`` file (where the
      stack's ``evaluate.sh`` output was written) is parsed.
    * ``metric_prefix``: the metrics' names are ``<prefix><metric>``.

    Run inputs (all optional, one needed): ``predictions`` (a file), ``log`` (a log to parse),
    ``model_dir`` (see above).
    """

    outputs = ("metrics", "report")
    reads = ("references", "predictions")

    def __init__(self, references: str | None = None, predictions: str | None = None,
                 tokenizer: str = "auto", meteor: bool | str = "auto", bootstrap: int = 1000,
                 text_key: str = "text", prediction_glob: str = "coco_*.json",
                 log_name: str = "eval_log.txt", metric_prefix: str = "caption/"):
        if tokenizer not in ("auto", "ptb", "simple"):
            raise ConfigError(f"evaluator.tokenizer={tokenizer!r}: use auto, ptb or simple.")
        if meteor not in ("auto", True, False):
            raise ConfigError(f"evaluator.meteor={meteor!r}: use auto, true or false.")
        self.references, self.predictions = references, predictions
        self.tokenizer, self.meteor = tokenizer, meteor
        self.bootstrap = int(bootstrap)
        self.text_key = text_key
        self.prediction_glob, self.log_name = prediction_glob, log_name
        self.prefix = metric_prefix

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, predictions: str | None = None, model_dir: str | None = None,
            log: str | None = None) -> dict[str, Any]:
        predictions = predictions or self.predictions
        if not predictions and model_dir:
            predictions, log = self._from_model_dir(Path(model_dir), log)
        if not predictions and log:
            return self._from_log(env, Path(log))
        if not predictions:
            raise ConfigError("evaluator (coco_caption): nothing to score. Give the generated "
                              "captions (evaluator.predictions=FILE or the step's `predictions` "
                              "input), a `model_dir` holding them, or a `log` with "
                              "pycocoevalcap's printed metrics.")
        if not self.references:
            raise ConfigError("evaluator.references is required to score captions: COCO caption "
                              "annotations or a pool with several captions per image "
                              "(evaluator.references=FILE).")
        return self._score(env, Path(predictions))

    def _from_model_dir(self, model_dir: Path, log: str | None) -> tuple[str | None, str | None]:
        found = sorted(model_dir.rglob(self.prediction_glob), key=lambda p: p.stat().st_mtime)
        if found:
            return str(found[-1]), log
        if log is None and (model_dir / self.log_name).is_file():
            return None, str(model_dir / self.log_name)
        raise DataError(f"evaluator: {model_dir} holds no predictions ({self.prediction_glob}) "
                        f"and no {self.log_name}. Point the step's `predictions` input at the "
                        f"generated captions.")

    def _from_log(self, env: StepEnv, log: Path) -> dict[str, Any]:
        if not log.is_file():
            raise DataError(f"evaluator: log {log} does not exist.")
        metrics = parse_caption_metrics(log.read_text(encoding="utf-8", errors="replace"),
                                        self.prefix)
        if not metrics:
            raise DataError(f"evaluator: {log} has no pycocoevalcap metric lines (`Bleu_1: "
                            f"0.712` ...): the evaluation probably failed before scoring; its "
                            f"last lines say why.")
        report = {"log": str(log), "metrics": metrics, "source": "parsed from the log"}
        out = atomic_write_json(Path(env.workdir) / "eval_report.json", report)
        env.tracker.log_artifact(out)
        return {"metrics": metrics, "report": str(out)}

    # ------------------------------------------------------------------ scoring
    def _score(self, env: StepEnv, predictions: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        index = load_references(self.references, self.text_key)
        preds = load_predictions(predictions, self.text_key)
        res: dict[str, list[str]] = {}
        unmatched, duplicates = [], 0
        for names, caption in preds:
            key = index.find(names)
            if key is None:
                unmatched.append(names[0])
            elif key in res:
                duplicates += 1
            else:
                res[key] = [caption]
        if not res:
            raise DataError(f"evaluator: none of the {len(preds)} predictions in {predictions} "
                            f"matches an image of {self.references} (first: "
                            f"{unmatched[0]!r}). Predictions and references must name images "
                            f"alike: the same id, path or file name.")
        gts = {k: index.refs[k] for k in res}
        notes = []
        java = java_status()
        use_ptb = self.tokenizer == "ptb" or (self.tokenizer == "auto" and java is None)
        if use_ptb and java is not None:
            raise ConfigError(f"evaluator.tokenizer=ptb needs Java: {java}. Or set "
                              f"evaluator.tokenizer=simple.")
        if not use_ptb:
            notes.append("tokenizer: simple word/punctuation splitter, not PTB"
                         + (f" ({java})" if java else " (tokenizer=simple)")
                         + "; scores differ slightly from the COCO leaderboard's")
        use_meteor = self.meteor is True or (self.meteor == "auto" and java is None)
        if self.meteor is True and java is not None:
            raise ConfigError(f"evaluator.meteor=true needs Java: {java}. Or set "
                              f"evaluator.meteor=auto to skip METEOR without it.")
        if not use_meteor:
            notes.append("METEOR skipped: " + (java or "evaluator.meteor=false"))

        keys = list(res)
        # METEOR's Java scorer takes seconds to load its paraphrase table: start it now, so that
        # it loads while the captions are tokenised and the other metrics computed
        meteor = self._start_meteor(notes) if use_meteor else None
        gts_t = tokenize(gts, use_ptb)
        res_t = tokenize(res, use_ptb)
        gts_t = {k: gts_t[k] for k in keys}
        res_t = {k: res_t[k] for k in keys}
        scores, per_image = self._scorers(gts_t, res_t, meteor, notes)
        metrics = {self.prefix + k: float(v) for k, v in scores.items()}
        standard = [scores[k] for k in CAPTION_METRICS if k in scores]
        metrics[self.prefix + "avg_score"] = float(np.mean(standard))
        metrics[self.prefix + "avg_over"] = float(len(standard))
        metrics.update(self._intervals(gts_t, res_t, per_image))
        metrics[self.prefix + "images"] = float(len(keys))
        metrics[self.prefix + "unmatched_predictions"] = float(len(unmatched))
        metrics[self.prefix + "ptb_tokenizer"] = 1.0 if use_ptb else 0.0
        metrics["eval_seconds"] = time.perf_counter() - t0
        for name in CAPTION_METRICS:
            if name in scores:
                console.print(f"{env.name}: {name}: {scores[name]:0.3f}")
        for note in notes:
            console.print(f"[yellow]{env.name}: {note}[/]")
        if unmatched:
            console.print(f"[yellow]{env.name}: {len(unmatched)} prediction(s) name no image of "
                          f"the references (first: {unmatched[0]!r}); they are not scored[/]")
        images = [{"image": k, "prediction": res[k][0], "references": gts[k],
                   **{m: float(v[i]) for m, v in per_image.items()}}
                  for i, k in enumerate(keys)]
        report = {"predictions": str(predictions), "references": str(self.references),
                  "metrics": metrics, "notes": notes, "tokenizer": "ptb" if use_ptb else "simple",
                  "unmatched_predictions": unmatched[:100], "duplicate_predictions": duplicates,
                  "reference_images_without_prediction": len(index.refs) - len(keys),
                  "images": images}
        out = atomic_write_json(Path(env.workdir) / "eval_report.json", report)
        env.tracker.log_artifact(out)
        return {"metrics": metrics, "report": str(out)}

    def _start_meteor(self, notes: list[str]):
        from pycocoevalcap.meteor.meteor import Meteor

        try:
            return Meteor()
        except OSError as e:
            if self.meteor is True:
                raise DataError(f"evaluator: METEOR (pycocoevalcap's Java scorer) could not "
                                f"start: {e}. Set evaluator.meteor=false to go on without it.") \
                    from None
            notes.append(f"METEOR skipped: its Java scorer could not start ({e})")
            return None

    def _scorers(self, gts, res, scorer, notes: list[str]):
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        scores: dict[str, float] = {}
        per_image: dict[str, np.ndarray] = {}
        bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            scores[f"Bleu_{n + 1}"] = bleu[n]
            per_image[f"Bleu_{n + 1}"] = np.asarray(bleu_each[n], dtype=float)
        rouge, rouge_each = Rouge().compute_score(gts, res)
        scores["ROUGE_L"] = rouge
        per_image["ROUGE_L"] = np.asarray(rouge_each, dtype=float)
        cider, cider_each = Cider().compute_score(gts, res)
        scores["CIDEr"] = cider
        per_image["CIDEr"] = np.asarray(cider_each, dtype=float)
        if scorer is not None:
            try:
                try:
                    meteor, meteor_each = scorer.compute_score(gts, res)
                finally:
                    scorer.meteor_p.kill()
                    scorer.meteor_p.wait()
                    if scorer.lock.locked():  # a failed read leaves it held; its __del__ takes it
                        scorer.lock.release()
                scores["METEOR"] = meteor
                per_image["METEOR"] = np.asarray(meteor_each, dtype=float)
            except (OSError, ValueError) as e:  # the jar died: no score lines to read
                if self.meteor is True:
                    raise DataError(f"evaluator: METEOR (pycocoevalcap's Java scorer) failed: "
                                    f"{e}. Set evaluator.meteor=false to go on without it."
                                    ) from None
                notes.append(f"METEOR skipped: its Java scorer failed ({e})")
        return scores, per_image

    def _intervals(self, gts, res, per_image) -> dict[str, float]:
        if self.bootstrap <= 0 or len(res) < 2:
            return {}
        out: dict[str, float] = {}
        stats = bleu_stats(gts, res)
        columns = tuple(stats.T)
        for n in range(1, 5):
            lo, hi = bootstrap_interval(lambda *c, n=n: corpus_bleu(np.stack(c, axis=1), n),
                                        columns, n_boot=self.bootstrap, seed=0)
            out[f"{self.prefix}Bleu_{n}_ci_low"], out[f"{self.prefix}Bleu_{n}_ci_high"] = lo, hi
        for name in ("ROUGE_L", "CIDEr"):
            lo, hi = bootstrap_interval(np.mean, (per_image[name],), n_boot=self.bootstrap, seed=0)
            out[f"{self.prefix}{name}_ci_low"], out[f"{self.prefix}{name}_ci_high"] = lo, hi
        return out
