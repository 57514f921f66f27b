"""What a run could not send to its tracking store, kept in its run dir and sent later.

When the MLflow store stops answering mid-run (a server that went down, a full disk under a
SQLite file), the tracker appends every later call to ``<run dir>/tracking-buffer.jsonl``, one
JSON record a line, written through to disk: metrics (with their original timestamps and
steps), texts, artifacts (their paths in the run dir), nested runs, the run's end.
``replay(run_dir, client)`` sends them in order (``python -m sandbox.tracking sync RUN_DIR``,
or the next start of the same run dir does it first) and keeps only what still failed.

Replaying twice logs nothing twice: a nested run created by a replay is remembered in the
buffer (its placeholder id then maps to the real one), MLflow keeps one copy of a metric
logged again with the same value, time and step, and an end is not applied over a later one."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from sandbox.utils import atomic_write_text

BUFFER_NAME = "tracking-buffer.jsonl"
PENDING_PREFIX = "pending-"  # the id of a nested run made while the store did not answer


def buffer_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / BUFFER_NAME


def pending_id() -> str:
    return PENDING_PREFIX + uuid.uuid4().hex


def append(path: Path, record: dict[str, Any]) -> None:
    """One record at the end of the buffer, on disk before this returns (a run killed right
    after loses nothing it buffered; a torn last line from a crash is skipped by ``read``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read(path: Path) -> list[dict[str, Any]]:
    """The buffer's records; an incomplete last line (the run died while writing it) is left
    out: ``append`` fsyncs each record, so it was never acknowledged as kept."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def replay(run_dir: str | Path, client) -> tuple[int, int]:
    """Send the buffer of ``run_dir`` through ``client`` (an ``MlflowClient``); return (records
    sent, records left). The buffer then holds only what is left (none: it is deleted)."""
    from mlflow.entities import Metric

    path = buffer_path(run_dir)
    records = read(path)
    ids = {r["pending"]: r["created"] for r in records if r.get("op") == "created"}
    sent, left = 0, []
    for index, record in enumerate(records):
        op = record.get("op")
        if op == "created":
            left.append(record)  # kept while any record may still name the placeholder
            continue
        try:
            run_id = ids.get(record.get("run_id"), record.get("run_id"))
            if op != "child" and (run_id is None or run_id.startswith(PENDING_PREFIX)):
                raise RuntimeError(f"its run {run_id} was never created")
            if op == "metrics":
                client.log_batch(run_id, metrics=[Metric(k, float(v), int(ts), int(step))
                                                  for k, v, ts, step in record["metrics"]])
            elif op == "text":
                client.log_text(run_id, record["text"], record["artifact_file"])
            elif op == "artifact":
                if Path(record["path"]).is_file():
                    client.log_artifact(run_id, record["path"], record.get("artifact_path"))
            elif op == "child":
                parent = ids.get(record["parent"], record["parent"])
                tags = {**record["tags"], "mlflow.parentRunId": parent}
                run = client.create_run(record["experiment_id"], run_name=record["name"],
                                        tags=tags, start_time=record["start_time"])
                ids[record["pending"]] = run.info.run_id
                created = {"op": "created", "pending": record["pending"],
                           "created": run.info.run_id}
                append(path, created)  # a second replay must not create it again
                left.append(created)
            elif op == "end":
                current = client.get_run(run_id).info
                if current.status == "RUNNING" or (current.end_time or 0) < record["end_time"]:
                    client.set_terminated(run_id, record["status"], end_time=record["end_time"])
            sent += 1
        except Exception:  # the store is down again, or this record cannot go: keep the rest
            left.extend(records[index:])
            break
    if any(r.get("op") != "created" for r in left):
        atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in left))
    else:
        path.unlink(missing_ok=True)
    return sent, sum(1 for r in left if r.get("op") != "created")
