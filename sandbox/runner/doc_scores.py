"""Per-document scores of a run's model evaluation, kept beside the run and in its tracking run
(``doc_scores/seedS.npz``), so that a later run compares with it document by document: a paired
comparison cancels what both models find hard and needs far fewer seeds than one over summary
values (``sandbox.verdict.paired_documents``)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

FOLDER = "doc_scores"
_KEY = re.compile(r"^(?P<step>[\w.]+?)(#s(?P<seed>-?\d+))?$")


def collect(steps: dict, run_dir: Path, run_seed: int) -> Path | None:
    """Copy the run's per-document score files (one evaluation step's: per seed with ``seeds=N``)
    to ``run_dir/doc_scores/seedS.npz``; None when no single step left them."""
    found: dict[str, dict[int, str]] = {}
    for key, record in steps.items():
        m = _KEY.match(key)
        path = (record.get("outputs") or {}).get("doc_scores") if m else None
        if isinstance(path, str) and Path(path).is_file():  # a fan-out's record holds a list
            seed = int(m["seed"]) if m["seed"] is not None else None
            found.setdefault(m["step"], {})[seed] = path
    if len(found) != 1:
        return None
    by_seed = next(iter(found.values()))
    seeded = {s: p for s, p in by_seed.items() if s is not None}
    chosen = seeded or {run_seed: by_seed[None]}
    folder = run_dir / FOLDER
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for seed, path in chosen.items():
        shutil.copyfile(path, folder / f"seed{seed}.npz")
    return folder


def load(folder: Path | None) -> dict[int, dict[str, np.ndarray]]:
    """``{seed: {array: values}}`` from a ``doc_scores`` folder (empty when there is none)."""
    from sandbox.steps.evaluate.lm import load_doc_scores

    out = {}
    for f in sorted(Path(folder).glob("seed*.npz")) if folder else []:
        try:
            out[int(f.stem[4:])] = load_doc_scores(f)
        except (OSError, ValueError):  # a damaged copy: compare on summary values instead
            return {}
    return out


def pairs(ours: dict[int, dict], theirs: dict[int, dict]) -> dict:
    """``{metric: (ours by seed, theirs by seed, reduce)}`` for the metrics both sides scored on
    the very same documents (same count, same byte and word counts, same items)."""
    from sandbox.steps.evaluate.lm import DOC_METRICS

    if not ours or not theirs:
        return {}
    out = {}
    for name, (keys, reduce) in DOC_METRICS.items():
        sides = []
        for side in (ours, theirs):
            if not all(all(k in arrays for k in keys) for arrays in side.values()):
                break
            sides.append({s: tuple(arrays[k] for k in keys) for s, arrays in side.items()})
        if len(sides) != 2 or not _same_documents(keys, ours, theirs):
            continue
        out[name] = (sides[0], sides[1], reduce)
    return out


def _same_documents(keys: tuple[str, ...], ours: dict, theirs: dict) -> bool:
    """Every evaluation on both sides saw the same documents: equal lengths, and for the
    held-out text the same words and bytes per document (what does not depend on the model)."""
    every = [*ours.values(), *theirs.values()]
    if len({len(a[keys[0]]) for a in every}) != 1:
        return False
    for fixed in ("lm_words", "lm_bytes"):
        if fixed in keys and not all(np.array_equal(a[fixed], every[0][fixed]) for a in every):
            return False
    return True
