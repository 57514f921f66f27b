"""Benchmarks of the sandbox against Data-Juicer, one command each, one figure per line.

    python bench/run.py throughput   # recipe A and B, samples/s: Data-Juicer vs `python -m sandbox`
    python bench/run.py probe        # analysis: dj-analyze vs `python -m sandbox pipeline=probe`
    python bench/run.py refilter     # seconds to apply new thresholds to cached stats
    python bench/run.py rss          # peak RSS (whole process tree) processing 1M docs, recipe A
    python bench/run.py train        # CausalLMTrainer tokens/s vs a bare PyTorch loop
    python bench/run.py startup      # `python -m sandbox --help` wall time
    python bench/run.py all

Options: --docs N (default 100000; rss: 1000000), --np N (2), --repeats R (3),
--no-dj (our side only), --dj-repeats R (default: --repeats). The Data-Juicer side runs in the
virtualenv that bench/dj_env.sh installs (bench/.work/dj-venv). Inputs, recipes and run dirs go
to bench/.work (git-ignored). Figures are medians over the repeats; ratios are of medians taken
in the same invocation. Our side is always the user-facing command (whole wall time, start-up
included), e.g. ``python -m sandbox pipeline=process data_pool=jsonl data_pool.path=IN.jsonl
recipe=dj recipe.path=RECIPE.yaml tracking=none``, with a fresh stats cache per run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("BENCH_WORK") or ROOT / "bench" / ".work")  # tests move it
PY = sys.executable

FILTERS = [  # the eight stat filters of conf/recipe/default.yaml, same arguments
    {"text_length_filter": {"min_len": 10}},
    {"words_num_filter": {"min_num": 10}},
    {"alphanumeric_filter": {"min_ratio": 0.25}},
    {"special_characters_filter": {"max_ratio": 0.25}},
    {"character_repetition_filter": {"rep_len": 10, "max_ratio": 0.5}},
    {"word_repetition_filter": {"rep_len": 10, "max_ratio": 0.5}},
    {"average_line_length_filter": {"min_len": 10}},
    {"maximum_line_length_filter": {"max_len": 20000}},
]
MAPPERS = [{"clean_html_mapper": {}}, {"clean_links_mapper": {}}, {"clean_email_mapper": {}},
           {"whitespace_normalization_mapper": {}}]
DEDUP = [{"document_deduplicator": {"lowercase": False, "ignore_non_character": False}}]
MINHASH = {"document_minhash_deduplicator": {}}


def say(name: str, value, unit: str = "") -> None:
    """One figure per line: ``name value [unit]``."""
    v = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"{name} {v}{(' ' + unit) if unit else ''}", flush=True)


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ inputs
def make_docs(n: int, seed: int = 0, path: Path | None = None) -> Path:
    """``n`` realistic mixed documents: each is 1-3 documents of the default corpus pool (clean
    prose, news, raw wiki markup, junk, duplicates), sampled with replacement, joined by a blank
    line. Written once per (n, seed) and reused."""
    path = path or WORK / "data" / f"mixed-{n}-{seed}.jsonl"
    if path.exists():
        return path
    from sandbox.data.corpus import default_corpus

    pool = [json.loads(line)["text"] for line in open(default_corpus().pool, encoding="utf-8")]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for _ in range(n):
            k = rng.choice((1, 1, 2, 3))
            text = "\n\n".join(rng.choice(pool) for _ in range(k))
            fh.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def has_minhash() -> bool:
    from sandbox.ops import all_ops

    return "document_minhash_deduplicator" in all_ops()


def write_recipe(name: str, process: list, np_: int) -> Path:
    import yaml

    path = WORK / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = {"project_name": f"bench-{name}", "np": np_, "text_keys": "text", "use_cache": False,
           "open_tracer": False, "op_fusion": False, "skip_op_error": False, "process": process}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def recipes(np_: int, minhash: bool | None = None) -> dict[str, Path]:
    minhash = has_minhash() if minhash is None else minhash
    b = MAPPERS + FILTERS + DEDUP + ([MINHASH] if minhash else [])
    return {"A": write_recipe("A", FILTERS, np_),
            "B" if minhash else "B_exact_dedup_only": write_recipe("B", b, np_)}


# ------------------------------------------------------------------------------ running
def dj_bin(tool: str) -> Path:
    venv = ROOT / "bench" / ".work" / "dj-venv" / "bin"  # where dj_env.sh installs it
    if not (venv / tool).exists():
        log("installing Data-Juicer with bench/dj_env.sh (once, ~2 GB)")
        subprocess.run(["bash", str(ROOT / "bench" / "dj_env.sh")], check=True,
                       stdout=subprocess.DEVNULL)
    return venv / tool


class PeakRSS:
    """Polls the summed RSS of a process and all its descendants (workers included). RSS counts
    pages shared by forked workers once per process (an over-estimate); ``peak_pss`` is the
    summed proportional set size (shared pages split between their users)."""

    def __init__(self, pid: int, every: float = 0.1):
        self.pid, self.every, self.peak, self.peak_pss = pid, every, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _tree(self) -> list[int]:
        kids: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                    kids.setdefault(ppid, []).append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo += kids.get(p, [])
        return out

    def _loop(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            total, pss = 0, 0
            for p in self._tree():
                try:
                    with open(f"/proc/{p}/statm") as fh:
                        total += int(fh.read().split()[1]) * page
                    with open(f"/proc/{p}/smaps_rollup") as fh:
                        for line in fh:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1]) * 1024
                                break
                except (OSError, IndexError, ValueError):
                    pass
            self.peak = max(self.peak, total)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


LAST_PSS = [0]  # peak summed PSS of the last command run with rss=True
LAST_CPU = [0.0]  # CPU seconds (user + sys) of the last timed command's process tree


def timed(cmd: list[str], env: dict | None = None, rss: bool = False, cwd: Path | None = None):
    """Run a command; returns (wall seconds, peak tree RSS bytes or 0) and leaves its tree's CPU
    seconds (children that were waited for, i.e. every worker pool) in ``LAST_CPU``."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    log_path = WORK / "logs" / f"{uuid.uuid4().hex[:8]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd or ROOT)
        mon = PeakRSS(proc.pid) if rss else None
        rc = proc.wait()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[0] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    peak = mon.stop() if mon else 0
    LAST_PSS[0] = mon.peak_pss if mon else 0
    if rc != 0:
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"command failed ({rc}): {' '.join(map(str, cmd))}\n{tail}")
    return wall, peak


def ours_cmd(pipeline: str, data: Path, recipe: Path, np_: int, export: Path | None = None) -> list[str]:
    run_dir = WORK / "runs" / uuid.uuid4().hex[:10]
    cmd = [PY, "-m", "sandbox", f"pipeline={pipeline}", "data_pool=jsonl", f"data_pool.path={data}",
           "recipe=dj", f"recipe.path={recipe}", "tracking=none", f"num_proc={np_}",
           "progress=false", f"cache_dir={WORK / 'cache'}",
           f"hydra.run.dir={run_dir}"]
    if export is not None:
        cmd.append(f"process.export_path={export}")
    return cmd


def forget_run(cmd: list[str], keep_stats: bool = False) -> None:
    """Delete what one of our timed runs wrote (run dir, stats cache, fingerprints): ~400 MB per
    100k-doc run that would otherwise fill the page cache and slow the runs after it (not
    timed), and so that every run computes its stats afresh. The compiled kernels stay cached,
    as on a user's machine after the first run."""
    import shutil

    for arg in cmd:
        if arg.startswith("hydra.run.dir="):
            shutil.rmtree(arg[len("hydra.run.dir="):], ignore_errors=True)
        elif arg.startswith("cache_dir=") and not keep_stats:
            for sub in ("stats", "fingerprints"):
                shutil.rmtree(Path(arg[len("cache_dir="):]) / sub, ignore_errors=True)


def warm_kernels(np_: int) -> None:
    """Build the compiled kernels into the benchmark's cache once, untimed (their ahead-of-time
    extensions, ~1 min; see sandbox.jit): timed runs then load them, as every run after the
    first does on a user's machine."""
    import compileall

    # Python's bytecode of our modules, as a user's first run (or pip, for an installed
    # package such as Data-Juicer's) writes it: where PYTHONDONTWRITEBYTECODE is set, every
    # timed run would compile our sources again (~0.1 s before the first span)
    for package in ("sandbox", "hydra_plugins"):
        compileall.compile_dir(ROOT / package, quiet=1)
    recipe_b = list(recipes(np_).values())[-1]  # every kernel the recipes use
    cmd = ours_cmd("process", make_docs(500, path=WORK / "warm.jsonl"), recipe_b, np_)
    timed(cmd)
    forget_run(cmd)


def forget_outputs(*exports: Path) -> None:
    """Delete the previous runs' exported files (and Data-Juicer's ``*_stats`` beside them)
    before a timed run, so that every run starts from the same page-cache state."""
    import shutil

    for path in exports:
        for p in path.parent.glob(f"{path.stem}*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def dj_cmd(tool: str, data: Path, recipe: Path, np_: int, export: Path) -> list[str]:
    return [str(dj_bin(tool)), "--config", str(recipe), "--dataset_path", str(data),
            "--export_path", str(export), "--np", str(np_)]


def dj_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env["DATA_JUICER_CACHE_HOME"] = str(WORK / "dj-cache")
    return env


def kept_texts(path: Path) -> Counter:
    with open(path, encoding="utf-8") as fh:
        return Counter(json.loads(line)["text"] for line in fh if line.strip())


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# ------------------------------------------------------------------------------ benchmarks
def bench_throughput(a) -> None:
    data = make_docs(a.docs)
    n = a.docs
    for label, recipe in recipes(a.np).items():
        if a.recipe and not label.startswith(a.recipe):
            continue
        ours, dj, ours_cpu, dj_cpu = [], [], [], []
        out_ours = WORK / "out" / f"ours-{label}.jsonl"
        out_dj = WORK / "out" / f"dj-{label}.jsonl"
        out_ours.parent.mkdir(parents=True, exist_ok=True)
        for r in range(max(a.repeats, a.dj_repeats if not a.no_dj else 0)):
            if r < a.repeats:
                cmd = ours_cmd("process", data, recipe, a.np, out_ours)
                forget_outputs(out_ours)
                ours.append(timed(cmd)[0])
                ours_cpu.append(LAST_CPU[0])
                forget_run(cmd)
                log(f"{label} ours run {r + 1}: {ours[-1]:.2f}s wall, {ours_cpu[-1]:.1f} cpu-s")
            if not a.no_dj and r < a.dj_repeats:
                forget_outputs(out_dj)
                dj.append(timed(dj_cmd("dj-process", data, recipe, a.np, out_dj), env=dj_env())[0])
                dj_cpu.append(LAST_CPU[0])
                log(f"{label} dj run {r + 1}: {dj[-1]:.2f}s wall, {dj_cpu[-1]:.1f} cpu-s")
        # the sweep case: the same command again on the same data, its stats found in the cache
        cached = []
        for r in range(a.repeats + 1):
            cmd = ours_cmd("process", data, recipe, a.np, out_ours)
            forget_outputs(out_ours)
            wall = timed(cmd)[0]
            forget_run(cmd, keep_stats=True)
            if r:  # the first run fills the cache
                cached.append(wall)
                log(f"{label} ours cached run {r}: {wall:.2f}s wall")
        forget_run(cmd)
        say(f"process_{label}_ours_samples_per_s", n / median(ours))
        say(f"process_{label}_ours_samples_per_cpu_s", n / median(ours_cpu))
        say(f"process_{label}_ours_cached_samples_per_s", n / median(cached))
        if dj:
            say(f"process_{label}_dj_samples_per_s", n / median(dj))
            say(f"process_{label}_dj_samples_per_cpu_s", n / median(dj_cpu))
            say(f"process_{label}_speedup_vs_dj", median(dj) / median(ours), "x")
            say(f"process_{label}_cpu_speedup_vs_dj", median(dj_cpu) / median(ours_cpu), "x")
            say(f"process_{label}_cached_speedup_vs_dj", median(dj) / median(cached), "x")
            a_, b_ = kept_texts(out_ours), kept_texts(out_dj)
            say(f"process_{label}_kept_ours", sum(a_.values()))
            say(f"process_{label}_kept_dj", sum(b_.values()))
            say(f"process_{label}_kept_sets_equal", a_ == b_)


def bench_probe(a) -> None:
    data = make_docs(a.docs)
    recipe = recipes(a.np)["A"]
    ours, dj, ours_cpu, dj_cpu = [], [], [], []
    for r in range(max(a.repeats, a.dj_repeats if not a.no_dj else 0)):
        out = WORK / "out" / "dj-analyze" / "out.jsonl"
        if r < a.repeats:
            cmd = ours_cmd("probe", data, recipe, a.np)
            forget_outputs(out.parent)
            ours.append(timed(cmd)[0])
            ours_cpu.append(LAST_CPU[0])
            forget_run(cmd)
            log(f"probe ours run {r + 1}: {ours[-1]:.2f}s wall, {ours_cpu[-1]:.1f} cpu-s")
        if not a.no_dj and r < a.dj_repeats:
            forget_outputs(out.parent)
            dj.append(timed(dj_cmd("dj-analyze", data, recipe, a.np, out), env=dj_env())[0])
            dj_cpu.append(LAST_CPU[0])
            log(f"probe dj run {r + 1}: {dj[-1]:.2f}s wall, {dj_cpu[-1]:.1f} cpu-s")
    say("probe_A_ours_samples_per_s", a.docs / median(ours))
    say("probe_A_ours_samples_per_cpu_s", a.docs / median(ours_cpu))
    if dj:
        say("probe_A_dj_samples_per_s", a.docs / median(dj))
        say("probe_A_dj_samples_per_cpu_s", a.docs / median(dj_cpu))
        say("probe_A_speedup_vs_dj", median(dj) / median(ours), "x")
        say("probe_A_cpu_speedup_vs_dj", median(dj_cpu) / median(ours_cpu), "x")


def bench_refilter(a) -> None:
    """Stats computed once (the user-facing probe); then the time to apply new thresholds from
    the cache: fingerprint look-up, cache hit, column load, masks, dedup. In-process, as a sweep
    trial or the process step does it."""
    from sandbox.engine import LocalEngine, select
    from sandbox.data.fingerprint import fingerprint
    from sandbox.recipe import load_recipe

    data = make_docs(a.docs)
    cache = WORK / "cache" / "refilter"
    pool = WORK / "refilter" / "pool.parquet"
    if not pool.exists():
        from sandbox.data.stream import to_parquet

        to_parquet(data, "jsonl", pool)
    base = {k: v for d in FILTERS + DEDUP for k, v in d.items()}
    rec = load_recipe({"ops": base})
    t0 = time.perf_counter()
    engine = LocalEngine(num_proc=a.np, batch_size=512)
    engine.compute(pool, rec.ops, "text", cache_dir=cache, fingerprint=fingerprint(pool, cache))
    log(f"stats computed (or found) in {time.perf_counter() - t0:.1f}s")
    times = []
    for r in range(max(3, a.repeats)):
        ops = {k: dict(v) for k, v in base.items()}
        ops["text_length_filter"]["min_len"] = 500 * (r + 1)  # a new, binding threshold each time
        ops["alphanumeric_filter"]["min_ratio"] = 0.3 + 0.05 * r
        t0 = time.perf_counter()
        rec = load_recipe({"ops": ops})
        built = rec.build()
        cf = engine.compute(pool, rec.ops, "text", cache_dir=cache,
                            fingerprint=fingerprint(pool, cache))
        assert cf.cache_hit, "threshold-only change missed the stats cache"
        sel = select(rec.ops, built, cf, cf.num_rows)
        times.append(time.perf_counter() - t0)
        log(f"refilter run {r + 1}: {times[-1]:.3f}s, kept {int(sel.keep.sum())}")
    say(f"refilter_{a.docs}_docs_seconds", median(times), "s")


def bench_rss(a) -> None:
    n = a.docs if a.docs_set else 1_000_000
    data = make_docs(n)
    recipe = recipes(a.np)["A"]
    walls, peaks, psss = [], [], []
    for r in range(a.rss_repeats):
        cmd = ours_cmd("process", data, recipe, a.np)
        wall, peak = timed(cmd, rss=True)
        forget_run(cmd)
        walls.append(wall)
        peaks.append(peak)
        psss.append(LAST_PSS[0])
        log(f"rss run {r + 1}: {wall:.1f}s, peak RSS {peak / 2**30:.2f} GiB, "
            f"PSS {psss[-1] / 2**30:.2f} GiB")
    say(f"rss_{n}_docs_peak_GiB", max(peaks) / 2**30, "GiB")
    say(f"rss_{n}_docs_peak_pss_GiB", max(psss) / 2**30, "GiB")
    say(f"rss_{n}_docs_samples_per_s", n / median(walls))


def bench_train(a) -> None:
    """tokens/s of CausalLMTrainer vs a bare PyTorch loop over the same model, batch and data
    (same threads), measured in one process, alternating, medians."""
    extra = ["--budget", str(a.train_budget)] if a.train_budget else []
    out = subprocess.run([PY, str(ROOT / "bench" / "train_bench.py"), "--repeats",
                          str(a.repeats), "--docs", str(min(a.docs, 5000)), *extra],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    sys.stderr.write(out.stderr)
    for line in out.stdout.splitlines():  # the figures; what else the trainer printed (e.g. its
        if line.startswith("train_"):  # warning that the machine is oversubscribed) is a log line
            print(line, flush=True)
        elif line.strip():
            log(line)


def bench_startup(a) -> None:
    times = [timed([PY, "-m", "sandbox", "--help"])[0] for _ in range(max(3, a.repeats))]
    say("startup_help_seconds", median(times), "s")


BENCHES = {"throughput": bench_throughput, "probe": bench_probe, "refilter": bench_refilter,
           "rss": bench_rss, "train": bench_train, "startup": bench_startup}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bench", choices=[*BENCHES, "all"])
    p.add_argument("--docs", type=int, default=None)
    p.add_argument("--np", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dj-repeats", type=int, default=None)
    p.add_argument("--rss-repeats", type=int, default=1)
    p.add_argument("--no-dj", action="store_true")
    p.add_argument("--recipe", choices=["A", "B"], default=None, help="throughput: only this one")
    p.add_argument("--train-budget", type=int, default=None, help="tokens per trainer run")
    a = p.parse_args(argv)
    a.docs_set = a.docs is not None
    a.docs = a.docs or 100_000
    a.dj_repeats = a.repeats if a.dj_repeats is None else a.dj_repeats
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import shutil

    for leftover in ("runs", "cache"):  # of interrupted benchmarks: hundreds of MB each
        shutil.rmtree(WORK / leftover, ignore_errors=True)
    names = list(BENCHES) if a.bench == "all" else [a.bench]
    if {"throughput", "probe", "rss"} & set(names):  # the benches that time whole commands
        warm_kernels(a.np)
    for name in names:
        BENCHES[name](a)


if __name__ == "__main__":
    main()
