"""Exhaustive search against the cheaper ones, from the same single-OP pools:
`experiment=bottom_up` on the default corpus, its single-OP stage run once, then its combination
stage once per method: `bottom_up.combine=exhaustive` (the reference: every intersection of the
top `--top-k` pools), `bottom_up.combine=surrogate` (only the `--train-top` intersections a
regression fitted on the single-OP pools predicts best, out of the same candidates) and
`bottom_up.combine=sequential` (the top pools and the control trained at the combination size,
then the intersection a regression fitted on them predicts best, refitted after each, at most
`--train-top`). One figure per line, for each method `<m>` beside exhaustive:

* each search's best pool and its bits per byte (the names on `#` lines and in `search.json`);
* `search_<m>_same_pick` (1 when it picks the exhaustive best) and
  `search_<m>_pick_within_noise` (1 when its pick is not significantly worse than the
  exhaustive best: the paired per-document comparison of `sandbox.verdict.paired_documents` over
  both seeds, measured in the exhaustive run, where both pools trained under the same
  conditions);
* the fraction of the exhaustive compute it spent, in CPU-seconds from the compute ledger (each
  step's `cpu_seconds` in `context.json`; the sequential search's trainings are inside its
  `search` step's): of the whole search (single-OP stage + combination stage: nothing reused)
  and of the combination stage (the single-OP pools reused, as every search starts from them);
  a twin step that a run reused rather than ran is counted at what it cost, in both figures, and
  also reported on its own;
* `search_sequential_replay_<model>[_uncapped]_*`: the sequential search replayed on the
  exhaustive run's measured values, for each surrogate model, capped at `--train-top`
  intersections and not capped: whether it trains the exhaustive best, in which round, how
  many intersections, and whether it stopped on its own (no training: a pool the search trains
  is the data, seeds and model the exhaustive run trained);
* `search_subproblems_<variant>_<model>_*`: how often the sequential search is right, replayed
  on every sub-problem of the exhaustive run (every 4 and 5 of its top pools, then all of them:
  22 problems at `--top-k 6`; each problem's best is the best pool exhaustive search over it
  ranks), for each variant of `VARIANTS` (every seed throughout, the stopping margin halved or
  doubled, exploring with one seed and confirming the 1, 2 or 3 best, the top pools alone with
  one seed) and each model: the share of problems where its pick is the problem's best
  (`same_pick`), where it is within noise of it (`within_noise`), the mean share of the
  problem's trainings and CPU-seconds it spent. The sub-problems share the full problem's
  pool size and documents, so they are correlated: the shares are estimates, not independent
  trials;
* the surrogate's rank correlation against real results on pools it did not see, for each
  surrogate model: `search_surrogate_unseen_*` fitted on the single-OP pools,
  `search_sequential_unseen_*` fitted on what the sequential run trained (the top pools, the
  control and its intersections, at the combination size), each scored on the intersections
  the exhaustive run trained and it did not (Spearman's rho, and whether its top pick is the
  measured top), beside the pipeline's own leave-one-out figure.

    python bench/search.py                 # top_k 4, 2 seeds, 120k tokens, width 64 (~60 min)
    python bench/search.py --processes 1       # the combination stages one after the other
    python bench/search.py -- trainer.token_budget=250000   # more overrides after --
    python bench/search.py --methods exhaustive   # one combination stage (the others later)
    python bench/search.py --methods sequential   # then this one, from the same single-OP stage
    python bench/search.py --from-runs            # the figures of every finished stage
    python bench/search.py --replay               # only the sub-problems' replay (exhaustive)
    python bench/search.py --methods sequential --explore-seeds 1   # explore with one seed

The single-OP stage is resumed when its run dir (`<work>/search/single_op`) holds it already;
the combination stages named by `--methods` always start over. The figures need the exhaustive
run and at least one other. `--tiny` is the smoke test's size.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # read the runs with this tree's sandbox, which the runs ran
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "bench" / ".work")) / "search"
METHODS = ("exhaustive", "surrogate", "sequential")
KEY = "bits_per_byte"  # the ranking's first key: lower is better


def common(a: argparse.Namespace) -> list[str]:
    """The overrides every stage runs with (the single-OP stage's identities depend on them)."""
    out = ["experiment=bottom_up", "~pipelines.scale", f"trainer.token_budget={a.token_budget}",
           f"trainer.n_embd={a.n_embd}", f"trainer.n_head={a.n_head}", "trainer.num_threads=1",
           "evaluator.num_threads=1", f"bottom_up.seeds={a.seeds}", "tracking=none",
           "progress=false", "num_proc=1", f"cache_dir={WORK / 'cache'}"]
    if a.tiny:  # 3 stats (10 single-OP pools), one seed, a 1-layer model, no choice task
        out += ["data_pool.num_docs=800", "evaluator.bootstrap=0", "evaluator.choice=false",
                "++evaluator.max_eval_words=5000",
                "trainer.n_layer=1", "bottom_up.min_combined_size=10",
                "bottom_up.rank_keys=[bits_per_byte]", "bottom_up.rank_descending=[false]",
                ("bottom_up.stats=[text_length_filter.text_len,alphanumeric_filter.alnum_ratio,"
                 "special_characters_filter.special_char_ratio]")]
    return out + list(a.overrides)


def launch(run_dir: Path, overrides: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sandbox", *overrides, f"hydra.run.dir={run_dir}"]
    print(f"# {' '.join(cmd)}", file=sys.stderr)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    with open(run_dir.parent / f"{run_dir.name}.out", "w") as log:  # the child keeps its copy
        return subprocess.Popen(cmd, cwd=WORK, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait(procs: dict[str, subprocess.Popen]) -> None:
    for name, p in procs.items():
        if p.wait():
            sys.exit(f"the {name} run failed (exit {p.returncode}); see {WORK / name}.out")


def run_all(a: argparse.Namespace) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    single = WORK / "single_op"
    t0 = time.perf_counter()
    wait({"single_op": launch(single, [*common(a), "~pipelines.combine", "resume=true"])})
    print(f"# single-OP stage: {time.perf_counter() - t0:.0f} s wall", file=sys.stderr)
    stage = ["resume=true", f"bottom_up.top_k={a.top_k}",
             f"bottom_up.surrogate.candidate_k={a.top_k}",
             f"bottom_up.surrogate.train_top={a.train_top}"]
    procs = {}
    for method in a.methods:
        run_dir = WORK / method
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir()
        # the single-OP stage's records: resumed, not trained again (both start from its pools)
        shutil.copyfile(single / "context.json", run_dir / "context.json")
        explore = ([f"bottom_up.surrogate.explore_seeds={a.explore_seeds}",
                    f"bottom_up.surrogate.confirm_top={a.confirm_top}"]
                   if method == "sequential" and a.explore_seeds else [])
        procs[method] = launch(run_dir, [*common(a), *stage, f"bottom_up.combine={method}",
                                         *explore])
        if a.processes < 2:
            wait({method: procs.pop(method)})
    wait(procs)
    print(f"# the searches: {time.perf_counter() - t0:.0f} s wall", file=sys.stderr)


# ------------------------------------------------------------------------------ reading runs
def steps(run_dir: Path) -> dict:
    return json.loads((run_dir / "context.json").read_text())["steps"]


def cost(records: dict, prefix: str) -> dict[str, float]:
    """CPU-seconds of the leaf records under ``prefix`` (fan-out elements and plain steps; a
    fan-out's own record sums its elements and has no ledger entry): ``spent`` by this run,
    ``reused`` (a twin's record copied, at what it cost), trainings and wall seconds."""
    out = {"spent": 0.0, "reused": 0.0, "trainings": 0.0, "wall": 0.0}
    for key, r in records.items():
        if not key.startswith(prefix) or "cpu_seconds" not in r:
            continue
        out["reused" if "reused_from" in r else "spent"] += float(r["cpu_seconds"])
        out["wall"] += 0.0 if "reused_from" in r else float(r.get("seconds") or 0.0)
        out["trainings"] += key.startswith(prefix + "train[")
        # the trainings a sequential search ran inside its own step, and those it took over
        # from an earlier attempt of the step (resume), at what they cost then
        if key == prefix + "search":
            metrics = (r.get("outputs") or {}).get("metrics") or {}
            out["trainings"] += float(metrics.get("surrogate/trainings", 0.0))
            out["reused"] += float(metrics.get("surrogate/reused_cpu_s", 0.0))
    out["total"] = out["spent"] + out["reused"]
    return out


def ranking(records: dict, stage: str) -> list[dict]:
    return records[f"{stage}.rank"]["outputs"]["ranking"]


def doc_scores(records: dict, pool: str) -> dict[int, dict]:
    """``{seed: per-document arrays}`` of ``pool``'s evaluations in a combination stage."""
    from sandbox.steps.evaluate.lm import load_doc_scores

    out = {}
    for key, r in records.items():
        if key.startswith(f"combine.evaluate[{pool}#s") and key.endswith("]"):
            path = (r.get("outputs") or {}).get("doc_scores")
            if path and Path(path).is_file():
                out[int(key[len(f"combine.evaluate[{pool}#s"):-1])] = load_doc_scores(path)
    # the pools a sequential search trained inside its step
    for r in ((records.get("combine.search") or {}).get("outputs") or {}).get("results") or []:
        path = r.get("doc_scores")
        if r.get("name") == pool and r.get("seed") not in out and path and Path(path).is_file():
            out[int(r["seed"])] = load_doc_scores(path)
    return out


def within_noise(exhaustive: dict, surrogate: dict, best: str, pick: str) -> dict:
    """A search's pick against the exhaustive best, paired on the evaluation documents (and
    over the seeds both ran), in the exhaustive run when it trained both."""
    from sandbox.runner.doc_scores import pairs
    from sandbox.verdict import paired_documents

    if pick == best:
        return {"same": 1.0, "within_noise": 1.0, "diff": 0.0, "p": 1.0}
    ours = doc_scores(exhaustive, pick) or doc_scores(surrogate, pick)
    theirs = doc_scores(exhaustive, best)
    matched = pairs(ours, theirs).get(KEY)
    if not matched:
        sys.exit(f"no per-document scores of {KEY} for {pick!r} and {best!r} on the same "
                 f"documents; the evaluator must keep doc_scores.npz")
    c, _ = paired_documents(*matched, higher_is_better=False)
    return {"same": 0.0, "within_noise": float(c.verdict != "worse"), "diff": c.diff, "p": c.p,
            "test": c.test, "verdict": c.verdict}


def held_out(single: dict, exhaustive: dict, train_top: int, model: str) -> dict:
    """The surrogate (``model``) fitted on the single-OP pools, scored on every intersection the
    exhaustive run trained: Spearman's rho of predicted against measured, whether its top pick is
    the measured top, and whether its ``train_top`` best hold the measured top."""
    return _scored(single, "single_op", exhaustive, model, train_top)


def held_out_stage(run: dict, exhaustive: dict, model: str) -> dict:
    """The surrogate (``model``) fitted on what a sequential run's combination stage trained
    (the top single pools, the control and its intersections, at the combination size), scored
    on the intersections the exhaustive run trained and it did not: Spearman's rho of predicted
    against measured, and whether its top pick is the measured top among them."""
    return _scored(run, "combine", exhaustive, model)


def _scored(run: dict, stage: str, exhaustive: dict, model: str, train_top: int | None = None
            ) -> dict:
    """The surrogate fitted on the pools ``run``'s ``stage`` ranked, scored on the exhaustive
    run's intersections that stage did not train."""
    from sandbox.steps.pools.surrogate import objective_by_pool, rank_candidates, spearman

    values = objective_by_pool(ranking(run, stage), KEY)
    trained = run[f"{stage}.rank"]["outputs"]["pools"]
    explored = ((run.get(f"{stage}.search") or {}).get("outputs") or {}).get("explored")
    if explored:  # a sequential search that explored with fewer seeds: what it fitted on
        from sandbox.steps.pools.sequential import values_by_pool

        values, pools = values_by_pool(explored, KEY)
        trained = list(pools.values())
    measured = objective_by_pool(ranking(exhaustive, "combine"), KEY)
    unseen = [p for p in exhaustive["combine.rank"]["outputs"]["pools"]
              if p.get("kind") == "combined" and p["name"] in measured and p["name"] not in values]
    if len(unseen) < 3:
        return {"pools": float(len(unseen))}
    stats = run["single_op.probe"]["outputs"]["stats"]
    ranked, _, _ = rank_candidates(trained, values, unseen, stats, model, descending=False)
    pred = {p["name"]: v for p, v in ranked}
    names = list(pred)
    truth = min(names, key=lambda n: measured[n])
    out = {"pools": float(len(names)),
           "spearman": spearman([pred[n] for n in names], [measured[n] for n in names]),
           "top_pick_is_best": float(names[0] == truth)}
    if train_top is not None:
        out["best_in_top"] = float(truth in names[:train_top])
    return out


def replay(exhaustive: dict, model: str, max_rounds: int, seeds: int,
           subset: tuple[str, ...] | None = None, explore_seeds: int | None = None,
           confirm_top: int = 2, margin_scale: float = 1.0, base_seeds: int | None = None
           ) -> dict:
    """The sequential search (``PoolSequentialSearch``, ``model``, at most ``max_rounds``
    intersections) replayed on the exhaustive run's evaluations: each "training" reads the
    result the exhaustive run measured for that pool and seed, which is the one the search
    would measure (same data, same seeds, same model).

    ``subset``: the sub-problem over these top pools only (their intersections, the pools and
    the control; every pool at the full problem's size). ``explore_seeds``: explore with that
    many seeds, then confirm ``confirm_top`` finalists and the control with the rest, as the
    step does. ``base_seeds`` (replay only): the top pools and the control explored with that
    many seeds, the intersections with ``explore_seeds`` (or all). ``margin_scale`` (replay
    only): the stopping margin times this.

    Returns whether it trains the problem's exhaustive best (the best of every pool exhaustive
    search over it ranks), in which round, how many intersections, whether it stopped on its
    own, its pick (the best of what it ranks), whether that is the exhaustive best, its
    trainings and their share of exhaustive search's, and their CPU-seconds' share."""
    from sandbox.steps.pools.sequential import PoolSequentialSearch, values_by_pool

    every = exhaustive["combine.evaluate"]["outputs"]["results"]
    seed_list = sorted({int(r["seed"]) for r in every})[:seeds]
    every = [r for r in every if r["seed"] in seed_list]
    base = [r for r in every if r.get("kind") != "combined"
            and (subset is None or r["name"] in subset or r.get("kind") == "random")]
    candidates = [p for p in exhaustive["combine.combine"]["outputs"]["pools"]
                  if p.get("kind") == "combined"
                  and (subset is None or set(p.get("parts") or ()) <= set(subset))]
    names = {r["name"] for r in base} | {c["name"] for c in candidates}
    cpu = cell_cpu(exhaustive)

    class Replayed(PoolSequentialSearch):
        def _margin(self, *a):
            return super()._margin(*a) * margin_scale

    # the configs are never built: the replay's trainings are look-ups
    step = Replayed(trainer={"_target_": "replay"}, evaluator={"_target_": "replay"},
                    seeds=seed_list, max_rounds=max_rounds, model=model,
                    explore_seeds=explore_seeds, confirm_top=confirm_top)
    spent: list[tuple[str, int]] = []

    def cell(pool: dict, seed: int) -> dict:
        spent.append((pool["name"], seed))
        return next(r for r in every if r["name"] == pool["name"] and r["seed"] == seed)

    start = step.exploration(base)
    if base_seeds is not None:
        start = [r for r in start if r["seed"] in seed_list[:base_seeds]]
    spent += [(r["name"], r["seed"]) for r in start]
    _, rounds, _, converged = step.search(
        start, candidates, exhaustive["single_op.probe"]["outputs"]["stats"],
        lambda name: [cell({"name": name}, s) for s in step.explore])
    explored = [next(r for r in every if r["name"] == n and r["seed"] == s) for n, s in spent]
    final = explored
    if len(step.explore) < len(seed_list) or base_seeds is not None:
        final, _ = step.confirm(explored, [], cell)
    trained = [r["pick"] for r in rounds if r["trained"]]
    measured = objective_by_pool_of(exhaustive)
    best = min(names, key=measured.get)
    values, _ = values_by_pool(final, KEY)
    pick = min(values, key=values.get)
    total = [(r["name"], r["seed"]) for r in every if r["name"] in names]
    total_cpu = sum(cpu.get(c, 0.0) for c in total)
    return {"trained_combinations": float(len(trained)), "converged": float(converged),
            "trained_the_best": float(best in trained),
            "round_of_the_best": float(trained.index(best) + 1) if best in trained else math.nan,
            "same_pick": float(pick == best), "trainings": float(len(spent)),
            "trainings_fraction": len(spent) / len(total),
            "cpu_fraction": sum(cpu.get(c, 0.0) for c in spent) / total_cpu if total_cpu
            else math.nan, "pick": pick, "best": best}


def cell_cpu(records: dict) -> dict[tuple[str, int], float]:
    """CPU-seconds of each pool and seed of a combination stage: its training and evaluation."""
    out: dict[tuple[str, int], float] = {}
    for key, r in records.items():
        for what in ("combine.train[", "combine.evaluate["):
            if key.startswith(what) and key.endswith("]") and "cpu_seconds" in r:
                name, seed = key[len(what):-1].rsplit("#s", 1)
                out[(name, int(seed))] = out.get((name, int(seed)), 0.0) + float(r["cpu_seconds"])
    return out


# the variants the sub-problems are replayed with: (name, replay's keyword arguments)
VARIANTS = (
    ("every_seed", {}),
    ("every_seed_margin_x0.5", {"margin_scale": 0.5}),
    ("every_seed_margin_x2", {"margin_scale": 2.0}),
    ("explore1_confirm1", {"explore_seeds": 1, "confirm_top": 1}),
    ("explore1_confirm2", {"explore_seeds": 1, "confirm_top": 2}),
    ("explore1_confirm2_margin_x2", {"explore_seeds": 1, "confirm_top": 2, "margin_scale": 2.0}),
    ("explore1_confirm3", {"explore_seeds": 1, "confirm_top": 3}),
    ("base1_confirm2", {"base_seeds": 1, "confirm_top": 2}),
)


def subproblems(exhaustive: dict, sizes: tuple[int, ...] = (4, 5)) -> list[tuple[str, ...]]:
    """Every subset of ``sizes`` of the top pools the exhaustive run combined, then all of
    them."""
    from itertools import combinations

    top = [r["name"] for r in exhaustive["combine.equalize"]["outputs"]["pools"]
           if r.get("kind") not in ("combined", "random")]
    out = [c for k in sizes if k < len(top) for c in combinations(top, k)]
    return out + [tuple(top)]


def replay_subproblems(exhaustive: dict, a: argparse.Namespace) -> tuple[dict, list]:
    """Each variant of ``VARIANTS`` and each surrogate model replayed on every sub-problem:
    the share of problems where its pick is the problem's exhaustive best, the share where it
    is within noise of it (``within_noise``, paired over documents and seeds in the exhaustive
    run), and the mean share of the problem's trainings and CPU-seconds it spent."""
    from sandbox.steps.pools.surrogate import MODELS

    problems = subproblems(exhaustive)
    noise: dict[tuple[str, str], float] = {}
    out, lines = {"problems": [list(p) for p in problems]}, []
    for name, kw in VARIANTS:
        for model in MODELS:
            rows = [replay(exhaustive, model, a.train_top, a.seeds, subset=p, **kw)
                    for p in problems]
            for r in rows:
                if (r["best"], r["pick"]) not in noise:
                    noise[(r["best"], r["pick"])] = within_noise(
                        exhaustive, exhaustive, r["best"], r["pick"])["within_noise"]
                r["within_noise"] = noise[(r["best"], r["pick"])]
            share = {k: sum(r[k] for r in rows) / len(rows)
                     for k in ("same_pick", "within_noise", "trainings_fraction",
                               "cpu_fraction", "trained_combinations", "converged")}
            out[f"{name}_{model}"] = {"shares": share, "problems": rows}
            lines += [(f"search_subproblems_{name}_{model}_{k}", v, "") for k, v in share.items()]
            print(f"# {name} {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in share.items()),
                  file=sys.stderr)
    lines.append(("search_subproblems", float(len(problems)), ""))
    return out, lines


def objective_by_pool_of(records: dict) -> dict[str, float]:
    from sandbox.steps.pools.surrogate import objective_by_pool

    return objective_by_pool(ranking(records, "combine"), KEY)


def say(lines: list) -> None:
    """One figure per line, ``name value [unit]``; a NaN (the round of a best the replay never
    trained) is left out."""
    for name, value, unit in lines:
        if not math.isnan(value):
            print(f"{name} {value:.6g}" + (f" {unit}" if unit else ""))


def finished(method: str) -> bool:
    path = WORK / method / "context.json"
    return path.is_file() and "combine.rank" in steps(WORK / method)


def figures(a: argparse.Namespace) -> dict:
    import yaml

    from sandbox.steps.pools.surrogate import MODELS

    methods = [m for m in METHODS if finished(m)]
    if "exhaustive" not in methods or len(methods) < 2:
        sys.exit(f"the figures need the exhaustive run and another one finished under {WORK} "
                 f"(finished: {', '.join(methods) or 'none'}); run --methods for the others")
    single, runs = steps(WORK / "single_op"), {m: steps(WORK / m) for m in methods}
    base = cost(single, "single_op.")
    out: dict = {"settings": {k: v for k, v in vars(a).items() if k != "overrides"}}
    lines: list[tuple[str, float, str]] = [
        ("search_single_op_cpu_s", base["total"], "s"),
        ("search_single_op_trainings", base["trainings"], "")]
    stage = {m: cost(runs[m], "combine.") for m in methods}
    best, noise, ho, models = {}, {}, {}, {}
    for m in methods:
        top = ranking(runs[m], "combine")[0]
        best[m] = top["pool"]
        print(f"# {m}: best pool {top['pool']} ({KEY} {top[KEY]:.4f})", file=sys.stderr)
        lines += [(f"search_{m}_best_{KEY}", float(top[KEY]), ""),
                  (f"search_{m}_combine_trainings", stage[m]["trainings"], ""),
                  (f"search_{m}_combine_cpu_s", stage[m]["total"], "s"),
                  (f"search_{m}_combine_reused_cpu_s", stage[m]["reused"], "s"),
                  (f"search_{m}_total_cpu_s", base["total"] + stage[m]["total"], "s")]
    ex = stage["exhaustive"]
    for m in methods[1:]:
        su = stage[m]
        lines += [
            (f"search_{m}_fraction_of_exhaustive_cpu", (base["total"] + su["total"])
             / (base["total"] + ex["total"]), ""),
            (f"search_{m}_fraction_of_exhaustive_cpu_single_op_reused", su["total"] / ex["total"],
             ""),
            (f"search_{m}_fraction_of_exhaustive_cpu_twins_reused", su["spent"] / ex["spent"],
             "")]
        noise[m] = within_noise(runs["exhaustive"], runs[m], best["exhaustive"], best[m])
        print(f"# the {m} pick against the exhaustive best: {noise[m]}", file=sys.stderr)
        lines += [(f"search_{m}_same_pick", noise[m]["same"], ""),
                  (f"search_{m}_pick_within_noise", noise[m]["within_noise"], ""),
                  (f"search_{m}_pick_minus_best_{KEY}", noise[m]["diff"], ""),
                  (f"search_{m}_pick_vs_best_p", noise[m]["p"], "")]
        search = (runs[m].get("combine.search") or {}).get("outputs") or {}
        lines += [(f"search_{m}_{k.split('/')[-1]}", float(v), "")
                  for k, v in (search.get("metrics") or {}).items()
                  if k in ("surrogate/rounds", "surrogate/converged")]
        # the model the run used, then every model on the same held-out pools
        config = yaml.safe_load((WORK / m / "config.yaml").read_text())
        models[m] = config["bottom_up"]["surrogate"]["model"]
        if m == "surrogate":
            ho[m] = {k: held_out(single, runs["exhaustive"], a.train_top, k) for k in MODELS}
        else:
            ho[m] = {k: held_out_stage(runs[m], runs["exhaustive"], k) for k in MODELS}
        lines += [(f"search_{m}_unseen_{k}", float(v), "") for k, v in ho[m][models[m]].items()]
        lines += [(f"search_{m}_unseen_{k}_{n}", float(v), "")
                  for k in MODELS for n, v in ho[m][k].items() if n != "pools"]
    # the sequential search replayed on the exhaustive run's values, for every model: with
    # --train-top as its cap, and uncapped (how many intersections it needs to find the best)
    rep = {}
    for k in MODELS:
        for cap, tag in ((a.train_top, ""), (10 ** 6, "_uncapped")):
            rep[f"{k}{tag}"] = replay(runs["exhaustive"], k, cap, a.seeds)
            lines += [(f"search_sequential_replay_{k}{tag}_{n}", float(v), "")
                      for n, v in rep[f"{k}{tag}"].items() if not isinstance(v, str)]
    out["replay"] = rep
    if not a.no_subproblems:
        out["subproblems"], more = replay_subproblems(runs["exhaustive"], a)
        lines += more
    loo = runs["exhaustive"]["combine.surrogate"]["outputs"].get("metrics") or {}
    lines += [(f"search_exhaustive_loo_{k.split('/')[-1].removeprefix('loo_')}", float(v), "")
              for k, v in loo.items() if k != "surrogate/pools"]
    out.update(best=best, noise=noise, held_out=ho, surrogate_model=models, single_op=base,
               combine=stage, figures={n: v for n, v, _ in lines})
    from sandbox.utils import atomic_write_json

    atomic_write_json(WORK / "search.json", out)
    say(lines)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--top-k", type=int, default=4, help="single-OP pools whose intersections "
                   "every search considers")
    p.add_argument("--train-top", type=int, default=3, help="intersections the surrogate "
                   "trains (the sequential search: at most)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--token-budget", type=int, default=120000)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--n-head", type=int, default=2)
    p.add_argument("--explore-seeds", type=int, default=None, help="the sequential search "
                   "explores with this many seeds, then confirms its finalists with the rest "
                   "(bottom_up.surrogate.explore_seeds)")
    p.add_argument("--confirm-top", type=int, default=2, help="with --explore-seeds: the best "
                   "explored pools confirmed (bottom_up.surrogate.confirm_top)")
    p.add_argument("--processes", type=int, default=2, help="2 or more: the combination "
                   "stages all at once")
    p.add_argument("--tiny", action="store_true", help="the smoke test's size (800 documents, "
                   "3 stats, 1 seed, top 3, 2048 tokens, a 1-layer model)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="the combination stages to run now (the figures need the "
                   "exhaustive run and another)")
    p.add_argument("--from-runs", action="store_true", help="only read the finished runs")
    p.add_argument("--replay", action="store_true", help="only replay the sequential search's "
                   "variants on the sub-problems of the finished exhaustive run (no training)")
    p.add_argument("--no-subproblems", action="store_true", help="leave the sub-problems' "
                   "replay out of --from-runs")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    if a.tiny:
        a.seeds, a.top_k, a.train_top, a.token_budget = 1, 3, 1, 2048
    if a.replay:
        if not finished("exhaustive"):
            sys.exit(f"--replay needs the finished exhaustive run under {WORK}")
        from sandbox.utils import atomic_write_json

        out, lines = replay_subproblems(steps(WORK / "exhaustive"), a)
        atomic_write_json(WORK / "replay.json", out)
        say(lines)
        return
    if not a.from_runs:
        run_all(a)
    if a.from_runs or ("exhaustive" in a.methods and len(a.methods) > 1):
        figures(a)
    else:  # another stage may still be running: read them all when they are done
        print("# then: python bench/search.py --from-runs (same options)", file=sys.stderr)


if __name__ == "__main__":
    main()
