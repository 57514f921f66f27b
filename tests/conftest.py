"""Shared fixtures: composing configs without Hydra's CLI, and small real-looking data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def compose(overrides: list[str] | None = None):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides or []),
                             return_hydra_config=False)


SENTENCES = [
    "The river runs through the old town and past the mill.",
    "Farmers bring their goods to the market every Saturday morning.",
    "A small library near the square lends books to children.",
    "The council met on Tuesday to discuss the new bridge.",
    "Rain fell across the valley for most of the afternoon.",
    "Students at the school planted trees along the road.",
    "The museum opened a new exhibition about local history.",
    "Fishermen repaired their nets before the season began.",
]


def make_docs(n: int = 120, seed: int = 0) -> list[dict]:
    """Clean multi-sentence documents plus noise the default recipe should catch."""
    import random

    rng = random.Random(seed)
    docs = []
    for i in range(n):
        k = rng.randint(3, 8)
        text = " ".join(rng.choice(SENTENCES) for _ in range(k))
        docs.append({"text": text, "id": i, "source": "clean"})
    noise = [
        "<div><p>Buy now!!!</p><a href='http://spam.example.com'>click</a></div>",
        "$$$ ### %%% &&& *** @@@ !!! ??? ((( ))) [[[ ]]] {{{ }}}",
        "ok",
        "spam " * 200,
        "Contact me at someone@example.com or visit www.example.com/offer now please",
    ]
    for j, t in enumerate(noise * 4):
        docs.append({"text": t, "id": n + j, "source": "noise"})
    docs.append(dict(docs[0], id=10_000))  # an exact duplicate
    rng.shuffle(docs)
    return docs


@pytest.fixture
def docs_file(tmp_path) -> Path:
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in make_docs()), encoding="utf-8")
    return p
