"""Where the time of ``python -m sandbox pipeline=process`` goes, phase by phase and OP by OP.

    python bench/phases.py              # recipe A and B on bench/run.py's 100k documents
    python bench/phases.py --recipe B --docs 20000

Each phase is timed on its own, in this process, on one core (CPU seconds; the whole command
runs the OPs on ``--np`` workers, so its wall time is about the start-up, load and write phases
plus the OP phase divided by the workers):

* start-up: the interpreter alone, then the interpreter with the imports of a process run
  (subprocesses, medians of 5), and one Hydra composition of the run's config;
* load: the jsonl parse (pyarrow's block reader) and writing ``pool.parquet``;
* the OPs: the worker's read of the pool (Parquet decode, Python strings), then every OP in
  recipe order over the whole pool in batches, as a worker runs them (an OP that first asks
  for a view several OPs share, such as the code points, pays for it), then the result batches;
* selection: thresholds and exact dedup from the stats, then MinHash's LSH grouping;
* writing: the dropped file alone, then the kept file, then the jsonl export (each the
  difference to the one before).

One figure per line (``phase_<recipe>_<name> seconds``), per 100k documents when ``--docs``
differs; progress on stderr. ``--json FILE`` also writes them as a dict.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as bench_run  # noqa: E402  (bench/run.py: inputs and recipes)

PY = sys.executable
IMPORTS = ("import hydra, omegaconf, pyarrow.parquet, sandbox.cli.experiment, sandbox.engine.local, "
           "sandbox.steps.data.load, sandbox.steps.data.process")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def subprocess_wall(code: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([PY, "-c", code], check=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Timer:
    def __init__(self):
        self.spent: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t = cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, cpu() - t)
        return timed


def profile(label: str, recipe: Path, data: Path, work: Path, np_: int) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.json as pj
    from hydra import compose, initialize_config_dir

    from sandbox.data.stream import to_parquet
    from sandbox.engine.base import ProcessOutputs
    from sandbox.engine.common import pool_spans
    from sandbox.engine.local import LocalEngine, preload
    from sandbox.engine.result import ComputedFile
    from sandbox.engine.worker import SpanJob, SpanWorker
    from sandbox.ops import Deduplicator, Filter, Mapper
    from sandbox.recipe import load_dj_file

    out: dict[str, float] = {}
    overrides = ["pipeline=process", "data_pool=jsonl", f"data_pool.path={data}", "recipe=dj",
                 f"recipe.path={recipe}", "tracking=none", f"num_proc={np_}", "progress=false"]
    t = time.perf_counter()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        compose("config", overrides=overrides)
    out["hydra_compose"] = time.perf_counter() - t

    for timed_pass in (False, True):  # the first reads the file into the page cache
        t = cpu()
        for _ in pj.open_json(data, read_options=pj.ReadOptions(block_size=8 << 20)):
            pass
        out["load_jsonl_parse"] = cpu() - t
    pool = work / "pool.parquet"
    t = cpu()
    to_parquet(data, "jsonl", pool)
    out["load_write_pool_parquet"] = max(0.0, cpu() - t - out["load_jsonl_parse"])

    rec = load_dj_file(recipe)
    preload(list(rec.ops), "text")
    job = SpanJob(tuple(rec.ops), "text", str(pool), ("text",), 512)
    worker = SpanWorker(job)
    timer = Timer()
    for key, op in worker.ops:
        for method in ("process_batch", "compute_stats_batch", "hash_batch"):
            if hasattr(op, method):
                setattr(op, method, timer.wrap(f"op_{key}", getattr(op, method)))
    worker.read = timer.wrap("ops_read_pool", worker.read)
    worker.result_batch = timer.wrap("ops_result_batches", worker.result_batch)
    spans = list(pool_spans(pool, 2048))
    worker.run_span(spans[0])  # kernels loaded, first row group read: not what is timed
    timer.spent.clear()
    result = work / "stats.parquet"
    import pyarrow.parquet as pq

    writer = None
    run_span = timer.wrap("ops_span", worker.run_span)
    for span in spans:
        buf = run_span(span)
        t_write = cpu()
        for batch in pa.ipc.open_stream(buf):
            writer = writer or pq.ParquetWriter(result, batch.schema)
            writer.write_batch(batch)
        timer.add("ops_write_result_file", cpu() - t_write)
    writer.close()
    spans_total = timer.spent.pop("ops_span")
    out.update(timer.spent)
    # the worker's batch loop: Python strings of the texts, the views, the IPC stream
    out["ops_other"] = spans_total - sum(v for k, v in timer.spent.items()
                                         if k != "ops_write_result_file")

    n = pq.ParquetFile(pool).metadata.num_rows
    has_text = any(isinstance(op, Mapper) for _, op in worker.ops)
    computed = ComputedFile(result, n, has_text)
    ops = rec.build()
    engine = LocalEngine(num_proc=1)
    near = [i for i, op in enumerate(ops) if isinstance(op, Deduplicator)
            and op.name == "document_minhash_deduplicator"]
    keep_specs = [s for i, s in enumerate(rec.ops) if i not in near]
    keep_ops = [o for i, o in enumerate(ops) if i not in near]
    engine.select(rec.ops, ops, computed, n, fields=pool)  # kernels loaded: not what is timed
    t = cpu()
    engine.select(keep_specs, keep_ops, computed, n, fields=pool)
    out["select_thresholds_exact_dedup"] = cpu() - t
    t = cpu()
    sel = engine.select(rec.ops, ops, computed, n, fields=pool)
    if near:
        out["select_minhash_lsh"] = max(0.0, cpu() - t - out["select_thresholds_exact_dedup"])
    engine.write(pool, computed, sel, "text", ProcessOutputs(  # the same: kernels loaded
        dropped=work / "d.parquet", kept=work / "k.parquet", export=work / "e.jsonl"))
    before = 0.0
    for name, outputs in (
            ("write_dropped_parquet", ProcessOutputs(dropped=work / "d.parquet")),
            ("write_kept_parquet", ProcessOutputs(dropped=work / "d.parquet",
                                                  kept=work / "k.parquet")),
            ("write_export_jsonl", ProcessOutputs(dropped=work / "d.parquet",
                                                  kept=work / "k.parquet",
                                                  export=work / "e.jsonl"))):
        t = cpu()
        engine.write(pool, computed, sel, "text", outputs)
        spent = cpu() - t
        out[name] = max(0.0, spent - before)
        before = spent
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--recipe", choices=["A", "B"], default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    data = bench_run.make_docs(a.docs)  # creates bench_run.WORK
    scale = 100_000 / a.docs
    figures: dict[str, float] = {
        "startup_interpreter": subprocess_wall("pass"),
        "startup_imports": subprocess_wall(IMPORTS),
    }
    for name, value in figures.items():
        print(f"phase_{name} {value:.3f} s", flush=True)
    for label, recipe in bench_run.recipes(a.np).items():
        if a.recipe and not label.startswith(a.recipe):
            continue
        print(f"# profiling recipe {label} on {a.docs} documents", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(dir=bench_run.WORK) as tmp:
            phases = profile(label, recipe, data, Path(tmp), a.np)
        for name, value in phases.items():
            value = value if name == "hydra_compose" else value * scale
            figures[f"{label}_{name}"] = value
            print(f"phase_{label}_{name} {value:.3f} s", flush=True)
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
