"""evaluator=coco_caption: caption metrics computed for real by pycocoevalcap (Java for METEOR
and the PTB tokenizer when present), hand-checked BLEU-1, the fallback without Java, matching
predictions to references, and the parser of pycocoevalcap's printed lines."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sandbox.errors import ConfigError, DataError
from sandbox.steps.evaluate import caption as evaluate_caption
from sandbox.steps.base import StepEnv
from sandbox.steps.evaluate.caption import (CocoCaptionEvaluator, bleu_stats, corpus_bleu,
                                            java_status, parse_caption_metrics, simple_tokenize)
from tests.conftest import compose

HAS_JAVA = java_status() is None


def step_env(tmp_path: Path, name: str = "evaluate_model") -> StepEnv:
    work = tmp_path / "run" / name
    work.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=work, run_dir=tmp_path / "run", cache_dir=tmp_path)


# Two exact matches and one caption with one wrong word. BLEU-1 by hand: every hypothesis has
# the length of its closest reference (no brevity penalty); matched unigrams / hypothesis
# unigrams = (5 + 6 + 4) / (5 + 6 + 5) = 15/16 over the corpus; 4/5 for the third image.
REFS = {
    "images": [{"id": 9, "file_name": "COCO_val2014_000000000009.jpg"},
               {"id": 25, "file_name": "COCO_val2014_000000000025.jpg"},
               {"id": 30, "file_name": "COCO_val2014_000000000030.jpg"},
               {"id": 42, "file_name": "COCO_val2014_000000000042.jpg"}],
    "annotations": [
        {"image_id": 9, "id": 1, "caption": "A man riding a horse."},
        {"image_id": 9, "id": 2, "caption": "Somebody on horseback near the sea shore today."},
        {"image_id": 25, "id": 3, "caption": "Two dogs play in the grass."},
        {"image_id": 30, "id": 4, "caption": "A cat on a sofa."},
        {"image_id": 42, "id": 5, "caption": "A bowl of fruit."}],
}
PREDICTIONS = [{"image_id": 9, "caption": "A man riding a horse."},
               {"image_id": 25, "caption": "Two dogs play in the grass."},
               {"image_id": 30, "caption": "A dog on a sofa."}]


@pytest.fixture
def coco_files(tmp_path) -> tuple[Path, Path]:
    refs = tmp_path / "coco_karpathy_test_gt.json"
    refs.write_text(json.dumps(REFS))
    preds = tmp_path / "coco_240101120000.json"  # InternVL's results file: a JSON array
    preds.write_text(json.dumps(PREDICTIONS))
    return refs, preds


@pytest.mark.slow  # METEOR's Java scorer loads its paraphrase table: ~10-25 s
@pytest.mark.skipif(not HAS_JAVA, reason="no Java here: METEOR and the PTB tokenizer need it")
def test_real_pycocoevalcap_metrics_with_java(tmp_path, coco_files):
    refs, preds = coco_files
    out = CocoCaptionEvaluator(references=str(refs)).run(step_env(tmp_path), predictions=str(preds))
    m = out["metrics"]
    assert m["caption/Bleu_1"] == pytest.approx(15 / 16, abs=1e-6)
    assert m["caption/ptb_tokenizer"] == 1.0
    for name in ("Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert f"caption/{name}" in m
    assert 0 < m["caption/METEOR"] < 1 and 0 < m["caption/Bleu_4"] < m["caption/Bleu_1"]
    assert m["caption/avg_over"] == 7.0
    assert m["caption/avg_score"] == pytest.approx(np.mean([m[f"caption/{k}"] for k in (
        "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")]))
    assert m["caption/images"] == 3.0 and m["caption/unmatched_predictions"] == 0.0
    # intervals over images for BLEU, ROUGE-L and CIDEr; none for METEOR
    assert m["caption/Bleu_1_ci_low"] <= m["caption/Bleu_1"] <= m["caption/Bleu_1_ci_high"]
    assert "caption/CIDEr_ci_low" in m and "caption/METEOR_ci_low" not in m
    report = json.loads(Path(out["report"]).read_text())
    per_image = {r["image"]: r for r in report["images"]}
    assert per_image["9"]["Bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert per_image["9"]["METEOR"] > per_image["30"]["METEOR"]
    assert per_image["25"]["ROUGE_L"] == pytest.approx(1.0)
    assert per_image["30"]["Bleu_1"] == pytest.approx(0.8, abs=1e-6)
    assert report["reference_images_without_prediction"] == 1


def test_without_java_meteor_is_skipped_and_a_simple_tokenizer_used(tmp_path, coco_files,
                                                                    monkeypatch, capsys):
    monkeypatch.setattr(evaluate_caption, "java_status", lambda: "no `java` on PATH")
    refs, preds = coco_files
    out = CocoCaptionEvaluator(references=str(refs), bootstrap=0).run(
        step_env(tmp_path), predictions=str(preds))
    m = out["metrics"]
    assert "caption/METEOR" not in m and m["caption/avg_over"] == 6.0
    assert m["caption/ptb_tokenizer"] == 0.0
    assert m["caption/Bleu_1"] == pytest.approx(15 / 16, abs=1e-6)  # same tokens on this text
    notes = json.loads(Path(out["report"]).read_text())["notes"]
    assert any(n.startswith("METEOR skipped: no `java`") for n in notes)
    assert "METEOR skipped" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="needs Java"):
        CocoCaptionEvaluator(references=str(refs), meteor=True).run(step_env(tmp_path, "e2"),
                                                                    predictions=str(preds))


def test_predictions_match_references_by_path_name_or_coco_id(tmp_path):
    """A Data-Juicer reference pool (several captions per image, one record each) against jsonl
    predictions naming images by another folder, by file name, or by InternVL's numeric id."""
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"images": ["/data/coco/val/COCO_val2014_000000000009.jpg"],
         "text": "<__dj__image> a man riding a horse <|__dj__eoc|>"},
        {"images": ["/data/coco/val/COCO_val2014_000000000009.jpg"],
         "text": "<__dj__image> a rider on a horse"},
        {"images": ["/data/coco/val/b.jpg"], "text": "<__dj__image> a red bus"}]))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image_id": 9, "caption": "a man riding a horse"},
        {"image": "elsewhere/b.jpg", "caption": "a red bus"},
        {"image": "unknown.jpg", "caption": "nothing"}]))
    out = CocoCaptionEvaluator(references=str(refs), tokenizer="simple", meteor=False,
                               bootstrap=0).run(step_env(tmp_path), predictions=str(preds))
    m = out["metrics"]
    assert m["caption/images"] == 2.0 and m["caption/unmatched_predictions"] == 1.0
    assert m["caption/Bleu_1"] == pytest.approx(1.0, abs=1e-6)
    report = json.loads(Path(out["report"]).read_text())
    assert sorted(len(r["references"]) for r in report["images"]) == [1, 2]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "zzz.jpg", "caption": "x"}) + "\n")
    with pytest.raises(DataError, match="none of the 1 predictions"):
        CocoCaptionEvaluator(references=str(refs), tokenizer="simple", meteor=False).run(
            step_env(tmp_path, "e2"), predictions=str(bad))


def test_bleu_from_per_image_statistics_equals_pycocoevalcap():
    """The bootstrap resamples per-image BLEU statistics; on all images the formula must give
    pycocoevalcap's corpus BLEU exactly."""
    from pycocoevalcap.bleu.bleu import Bleu

    rng = np.random.default_rng(0)
    words = "a the man dog cat sits runs on in grass sofa red blue big small near".split()
    gts, res = {}, {}
    for i in range(30):
        gts[str(i)] = [" ".join(rng.choice(words, rng.integers(4, 10))) for _ in range(3)]
        res[str(i)] = [" ".join(rng.choice(words, rng.integers(3, 11)))]
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    stats = bleu_stats(gts, res)
    for n in range(1, 5):
        assert corpus_bleu(stats, n) == pytest.approx(scores[n - 1], rel=1e-12)


def test_simple_tokenizer_drops_punctuation_like_ptb():
    assert simple_tokenize("A man, riding a HORSE... on the beach!") == \
        "a man riding a horse on the beach"
    assert simple_tokenize("The dog's ball -- red.") == "the dog's ball red"


LOG = """\
[rank0] loading checkpoint
tokenization...
PTBTokenizer tokenized 61268 tokens at 372339.81 tokens per second.
computing Bleu score...
{'testlen': 9893, 'reflen': 9855, 'guess': [9893, 8893], 'correct': [5732, 2510]}
Bleu_1: 0.580\r
Bleu_2: 0.404
Bleu_3: 0.281
Bleu_4: 0.193
computing METEOR score...
METEOR: 0.190
computing Rouge score...
ROUGE_L: 0.425
CIDEr: 0.601
SPICE: 0.133
Bleu_1: 0.790
"""


def test_parse_caption_metrics_takes_the_last_value_and_tolerates_noise():
    m = parse_caption_metrics(LOG)
    assert m["caption/Bleu_1"] == 0.790  # appended re-run: the last occurrence wins
    assert m["caption/SPICE"] == 0.133 and m["caption/CIDEr"] == 0.601
    assert m["caption/avg_score"] == pytest.approx((0.790 + 0.404 + 0.281 + 0.193 + 0.190 + 0.425
                                            + 0.601) / 7)  # SPICE left out
    assert parse_caption_metrics(LOG.splitlines(), prefix="coco/")["coco/METEOR"] == 0.190
    assert parse_caption_metrics(["nothing to see", "Bleu_1 is high"]) == {}  # no division
    partial = parse_caption_metrics("CIDEr: 1.250\n")
    assert partial == {"caption/CIDEr": 1.25, "caption/avg_score": 1.25, "caption/avg_over": 1.0}


def test_a_checkpoint_folder_is_scored_from_its_predictions_or_its_log(tmp_path, coco_files):
    refs, preds = coco_files
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "eval_log.txt").write_text(LOG)
    ev = CocoCaptionEvaluator(references=str(refs), tokenizer="simple", meteor=False,
                              bootstrap=0)
    out = ev.run(step_env(tmp_path), model_dir=str(ckpt))
    assert out["metrics"]["caption/Bleu_1"] == 0.790  # parsed from the log
    (ckpt / preds.name).write_text(preds.read_text())
    out = ev.run(step_env(tmp_path, "e2"), model_dir=str(ckpt))  # InternVL's coco_<time>.json
    assert out["metrics"]["caption/Bleu_1"] == pytest.approx(15 / 16, abs=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no predictions"):
        ev.run(step_env(tmp_path, "e3"), model_dir=str(tmp_path / "empty"))


def test_evaluator_option_composes_and_plans(tmp_path, coco_files):
    from sandbox.context import register_resolvers
    from sandbox.runner.plan import plan

    register_resolvers()
    refs, _ = coco_files
    cfg = compose(["evaluator=coco_caption", f"evaluator.references={refs}"])
    steps = {s.name: s for s in plan(cfg)}
    assert steps["evaluate_model"].cls is CocoCaptionEvaluator
    # references are needed to score predictions (not to read a log): said when it runs
    with pytest.raises(ConfigError, match="evaluator.references is required"):
        CocoCaptionEvaluator().run(step_env(tmp_path), predictions=str(coco_files[1]))
