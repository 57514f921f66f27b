"""The built-in downstream task: which continuation follows this context?

Each item is a held-out document's first ``context_words`` words and ``options`` candidate
continuations of ``continuation_words`` words: the document's own next words and the same span of
``options - 1`` other documents (fixed items: every run is scored on the same ones). The model
picks the candidate whose log-likelihood *gains most from the context*:
``log p(cont | context) - log p(cont | BOS)`` (pointwise mutual information), so a continuation
that is merely made of frequent words does not win. Chance is ``1 / options``; a model that has
not learned to use context scores at chance (measured with 4 options: untrained models 0.24-0.28,
the default model 0.48), which is what makes this task informative at the sandbox's scale,
where a linear probe on a tiny model's features is not.

Reported per item, for means and bootstrap intervals: whether the pick was right, and the
log-likelihood per byte of the right continuation given its context (the continuous view that
DataDecide found ranks training data more reliably than accuracy; per byte, so recipes with
different tokenizers compare).
"""
from __future__ import annotations

import random

import numpy as np

from sandbox.device import autocast


def build_items(texts: list[str], options: int, context_words: int, continuation_words: int,
                seed: int = 0) -> list[tuple[str, list[str]]]:
    """``(context, [right, distractor, ...])`` per document long enough for both spans."""
    words = [t.split() for t in texts]
    words = [w for w in words if len(w) >= context_words + continuation_words]
    if len(words) < options:
        return []
    span = slice(context_words, context_words + continuation_words)
    rng = random.Random(f"continuation-choice:{seed}")
    items = []
    for i, w in enumerate(words):
        others = rng.sample([j for j in range(len(words)) if j != i], options - 1)
        items.append((" ".join(w[:context_words]),
                      [" ".join(w[span])] + [" ".join(words[j][span]) for j in others]))
    return items


def score_items(model, tok, items: list[tuple[str, list[str]]], L: int, bos: int,
                batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(correct, right_logprob_per_byte)``, one value per item."""
    conts = sorted({c for _, cs in items for c in cs})
    cont_ids = dict(zip(conts, tok([" " + c for c in conts], add_special_tokens=False)["input_ids"]))
    ctx_ids = tok([ctx for ctx, _ in items], add_special_tokens=False)["input_ids"]
    # the continuation alone (after BOS) once each; then every (context, continuation) pair
    alone = _logprobs(model, [([bos], cont_ids[c]) for c in conts], L, batch_size)
    base = dict(zip(conts, alone))
    pairs = [([bos] + list(ctx_ids[i]), cont_ids[c]) for i, (_, cs) in enumerate(items) for c in cs]
    given = _logprobs(model, pairs, L, batch_size)
    correct = np.zeros(len(items))
    right = np.zeros(len(items))
    k = 0
    for i, (_, cs) in enumerate(items):
        lp = given[k:k + len(cs)]
        k += len(cs)
        pmi = [lp[j] - base[c] for j, c in enumerate(cs)]
        correct[i] = float(int(np.argmax(pmi)) == 0)
        right[i] = lp[0] / len((" " + cs[0]).encode("utf-8"))
    return correct, right


def _logprobs(model, pairs: list[tuple[list[int], list[int]]], L: int,
              batch_size: int) -> np.ndarray:
    """Summed log-probability of each continuation given its prefix (prefix truncated on the
    left so that prefix + continuation fits ``L`` tokens)."""
    import torch
    import torch.nn.functional as F

    seqs, firsts = [], []
    for prefix, cont in pairs:
        cont = list(cont)[:L - 1]
        seq = (list(prefix) + cont)[-L:]
        seqs.append(seq)
        firsts.append(len(seq) - len(cont))  # index of the first continuation token
    out = np.zeros(len(seqs))
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            width = len(seqs[idx[0]])
            x = torch.zeros((len(idx), width), dtype=torch.long)
            y = torch.full((len(idx), width), -100, dtype=torch.long)
            for r, i in enumerate(idx):
                s = seqs[i]
                x[r, :len(s)] = torch.tensor(s)
                # position p predicts token p+1: continuation tokens are targets from first-1 on
                y[r, firsts[i] - 1:len(s) - 1] = torch.tensor(s[firsts[i]:])
            with autocast(str(model.device)):  # right padding: never attended to by real tokens
                logits = model(input_ids=x.to(model.device)).logits
            y = y.to(model.device)
            nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                  ignore_index=-100, reduction="none").view(y.shape)
            out[idx] = -nll.double().sum(1).cpu().numpy()
    return out
