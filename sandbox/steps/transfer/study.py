"""Train and evaluate every ladder member at every scale with seeds, and measure how well the
small scales' verdicts transfer to the largest one.

A *cell* is one (pool, scale, seed): its trainer and evaluator configs, its seed and the pool
file's content decide its result, which is cached under ``cache_dir/transfer/`` (metrics and
per-document scores; the model itself is deleted once scored). So a second run of a ladder, or
a ladder with one recipe more, trains only what is new."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.console import console, step_line
from sandbox.data.fingerprint import fingerprint
from sandbox.errors import ConfigError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import as_pools, write_csv
from sandbox.tracking import NoTracker
from sandbox.utils import atomic_write_json, atomic_write_text, stable_hash
from sandbox.verdict import (decided_pairs, decision_accuracy, direction, over_seeds)

METRICS = ("bits_per_byte", "choice_logprob", "perplexity", "choice_accuracy")


class TransferStudy(Step):
    """Parameters:

    * ``trainer``, ``evaluator``: the run's trainer and evaluator configs (``_target_`` and
      arguments: ``${trainer}``, ``${evaluator}``); each scale overrides some trainer arguments.
    * ``scales``: a list of ``{name, ...trainer arguments}``, smallest first (e.g. ``{name: s,
      token_budget: 250000, n_embd: 64}``); the last is the reference ("large") scale.
    * ``seeds``: trainings per pool and scale (seeds ``seed``, ``seed+1``, ...).
    * ``metrics``: the evaluator's metrics to judge; each needs a direction (lower or higher is
      better, ``sandbox.verdict.direction``).
    * ``alpha``: the level at which the large scale *decides* a pair (paired t over seeds).
    * ``keep_models``: keep each cell's model folder (deleted once scored by default).
    Outputs: ``table`` (transfer.md), ``cells`` (cells.csv: every result), ``plot``, ``metrics``
    (``transfer/<metric>/decision_accuracy`` and its interval, ``spearman``, ``decided_pairs``)."""

    outputs = ("table", "cells", "plot", "metrics", "summary")

    def __init__(self, trainer: dict, evaluator: dict, scales: list[dict], seeds: int = 3,
                 metrics: list[str] | None = None, alpha: float = 0.05, seed: int = 42,
                 keep_models: bool = False, n_boot: int = 1000):
        self.trainer, self.evaluator = _plain(trainer), _plain(evaluator)
        for what, node in (("trainer", self.trainer), ("evaluator", self.evaluator)):
            if not isinstance(node, dict) or not node.get("_target_"):
                raise ConfigError(f"transfer.{what}: give the {what} config (with `_target_`), "
                                  f"e.g. `{what}: ${{{what}}}`.")
        self.scales = [_plain(s) for s in scales or []]
        names = [s.get("name") for s in self.scales]
        if len(self.scales) < 2 or not all(names) or len(set(names)) != len(names):
            raise ConfigError("transfer.scales: give two or more scales, each with a distinct "
                              "`name` and the trainer arguments it changes, smallest first, e.g. "
                              "[{name: small, token_budget: 250000}, {name: large, "
                              "token_budget: 1000000}].")
        self.seeds = int(seeds)
        if self.seeds < 1:
            raise ConfigError(f"transfer.seeds={seeds}: give at least 1 (3 to decide pairs).")
        self.metrics = list(metrics or METRICS)
        undirected = [m for m in self.metrics if direction(m) == 0]
        if undirected:
            raise ConfigError(f"transfer.metrics: {undirected} have no better direction; give "
                              f"metrics such as {', '.join(METRICS)}.")
        self.alpha, self.seed = float(alpha), int(seed)
        self.keep_models, self.n_boot = bool(keep_models), int(n_boot)

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        pools = as_pools(pools, "transfer")
        if len(pools) < 3:
            raise ConfigError(f"transfer: the ladder has {len(pools)} recipes; decision accuracy "
                              f"needs at least 3 (10 or more to mean much).")
        seeds = [self.seed + i for i in range(self.seeds)]
        prints = {p["name"]: fingerprint(p["dataset"]) for p in pools}
        cells, seconds_by_scale = [], {s["name"]: [] for s in self.scales}
        t0 = time.perf_counter()
        cached = 0
        grid = [(scale, pool, seed) for scale in self.scales for pool in pools for seed in seeds]
        results: dict[int, tuple[dict, bool]] = {}
        # two passes: cells another process is computing (a second `experiment=transfer` on the
        # same cache splits the grid with this one) are left for the second pass, which waits
        for waiting in (False, True):
            for i, (scale, pool, seed) in enumerate(grid):
                if i not in results:
                    got = self._cell(env, pool, prints[pool["name"]], scale, seed, waiting)
                    if got is not None:
                        results[i] = got
        for i, (scale, pool, seed) in enumerate(grid):
            result, hit = results[i]
            cached += hit
            if not hit:
                seconds_by_scale[scale["name"]].append(result["seconds"])
            cells.append({"recipe": pool["name"], "scale": scale["name"], "seed": seed,
                          "size": pool.get("size"), "seconds": result["seconds"],
                          **{m: result["metrics"].get(m, math.nan) for m in self.metrics}})
        summary = self.summarise(cells, [s["name"] for s in self.scales])
        cells_path = write_csv(env.workdir / "cells.csv", cells)
        table = atomic_write_text(env.workdir / "transfer.md", self.markdown(summary, cells))
        plot = self._plot(summary, cells, env.workdir / "transfer.png")
        atomic_write_json(env.workdir / "transfer.json", summary)
        for f in (table, cells_path, plot):
            if f:
                env.tracker.log_artifact(f)
        metrics = {"transfer/cells": float(len(cells)), "transfer/cells_cached": float(cached),
                   "transfer/seconds": time.perf_counter() - t0,
                   "transfer/recipes": float(len(pools))}
        for scale, secs in seconds_by_scale.items():
            if secs:
                metrics[f"transfer/{scale}/seconds_per_run"] = float(np.mean(secs))
        for m, row in summary["metrics"].items():
            for k, v in row.items():
                if isinstance(v, (int, float)):
                    metrics[f"transfer/{m}/{k}"] = float(v)
        console.print(Path(table).read_text())
        return {"table": str(table), "cells": cells_path, "plot": str(plot) if plot else None,
                "metrics": metrics, "summary": summary}

    # ------------------------------------------------------------------ one cell
    def _cell(self, env: StepEnv, pool: dict, pool_print: str, scale: dict, seed: int,
              wait: bool = True) -> tuple[dict, bool] | None:
        """``(result, from_cache)``: ``result`` = ``{metrics, seconds}`` of training the
        scale's model on the pool with this seed and evaluating it. A cell another live process
        holds (its ``running`` marker) is waited for, or with ``wait=False`` left (None)."""
        trainer = {**self.trainer, **{k: v for k, v in scale.items() if k != "name"},
                   "seed": seed}
        evaluator = {**self.evaluator, "seed": seed}
        # what decides the result (the verdict settings `primary`/`signal` do not)
        scored = {k: v for k, v in evaluator.items() if k not in ("primary", "signal")}
        key = stable_hash([trainer, scored, pool_print], n=24)
        folder = env.cache_dir / "transfer" / key
        label = f"{env.name} {scale['name']} · {pool['name']} · s{seed}"
        done = folder / "result.json"
        if done.is_file():
            try:
                result = json.loads(done.read_text())
                console.print(step_line(label, "cached"))
                return result, True
            except ValueError:
                console.print(f"[yellow]transfer: {done} is damaged; the cell runs again.[/]")
                done.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        with cell_claim(folder / "running", done, wait) as mine:
            if not mine:
                return None
            if done.is_file():  # finished by the other process while this one waited
                return json.loads(done.read_text()), True
            return self._compute(env, pool, scale, seed, trainer, evaluator, folder, label), False

    def _compute(self, env: StepEnv, pool: dict, scale: dict, seed: int, trainer: dict,
                 evaluator: dict, folder: Path, label: str) -> dict:
        from hydra.utils import get_class

        done = folder / "result.json"
        key = folder.name
        work = env.workdir / "cells" / key
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        sub = dataclasses.replace(env, name=label, workdir=work, seed=seed, tracker=NoTracker(),
                                  show_progress=False, report_hook=None)
        t0 = time.perf_counter()
        train_cls, eval_cls = get_class(trainer["_target_"]), get_class(evaluator["_target_"])
        args = {k: v for k, v in trainer.items() if k != "_target_"}
        try:
            trained = train_cls(**args).run(sub, dataset=pool["dataset"])
            ev = eval_cls(**{k: v for k, v in evaluator.items() if k != "_target_"}).run(
                sub, model_dir=trained["model_dir"])
        except TypeError as e:
            raise ConfigError(f"transfer: scale {scale['name']!r}: {e}. A scale's keys must be "
                              f"arguments of {trainer['_target_']}.") from None
        seconds = time.perf_counter() - t0
        metrics = {k: float(v) for k, v in ev["metrics"].items()}
        metrics.update({f"train/{k}": float(v) for k, v in trained["metrics"].items()})
        result = {"metrics": metrics, "seconds": seconds, "recipe": pool["name"],
                  "scale": scale["name"], "seed": seed}
        folder.mkdir(parents=True, exist_ok=True)
        if ev.get("doc_scores"):
            shutil.copyfile(ev["doc_scores"], folder / "doc_scores.npz")
        atomic_write_json(done, result)  # last: its presence marks the cell done
        if not self.keep_models:
            shutil.rmtree(trained["model_dir"], ignore_errors=True)
        m0 = self.metrics[0]
        console.print(step_line(label, f"{m0} {metrics.get(m0, math.nan):.4g} "
                                       f"({seconds:.0f} s)"))
        return result

    # ------------------------------------------------------------------ report
    def summarise(self, cells: list[dict], scales: list[str]) -> dict:
        """Per metric: each scale's value per recipe (mean over seeds) and the decision accuracy
        of every smaller scale against the largest, with the pairs the largest decides."""
        large = scales[-1]
        out: dict[str, Any] = {"scales": scales, "reference": large, "metrics": {},
                               "per_scale": {}, "recipes": sorted({c["recipe"] for c in cells})}
        for m in self.metrics:
            per_seed = {s: {} for s in scales}
            for c in cells:
                if not math.isnan(c[m]):
                    per_seed[c["scale"]].setdefault(c["recipe"], {})[c["seed"]] = c[m]
            means = {s: {r: over_seeds(v).mean for r, v in per_seed[s].items()} for s in scales}
            decided = decided_pairs(per_seed[large], self.alpha) if self.seeds >= 2 else None
            rows = {}
            for s in scales[:-1]:
                rows[s] = decision_accuracy(means[s], means[large], decided=decided,
                                            n_boot=self.n_boot, seed=self.seed)
            out["per_scale"][m] = {s: {r: {"mean": over_seeds(v).mean,
                                           "std": over_seeds(v).std}
                                       for r, v in per_seed[s].items()} for s in scales}
            out["metrics"][m] = dict(rows[scales[0]], **{
                f"{s}/{k}": v for s, r in rows.items() if s != scales[0] for k, v in r.items()})
        return out

    def markdown(self, summary: dict, cells: list[dict]) -> str:
        scales, large = summary["scales"], summary["reference"]
        small = scales[0]
        n_seeds = self.seeds
        lines = [f"# Transfer: {small} -> {large} ({len(summary['recipes'])} recipes, "
                 f"{n_seeds} seed(s) per recipe and scale)", "",
                 "| metric | decision accuracy [95% CI] | pairs | Spearman rho | decided at "
                 f"{large} | accuracy on decided |", "|---|---|---|---|---|---|"]
        for m, r in summary["metrics"].items():
            acc = r.get("decision_accuracy")
            ci = (f" [{r['decision_accuracy_ci_low']:.2f}, {r['decision_accuracy_ci_high']:.2f}]"
                  if "decision_accuracy_ci_low" in r else "")
            lines.append(f"| {m} | {'' if acc is None else f'{acc:.2f}'}{ci} | "
                         f"{int(r.get('decision_pairs', 0))} | {_num(r.get('spearman'))} | "
                         f"{_int(r.get('decided_pairs'))} | "
                         f"{_num(r.get('decision_accuracy_decided'))} |")
        lines += ["", "Decision accuracy: the share of recipe pairs the small scale orders as the "
                  f"large one does (50% is chance); its interval resamples recipes. A pair is "
                  f"decided when the large scale's seeds tell it apart (paired t, p < "
                  f"{self.alpha}).", "", "## Recipes", ""]
        head = ["recipe", "size"] + [f"{m} @ {s}" for m in self.metrics for s in scales]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        sizes = {c["recipe"]: c.get("size") for c in cells}
        for rec in summary["recipes"]:
            row = [rec, str(sizes.get(rec))]
            for m in self.metrics:
                for s in scales:
                    v = summary["per_scale"][m][s].get(rec)
                    row.append("" if v is None else (f"{v['mean']:.4g}" + (
                        f" ± {v['std']:.2g}" if not math.isnan(v["std"]) else "")))
            lines.append("| " + " | ".join(row) + " |")
        secs: dict[str, list[float]] = {}
        for c in cells:
            secs.setdefault(c["scale"], []).append(c["seconds"])
        lines += ["", "Seconds per training and evaluation: " + ", ".join(
            f"{s} {np.mean(v):.0f}" for s, v in secs.items()) + "."]
        return "\n".join(lines) + "\n"

    def _plot(self, summary: dict, cells: list[dict], path: Path) -> Path | None:
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - matplotlib is a dependency
            return None
        scales, large = summary["scales"], summary["reference"]
        ms = self.metrics
        fig = Figure(figsize=(4 * len(ms), 3.8))
        FigureCanvasAgg(fig)
        for i, m in enumerate(ms):
            ax = fig.add_subplot(1, len(ms), i + 1)
            per = summary["per_scale"][m]
            recs = [r for r in summary["recipes"] if r in per[scales[0]] and r in per[large]]
            x = [per[scales[0]][r]["mean"] for r in recs]
            y = [per[large][r]["mean"] for r in recs]
            ax.scatter(x, y, s=14)
            for r, a, b in zip(recs, x, y):
                ax.annotate(r, (a, b), fontsize=5, alpha=0.7)
            acc = summary["metrics"][m].get("decision_accuracy")
            ax.set_title(f"{m}: accuracy {_num(acc)}, rho "
                         f"{_num(summary['metrics'][m].get('spearman'))}", fontsize=8)
            ax.set_xlabel(f"{scales[0]}", fontsize=8)
            ax.set_ylabel(f"{large}", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return path


@contextlib.contextmanager
def cell_claim(marker: Path, done: Path, wait: bool, poll: float = 2.0):
    """Hold ``marker`` (created exclusively, holding ``host:pid``) while a cell is computed;
    yields False when another live process holds it and ``wait`` is off. A marker whose process
    is gone (same host) is stale: taken over. Waiting ends when ``done`` appears."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if done.is_file() or _stale(marker):
                if not done.is_file():
                    marker.unlink(missing_ok=True)
                    continue
                yield True  # finished meanwhile: the caller reads it
                return
            if not wait:
                yield False
                return
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield True
        finally:
            marker.unlink(missing_ok=True)
        return


def _stale(marker: Path) -> bool:
    try:
        host, pid = marker.read_text().rsplit(":", 1)
    except (OSError, ValueError):
        return False  # being written: not stale yet
    if host != socket.gethostname():
        return False  # another machine's: only it can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def _plain(node: Any) -> Any:
    """A config node as plain containers (``_recursive_: false`` passes DictConfigs)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _num(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _int(v) -> str:
    return "" if v is None else str(int(v))
