"""How much of a search's ranking is noise: which completed trials are within noise of the best,
and whether a confirmed winner held up (the winner's curse).

A trial's objective is an ``Estimate`` (``sandbox.verdict``) built from the metrics it reported
(the trial's user attr ``metrics``): ``NAME_ci_low``/``NAME_ci_high`` (a bootstrap over
evaluation documents for a single-seed sandbox run, a t interval over seeds with ``seeds=N``),
``NAME_std``, ``NAME.seedS`` and ``n_seeds``. A trial is *within noise* of the best when
``sandbox.verdict.compare`` finds no significant difference between the two; a trial that
reported no interval cannot be tested, and when none did the count is unknown, not zero.

The best of a search is the maximum of many noisy values, so it is biased: re-run with fresh
seeds it tends to come out worse. ``curse`` words a confirmation: ``worse`` when the confirmed
interval lies entirely on the worse side of the searched value (the winner's curse, plainly).
"""
from __future__ import annotations

import math
from typing import Any

from sandbox.verdict import ALPHA, Estimate, compare, from_flat, over_seeds

UNKNOWN = "unknown (trials report no intervals)"
# what an interval covers, by ``Estimate.method``
METHOD_WORDS = {"bootstrap": "each trial's own single-run interval (the sandbox's: a bootstrap "
                             "over evaluation documents, which does not cover seed variance)",
                "seeds": "t intervals over seeds"}


def trial_estimate(metrics: dict[str, Any] | None, name: str, value: float) -> Estimate:
    """The estimate of objective ``name`` that a trial reported (``value``: the value the study
    was told, which is its mean); without companions, an estimate with no interval."""
    clean = {k: float(v) for k, v in (metrics or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    clean[name] = float(value)
    est = from_flat(clean, name)
    if not est.has_interval and len(est.per_seed) >= 2:  # per-seed values without their interval
        est = over_seeds(est.per_seed)
    return est


def feasible(trial) -> bool:
    """A completed trial that meets the study's constraints (if it has any)."""
    return all(c <= 0 for c in (trial.user_attrs.get("constraints") or []))


def _best_on(trials: list, index: int, maximize: bool):
    return (max if maximize else min)(trials, key=lambda t: t.values[index])


def within_noise(study, objectives: list[str], best_trials: list,
                 alpha: float = ALPHA) -> dict[str, dict[str, Any]]:
    """For each objective: the completed, feasible trials not significantly different from the
    best one. One objective: the study's best trial (``best_trials[0]``); several: the trial
    with the best value of that objective. Each entry holds ``best_trial``, ``within`` (trial
    numbers), ``others`` (completed feasible trials besides the best), ``untested`` (no interval
    to test with), ``count`` (None when unknown) and ``text`` (the summary's sentence)."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and feasible(t)]
    out: dict[str, dict[str, Any]] = {}
    if not complete or not best_trials:
        return out
    for i, name in enumerate(objectives):
        maximize = study.directions[i].name == "MAXIMIZE"
        best = best_trials[0] if len(objectives) == 1 else _best_on(complete, i, maximize)
        best_est = trial_estimate(best.user_attrs.get("metrics"), name, best.values[i])
        others = [t for t in complete if t.number != best.number]
        within, untested, methods = [], [], set()
        if best_est.has_interval:
            methods.add(best_est.method)
        for t in others:
            est = trial_estimate(t.user_attrs.get("metrics"), name, t.values[i])
            c = compare(est, best_est, higher_is_better=maximize, alpha=alpha)
            if not c.tested:
                untested.append(t.number)
                continue
            methods.add(est.method)
            if c.p >= alpha:
                within.append(t.number)
        entry: dict[str, Any] = {"best_trial": best.number, "within": within,
                                 "others": len(others), "untested": untested, "alpha": alpha,
                                 "methods": sorted(m for m in methods if m != "none")}
        tested = len(others) - len(untested)
        if others and tested == 0:
            entry.update(count=None, text=UNKNOWN)
        else:
            entry["count"] = len(within)
            entry["text"] = _sentence(entry, tested)
        out[name] = entry
    return out


def _sentence(entry: dict[str, Any], tested: int) -> str:
    within, others, untested = entry["within"], entry["others"], entry["untested"]
    if not others:
        return "no other completed trial to compare with"
    text = (f"{len(within)} of {tested} other completed trial(s) within noise of the best "
            f"(trial {entry['best_trial']}; no significant difference at "
            f"alpha={entry['alpha']:g}")
    if within:
        shown = ", ".join(map(str, within[:12])) + (", ..." if len(within) > 12 else "")
        text += f": trial(s) {shown}"
    text += ")"
    if untested:
        text += f"; {len(untested)} more report no interval (not tested)"
    words = [METHOD_WORDS[m] for m in entry["methods"] if m in METHOD_WORDS]
    if words:
        text += f"; intervals: {' and '.join(words)}"
    return text


def curse(searched: float, confirmed: Estimate, maximize: bool) -> str:
    """``worse`` when the confirmed interval lies entirely on the worse side of the searched
    value (the winner's curse), ``better`` on the better side, ``consistent`` when it covers it,
    ``no interval`` when the confirmation has none."""
    if not confirmed.has_interval or math.isnan(searched):
        return "no interval"
    below, above = confirmed.high < searched, confirmed.low > searched
    if maximize:
        return "worse" if below else ("better" if above else "consistent")
    return "worse" if above else ("better" if below else "consistent")
