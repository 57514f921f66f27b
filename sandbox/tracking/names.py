"""Metric names in the tracking store, grouped by what they measure.

Steps return short names (``perplexity``, ``retention``, ``train_loss``); those are the names
``sandbox.run`` returns, the console table prints and ``objective:`` / ``constraints:`` /
``stop_when`` use, and they do not change. Only what the tracker logs is grouped, so that the
MLflow run page and compare view show one section per group (MLflow sections charts by the
part of the name before the first ``/``):

* ``eval/...``  the model's evaluation (``eval/perplexity``, ``eval/downstream_accuracy``);
* ``data/...``  the processed data (``data/retention``, ``data/quality_score``);
* ``train/...`` training (``train/loss``: the curve, step = tokens seen; ``train/loss_final``);
* ``time/...``  wall times (``time/<step>_s``, ``time/total_s``).

Names that already hold a ``/`` keep their first part (``time/...``, ``retention/<source>``
goes under ``data/``, ``<pipeline>/...`` of a multi-pipeline experiment stays that pipeline's
section). A metric's companions (``sandbox.verdict``: ``_std``, ``_ci_low``, ``_ci_high``,
``.seed<n>``) follow it (``eval/perplexity_ci_low``). A name not listed here is logged as it
is: add a new step's metrics to the tables.
"""
from __future__ import annotations

from sandbox.verdict import SEED_SEP, SUFFIXES

GROUPS = ("eval", "data", "train", "time")

# metric -> its group; the logged name is "<group>/<metric>"
GROUP_OF = {
    **dict.fromkeys(("perplexity", "token_perplexity", "bits_per_byte", "downstream_accuracy",
                     "downstream_f1", "downstream_majority", "downstream_logprob",
                     "choice_accuracy", "choice_chance", "choice_logprob"), "eval"),
    **dict.fromkeys(("retention", "quality_score", "quality_score_before", "diversity",
                     "diversity_before", "diversity_words_used", "num_samples",
                     "num_tokens_approx", "samples_in", "samples_out"), "data"),
    **dict.fromkeys(("epochs", "num_params", "pool_tokens", "vocab_size", "num_threads"), "train"),
}

# metrics whose short name would repeat the group: logged under a name of their own
RENAMED = {
    "eval_loss": "eval/loss",
    "train_loss": "train/loss",
    "train_loss_final": "train/loss_final",
    "train_tokens_per_s": "train/tokens_per_s",
    "lr": "train/lr",
    "train_seconds": "time/train_loop_s",
    "setup_seconds": "time/train_setup_s",
    "eval_seconds": "time/eval_s",
}
_UNRENAMED = {v: k for k, v in RENAMED.items()}


def tracked_name(name: str) -> str:
    """The name a metric is logged under (``perplexity`` -> ``eval/perplexity``)."""
    base, companion = _split_companion(name)
    return _tracked_base(base) + companion


def short_name(tracked: str) -> str:
    """The inverse of ``tracked_name`` for the names it produces (a baseline's metrics, read
    back from the store, line up with this run's); other names come back unchanged."""
    base, companion = _split_companion(tracked)
    if base in _UNRENAMED:
        return _UNRENAMED[base] + companion
    group, sep, rest = base.partition("/")
    if sep and group in ("eval", "data", "train") and _tracked_base(rest) == base:
        return rest + companion
    return tracked


def _tracked_base(name: str) -> str:
    if name in RENAMED:
        return RENAMED[name]
    head = name.split("/", 1)[0]
    if head in GROUPS:
        return name
    group = GROUP_OF.get(head)
    if group is None and "/" not in name:  # a new evaluator's metrics still land in a section
        if name.startswith(("downstream_", "eval_")):
            group = "eval"
        elif name.endswith("_seconds"):
            return f"time/{name[:-len('_seconds')]}_s"
    return f"{group}/{name}" if group else name


def _split_companion(name: str) -> tuple[str, str]:
    """``perplexity_ci_low`` -> (``perplexity``, ``_ci_low``); ``perplexity.seed3`` likewise."""
    if SEED_SEP in name:
        i = name.index(SEED_SEP)
        return name[:i], name[i:]
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix
    return name, ""
