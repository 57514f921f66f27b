"""Bad input, bad config, secrets and an unreachable tracking store: clear errors, nothing lost."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.data.io import read_table, read_table_with_rejects
from sandbox.errors import DataError, RecipeError
from sandbox.recipe import load_recipe


# ----------------------------------------------------------------------------- bad data
@pytest.mark.parametrize("content,expected", [
    (b'{"text": "ok"}\n{"text": broken}\n', "line 2: malformed JSON"),
    (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "line 2: not valid UTF-8"),
    (b'{"text": "ok"}\n{"body": "no text here"}\n', "line 2: record has no 'text' field"),
    (b'{"text": "ok"}\n{"text": 42}\n', "line 2: record has a non-string (int) 'text' field"),
    (b'{"text": "ok"}\n[1, 2]\n', "line 2: expected a JSON object"),
    (b"", "holds no samples"),
    (b"\n\n", "holds no samples"),
])
def test_bad_jsonl_fails_naming_file_and_line(tmp_path, content, expected):
    f = tmp_path / "data.jsonl"
    f.write_bytes(content)
    with pytest.raises(DataError) as e:
        read_table(f)
    assert expected in str(e.value) and str(f) in str(e.value)


def test_skip_mode_keeps_good_records_and_writes_every_bad_one(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_bytes(b'{"text": "one"}\n{"text": broken}\n\n{"text": "two"}\n'
                  b'{"text": "\xff"}\n{"id": 3}\n{"text": null}\n{"text": "three"}\n')
    rejects = tmp_path / "rejects.jsonl"
    table = read_table(f, on_bad_record="skip", rejects_path=rejects)
    assert table.column("text").to_pylist() == ["one", "two", "three"]
    rows = [json.loads(l) for l in rejects.read_text().splitlines()]
    assert [r["line"] for r in rows] == [2, 5, 6, 7]
    assert "malformed JSON" in rows[0]["reason"] and rows[0]["raw"] == '{"text": broken}'


def test_missing_file_directory_and_wrong_column(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path, "jsonl")
    f = tmp_path / "d.jsonl"
    f.write_text('{"content": "x"}\n')
    with pytest.raises(DataError, match="record has no 'text' field.*set text_key"):
        read_table(f)
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(tmp_path / "d.unknown" if (tmp_path / "d.unknown").write_text("x") else None)


def test_field_with_mixed_types_is_kept_as_json_text(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a", "id": 1}\n{"text": "b", "id": "two"}\n')
    t = read_table(f)
    assert t.column("text").to_pylist() == ["a", "b"]
    assert t.column("id").to_pylist() == ["1", '"two"']  # nothing dropped


def test_parquet_with_null_texts_skip_mode(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), f)
    with pytest.raises(DataError, match="record 2 has no 'text'"):
        read_table(f)
    table, rejects = read_table_with_rejects(f, on_bad_record="skip")
    assert table.column("text").to_pylist() == ["a", "c"] and rejects[0]["line"] == 2


# ----------------------------------------------------------------------------- property-based
json_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
records = st.one_of(
    st.fixed_dictionaries({"text": json_text}, optional={"id": st.integers(), "x": json_text}),
    st.fixed_dictionaries({"other": json_text}),
    st.fixed_dictionaries({"text": st.one_of(st.integers(), st.none(), st.booleans())}),
)
lines = st.one_of(records.map(lambda r: json.dumps(r).encode()),
                  st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b))
PROPERTY_CASES = {"reader": 0, "recipe": 0}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, min_size=1, max_size=20))
def test_reader_never_loses_a_record(tmp_path, raw_lines):
    """Every non-blank line is either a row (text unchanged) or a reject; nothing else."""
    PROPERTY_CASES["reader"] += 1
    f = tmp_path / "p.jsonl"
    f.write_bytes(b"\n".join(raw_lines) + b"\n")
    expected_good = []
    nonblank = [l for l in raw_lines if l.strip()]
    for l in nonblank:
        try:
            rec = json.loads(l.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("text"), str):
            expected_good.append(rec["text"])
    try:
        table, rejects = read_table_with_rejects(f, on_bad_record="skip")
    except DataError as e:  # only when nothing at all is usable
        assert not expected_good, e
        return
    assert table.column("text").to_pylist() == expected_good
    assert table.num_rows + len(rejects) == len(nonblank)


op_names = st.sampled_from(["text_length_filter", "words_num_filter", "alphanumeric_filter",
                            "special_characters_filter", "clean_html_mapper",
                            "document_deduplicator", "no_such_op", "text_length_filtr"])
arg_values = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=5), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
arg_names = st.sampled_from(["min_len", "max_len", "min_ratio", "max_ratio", "min_num", "lowercase",
                             "rep_len", "bogus", "_enabled"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(op_names, st.dictionaries(arg_names, arg_values, max_size=3), max_size=4))
def test_recipe_loader_accepts_or_explains(ops):
    """Any recipe either loads and builds, or fails with a RecipeError (never a crash)."""
    PROPERTY_CASES["recipe"] += 1
    try:
        load_recipe({"ops": ops}).build()
    except RecipeError as e:
        assert "OP `" in str(e)


def test_report_property_case_counts(capsys):
    with capsys.disabled():
        print(f"\nproperty-based cases tried: {PROPERTY_CASES}")


# ----------------------------------------------------------------------------- CLI errors
def cli(args, cwd, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "sandbox", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=kw.get("timeout", 300))


@pytest.mark.parametrize("args,expected", [
    (["data_pool=nope"], "Could not find 'data_pool/nope'"),
    (["trainer.token_budget=lots"], "trainer.token_budget='lots' has the wrong type"),
    (["recipe.ops.alphanumeric_filter.min_ratio=0.9", "+recipe.ops.alphanumeric_filter.max_ratio=0.1"],
     "min_ratio=0.9 is greater than max_ratio=0.1"),
    (["pipeline.steps.train.inputs.dataset=${ctx:process.nothing}"],
     "step `process` (Process) declares no output `nothing`"),
    (["pipeline.steps.probe.inputs.dataset=${ctx:probe.stats}"], "a step cannot depend on itself"),
    # refine's check comes after load and probe: on a small pool, not the default corpus
    (["refine.k=-1", "data_pool=jsonl", "data_pool.path=DOCS"],
     "refine: KSigmaRefiner rejected its config"),
    (["+trainer.bogus=1"], "trainer.bogus is not a parameter of CausalLMTrainer"),
    (["data_pool=jsonl", "data_pool.path=/nonexistent/file.jsonl"], "/nonexistent/file.jsonl does not exist"),
])
def test_config_and_input_errors_are_one_paragraph_without_traceback(tmp_path, docs_file, args,
                                                                     expected):
    args = [a.replace("=DOCS", f"={docs_file}") for a in args]
    r = cli([*args, "tracking=none", f"hydra.run.dir={tmp_path / 'run'}",
             f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert expected in out, out
    assert "Traceback" not in out
    assert not (tmp_path / "run" / "train").exists()  # failed before any training


def test_traceback_only_when_asked(tmp_path):
    r = cli(["trainer.token_budget=lots", "tracking=none", "traceback=true",
             f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stdout + r.stderr


def test_unreachable_tracking_server_fails_fast_before_work(tmp_path):
    t0 = time.time()
    r = cli(["tracking.uri=http://127.0.0.1:9", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode == 2 and "does not answer" in r.stdout + r.stderr
    assert time.time() - t0 < 60
    assert not (tmp_path / "run" / "load").exists()


def test_secrets_never_reach_files_or_mlflow(tmp_path, docs_file, mlflow_db):
    secret = "sk-live-DO-NOT-LEAK-1234"
    r = cli(["pipeline=process", "data_pool=jsonl", f"data_pool.path={docs_file}",
             f"+service.api_key={secret}", f"+hf_token={secret}", f"+db.password={secret}",
             f"tracking.uri={mlflow_db}", f"hydra.run.dir={tmp_path / 'run'}",
             f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert secret not in r.stdout + r.stderr
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".json", ".csv", ".log", ".txt"):
            assert secret not in f.read_text(errors="ignore"), f
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_db)
    run = client.search_runs([client.get_experiment_by_name("sandbox").experiment_id])[0]
    assert run.data.params["service.api_key"] == "***"
    assert secret not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    assert run.data.params["text_key"] == "text"  # `*key*` configuration is not a secret


def test_a_50mb_sample_is_read_processed_and_written_whole(tmp_path):
    from sandbox.runner import run
    from tests.conftest import compose

    big = ("word " * 10_000_000)[:50 * 1024 * 1024]
    f = tmp_path / "big.jsonl"
    with open(f, "w") as fh:
        fh.write(json.dumps({"text": "a short sample of text", "id": 0}) + "\n")
        fh.write(json.dumps({"text": big, "id": 1}) + "\n")
        fh.write(json.dumps({"text": "<p>another sample here</p>", "id": 2}) + "\n")
    cfg = compose(["pipeline=process", "data_pool=jsonl", f"data_pool.path={f}", "tracking=none",
                   "progress=false", f"cache_dir={tmp_path / 'cache'}", "recipe=none",
                   "+recipe.ops.clean_html_mapper={}", "+recipe.ops.text_length_filter.min_len=5",
                   "+recipe.ops.document_deduplicator={}"])
    run(cfg, run_dir=tmp_path / "run")
    import pyarrow.parquet as pq

    kept = pq.read_table(tmp_path / "run" / "process" / "processed.parquet").to_pylist()
    assert [r["id"] for r in kept] == [0, 1, 2]
    assert len(kept[1]["text"]) == len(big) and kept[2]["text"] == "another sample here"


def test_skip_bad_records_from_the_command_line(tmp_path):
    f = tmp_path / "d.jsonl"
    good = [json.dumps({"text": f"a perfectly fine sample number {i} with words"}) for i in range(5)]
    f.write_text("\n".join(good[:2] + ['{"text": oops', '{"body": "x"}'] + good[2:]) + "\n")
    r = cli(["pipeline=process", "data_pool=jsonl", f"data_pool.path={f}", "tracking=none",
             "data_pool.on_bad_record=skip", "recipe=none", f"hydra.run.dir={tmp_path / 'run'}",
             f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped 2 bad record(s)" in " ".join(r.stdout.split())
    rejects = [json.loads(l) for l in (tmp_path / "run" / "load" / "rejects.jsonl").open()]
    assert [x["line"] for x in rejects] == [3, 4]
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    assert ctx["load"]["outputs"]["num_samples"] == 5 and ctx["load"]["outputs"]["rejected"] == 2
