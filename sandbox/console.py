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
                  baseline_command: str = "python -m sandbox recipe=none refine=none") -> None:
    """The run's metrics (mean ± half-width of the 95% interval where it has one) and, beside a
    baseline, each difference with its interval, p-value and verdict (``sandbox.verdict``)."""
    from sandbox.verdict import ALPHA, LEVEL, compare, direction, from_flat, is_companion

    table = Table(title="metrics" + (" (this run is a baseline)" if is_baseline else ""))
    table.add_column("metric", no_wrap=True)
    table.add_column("this run", justify="right", no_wrap=True)
    if baseline:
        for col in ("baseline", "difference [95% CI]", "p", "verdict"):
            table.add_column(col, justify="right", no_wrap=True)
    methods = set()
    for k in sorted(metrics):
        if is_companion(k) or (k.startswith("time/") and k != "time/total_s"):
            continue
        est = from_flat(metrics, k)
        methods.add(est.method)
        row = [k, est.text()]
        if baseline:
            row += _versus(k, est, baseline, compare, direction, from_flat)
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
    if not baseline and not is_baseline:
        console.print(f"No comparable baseline in the tracking store yet: run "
                      f"`{baseline_command}` to make one.")
    console.print(f"run dir: {run_dir}")


def _versus(k, est, baseline, compare, direction, from_flat) -> list[str]:
    if k not in baseline:
        return ["", "", "", ""]
    base = from_flat(baseline, k)
    sign = direction(k)
    diff = f"{est.mean - base.mean:+.4g}"
    if sign == 0:  # sizes, times, data metrics: no better or worse, no test
        if base.mean:
            diff += f" ({(est.mean - base.mean) / abs(base.mean):+.1%})"
        return [base.text(), diff, "", ""]
    c = compare(est, base, sign > 0)
    if c.tested:
        diff += f" [{c.low:+.3g}, {c.high:+.3g}]"
    elif base.mean:
        diff += f" ({c.diff / abs(base.mean):+.1%})"
    verdict = c.verdict + (f" ({c.test})" if c.tested and c.test != "paired t" else "")
    color = VERDICT_COLOR.get(c.verdict)
    return [base.text(), diff, f"{c.p:.2g}" if c.tested else "",
            f"[{color}]{verdict}[/]" if color else verdict]
