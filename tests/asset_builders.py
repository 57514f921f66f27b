"""Small real stand-ins for Data-Juicer's models, built from text on this machine (tests, bench).

Data-Juicer's ``{lang}.sp.model`` and ``{lang}.arpa.bin`` are downloads; where they cannot be
had, these give real files of the same kinds, so that the code paths that read them run for real
(the tests, the parity bench): a sentencepiece model trained on the given text, and a KenLM
language model in ARPA format (which KenLM loads whatever the file is called) from bigram
counts with absolute discounting and back-off.
"""
from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path


def train_sentencepiece(texts: list[str], path: str | Path, vocab_size: int = 200) -> Path:
    """Train a unigram sentencepiece model on ``texts``; write it to ``path``."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model,
                                   vocab_size=vocab_size, model_type="unigram",
                                   hard_vocab_limit=False, minloglevel=2, num_threads=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path


def write_arpa(sentences: list[list[str]], path: str | Path, discount: float = 0.5) -> Path:
    """A bigram ARPA model of ``sentences`` (lists of tokens): absolute discounting, back-off
    to unigram frequencies, ``<unk>`` given the discounted mass of the unigrams."""
    uni: Counter = Counter()
    bi: Counter = Counter()
    for toks in sentences:
        seq = ["<s>", *toks, "</s>"]
        uni.update(seq[1:])
        bi.update(zip(seq, seq[1:]))
    total = sum(uni.values())
    p_unk = discount * len(uni) / total
    p_uni = {w: (c - discount) / total if c > discount else c / total for w, c in uni.items()}
    after: dict[str, list[tuple[str, int]]] = {}
    for (v, w), c in bi.items():
        after.setdefault(v, []).append((w, c))
    ctx = Counter()
    for (v, _), c in bi.items():
        ctx[v] += c
    backoff, probs = {}, {}
    for v, nexts in after.items():
        seen_mass = sum(p_uni.get(w, 0.0) for w, _ in nexts)
        left = discount * len(nexts) / ctx[v]
        backoff[v] = math.log10(left / max(1e-12, 1.0 - seen_mass))
        for w, c in nexts:
            probs[(v, w)] = math.log10((c - discount) / ctx[v])
    words = sorted(set(p_uni) | {"<s>"})
    lines = ["", "\\data\\", f"ngram 1={len(words) + 1}", f"ngram 2={len(probs)}", "",
             "\\1-grams:", f"{math.log10(p_unk):.6f}\t<unk>\t0"]
    for w in words:
        lp = -99.0 if w == "<s>" else math.log10(p_uni[w])
        bo = backoff.get(w)
        lines.append(f"{lp:.6f}\t{w}" + (f"\t{bo:.6f}" if bo is not None else ""))
    lines += ["", "\\2-grams:"]
    lines += [f"{lp:.6f}\t{v} {w}" for (v, w), lp in sorted(probs.items())]
    lines += ["", "\\end\\", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def build_stand_ins(texts: list[str], models_dir: str | Path, lang: str = "en",
                    vocab_size: int = 200) -> tuple[Path, Path]:
    """``{lang}.sp.model`` trained on ``texts`` and ``{lang}.arpa.bin`` (ARPA text) over its
    pieces, in ``models_dir``: Data-Juicer's file names, so both systems find them."""
    from sandbox.assets import sentencepiece_model

    d = Path(models_dir)
    sp_path = train_sentencepiece(texts, d / f"{lang}.sp.model", vocab_size)
    sp = sentencepiece_model(sp_path)
    lines = [ln for t in texts for ln in " ".join(sp.encode_as_pieces(t)).splitlines()]
    lm_path = write_arpa([ln.split() for ln in lines if ln.strip()], d / f"{lang}.arpa.bin")
    return sp_path, lm_path
