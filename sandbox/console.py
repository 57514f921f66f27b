"""Console output: one line per step, and the closing summary beside the baseline."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
if not console.is_terminal and "COLUMNS" not in __import__("os").environ:
    console.width = 160  # logs and pipes: no wrapping of the metrics table at 80 columns



def step_line(name: str, what: str) -> str:
    return f"[bold cyan]{name:>15}[/] {what}"


VERDICT_COLOR = {"better": "green", "worse": "red"}


def print_summary(metrics: dict[str, float], baseline: dict[str, float] | None, run_dir: Path,
                  is_baseline: bool = False,
                  baseline_command: str = "python -m sandbox recipe=none refine=none",
                  primary: str | None = None, signal: dict | None = None,
                  paired: dict | None = None) -> None:
    """The run's metrics (mean ± half-width of the 95% interval where it has one) and, beside a
    baseline, each difference with its interval, p-value and verdict (``sandbox.verdict``).

    ``primary``: the metric the run's verdict rests on (first row, tested at ``ALPHA``); every
    other verdict is Holm-corrected for the number of metrics judged at once. ``signal``:
    ``{metric: {decision_accuracy, low, high, ...}}``, how well each metric ranked recipes on the
    default transfer ladder; a metric whose interval reaches chance (0.5) is shown without a
    verdict, with the reason. ``paired``: ``{metric: (this run's, the baseline's per-document
    arrays by seed, reduce)}``: the comparison is then a paired one over the same documents
    (``verdict.paired_documents``) rather than one over summary values."""
    from sandbox.verdict import ALPHA, LEVEL, from_flat, holm, is_companion

    table = Table(title="metrics" + (" (this run is a baseline)" if is_baseline else ""))
    table.add_column("metric", no_wrap=True)
    table.add_column("this run", justify="right", no_wrap=True)
    if baseline:
        for col in ("baseline", "difference [95% CI]", "p", "p (Holm)", "verdict"):
            table.add_column(col, justify="right", no_wrap=True)
    names = [k for k in sorted(metrics)
             if not is_companion(k) and not (k.startswith("time/") and k != "time/total_s")
             and not (k.startswith("compute/") and k != "compute/total_cpu_s")]
    if primary in names:
        names.remove(primary)
        names.insert(0, primary)
    rows = {k: _versus(k, metrics, baseline, primary, signal or {}, paired or {})
            for k in names} if baseline else {}
    family = {k: r["c"].p for k, r in rows.items() if r.get("judged") and k != primary}
    adjusted = holm(family)
    methods = set()
    for k in names:
        est = from_flat(metrics, k)
        if "decision_accuracy" not in k:  # its interval resamples recipes (noted below)
            methods.add(est.method)
        label = f"{k} *" if k == primary and baseline else k  # * the primary metric
        row = [label, est.text()]
        if baseline:
            row += _cells(rows[k], adjusted.get(k))
        table.add_row(*row)
    console.print(table)
    n = int(metrics.get("n_seeds", 1) or 1)
    if "seeds" in methods:
        console.print(f"± is the half-width of a {LEVEL:.0%} t interval over {n} seeds (model init "
                      f"and data order); verdicts at p < {ALPHA}.")
    elif "bootstrap" in methods:
        console.print(f"± is a {LEVEL:.0%} bootstrap interval over the evaluation documents: it does "
                      f"not cover seed variance. For verdicts that do, run with seeds=3 (and the "
                      f"baseline too); verdicts at p < {ALPHA}.")
    if any("decision_accuracy" in k and k + "_ci_low" in metrics for k in names):
        console.print(f"decision_accuracy ±: a {LEVEL:.0%} bootstrap interval over the recipes "
                      f"(pools) compared; 0.5 is chance.")
    if baseline:
        _closing(rows, primary, family, n)
    # a baseline compares runs of one recipe; workflows whose metrics are all grouped
    # (transfer/..., scale/...) compare their recipes among themselves
    judged = any("/" not in k for k in names)
    if not baseline and not is_baseline and judged:
        console.print(f"No comparable baseline in the tracking store yet: run "
                      f"`{baseline_command}` to make one.")
    console.print(f"run dir: {run_dir}")


def _versus(k, metrics, baseline, primary, signal, paired) -> dict:
    """One metric against the baseline: its cells' values and the comparison (``c``)."""
    from sandbox.verdict import compare, direction, from_flat, paired_documents

    est = from_flat(metrics, k)
    if k not in baseline:
        return {"cells": ["", "", ""]}
    base = from_flat(baseline, k)
    sign = direction(k)
    diff = f"{est.mean - base.mean:+.4g}"
    if sign == 0:  # sizes, times, data metrics: no better or worse, no test
        if base.mean:
            diff += f" ({(est.mean - base.mean) / abs(base.mean):+.1%})"
        return {"cells": [base.text(), diff, ""]}
    parts = None
    if k in paired:
        ours, theirs, reduce = paired[k]
        c, parts = paired_documents(ours, theirs, reduce, sign > 0)
    else:
        c = compare(est, base, sign > 0)
    if c.tested:
        diff = f"{c.diff:+.4g} [{c.low:+.3g}, {c.high:+.3g}]"
    elif base.mean:
        diff += f" ({c.diff / abs(base.mean):+.1%})"
    out = {"cells": [base.text(), diff, f"{c.p:.2g}" if c.tested else ""], "c": c,
           "sign": sign, "parts": parts}
    quality = signal.get(k)
    if quality is not None and not _ranks(quality):
        acc = quality.get("decision_accuracy")
        out["reason"] = (f"does not rank recipes: decision accuracy {acc:.2f} "
                         f"[{quality.get('low', float('nan')):.2f}, "
                         f"{quality.get('high', float('nan')):.2f}] on the default ladder")
    else:
        out["judged"] = c.tested
    return out


def _ranks(quality: dict) -> bool:
    """A metric ranks recipes when its decision accuracy's interval lies above chance."""
    low = quality.get("low", quality.get("decision_accuracy_ci_low"))
    return low is not None and float(low) > 0.5


def _cells(row: dict, adjusted: float | None) -> list[str]:
    from sandbox.verdict import with_p

    cells = list(row["cells"])
    c = row.get("c")
    if c is None:
        return cells + ["", ""]
    if row.get("reason"):
        return cells + ["", "no verdict (no signal)"]
    if adjusted is not None and c.tested:
        c = row["c"] = with_p(c, adjusted, row["sign"] > 0)
    verdict = c.verdict + (f" ({c.test})" if c.tested and c.test != "paired t" else "")
    color = VERDICT_COLOR.get(c.verdict)
    return cells + ["" if adjusted is None else f"{adjusted:.2g}",
                    f"[{color}]{verdict}[/]" if color else verdict]


def _closing(rows: dict, primary: str | None, family: dict, n_seeds: int) -> None:
    """Which metric the verdict rests on, how the others are corrected, and the smallest
    difference this run could have told from noise."""
    from sandbox.verdict import ALPHA, detectable_difference, seeds_needed

    for k, row in rows.items():
        if row.get("reason"):
            console.print(f"{k}: no verdict: it {row['reason']}.")
    if family:
        console.print(f"Other verdicts: Holm-corrected for {len(family)} metrics judged at once "
                      f"(p (Holm) < {ALPHA}).")
    row = rows.get(primary) if primary else None
    if row is None or row.get("c") is None or not row["c"].tested:
        return
    c = row["c"]
    console.print(f"Verdict ({primary} *, the primary metric, p < {ALPHA}): [bold]{c.verdict}[/] "
                  f"({c.diff:+.4g}, 95% CI [{c.low:+.3g}, {c.high:+.3g}], p = {c.p:.2g}, "
                  f"{c.test}).")
    parts = row.get("parts")
    if not parts:
        return
    mdd = detectable_difference(parts["seed_var"], int(parts["n_seeds"]), parts["doc_var"])
    if n_seeds < 2 or parts["n_seeds"] < 2:
        console.print(f"With one seed, a {primary} difference below {mdd:.3g} cannot be told from "
                      f"the evaluation documents' noise (80% power), and seed noise is not "
                      f"measured: run this and the baseline with seeds=3.")
        return
    need = seeds_needed(c.diff, parts["seed_var"], parts["doc_var"])
    more = (f"about {need} seeds would detect the observed {abs(c.diff):.3g}" if need else
            f"no number of seeds would detect the observed {abs(c.diff):.3g} on these "
            f"documents (more evaluation documents would)")
    console.print(f"With {int(parts['n_seeds'])} seeds, a {primary} difference below {mdd:.3g} "
                  f"cannot be told from noise (80% power, p < {ALPHA}); {more}.")
