"""Uncertainty and verdicts: one implementation for every comparison the sandbox prints.

A metric is an ``Estimate``: its mean and an interval. Over several seeds the interval is
Student's t interval of the seeds' mean (it covers seed variance: model init and data order).
With one seed, a held-out metric may still carry a bootstrap interval over evaluation documents
(``method == "bootstrap"``): it covers which documents were evaluated, *not* seed variance, and
every table says so.

``compare(a, b)`` tests ``a - b``: paired t over the seeds both sides ran (same seeds), else
Welch's t from means and standard deviations, else (a side with one seed: intervals only) a
normal test from the two intervals (``bootstrap z``; ``interval z`` when one side's interval is
over seeds and the other's over documents). Its ``verdict`` is "better", "worse" or "no detectable
difference" at level ``alpha``; a side with neither seeds nor an interval is "not tested".

Flat metrics (what MLflow stores) carry an estimate as ``NAME`` (the mean), ``NAME_std``,
``NAME_ci_low``, ``NAME_ci_high`` and the run-wide ``n_seeds``; per-seed values, when known, as
``NAME.seedS`` (kept out of tables, used for pairing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

LEVEL = 0.95  # interval coverage everywhere
ALPHA = 0.05  # significance level of every verdict
SUFFIXES = ("_std", "_ci_low", "_ci_high")
SEED_SEP = ".seed"  # `perplexity.seed42` (MLflow names allow dots, not @ or #)

# Which way is better, for the metrics verdicts are given on (others: no direction, no verdict).
# (token_perplexity and eval_loss are per token of each run's own tokenizer: no verdict across
# recipes, which train different tokenizers)
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "mse",
                   # distances to reference media (evaluator=inception, Data-Juicer's names)
                   "fid50k", "kid50k", "fvd2048_16f", "fvd2048_128f", "fvd2048_128f_subsample8f",
                   "kvd2048_16f")
HIGHER_IS_BETTER_PREFIXES = ("downstream_accuracy", "downstream_f1", "downstream_logprob",
                             "choice_accuracy", "choice_logprob",
                             # image-text retrieval and zero-shot (evaluator=retrieval)
                             "i2t_recall_at_", "t2i_recall_at_", "recall_mean",
                             "zero_shot_accuracy",
                             # answers against the truth (evaluator=accuracy)
                             "accuracy",
                             # captions (evaluator=coco_caption | internvl_coco_caption)
                             "Bleu_", "METEOR", "ROUGE_L", "CIDEr", "SPICE", "avg_score",
                             # generated media (evaluator=inception)
                             "is50k_mean", "isv2048_ucf_mean", "pr50k_3n_precision",
                             "pr50k_3n_recall", "prv2048_3n_16f_precision",
                             "prv2048_3n_16f_recall")
# every metric of these groups is better higher: vbench/<dimension>, vbench/mean, judge/mean
HIGHER_IS_BETTER_GROUPS = {"vbench": "", "judge": "mean"}  # group -> only this metric ("": all)


def direction(name: str) -> int:
    """-1 when lower is better, +1 when higher is better, 0 when the metric has no direction."""
    parts = name.split("/")
    base = parts[-1]
    if base in LOWER_IS_BETTER:
        return -1
    if base.startswith(HIGHER_IS_BETTER_PREFIXES):
        return 1
    if len(parts) >= 2 and HIGHER_IS_BETTER_GROUPS.get(parts[-2], None) in ("", base):
        return 1
    return 0


@dataclass(frozen=True)
class Estimate:
    mean: float
    std: float = math.nan  # across seeds (nan with one seed)
    n: int = 1  # seeds
    low: float = math.nan
    high: float = math.nan
    method: str = "none"  # "seeds" | "bootstrap" (eval sampling, one seed) | "none"
    per_seed: dict[int, float] = field(default_factory=dict)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def text(self, digits: int = 4) -> str:
        """``mean ± half-width`` of the interval (or the mean alone)."""
        if not self.has_interval or self.high - self.low <= 1e-9 * max(1.0, abs(self.mean)):
            return f"{self.mean:.{digits}g}"  # no interval, or one seeds do not move
        return f"{self.mean:.{digits}g} ± {(self.high - self.low) / 2:.2g}"


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float, float]:
    """``(mean, std, low, high)``: Student's t interval of the mean of ``values`` (>= 2)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan, math.nan
    s = float(x.std(ddof=1))
    half = float(student_t.ppf(0.5 + level / 2, x.size - 1)) * s / math.sqrt(x.size)
    return m, s, m - half, m + half


def over_seeds(values_by_seed: dict[int, float], level: float = LEVEL) -> Estimate:
    """The estimate of a metric measured once per seed."""
    vals = [float(v) for v in values_by_seed.values()]
    m, s, lo, hi = t_interval(vals, level)
    return Estimate(m, s, len(vals), lo, hi, "seeds" if len(vals) > 1 else "none",
                    dict(values_by_seed))


def bootstrap_interval(stat, arrays: tuple, level: float = LEVEL, n_boot: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(*arrays)`` resampling rows (the same rows of every
    array: e.g. per-document NLL and word counts for a ratio)."""
    arrays = tuple(np.asarray(a, dtype=float) for a in arrays)
    n = len(arrays[0])
    if n < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    values = np.array([stat(*(a[i] for a in arrays)) for i in idx])
    lo, hi = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


# ============================================================================ flat metrics
def flat(name: str, est: Estimate) -> dict[str, float]:
    """An estimate as flat metrics (see the module docstring)."""
    out = {name: est.mean}
    if est.n > 1:
        out[name + "_std"] = est.std
    if est.has_interval:
        out[name + "_ci_low"], out[name + "_ci_high"] = est.low, est.high
    for s, v in est.per_seed.items():
        out[f"{name}{SEED_SEP}{s}"] = float(v)
    return out


def from_flat(metrics: dict[str, float], name: str) -> Estimate:
    """The estimate of ``name`` that ``flat`` (plus ``n_seeds``) wrote."""
    n = int(metrics.get("n_seeds", 1) or 1)
    low = metrics.get(name + "_ci_low", math.nan)
    high = metrics.get(name + "_ci_high", math.nan)
    prefix = name + SEED_SEP
    per_seed = {int(k[len(prefix):]): float(v) for k, v in metrics.items()
                if k.startswith(prefix) and k[len(prefix):].lstrip("-").isdigit()}
    has = not (math.isnan(low) or math.isnan(high))
    method = "seeds" if n > 1 and has else ("bootstrap" if has else "none")
    return Estimate(float(metrics[name]), float(metrics.get(name + "_std", math.nan)),
                    n if method == "seeds" else 1, float(low), float(high), method, per_seed)


def is_companion(name: str) -> bool:
    """True for the flat keys that belong to another metric (std, interval, per-seed values)."""
    return name.endswith(SUFFIXES) or SEED_SEP in name or name == "n_seeds"


# ============================================================================ comparing
@dataclass(frozen=True)
class Comparison:
    diff: float  # a - b
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan
    test: str = ""  # "paired t" | "Welch t" | "bootstrap z" | "interval z" | ""
    verdict: str = "not tested"
    alpha: float = ALPHA

    @property
    def tested(self) -> bool:
        return bool(self.test) and not math.isnan(self.p)


def compare(a: Estimate, b: Estimate, higher_is_better: bool | None,
            alpha: float = ALPHA, level: float = LEVEL) -> Comparison:
    """Test ``a`` against ``b`` (see the module docstring); ``higher_is_better=None``: a test but
    no better/worse wording."""
    from scipy import stats

    diff = a.mean - b.mean
    shared = sorted(set(a.per_seed) & set(b.per_seed))
    if len(shared) >= 2 and len(shared) == len(a.per_seed) == len(b.per_seed):
        d = np.array([a.per_seed[s] - b.per_seed[s] for s in shared])
        m, s, lo, hi = t_interval(d, level)
        if s == 0:
            p = 1.0 if m == 0 else 0.0
            lo = hi = m
        else:
            p = float(2 * stats.t.sf(abs(m) / (s / math.sqrt(d.size)), d.size - 1))
        return _worded(Comparison(diff, lo, hi, p, "paired t", alpha=alpha), higher_is_better)
    if a.n >= 2 and b.n >= 2 and not (math.isnan(a.std) or math.isnan(b.std)):
        va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
        se = math.sqrt(va + vb)
        if se == 0:
            p = 1.0 if diff == 0 else 0.0
            return _worded(Comparison(diff, diff, diff, p, "Welch t", alpha=alpha),
                           higher_is_better)
        df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
        p = float(2 * stats.t.sf(abs(diff) / se, df))
        half = float(stats.t.ppf(0.5 + level / 2, df)) * se
        return _worded(Comparison(diff, diff - half, diff + half, p, "Welch t", alpha=alpha),
                       higher_is_better)
    if a.has_interval and b.has_interval:
        z = float(stats.norm.ppf(0.5 + level / 2))
        se = math.hypot((a.high - a.low) / (2 * z), (b.high - b.low) / (2 * z))
        if se == 0:
            return Comparison(diff, alpha=alpha)
        p = float(2 * stats.norm.sf(abs(diff) / se))
        test = "bootstrap z" if a.method == b.method == "bootstrap" else "interval z"
        return _worded(Comparison(diff, diff - z * se, diff + z * se, p, test, alpha=alpha),
                       higher_is_better)
    return Comparison(diff, alpha=alpha)


def _worded(c: Comparison, higher_is_better: bool | None) -> Comparison:
    if c.p < c.alpha and c.diff != 0 and higher_is_better is not None:
        return replace(c, verdict="better" if (c.diff > 0) == higher_is_better else "worse")
    if c.p < c.alpha:
        return replace(c, verdict="different")
    return replace(c, verdict="no detectable difference")


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: the family-wise error over every metric tested at once
    stays below ``alpha`` when each verdict compares its adjusted p with ``alpha``."""
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    out, running, m = {}, 0.0, len(ordered)
    for i, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out


def with_p(c: Comparison, p: float, higher_is_better: bool | None) -> Comparison:
    """``c`` judged at another p-value (a multiplicity-adjusted one)."""
    return _worded(replace(c, p=p), higher_is_better)


# ============================================================================ per document
def paired_documents(a: dict[int, tuple], b: dict[int, tuple], stat, higher_is_better: bool | None,
                     n_boot: int = 1000, alpha: float = ALPHA, level: float = LEVEL,
                     seed: int = 0) -> tuple[Comparison, dict[str, float]]:
    """``a - b`` on the same evaluation documents. ``a``/``b``: ``{seed: per-document arrays}``
    (the arrays ``stat(*arrays)`` reduces to the metric, e.g. NLL and bytes for bits per byte).

    The documents are resampled together on both sides (a paired bootstrap, ``n_boot`` times), so
    what both models find hard cancels out. With one seed a side that is the whole test
    (``paired bootstrap``). With seeds, the variance of the difference adds the seeds' (the
    per-seed differences when both sides ran the same seeds, else each side's spread) and the
    documents' (the bootstrap of the seed-averaged difference): ``paired t + docs``, a t test with
    Welch-Satterthwaite degrees of freedom. Also returns the variance parts, for
    ``detectable_difference``: ``seed_var`` (per seed), ``n_seeds``, ``doc_var``, ``df``."""
    from scipy import stats as st

    n_docs = {len(arrs[0]) for arrs in (*a.values(), *b.values())}
    if len(n_docs) != 1:
        raise ValueError(f"paired_documents: the sides scored different documents ({n_docs})")
    n = n_docs.pop()
    va = {s: stat(*arrs) for s, arrs in a.items()}
    vb = {s: stat(*arrs) for s, arrs in b.items()}
    diff = float(np.mean(list(va.values())) - np.mean(list(vb.values())))
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, n, size=n)
        boots[i] = (np.mean([stat(*(x[idx] for x in arrs)) for arrs in a.values()])
                    - np.mean([stat(*(x[idx] for x in arrs)) for arrs in b.values()]))
    doc_var = float(boots.var(ddof=1))
    paired = sorted(va) == sorted(vb)
    if paired and len(va) >= 2:
        d = np.array([va[s] - vb[s] for s in sorted(va)])
        seed_var, n_seeds = float(d.var(ddof=1)), len(d)
        seed_part = seed_var / n_seeds
        parts_df = [(seed_part, n_seeds - 1)]
    elif len(va) >= 2 and len(vb) >= 2:
        xa, xb = np.array(list(va.values())), np.array(list(vb.values()))
        pa, pb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
        seed_part, n_seeds = float(pa + pb), min(len(xa), len(xb))
        seed_var = seed_part * n_seeds
        parts_df = [(pa, len(xa) - 1), (pb, len(xb) - 1)]
    else:
        seed_var, seed_part, n_seeds, parts_df = math.nan, 0.0, 1, []
    var = doc_var + seed_part
    se = math.sqrt(var)
    if parts_df:  # Welch-Satterthwaite: the documents' part has (nearly) infinite dof
        denom = sum(v * v / k for v, k in parts_df if k > 0)
        df = var * var / denom if denom > 0 else math.inf
        test = "paired t + docs"
    else:
        df, test = math.inf, "paired bootstrap"
    q = float(st.t.ppf(0.5 + level / 2, df)) if math.isfinite(df) else float(
        st.norm.ppf(0.5 + level / 2))
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(2 * (st.t.sf(abs(diff) / se, df) if math.isfinite(df)
                       else st.norm.sf(abs(diff) / se)))
    c = _worded(Comparison(diff, diff - q * se, diff + q * se, p, test, alpha=alpha),
                higher_is_better)
    return c, {"seed_var": seed_var, "n_seeds": float(n_seeds), "doc_var": doc_var, "df": df}


def detectable_difference(seed_var: float, n_seeds: int, doc_var: float, alpha: float = ALPHA,
                          power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``alpha`` finds with probability
    ``power``: ``(t_{1-alpha/2} + t_{power}) * SE``, ``SE^2 = seed_var / n_seeds + doc_var``
    (t with ``n_seeds - 1`` dof when seeds count, else normal). ``seed_var`` nan: one seed, the
    documents' part only."""
    from scipy import stats as st

    seeds = not math.isnan(seed_var) and n_seeds >= 2
    se = math.sqrt((seed_var / n_seeds if seeds else 0.0) + doc_var)
    dist = st.t(n_seeds - 1) if seeds else st.norm()
    return float((dist.ppf(1 - alpha / 2) + dist.ppf(power)) * se)


def seeds_needed(diff: float, seed_var: float, doc_var: float, alpha: float = ALPHA,
                 power: float = 0.8, most: int = 1000) -> int | None:
    """About how many seeds (per side, paired) would detect a true difference of ``diff``;
    None when no number up to ``most`` would (the documents' own noise is too large)."""
    if math.isnan(seed_var) or diff == 0:
        return None
    for n in range(2, most + 1):
        if detectable_difference(seed_var, n, doc_var, alpha, power) <= abs(diff):
            return n
    return None


# ============================================================================ transfer
def decision_accuracy(small: dict[str, float], large: dict[str, float],
                      level: float = LEVEL, decided: set[frozenset] | None = None,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Do two settings order pairs of recipes (pools) alike? DataDecide's *decision accuracy*
    (arXiv 2504.11393): the share of pairs ordered the same way, pairs tied at either setting left
    out. ``decision_accuracy_ci_*`` is a percentile bootstrap over the recipes (pairs that share
    a recipe are not independent, so a binomial interval over pairs would be too narrow).
    ``decided``: the pairs the larger setting itself tells apart beyond its own noise
    (``decided_pairs``, and ``decision_accuracy_decided`` over those alone). ``spearman`` is the
    rank correlation of the two settings' values."""
    names = sorted(set(small) & set(large))
    out = {"decision_pairs": 0.0, "recipes": float(len(names))}
    agree, total = _agreement(names, small, large)
    out["decision_pairs"] = float(total)
    if total == 0:
        return out
    out["decision_accuracy"] = agree / total
    rng = np.random.default_rng(seed)
    accs = []
    for _ in range(n_boot):
        pick = [names[i] for i in rng.integers(0, len(names), size=len(names))]
        g, t = _agreement(pick, small, large)
        if t:
            accs.append(g / t)
    if accs:
        lo, hi = np.quantile(accs, [0.5 - level / 2, 0.5 + level / 2])
        out["decision_accuracy_ci_low"], out["decision_accuracy_ci_high"] = float(lo), float(hi)
    if len(names) >= 3:
        from scipy.stats import spearmanr

        rho = spearmanr([small[k] for k in names], [large[k] for k in names]).statistic
        out["spearman"] = float(rho) if np.isfinite(rho) else math.nan
    if decided is not None:
        kept = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]
                if frozenset((x, y)) in decided]
        g = sum((small[x] - small[y]) * (large[x] - large[y]) > 0 for x, y in kept)
        t = sum((small[x] - small[y]) * (large[x] - large[y]) != 0 for x, y in kept)
        out["decided_pairs"] = float(len(kept))
        if t:
            out["decision_accuracy_decided"] = g / t
    return out


def _agreement(names: list[str], small: dict[str, float], large: dict[str, float]
               ) -> tuple[int, int]:
    """(pairs ordered alike, pairs counted) over the pairs of distinct names in ``names`` (a
    bootstrap sample may repeat a name: each repeat pairs again with the others)."""
    agree = total = 0
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            if x == y:
                continue
            ds, dl = small[x] - small[y], large[x] - large[y]
            if ds == 0 or dl == 0:
                continue
            total += 1
            agree += (ds > 0) == (dl > 0)
    return agree, total


def decided_pairs(per_seed: dict[str, dict[int, float]], alpha: float = ALPHA) -> set[frozenset]:
    """The pairs of names whose values over seeds differ beyond their noise: ``compare`` (paired
    t over shared seeds, else Welch) at ``alpha``. DataDecide counts pairs within the large
    scale's own noise apart."""
    names = sorted(per_seed)
    ests = {k: over_seeds(per_seed[k]) for k in names}
    out = set()
    for i, x in enumerate(names):
        for y in names[i + 1:]:
            c = compare(ests[x], ests[y], None, alpha)
            if c.tested and c.p < alpha:
                out.add(frozenset((x, y)))
    return out
