"""Sequential search over the intersections of the top single-OP pools
(``bottom_up.combine=sequential``): fit the surrogate on the pools the combination stage has
trained, train the intersection it predicts best, refit, repeat.

Why not pick once, from the single-OP stage's values (``combine=surrogate``)? The combination
stage trains at the smallest intersection's size (108 documents with ``top_k=6`` on the default
corpus, against the single-OP stage's 1,666), where the token budget goes over the same
documents many times and the OPs' effects are not the ones the single-OP stage measured. So the
model is fitted here on what the combination stage itself trained at that size: the top
``candidate_k`` single pools and the random control (trained by the pipeline's ``train`` and
``evaluate`` steps before this one), then on every intersection this step trains.

The loop: fit the surrogate (``sandbox.steps.pools.surrogate``, ``additive`` by default) on the
trained pools' ``key`` values (mean over seeds), predict every candidate intersection, and

* stop when the best untrained candidate is predicted worse than the best value measured so far
  by more than the model errs (the root mean square of its leave-one-out errors on the
  intersections trained so far; with fewer than 2 trained, it never stops there), or when
  ``max_rounds`` intersections have been trained. A stricter rule, stopping as soon as the
  predicted best candidate is one already trained, stopped one training short on the default
  corpus: two intersections 0.001 apart in prediction and 0.044 apart when measured;
* else train the predicted best untrained candidate, with every seed, equalised to ``size``
  exactly as ``PoolDownsampling`` equalises the pipeline's pools (same seed, same subsample), so
  a pool trained here is the same data, and the same model, as exhaustive search would train.

With ``explore_seeds`` (``bottom_up.surrogate.explore_seeds``, e.g. 1) the search explores with the
first ``explore_seeds`` seeds only: the pipeline's ``train`` step trains the top pools and the
control with those seeds (``conf/pipeline/bottom_up.yaml`` passes them through the
``search_seeds`` resolver), every intersection is trained with them, and the model is fitted on
their mean. Then the ``confirm_top`` best pools explored (by that mean, the control left out)
and the control are trained with the remaining seeds, and only these finalists, each with every
seed, are the step's ``results``: the ranking and its test against the control compare pools
measured with the same seeds, never a one-seed pool with a full one. The explored values stay
in ``rounds.csv`` and the output ``explored``; ``confirm.csv`` lists the finalists. ``null``: every seed
throughout, and every pool trained is ranked.

Each training runs in this step's process, so its CPU time is this step's in the compute ledger
(``compute/<pipeline>/search_cpu_s``). A finished training is kept in the step's folder
(``cells/<hash>/result.json``, the hash of the trainer and evaluator configs, the seed and the
pool file's content): a run resumed after a crash trains only what it had not finished, and
counts the CPU-seconds of what it took over as ``surrogate/reused_cpu_s``.

Under ``combine=exhaustive|surrogate`` the step passes ``results`` through unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.console import console, step_line
from sandbox.context import as_plain, explore_seed_list, seed_list
from sandbox.data.fingerprint import fingerprint
from sandbox.errors import ConfigError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import as_pools, read_pool, write_csv, write_pool
from sandbox.steps.pools.construction import METHODS, downsample_indices, pool_seed
from sandbox.steps.pools.surrogate import MODELS, rank_candidates
from sandbox.tracking import NoTracker
from sandbox.utils import Clock, atomic_write_json, merge_outputs, safe_name, stable_hash


def values_by_pool(results: list[dict], key: str) -> tuple[dict[str, float], dict[str, dict]]:
    """``{name: mean of key over its seeds}`` and ``{name: the pool's fields}`` of evaluated
    results (a ``for_each`` evaluation step's ``results``)."""
    per: dict[str, list[float]] = {}
    pools: dict[str, dict] = {}
    for r in results:
        v = float((r.get("metrics") or {}).get(key, math.nan))
        pools.setdefault(r["name"], {k: r[k] for k in ("name", "dataset", "size", "kind",
                                                      "bounds", "parts") if k in r})
        if not math.isnan(v):
            per.setdefault(r["name"], []).append(v)
    return {n: float(np.mean(v)) for n, v in per.items()}, pools


class PoolSequentialSearch(Step):
    """Train the intersections the surrogate predicts best, one at a time, refitting after each
    (see the module docstring).

    Parameters: ``method`` (the combination method, ``bottom_up.combine``: the step searches
    only under ``sequential``), ``trainer`` and ``evaluator`` (the run's configs, passed
    unbuilt: ``${trainer}``, ``${evaluator}``), ``seeds`` (the train step's ``seeds:``),
    ``max_rounds`` (intersections trained at most), ``model``, ``key`` and ``descending`` (the
    objective and its direction), ``seed`` (the run's: subsamples and the ``gbm`` model).

    Inputs: ``results`` (the evaluation step's results: the top single pools and the control,
    trained at ``size``), ``candidates`` (``PoolCombination``'s, method ``sequential``),
    ``size`` (the size every pool is equalised to) and ``stats`` (the probe's stats table, for
    the ``linear`` and ``gbm`` models).

    Outputs: ``results`` (the input results followed by those of every intersection trained
    here, each ``{name, seed, dataset, size, kind, parts, bounds, model_dir, metrics, ...}`` as
    the evaluation step gives them, for ``PoolRanking``), ``pools`` (the intersections trained
    here), ``table`` (``rounds.csv``: per round, the predicted best untrained candidate
    (``pick``), its predicted value, the best value measured before it, the model's error
    ``margin``, whether it was trained, its measured value and the CPU-seconds spent;
    ``predictions.csv`` beside it: every candidate's prediction at every round), ``metrics``
    (``surrogate/rounds``, ``surrogate/trained_combinations``, ``surrogate/trainings``,
    ``surrogate/converged``, ``surrogate/reused_cpu_s``; with ``explore_seeds``:
    ``surrogate/confirm_trainings``, among the trainings), ``explored`` (every result of the
    exploration, on the exploration seeds; with ``explore_seeds`` unset, ``results``).

    ``explore_seeds`` (``bottom_up.surrogate.explore_seeds``): explore with the first that many
    seeds, then train the ``confirm_top`` best explored pools and the ``control`` with the rest
    (see the module docstring); ``None``: every seed throughout."""

    outputs = ("results", "pools", "table", "metrics", "explored")

    def __init__(self, trainer: dict, evaluator: dict, method: str = "sequential",
                 seeds: Any = 1, max_rounds: int = 3, model: str = "additive",
                 key: str = "bits_per_byte", descending: bool = False, seed: int = 42,
                 explore_seeds: int | None = None, confirm_top: int = 2,
                 control: str = "random"):
        if method not in METHODS:
            raise ConfigError(f"search method={method!r} (bottom_up.combine): give one of "
                              f"{', '.join(METHODS)}.")
        if model not in MODELS:
            raise ConfigError(f"search model={model!r} (bottom_up.surrogate.model): give one of "
                              f"{', '.join(MODELS)}.")
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise ConfigError(f"search max_rounds={max_rounds!r} "
                              f"(bottom_up.surrogate.train_top): give the most intersections "
                              f"the sequential search may train, an integer >= 1.")
        self.trainer, self.evaluator = as_plain(trainer), as_plain(evaluator)
        if method == "sequential":
            for what, node in (("trainer", self.trainer), ("evaluator", self.evaluator)):
                if not isinstance(node, dict) or not node.get("_target_"):
                    raise ConfigError(f"search.{what}: give the {what} config (with "
                                      f"`_target_`), e.g. `{what}: ${{{what}}}`, and "
                                      f"`_recursive_: false` beside it.")
        self.method, self.seeds = method, seed_list(seeds)
        self.max_rounds, self.model, self.key = int(max_rounds), model, key
        self.descending, self.seed = bool(descending), int(seed)
        self.explore = explore_seed_list(self.seeds, explore_seeds)
        if isinstance(confirm_top, bool) or not isinstance(confirm_top, int) or confirm_top < 1:
            raise ConfigError(f"search confirm_top={confirm_top!r} "
                              f"(bottom_up.surrogate.confirm_top): give how many of the best "
                              f"explored pools are trained with the remaining seeds, >= 1.")
        self.confirm_top, self.control = int(confirm_top), control

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, results: list, candidates: list | None = None,
            size: int | None = None, stats: str | None = None) -> dict[str, Any]:
        results = [dict(r) for r in results]
        if self.method != "sequential":
            return {"results": results, "pools": [], "table": None, "metrics": {},
                    "explored": results}
        candidates = as_pools(candidates or [], "search candidates") if candidates else []
        if not candidates:
            console.print("[yellow]search: no intersection of the top pools is large enough "
                          "(bottom_up.min_combined_size); nothing to search.[/]")
            return {"results": results, "pools": [], "table": None, "explored": results,
                    "metrics": {"surrogate/rounds": 0.0, "surrogate/trained_combinations": 0.0,
                                "surrogate/trainings": 0.0, "surrogate/converged": 1.0}}
        if self.model != "additive" and stats is None:
            raise ConfigError(f"search model={self.model}: it needs the input `stats` (the "
                              f"probe's stats table), as conf/pipeline/bottom_up.yaml wires it.")
        by_name = {c["name"]: c for c in candidates}
        trained: list[dict] = []  # the intersections trained here (pools, equalised)
        cost = {"reused_cpu": 0.0, "trainings": 0, "confirm": 0}

        def cell(pool: dict, seed: int) -> dict:
            result, cpu, hit = self._cell(env, pool, seed)
            cost["reused_cpu"] += cpu if hit else 0.0
            cost["trainings"] += 1
            return result

        def train(name: str) -> list[dict]:
            pool = self._equalise(env, by_name[name], size)
            trained.append(pool)
            return [cell(pool, seed) for seed in self.explore]

        explored, rounds, predictions, converged = self.search(
            self.exploration(results), candidates, stats, train, label=env.name)
        table = write_csv(env.workdir / "rounds.csv", rounds)
        write_csv(env.workdir / "predictions.csv", predictions)
        final = explored
        if len(self.explore) < len(self.seeds):
            n = cost["trainings"]
            final, rows = self.confirm(explored, results, cell)
            cost["confirm"] = cost["trainings"] - n
            write_csv(env.workdir / "confirm.csv", rows)
        metrics = {"surrogate/rounds": float(len(rounds)),
                   "surrogate/trained_combinations": float(len(trained)),
                   "surrogate/trainings": float(cost["trainings"]),
                   "surrogate/converged": float(converged),
                   "surrogate/reused_cpu_s": cost["reused_cpu"]}
        if len(self.explore) < len(self.seeds):
            metrics["surrogate/confirm_trainings"] = float(cost["confirm"])
        return {"results": final, "pools": trained, "table": table, "metrics": metrics,
                "explored": explored}

    def exploration(self, results: list[dict]) -> list[dict]:
        """The input results on the exploration seeds, each pool with every one of them."""
        if len(self.explore) == len(self.seeds):
            return results
        keep = [r for r in results if r.get("seed") in self.explore]
        have: dict[str, set] = {}
        for r in keep:
            have.setdefault(r["name"], set()).add(r.get("seed"))
        short = sorted(n for n in {r["name"] for r in results}
                       if have.get(n, set()) != set(self.explore))
        if short:
            raise ConfigError(f"search explore_seeds={len(self.explore)}: the pools "
                              f"{', '.join(short)} were not trained with every exploration seed "
                              f"{self.explore}; train the combination stage's pools with "
                              f"`seeds: ${{search_seeds:${{bottom_up.combine}},"
                              f"${{bottom_up.seeds}},${{bottom_up.surrogate.explore_seeds}}}}` "
                              f"as conf/pipeline/bottom_up.yaml does.")
        return keep

    def finalists(self, explored: list[dict]) -> list[str]:
        """The pools to confirm with the remaining seeds: the ``confirm_top`` best explored
        (the control left out), then the control."""
        values, _ = values_by_pool(explored, self.key)
        ranked = sorted((n for n in values if n != self.control), key=values.get,
                        reverse=self.descending)
        return ranked[:self.confirm_top] + ([self.control] if self.control in values else [])

    def confirm(self, explored: list[dict], given: list[dict], cell
                ) -> tuple[list[dict], list[dict]]:
        """Every seed of each finalist: the exploration's results, those the input already had
        (a pipeline that trained its pools with every seed), and ``cell(pool, seed)`` for the
        rest. Returns the finalists' results (pool by pool, seed by seed) and ``confirm.csv``'s
        rows."""
        values, _ = values_by_pool(explored, self.key)
        out, rows = [], []
        for name in self.finalists(explored):
            have = {r.get("seed"): r for r in list(given) + list(explored)
                    if r["name"] == name and r.get("seed") in self.seeds}
            pool = next(r for r in explored if r["name"] == name)
            pool = {k: pool[k] for k in ("name", "dataset", "size", "kind", "bounds", "parts")
                    if k in pool}
            clock = Clock().start()
            mine = [have[s] if s in have else cell(pool, s) for s in self.seeds]
            clock.stop()
            out += mine
            rows.append({"pool": name, "explored": values[name],
                         "confirmed": values_by_pool(mine, self.key)[0].get(name, math.nan),
                         "trained": len([s for s in self.seeds if s not in have]),
                         "cpu_s": clock.cpu})
        return out, rows

    def search(self, results: list[dict], candidates: list[dict], stats: str | None,
               train, label: str | None = None
               ) -> tuple[list[dict], list[dict], list[dict], bool]:
        """The loop: ``train(name)`` trains the candidate called ``name`` and returns its
        results (one per seed). Returns every result, the rounds' rows, every prediction of
        every round and whether the search converged (stopped before ``max_rounds``).
        ``bench/search.py`` replays it on an exhaustive run's results."""
        results = list(results)
        rounds: list[dict] = []
        predictions: list[dict] = []
        converged, n_trained = False, 0
        for r in range(1, self.max_rounds + 2):
            values, pools = values_by_pool(results, self.key)
            known = list(pools.values())
            scored, _, _ = rank_candidates(known, values, candidates, stats or "",
                                           self.model, self.descending, self.seed)
            predictions += [{"round": r, "candidate": c["name"], "predicted": v,
                             "trained": c["name"] in values} for c, v in scored]
            best_known = (max if self.descending else min)(values.values())
            untrained = [(c, v) for c, v in scored if c["name"] not in values]
            if not untrained:  # every candidate trained: nothing left to search
                converged = True
                break
            pick, predicted = untrained[0]
            margin = self._margin(known, values, stats)
            # how far the pick is predicted to beat the best value measured so far
            gain = (predicted - best_known) if self.descending else (best_known - predicted)
            row = {"round": r, "pick": pick["name"], "predicted": predicted,
                   "best_measured_before": best_known, "margin": margin,
                   "predicted_best": scored[0][0]["name"]}
            if not math.isnan(margin) and gain < -margin:
                converged = True  # predicted worse than the best by more than the model errs
                rounds.append(dict(row, trained=False))
                break
            if n_trained >= self.max_rounds:
                rounds.append(dict(row, trained=False))
                break
            clock = Clock().start()
            results += train(pick["name"])
            clock.stop()
            n_trained += 1
            measured = values_by_pool(results, self.key)[0].get(pick["name"], math.nan)
            rounds.append(dict(row, trained=True, measured=measured, cpu_s=clock.cpu,
                               wall_s=clock.wall))
            if label:
                console.print(step_line(f"{label} round {r}",
                                        f"{pick['name']}: predicted {predicted:.4f}, measured "
                                        f"{measured:.4f}"))
        return results, rounds, predictions, converged

    def _margin(self, known: list[dict], values: dict[str, float], stats: str | None) -> float:
        """How far the surrogate errs on an intersection it did not see: the root mean square
        of the leave-one-out errors over the intersections trained so far (each predicted by
        the model fitted on every other trained pool); NaN with fewer than 2."""
        from sandbox.steps.pools.surrogate import design, fit

        combined = [i for i, p in enumerate(known) if p.get("parts")]
        if len(combined) < 2:
            return math.nan
        errors = []
        for i in combined:
            rest = [p for j, p in enumerate(known) if j != i]
            _, X, Xi = design(rest, [known[i]], stats or "", self.model)
            y = np.array([values[p["name"]] for p in rest])
            errors.append(float(fit(X, y, self.model, self.seed).predict(Xi)[0])
                          - values[known[i]["name"]])
        return float(np.sqrt(np.mean(np.square(errors))))

    # ------------------------------------------------------------------ one pool, one seed
    def _equalise(self, env: StepEnv, pool: dict, size: int | None) -> dict:
        """``pool`` cut to ``size`` as ``PoolDownsampling(seed)`` cuts it."""
        t = read_pool(pool["dataset"])
        k = int(size or t.num_rows)
        idx = downsample_indices(t.num_rows, k, pool_seed(self.seed, pool["name"]))
        return dict(pool, size=int(len(idx)),
                    dataset=write_pool(t.take(idx), env.workdir / "pools", pool["name"]))

    def _cell(self, env: StepEnv, pool: dict, seed: int) -> tuple[dict, float, bool]:
        """Train and evaluate ``pool`` with ``seed``, as the pipeline's ``train`` and
        ``evaluate`` steps would: ``(result, its CPU-seconds, from an earlier attempt)``."""
        from hydra.utils import instantiate

        trainer = {**self.trainer, "seed": seed} if "seed" in self.trainer else self.trainer
        key = stable_hash([trainer, self.evaluator, fingerprint(pool["dataset"], env.cache_dir)],
                          n=24)
        folder = env.workdir / "cells" / key
        done = folder / "result.json"
        if done.is_file():
            try:
                saved = json.loads(done.read_text())
                if all(Path(p).exists() for p in (saved["result"].get("doc_scores"),)
                       if p):
                    console.print(step_line(f"{env.name} {pool['name']}#s{seed}",
                                            "kept from an earlier attempt"))
                    return saved["result"], float(saved["cpu_s"]), True
            except (ValueError, KeyError):
                pass
        shutil.rmtree(folder, ignore_errors=True)
        name = f"{pool['name']}#s{seed}"
        sub = {}
        for what in ("train", "evaluate"):
            work = env.workdir / what / safe_name(name)
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            sub[what] = dataclasses.replace(env, name=what, workdir=work, tracker=NoTracker(),
                                            show_progress=False, report_hook=None)
        clock = Clock().start()
        try:
            model = instantiate(trainer, _convert_="all")
            out = model.run(sub["train"], dataset=pool["dataset"])
            ev = instantiate(self.evaluator, _convert_="all").run(sub["evaluate"],
                                                                   model_dir=out["model_dir"])
        except TypeError as e:
            raise ConfigError(f"search: the trainer or evaluator rejected its config: {e}. Fix "
                              f"`trainer` / `evaluator`.") from None
        clock.stop()
        result = merge_outputs(merge_outputs(dict(pool, seed=seed), out), ev)
        result = json.loads(json.dumps(result, default=str))  # as context.json holds it
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(done, {"result": result, "cpu_s": clock.cpu, "wall_s": clock.wall})
        return result, clock.cpu, False
