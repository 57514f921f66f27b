"""How often a cheap verdict holds at a larger scale: `experiment=transfer` on the default
corpus, its time per recipe per scale and the decision accuracy of each metric, one figure per
line. `--processes 2` runs two processes on one cache, which split the grid (one per core);
`--write-signal` copies each metric's decision accuracy and interval into
conf/evaluator/lm.yaml's `signal:` block, which the closing table reads to withhold verdicts on
metrics that do not rank recipes.

    python bench/transfer.py                       # the default ladder, 3 seeds (~80 min, 2 cores)
    python bench/transfer.py --processes 2 --write-signal
    python bench/transfer.py --from outputs/.../transfer/transfer.json --write-signal
    python bench/transfer.py -- transfer.seeds=2   # more overrides after --
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "bench" / ".work"))
LM_YAML = ROOT / "conf" / "evaluator" / "lm.yaml"


def run(processes: int, overrides: list[str]) -> Path:
    """Run the experiment (``processes`` at once on one cache); the first one's transfer.json."""
    cache = WORK / "transfer_cache"
    dirs = [WORK / f"transfer_run{i}" for i in range(processes)]
    procs = []
    for i, d in enumerate(dirs):
        cmd = [sys.executable, "-m", "sandbox", "experiment=transfer", f"cache_dir={cache}",
               f"hydra.run.dir={d}", "progress=false", *(["tracking=none"] if i else []),
               *overrides]
        print(f"# {' '.join(cmd)}", file=sys.stderr)
        procs.append(subprocess.Popen(cmd, cwd=WORK, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        time.sleep(5 if processes > 1 else 0)  # the first one probes; the next reuse its stats
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"experiment=transfer failed ({codes}); see {dirs[0]}/sandbox.log")
    return dirs[0] / "transfer" / "transfer.json"


def figures(summary: dict, cells_csv: Path | None) -> None:
    for metric, row in summary["metrics"].items():
        for key in ("decision_accuracy", "decision_accuracy_ci_low", "decision_accuracy_ci_high",
                    "spearman", "decision_pairs", "decided_pairs", "decision_accuracy_decided"):
            if key in row:
                print(f"transfer_{metric}_{key} {row[key]:.4g}")
    if cells_csv and cells_csv.is_file():
        import csv

        by_scale: dict[str, list[float]] = {}
        for r in csv.DictReader(open(cells_csv)):
            by_scale.setdefault(r["scale"], []).append(float(r["seconds"]))
        for scale, secs in by_scale.items():
            print(f"transfer_seconds_per_recipe_{scale} {sum(secs) / len(secs):.1f} s")


def write_signal(summary: dict, path: Path = LM_YAML) -> None:
    """Replace the ``signal:`` block of conf/evaluator/lm.yaml with the measured values."""
    lines = []
    for metric, row in summary["metrics"].items():
        if "decision_accuracy" not in row:
            continue
        lines.append(f"  {metric}: {{decision_accuracy: {row['decision_accuracy']:.3f}, "
                     f"low: {row.get('decision_accuracy_ci_low', float('nan')):.3f}, "
                     f"high: {row.get('decision_accuracy_ci_high', float('nan')):.3f}, "
                     f"spearman: {row.get('spearman', float('nan')):.3f}}}")
    text = path.read_text()
    new, n = re.subn(r"^signal:.*\n(?:  .*\n)*", "signal:\n" + "\n".join(lines) + "\n",
                     text, flags=re.M)
    if n != 1:
        sys.exit(f"{path}: no `signal:` block to replace")
    path.write_text(new)
    print(f"# wrote the signal of {len(lines)} metrics to {path}", file=sys.stderr)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--from", dest="source", type=Path, help="an existing transfer.json")
    p.add_argument("--write-signal", action="store_true")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    source = a.source or run(a.processes, a.overrides)
    summary = json.loads(source.read_text())
    figures(summary, source.parent / "cells.csv")
    if a.write_signal:
        write_signal(summary)


if __name__ == "__main__":
    main()
