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
        procs[method] = launch(run_dir, [*common(a), *stage, f"bottom_up.combine={method}"])
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


def replay(exhaustive: dict, model: str, max_rounds: int, seeds: int) -> dict:
    """The sequential search (``PoolSequentialSearch.search``, ``model``, at most
    ``max_rounds`` intersections) replayed on the exhaustive run's evaluations: each "training"
    reads the results the exhaustive run measured for that pool, which are the ones the search
    would measure (same data, same seeds). Whether it trains the exhaustive best, how many
    intersections it trains, and whether it stopped on its own (converged)."""
    from sandbox.steps.pools.sequential import PoolSequentialSearch

    every = exhaustive["combine.evaluate"]["outputs"]["results"]
    candidates = [p for p in exhaustive["combine.combine"]["outputs"]["pools"]
                  if p.get("kind") == "combined"]
    start = [r for r in every if r.get("kind") != "combined"]
    # the configs are never built: the replay's trainings are look-ups
    step = PoolSequentialSearch(trainer={"_target_": "replay"}, evaluator={"_target_": "replay"},
                                seeds=seeds, max_rounds=max_rounds, model=model)
    _, rounds, _, converged = step.search(
        start, candidates, exhaustive["single_op.probe"]["outputs"]["stats"],
        lambda name: [r for r in every if r["name"] == name])
    trained = [r["pick"] for r in rounds if r["trained"]]
    measured = objective_by_pool_of(exhaustive)
    best = min((c["name"] for c in candidates), key=measured.get)
    return {"trained_combinations": float(len(trained)), "converged": float(converged),
            "trained_the_best": float(best in trained),
            "round_of_the_best": float(trained.index(best) + 1) if best in trained else math.nan}


def objective_by_pool_of(records: dict) -> dict[str, float]:
    from sandbox.steps.pools.surrogate import objective_by_pool

    return objective_by_pool(ranking(records, "combine"), KEY)


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
                      for n, v in rep[f"{k}{tag}"].items()]
    out["replay"] = rep
    loo = runs["exhaustive"]["combine.surrogate"]["outputs"].get("metrics") or {}
    lines += [(f"search_exhaustive_loo_{k.split('/')[-1].removeprefix('loo_')}", float(v), "")
              for k, v in loo.items() if k != "surrogate/pools"]
    out.update(best=best, noise=noise, held_out=ho, surrogate_model=models, single_op=base,
               combine=stage, figures={n: v for n, v, _ in lines})
    from sandbox.utils import atomic_write_json

    atomic_write_json(WORK / "search.json", out)
    for name, value, unit in lines:
        print(f"{name} {value:.6g}" + (f" {unit}" if unit else ""))
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
    p.add_argument("--processes", type=int, default=2, help="2 or more: the combination "
                   "stages all at once")
    p.add_argument("--tiny", action="store_true", help="the smoke test's size (800 documents, "
                   "3 stats, 1 seed, top 3, 2048 tokens, a 1-layer model)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="the combination stages to run now (the figures need the "
                   "exhaustive run and another)")
    p.add_argument("--from-runs", action="store_true", help="only read the finished runs")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    if a.tiny:
        a.seeds, a.top_k, a.train_top, a.token_budget = 1, 3, 1, 2048
    if not a.from_runs:
        run_all(a)
    if a.from_runs or ("exhaustive" in a.methods and len(a.methods) > 1):
        figures(a)
    else:  # another stage may still be running: read them all when they are done
        print("# then: python bench/search.py --from-runs (same options)", file=sys.stderr)


if __name__ == "__main__":
    main()
