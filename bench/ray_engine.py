"""engine=local vs engine=ray on the same recipe and pool, one figure per line.

    python bench/ray_engine.py                 # 100k documents, recipe B, medians of 3 runs
    python bench/ray_engine.py --docs 20000 --repeats 1

The pool is ``bench/run.py``'s mixed documents (default corpus, 1-3 documents each) as a Parquet
file; the recipe is ``bench/run.py``'s recipe B (4 mappers, 8 stat filters, exact and MinHash
dedup). Each configuration computes the stats (no cache), selects and writes kept, dropped and a
jsonl export, timed as a whole in this process: the local engine with 2 worker processes, and the
Ray engine on one local Ray instance of 2 CPUs with 1 and 2 workers (Ray Data, the default), plus
2 workers with plain Ray tasks. Prints docs/s per configuration, each Ray one's ratio to local,
and the fixed costs: starting Ray (``ray.init``), the first pass (Ray starts its worker
processes, which import the package and load the compiled kernels) and what a warm pass over 20
documents (one span) costs more than on the local engine. Asserts that every configuration
wrote the same bytes (result file, kept, dropped, export). Then selection alone on one result
file: exact and MinHash dedup shuffled across the Ray workers (the default) against the same on
the driver (``engine.dedup=driver``), with equal keep masks, and the bytes per row each way moves
(``dedup_figures``). Kernels are compiled before timing by
a small warm-up pass. Runs alternate between configurations; the machine is shared, so ratios
(of medians from the same invocation) are the figures to read, with the CPU seconds per
document of each configuration's whole process tree (Ray's own processes included), which other
load on the machine barely moves.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import run as bench  # noqa: E402  (bench/run.py: inputs, recipe B, say/log)

from sandbox.data.io import write_parquet  # noqa: E402
from sandbox.engine import LocalEngine, ProcessOutputs  # noqa: E402
from sandbox.engine.ray import RayEngine  # noqa: E402
from sandbox.recipe import load_recipe  # noqa: E402

LAST_CPU = [0.0]  # CPU seconds of the last pass (tree_cpu)
OUTPUTS = ("result", "kept.parquet", "dropped.parquet", "kept.jsonl")


def recipe_b() -> dict:
    ops = bench.MAPPERS + bench.FILTERS + bench.DEDUP + [bench.MINHASH]
    return {"ops": {k: v for op in ops for k, v in op.items()}}


def parquet_pool(n: int, folder: Path) -> Path:
    """``bench/run.py``'s ``n`` mixed documents as a Parquet pool (written once)."""
    path = bench.WORK / "data" / f"mixed-{n}-0.parquet"
    if not path.exists():
        src = bench.make_docs(n)
        texts = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
        write_parquet(pa.table({"text": texts}), path)
    return path


def tree_cpu() -> float:
    """CPU seconds used so far by this process and every live descendant (Ray's raylet and
    workers included), each with its waited-for children: ``/proc/PID/stat`` utime, stime,
    cutime, cstime. A finished local worker is counted in its parent's cutime."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    times: dict[int, float] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(d)] = int(fields[1])
            times[int(d)] = sum(int(x) for x in fields[11:15]) / tick
    mine, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        mine.add(pid)
        todo += [c for c, p in parent.items() if p == pid and c not in mine]
    return sum(times.get(p, 0.0) for p in mine)


def one_pass(engine, pool: Path, rec, ops, out: Path) -> tuple[float, dict[str, str]]:
    """compute + select + write, timed; returns (seconds, sha256 of each output) and leaves the
    process tree's CPU seconds in ``LAST_CPU``."""
    out.mkdir(parents=True, exist_ok=True)
    n = pq.ParquetFile(pool).metadata.num_rows
    c0 = tree_cpu()
    t0 = time.perf_counter()
    computed = engine.compute(pool, rec.ops, scratch_dir=out)
    sel = engine.select(rec.ops, ops, computed, n, fields=pool)
    engine.write(pool, computed, sel, "text", ProcessOutputs(
        dropped=out / "dropped.parquet", kept=out / "kept.parquet", export=out / "kept.jsonl"))
    seconds = time.perf_counter() - t0
    LAST_CPU[0] = tree_cpu() - c0
    files = {"result": computed.path} | {f: out / f for f in OUTPUTS[1:]}
    digests = {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in files.items()}
    Path(computed.path).unlink()
    return seconds, digests | {"kept_rows": str(int(sel.keep.sum()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="ray-engine-", dir=bench.WORK))
    pool = parquet_pool(args.docs, work)
    rec = load_recipe(recipe_b())
    ops = rec.build()
    small = work / "small.parquet"
    write_parquet(pq.read_table(pool).slice(0, 500), small)

    bench.log("compiling kernels (local warm-up)")
    one_pass(LocalEngine(num_proc=2), small, rec, ops, work / "warm-local")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    bench.say("ray_init_s", time.perf_counter() - t0, "s")
    first, _ = one_pass(RayEngine(num_proc=2), small, rec, ops, work / "warm-ray")
    bench.say("ray_first_pass_500_docs_s", first, "s")
    # the fixed cost of a pass: 20 documents (one span), medians of 5, minus the local engine's
    tiny = work / "tiny.parquet"
    write_parquet(pq.read_table(pool).slice(0, 20), tiny)
    one_span = {}
    for name, engine in (("local", LocalEngine(num_proc=2)), ("ray_data", RayEngine(num_proc=2)),
                         ("ray_tasks", RayEngine(num_proc=2, scheduler="tasks"))):
        one_span[name] = statistics.median(
            one_pass(engine, tiny, rec, ops, work / f"o-{name}")[0] for _ in range(5))
    bench.say("local_pass_20_docs_s", one_span["local"], "s")
    bench.say("ray_data_pass_overhead_s", one_span["ray_data"] - one_span["local"], "s")
    bench.say("ray_tasks_pass_overhead_s", one_span["ray_tasks"] - one_span["local"], "s")

    configs = {"local_np2": LocalEngine(num_proc=2),
               "ray_data_w1": RayEngine(num_proc=1),
               "ray_data_w2": RayEngine(num_proc=2),
               "ray_tasks_w2": RayEngine(num_proc=2, scheduler="tasks")}
    times: dict[str, list[float]] = {k: [] for k in configs}
    cpus: dict[str, list[float]] = {k: [] for k in configs}
    digests: dict[str, dict] = {}
    for r in range(args.repeats):
        for name, engine in configs.items():  # alternating
            seconds, digest = one_pass(engine, pool, rec, ops, work / f"{name}-{r}")
            bench.log(f"{name} run {r + 1}: {seconds:.2f} s, {LAST_CPU[0]:.1f} CPU-s")
            times[name].append(seconds)
            cpus[name].append(LAST_CPU[0])
            digests.setdefault(name, digest)
            assert digest == digests["local_np2"], (name, digest, digests["local_np2"])
    bench.say("docs", args.docs)
    bench.say("kept_rows", int(digests["local_np2"]["kept_rows"]))
    base = args.docs / statistics.median(times["local_np2"])
    for name, ts in times.items():
        rate = args.docs / statistics.median(ts)
        bench.say(f"{name}_docs_per_s", rate, "docs/s")
        if name != "local_np2":
            bench.say(f"{name}_vs_local", rate / base, "x")
    for name, cs in cpus.items():  # robust to other load on the machine, unlike wall time
        bench.say(f"{name}_cpu_us_per_doc", 1e6 * statistics.median(cs) / args.docs, "us")
    bench.say("outputs_identical", "yes (result file, kept, dropped, export: same sha256)")
    dedup_figures(pool, rec, ops, work, args.repeats)
    ray.shutdown()


def dedup_figures(pool: Path, rec, ops, work: Path, repeats: int) -> None:
    """Selection alone (thresholds, exact and MinHash dedup) on one result file: dedup shuffled
    across 2 Ray workers against dedup on the driver (the local engine's way), medians of
    ``repeats``; the keep masks must be equal. Also what each way moves per row: the records and
    bytes the shuffle sends through the object store, and the hash and signature bytes the
    driver loads instead."""
    import numpy as np

    n = pq.ParquetFile(pool).metadata.num_rows
    out = work / "dedup"
    out.mkdir()
    computed = RayEngine(num_proc=2).compute(pool, rec.ops, scratch_dir=out)
    ways = {"driver": RayEngine(num_proc=2, dedup="driver"), "shuffle": RayEngine(num_proc=2)}
    seconds: dict[str, list[float]] = {k: [] for k in ways}
    keeps = {}
    for _ in range(repeats):
        for name, engine in ways.items():
            computed._columns.clear()  # each pass loads what it needs, as a fresh run does
            t0 = time.perf_counter()
            keeps[name] = engine.select(rec.ops, ops, computed, n, fields=pool).keep
            seconds[name].append(time.perf_counter() - t0)
    assert np.array_equal(keeps["driver"], keeps["shuffle"])
    shuffle = ways["shuffle"].last_shuffle
    hashed = [c for c in pq.ParquetFile(computed.path).schema_arrow.names if c.endswith(".hash")]
    loaded = pq.read_table(computed.path, columns=hashed).nbytes
    for name, ts in seconds.items():
        bench.say(f"select_dedup_{name}_s", statistics.median(ts), "s")
    bench.say("select_dedup_shuffle_vs_driver",
              statistics.median(seconds["driver"]) / statistics.median(seconds["shuffle"]), "x")
    bench.say("dedup_shuffle_records_per_row", shuffle.records / n)
    bench.say("dedup_shuffle_bytes_per_row", shuffle.shuffled_bytes / n, "B")
    bench.say("dedup_driver_loads_bytes_per_row", loaded / n, "B")
    bench.say("dedup_kept_sets_identical", "yes")


if __name__ == "__main__":
    main()
