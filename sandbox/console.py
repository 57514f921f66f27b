"""Console output: one line per step, and the closing summary beside the baseline."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)

# Which way is better, for the metrics the summary compares.
LOWER_IS_BETTER = ("perplexity", "token_perplexity", "bits_per_byte", "eval_loss")


def step_line(name: str, what: str) -> str:
    return f"[bold cyan]{name:>15}[/] {what}"


def print_summary(metrics: dict[str, float], baseline: dict[str, float] | None, run_dir: Path,
                  is_baseline: bool = False) -> None:
    table = Table(title="metrics" + (" (this run is a baseline)" if is_baseline else ""))
    table.add_column("metric")
    table.add_column("this run", justify="right")
    if baseline:
        table.add_column("baseline", justify="right")
        table.add_column("change", justify="right")
    for k in sorted(metrics):
        if k.startswith("time/") and k != "time/total_s":
            continue
        row = [k, f"{metrics[k]:.4g}"]
        if baseline:
            b = baseline.get(k)
            row.append("" if b is None else f"{b:.4g}")
            if b is not None and b != 0:
                change = (metrics[k] - b) / abs(b)
                better = change < 0 if k in LOWER_IS_BETTER else change > 0
                color = "green" if better else "red"
                row.append(f"[{color}]{change:+.1%}[/]" if k in LOWER_IS_BETTER or
                           k.startswith("downstream") else f"{change:+.1%}")
            else:
                row.append("")
        table.add_row(*row)
    console.print(table)
    if not baseline and not is_baseline:
        console.print("No comparable baseline in the tracking store yet: run "
                      "`python -m sandbox recipe=none refine=none` to make one.")
    console.print(f"run dir: {run_dir}")
