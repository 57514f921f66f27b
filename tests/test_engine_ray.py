"""engine=ray: the same results as engine=local, byte for byte (result files, kept and dropped
files, retention table, exported jsonl), on the default pool and on pools whose exact and near
duplicates sit in different shards; the kept row of each duplicate group is its smallest row id.

One local Ray instance (2 CPUs, no dashboard) serves the whole module; the module is skipped only
when ``ray`` cannot be imported."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray", reason='engine=ray needs `pip install "ray[data]==2.60.0"`')

from sandbox.data.fingerprint import fingerprint  # noqa: E402
from sandbox.engine import LocalEngine, ProcessOutputs, build_engine, cache_path  # noqa: E402
from sandbox.engine import ComputedFile, first_alive, hash_codes  # noqa: E402
from sandbox.engine.ray import RayEngine, _in_order, import_ray  # noqa: E402
from sandbox.engine.shuffle import ShuffleDedup, auto_partitions  # noqa: E402
from sandbox.ops import OPS, Deduplicator, OpSpec, register  # noqa: E402
from sandbox.ops.common.media import keep_first_media  # noqa: E402
from sandbox.ops.image.deduplicators import ImageDeduplicator  # noqa: E402
from sandbox.ops.text.deduplicators import (DocumentDeduplicator,  # noqa: E402
                                            DocumentMinhashDeduplicator)
from sandbox.engine.worker import SpanJob  # noqa: E402
from sandbox.errors import ConfigError, DataError  # noqa: E402
from sandbox.recipe import load_recipe  # noqa: E402
from sandbox.runner import run  # noqa: E402
from tests.conftest import compose  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance for this module's tests, shut down after the last one."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024 ** 2,
                 logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


def _bytes(path) -> bytes:
    return Path(path).read_bytes()


# ----------------------------------------------------------------------------- default pool
@pytest.mark.slow
def test_process_pipeline_on_the_default_pool_is_identical(ray_cluster, tmp_path, session_cache):
    """`python -m sandbox pipeline=process engine=ray` writes the bytes engine=local writes:
    the result file (stats cache), processed/dropped parquet, retention.csv, the jsonl export."""
    base = ["pipeline=process", "data_pool.num_docs=800", "tracking=none", "progress=false",
            "+recipe.ops.document_minhash_deduplicator={}"]
    outs = {}
    for engine in ("local", "ray"):
        export = tmp_path / f"{engine}.jsonl"
        cfg = compose(base + [f"engine={engine}", f"process.export_path={export}",
                              "engine.span_rows=96"])
        run(cfg, run_dir=tmp_path / engine)
        ctx = json.loads((tmp_path / engine / "context.json").read_text())
        pool = ctx["steps"]["load"]["outputs"]["dataset"]
        rec = load_recipe(cfg.recipe, "text")
        stats = cache_path(session_cache, fingerprint(pool, session_cache), rec.ops, "text")
        assert stats.exists()
        outs[engine] = ctx["steps"]["process"]["outputs"] | {"stats": _bytes(stats)}
        stats.unlink()  # so that the next engine computes the stats itself
    local, distributed = outs["local"], outs["ray"]
    assert local["stats"] == distributed["stats"]
    for key in ("dataset", "dropped", "export", "retention_path"):
        assert _bytes(local[key]) == _bytes(distributed[key]), key
    assert local["retention"] == distributed["retention"]
    assert 0 < local["num_out"] < local["num_in"] == 800
    by_op = {r["op"]: r for r in local["retention"]}
    assert by_op["document_deduplicator"]["dropped"] > 0  # the pool has duplicates to find
    assert by_op["document_minhash_deduplicator"]["dropped"] > 0


# ----------------------------------------------------------------------- cross-shard duplicates
def _words(rng: random.Random, n: int) -> str:
    vocabulary = [f"w{k}" for k in range(2000)]
    return " ".join(rng.choice(vocabulary) for _ in range(n))


def _cross_shard_pool(tmp_path) -> tuple[Path, dict[int, list[int]], dict[int, list[int]]]:
    """200 distinct documents; 12 of them get exact copies and 12 near copies (the last of 60
    words changed) at rows far after them, so every group spans several 16-row spans and row groups.
    Returns the pool and, per group, its row ids (the first is the smallest)."""
    rng = random.Random(7)
    texts = [_words(rng, 60) for _ in range(200)]
    exact: dict[int, list[int]] = {}
    near: dict[int, list[int]] = {}
    for k in range(12):
        src = 5 + 13 * k
        for _ in range(2):
            exact.setdefault(src, [src]).append(len(texts))
            texts.append(texts[src])
        src = 6 + 13 * k
        words = texts[src].split()
        words[-1] = "changed"  # one 5-word shingle of 56 differs: Jaccard 55/57
        near.setdefault(src, [src]).append(len(texts))
        texts.append(" ".join(words))
    order = list(range(200, len(texts)))
    rng.shuffle(order)  # the copies' order is mixed, always after their source
    texts = texts[:200] + [texts[i] for i in order]
    where = {old: old for old in range(200)} | {
        old: 200 + pos for pos, old in enumerate(order)}
    exact = {s: sorted(where[r] for r in rows) for s, rows in exact.items()}
    near = {s: sorted(where[r] for r in rows) for s, rows in near.items()}
    path = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), path,
                   row_group_size=50)
    return path, exact, near


def _select_and_write(tmp_path, pool, rec, ops, n, local, ray, compute_with=None):
    """``(computed, selection, out dir)`` of the recipe run through each engine, each writing
    its kept, dropped and jsonl files into ``tmp_path/<local|ray>``; ``compute_with`` computes
    the stats for both (default: each engine its own)."""
    results = []
    for name, engine in (("local", local), ("ray", ray)):
        out = tmp_path / name
        out.mkdir()
        computed = (compute_with or engine).compute(pool, rec.ops, scratch_dir=out)
        sel = engine.select(rec.ops, ops, computed, n, fields=pool)
        engine.write(pool, computed, sel, "text", ProcessOutputs(
            dropped=out / "dropped.parquet", kept=out / "kept.parquet",
            export=out / "kept.jsonl"))
        results.append((computed, sel, out))
    return results


@pytest.mark.parametrize("scheduler", ["data", "tasks"])
def test_cross_shard_duplicates_keep_the_smallest_row_id(ray_cluster, tmp_path, scheduler):
    pool, exact, near = _cross_shard_pool(tmp_path)
    rec = load_recipe({"ops": {"words_num_filter": {"min_num": 10},
                               "document_deduplicator": {},
                               "document_minhash_deduplicator": {}}})
    ops = rec.build()
    n = pq.ParquetFile(pool).metadata.num_rows
    engine = RayEngine(scheduler=scheduler, batch_size=8, span_rows=16, shuffle_rows=40,
                       shuffle_partitions=3)
    (lc, ls, lo), (rc, rs, ro) = _select_and_write(
        tmp_path, pool, rec, ops, n, LocalEngine(num_proc=1, batch_size=8, span_rows=16), engine)
    shuffle = engine.last_shuffle  # both deduplicators ran on the workers, none here:
    assert shuffle.records == n * (1 + ops[2]._bands)  # a record per row, per band of each row
    assert len(shuffle.pieces) >= n // 40  # map tasks of at most 40 rows
    assert not any(c.endswith(".hash") for c in rc._columns)
    assert _bytes(lc.path) == _bytes(rc.path)  # one result file, however it was scheduled
    for f in ("kept.parquet", "dropped.parquet", "kept.jsonl"):
        assert _bytes(lo / f) == _bytes(ro / f), f
    np.testing.assert_array_equal(ls.keep, rs.keep)
    assert ls.retention == rs.retention
    # hand-checked: of each group exactly its smallest row id stays
    for groups, op in ((exact, "document_deduplicator"), (near, "document_minhash_deduplicator")):
        for rows in groups.values():
            assert rs.keep[rows[0]] and not rs.keep[rows[1:]].any(), (op, rows)
            assert set(rs.dropped_by[rows[1:]]) == {op}
    assert int(rs.keep.sum()) == 200
    kept_ids = pq.read_table(ro / "kept.parquet", columns=["id"]).column(0).to_pylist()
    assert kept_ids == list(range(200))  # the pool's order


def _result_file(tmp_path, column: str, values: pa.Array, row_group_size: int) -> ComputedFile:
    path = tmp_path / "result.parquet"
    pq.write_table(pa.table({"__row_id__": np.arange(len(values), dtype=np.int64),
                             column: values}), path, row_group_size=row_group_size)
    return ComputedFile(path, len(values), has_text=False)


@pytest.mark.parametrize("seed,permutations", [(0, 8), (1, 8), (2, 7)])
def test_shuffled_minhash_dedup_equals_lsh_keep(ray_cluster, tmp_path, seed, permutations):
    """Signatures over a 3-value alphabet, so that bands collide often and groups chain across
    bands (a - b on band 0, b - c on band 3): the shuffle over 7 map pieces and 3 partitions keeps
    what ``lsh_keep`` keeps, with some rows dead (a dead row must not bridge two groups). With 7
    permutations the last band is 1 value wide, not 2 (keys of varying width)."""
    rng = np.random.default_rng(seed)
    op = DocumentMinhashDeduplicator(num_permutations=permutations, num_bands=4,
                                     num_rows_per_band=2)
    n = 300
    words = rng.integers(0, 3, size=(n, permutations)).astype("<u4")
    column = pa.array([row.tobytes() for row in words], pa.binary())
    computed = _result_file(tmp_path, "minhash.hash", column, row_group_size=128)
    alive = rng.random(n) < 0.7
    shuffle = ShuffleDedup(ray_cluster, computed, map_rows=50, partitions=3)
    assert len(shuffle.pieces) == 7  # 3 row groups (128, 128, 44 rows) cut at 50 rows
    stay, stay_alone = shuffle.keep(OpSpec("minhash", op.name, {}), op, alive)
    hashes = column.to_pylist()
    np.testing.assert_array_equal(stay, op.keep_mask(hashes, alive))
    np.testing.assert_array_equal(stay_alone, op.keep_mask(hashes, np.ones(n, dtype=bool)))
    assert 0 < stay.sum() < alive.sum()  # the test has groups to join
    assert shuffle.records == 4 * n  # every row's 4 bands, dead rows too (for "alone")


def test_shuffled_exact_dedup_equals_first_alive(ray_cluster, tmp_path):
    rng = np.random.default_rng(5)
    n = 500
    values = pa.array([f"h{k}" for k in rng.integers(0, 60, size=n)])
    computed = _result_file(tmp_path, "exact.hash", values, row_group_size=100)
    alive = rng.random(n) < 0.6
    shuffle = ShuffleDedup(ray_cluster, computed, map_rows=64, partitions=4)
    op = DocumentDeduplicator()
    stay, stay_alone = shuffle.keep(OpSpec("exact", op.name, {}), op, alive)
    codes = hash_codes(values)
    np.testing.assert_array_equal(stay, first_alive(codes, alive))
    np.testing.assert_array_equal(stay_alone, first_alive(codes, np.ones(n, dtype=bool)))
    assert stay.sum() == len(np.unique(codes[alive]))


def test_shuffled_exact_dedup_of_list_hashes_equals_the_reference_rule(ray_cluster, tmp_path):
    """An exact deduplicator whose hashes are lists, some None, keeps what the base class's
    ``keep_mask`` (the definition: first alive row of each value) keeps."""
    from sandbox.ops import Deduplicator

    rng = np.random.default_rng(9)
    n = 200
    pick = [None, [], ["a"], ["a", "b"], ["ab"], ["b", "a"], [None], ["a", None]]
    hashes = [pick[k] for k in rng.integers(0, len(pick), size=n)]
    computed = _result_file(tmp_path, "lists.hash", pa.array(hashes, pa.list_(pa.string())),
                            row_group_size=50)
    alive = rng.random(n) < 0.8
    op = type("ListDedup", (Deduplicator,), {"name": "list_dedup"})()
    stay, stay_alone = ShuffleDedup(ray_cluster, computed, map_rows=30, partitions=2).keep(
        OpSpec("lists", op.name, {}), op, alive)
    np.testing.assert_array_equal(stay, op.keep_mask(hashes, alive))
    np.testing.assert_array_equal(stay_alone, op.keep_mask(hashes, np.ones(n, dtype=bool)))
    assert stay.sum() == len(pick)


class _CaselessDeduplicator(Deduplicator):
    """A deduplicator the engines have never heard of: a row's hash is its text lower-cased, and
    its ``keep_mask`` is its own code (a dict of first rows), so that only its declared
    ``shuffle_key`` says its rows group exactly."""

    name = "test_caseless_deduplicator"
    description = "Remove texts equal to an earlier one but for case (a test OP)."
    shuffle_key = "exact"

    def hash_batch(self, views) -> list:
        return [t.lower() for t in views.texts]

    def keep_mask(self, hashes, alive: np.ndarray) -> np.ndarray:
        first: dict = {}
        for i in np.flatnonzero(alive):
            first.setdefault(hashes[i], i)
        keep = np.zeros(len(alive), dtype=bool)
        keep[list(first.values())] = True
        return keep


@pytest.fixture
def caseless_deduplicator():
    """``_CaselessDeduplicator`` in the registry for one test."""
    register(_CaselessDeduplicator)
    yield _CaselessDeduplicator
    OPS.pop(_CaselessDeduplicator.name)


@pytest.mark.slow
def test_a_deduplicator_declared_outside_the_package_is_shuffled_on_the_workers(
        ray_cluster, tmp_path, caseless_deduplicator):
    """The Ray engine reads the OP's ``shuffle_key``, not its class: a deduplicator defined here
    that declares ``exact`` is grouped by the shuffle on the workers (its hash column is never
    read on the driver) and keeps what engine=local keeps. The hashes are computed in this
    process by the local engine (the Ray workers' registry does not hold a test OP)."""
    rng = random.Random(11)
    texts = [_words(rng, 20) for _ in range(240)]
    copies = {}  # source row -> its copy, in another case, in a later row group
    for k in range(20):
        src = 3 + 11 * k
        copies[src] = len(texts)
        texts.append(texts[src].upper() if k % 2 else texts[src].title())
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts}), pool, row_group_size=50)
    rec = load_recipe({"ops": {"words_num_filter": {"min_num": 10},
                               caseless_deduplicator.name: {}}})
    ops = rec.build()
    n = len(texts)
    local = LocalEngine(num_proc=1, batch_size=8, span_rows=16)
    distributed = RayEngine(scheduler="tasks", shuffle_rows=40, shuffle_partitions=3)
    (_, ls, lo), (rc, rs, ro) = _select_and_write(tmp_path, pool, rec, ops, n, local,
                                                  distributed, compute_with=local)
    shuffle = distributed.last_shuffle
    assert shuffle is not None and shuffle.records == n  # one record per row, on the workers
    assert len(shuffle.pieces) >= n // 40
    assert not any(c.endswith(".hash") for c in rc._columns)
    np.testing.assert_array_equal(ls.keep, rs.keep)
    assert ls.retention == rs.retention
    for f in ("kept.parquet", "dropped.parquet", "kept.jsonl"):
        assert _bytes(lo / f) == _bytes(ro / f), f
    for src, copy in copies.items():
        assert rs.keep[src] and not rs.keep[copy]
        assert rs.dropped_by[copy] == caseless_deduplicator.name
    assert int(rs.keep.sum()) == 240


@pytest.mark.parametrize("consider_text", [False, True])
def test_shuffled_media_dedup_equals_keep_first_media(ray_cluster, tmp_path, consider_text):
    """Image dedup's hashes: repeated ones, empty ones (no image) and failed ones ("!path:
    reason") that always stay; with consider_text, [media hash, text hash] pairs where only the
    pair counts (an empty media hash inside a pair is grouped like any other)."""
    rng = np.random.default_rng(3)
    n = 400
    pick = ["", "!a.png: cannot read", "!b.png: cannot read"] + [f"{k:016x}" for k in range(25)]
    media = [pick[k] for k in rng.integers(0, len(pick), size=n)]
    if consider_text:
        hashes = [[m, f"t{k}"] for m, k in zip(media, rng.integers(0, 3, size=n))]
        hashes[7] = []  # no key at all: stays
    else:
        hashes = media
    computed = _result_file(tmp_path, "img.hash", pa.array(hashes), row_group_size=90)
    alive = rng.random(n) < 0.7
    op = ImageDeduplicator(consider_text=consider_text)
    shuffle = ShuffleDedup(ray_cluster, computed, map_rows=70, partitions=3)
    stay, stay_alone = shuffle.keep(OpSpec("img", op.name, {}), op, alive)
    np.testing.assert_array_equal(stay, keep_first_media(hashes, alive))
    np.testing.assert_array_equal(stay_alone, keep_first_media(hashes, np.ones(n, dtype=bool)))
    assert 0 < stay.sum() < alive.sum()


TWO_NODES = """
import json, sys
import numpy as np, pyarrow.parquet as pq, ray
from ray.cluster_utils import Cluster
from sandbox.engine.ray import RayEngine
from sandbox.recipe import load_recipe

pool, out = sys.argv[1], sys.argv[2]
node = dict(num_cpus=1, object_store_memory=150 * 1024 ** 2)
cluster = Cluster(initialize_head=True, head_node_args=dict(node, include_dashboard=False))
cluster.add_node(**node)
ray.init(address=cluster.address, logging_level="ERROR")
rec = load_recipe(json.loads(sys.argv[3]))
ops = rec.build()
engine = RayEngine(scheduler="tasks", batch_size=8, span_rows=16, shuffle_rows=40,
                   shuffle_partitions=4)
computed = engine.compute(pool, rec.ops, scratch_dir=out)
sel = engine.select(rec.ops, ops, computed, pq.ParquetFile(pool).metadata.num_rows, fields=pool)
np.save(out + "/keep.npy", sel.keep)
json.dump({"nodes": [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]],
           "retention": sel.retention, "records": engine.last_shuffle.records},
          open(out + "/result.json", "w"))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
def test_two_nodes_on_loopback_keep_what_one_machine_keeps(tmp_path):
    """Two Ray nodes (``ray.cluster_utils.Cluster``, one CPU and one object store each), in a
    network namespace whose only interface is loopback where ``unshare`` allows it: spans and
    dedup shuffle partitions are spread over both nodes, and the kept set and the retention table
    are the local engine's."""
    import shutil

    pool, exact, near = _cross_shard_pool(tmp_path)
    recipe = {"ops": {"words_num_filter": {"min_num": 10}, "document_deduplicator": {},
                      "document_minhash_deduplicator": {}}}
    out = tmp_path / "two-nodes"
    out.mkdir()
    cmd = [sys.executable, "-c", TWO_NODES, str(pool), str(out), json.dumps(recipe)]
    isolated = shutil.which("unshare") and subprocess.run(
        ["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True).returncode == 0
    if isolated:  # only `lo`, brought up: Ray cannot bind anything but 127.0.0.1
        cmd = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((out / "result.json").read_text())
    assert len(got["nodes"]) == 2
    if isolated:
        assert set(got["nodes"]) == {"127.0.0.1"}
    rec = load_recipe(recipe)
    ops = rec.build()
    engine = LocalEngine(num_proc=1, batch_size=8, span_rows=16)
    computed = engine.compute(pool, rec.ops, scratch_dir=tmp_path)
    n = pq.ParquetFile(pool).metadata.num_rows
    local = engine.select(rec.ops, ops, computed, n, fields=pool)
    np.testing.assert_array_equal(np.load(out / "keep.npy"), local.keep)
    assert got["retention"] == local.retention
    assert got["records"] == n * (1 + ops[2]._bands)


def test_reduce_tasks_grow_with_the_records_to_group():
    """Automatic partitions: one per worker, and more once each reducer would get over
    PARTITION_BYTES of records (25 bands of 10 values: 25 * (40 + 19) B per row)."""
    bands = DocumentMinhashDeduplicator().band_bounds()
    assert len(bands[0]) == 25 and int(bands[1][-1]) == 250
    assert auto_partitions(10_000, bands, least=4) == 4
    assert auto_partitions(100_000, bands, least=1) == 2  # 147.5 MB
    assert auto_partitions(10_000_000, bands, least=32) == 110  # 14.75 GB / 128 MiB
    assert auto_partitions(10_000_000, None, least=2) == 5  # exact: 59 B per row


def test_a_bad_signature_column_on_a_map_task_reaches_the_user_as_itself(ray_cluster, tmp_path):
    """A result file whose MinHash column is not signatures (damaged, or not this recipe's):
    the map task's DataError comes back as itself, naming the file, not as Ray's wrapping."""
    op = DocumentMinhashDeduplicator(num_permutations=8, num_bands=4, num_rows_per_band=2)
    computed = _result_file(tmp_path, "m.hash", pa.array([b"short"] * 10), row_group_size=10)
    engine = RayEngine(shuffle_partitions=2)
    with pytest.raises(DataError, match=r"result.parquet do not line up.*m.hash does not hold "
                                        r"MinHash signatures of 32 bytes"):
        engine.select([OpSpec("m", op.name, {})], [op], computed, 10)


def test_results_come_back_in_span_order_whatever_order_they_finish_in():
    buffers = [pa.py_buffer(bytes([k])) for k in range(9)]
    arrival = [3, 0, 2, 1, 8, 5, 4, 7, 6]
    got = list(_in_order(((k, buffers[k]) for k in arrival), 9))
    assert [b.to_pybytes() for b in got] == [bytes([k]) for k in range(9)]
    with pytest.raises(RuntimeError, match="8 of 9 spans"):
        list(_in_order(((k, buffers[k]) for k in range(9) if k != 8), 9))


def test_stats_cache_is_shared_with_the_local_engine(ray_cluster, tmp_path):
    pool, _, _ = _cross_shard_pool(tmp_path)
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 5}, "document_deduplicator": {}}})
    cache = tmp_path / "cache"
    first = RayEngine(span_rows=64).compute(pool, rec.ops, cache_dir=cache, fingerprint="p1")
    again = LocalEngine(num_proc=1).compute(pool, rec.ops, cache_dir=cache, fingerprint="p1")
    assert not first.cache_hit and again.cache_hit and again.path == first.path


@pytest.mark.parametrize("scheduler", ["data", "tasks"])
def test_an_error_on_a_worker_reaches_the_user_as_itself(ray_cluster, scheduler):
    """A worker that cannot read the pool (a cluster without shared storage) raises DataError
    there; the driver re-raises that DataError, not Ray's wrapping of it."""
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 5}}})
    job = SpanJob(tuple(rec.ops), "text", "/nonexistent/pool.parquet", ("text",), 8)
    with pytest.raises(DataError, match="cannot read the pool file /nonexistent/pool.parquet"):
        list(RayEngine(scheduler=scheduler)._results(job, [(0, 0, 4, 0)], 1))


def test_a_pool_rewritten_at_the_same_path_is_read_again(ray_cluster, tmp_path):
    """Ray keeps worker processes (and their open pool file) between runs: a pool replaced at
    the same path must not be read from the old file."""
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 5}}})
    pool = tmp_path / "pool.parquet"
    lengths = []
    for text in ("short", "a much longer text"):
        pq.write_table(pa.table({"text": [text] * 40}), pool)
        out = tmp_path / text.replace(" ", "-")
        out.mkdir()
        computed = RayEngine(scheduler="tasks", num_proc=1, span_rows=8, batch_size=8).compute(
            pool, rec.ops, scratch_dir=out)
        lengths.append(set(computed.columns()["text_length_filter.text_len"].tolist()))
    assert lengths == [{5}, {18}]


# --------------------------------------------------------------------------------- config, errors
def test_engine_ray_composes_into_a_ray_engine():
    engine = build_engine(compose(["engine=ray", "engine.num_cpus=2",
                                   "engine.scheduler=tasks"]).engine)
    assert isinstance(engine, RayEngine)
    assert (engine.address, engine.num_cpus, engine.scheduler, engine.span_rows) == (
        None, 2, "tasks", 8192)
    with pytest.raises(ConfigError, match="engine.scheduler='threads'"):
        RayEngine(scheduler="threads")
    engine = build_engine(compose(["engine=ray", "engine.dedup=driver",
                                   "engine.shuffle_partitions=8"]).engine)
    assert (engine.dedup, engine.shuffle_rows, engine.shuffle_partitions) == ("driver", 65536, 8)
    with pytest.raises(ConfigError, match="engine.dedup='actors'"):
        RayEngine(dedup="actors")
    with pytest.raises(ConfigError, match="engine.shuffle_rows=0"):
        RayEngine(shuffle_rows=0)


def test_missing_ray_is_one_paragraph(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r'engine=ray needs the `ray` package.*pip install '
                                          r'"ray\[data,client\]==2.60.0"'):
        import_ray()


def test_unreachable_cluster_is_one_paragraph():
    """Checked in a fresh process (this one already has a Ray instance), against a closed
    loopback port: the error comes at once, not after Ray's minutes of retries."""
    code = ("from sandbox.engine.ray import RayEngine\n"
            "RayEngine(address='127.0.0.1:1').connect()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "ConfigError: engine.address=127.0.0.1:1: could not connect" in proc.stderr
    assert "ray start --head" in proc.stderr
