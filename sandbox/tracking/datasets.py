"""A step's data as an MLflow dataset input: what the runs table's *Dataset* column shows.

A dataset is recorded by reference, never copied: its name, its source (the file's path), its
digest (the content fingerprint the stats cache keys on, so two runs that saw the same pool show
the same digest), its schema (column names and types) and its profile (row count). Both read
only the Parquet footer."""
from __future__ import annotations

import json
from pathlib import Path


def parquet_dataset(path: str | Path, name: str, digest: str, source: str | Path | None = None):
    """An ``mlflow.entities.Dataset`` for the Parquet file ``path`` (``source``: the file the
    user named, when the run holds a copy of it)."""
    import pyarrow.parquet as pq
    from mlflow.entities import Dataset

    meta = pq.read_metadata(path)
    schema = meta.schema.to_arrow_schema()
    colspec = [_colspec(f.name, f.type) for f in schema if not f.name.startswith("__")]
    return Dataset(
        name=name, digest=str(digest)[:36],  # the store keeps at most 36 characters
        source_type="local",
        source=json.dumps({"uri": str(Path(source or path).resolve())}),
        schema=json.dumps({"mlflow_colspec": colspec}),
        profile=json.dumps({"num_rows": meta.num_rows, "num_columns": len(colspec)}))


def _colspec(name: str, arrow_type) -> dict:
    return {**_as_spec(_type(arrow_type)), "name": name, "required": True}


def _type(t):
    """MLflow's schema type of an Arrow type (``mlflow.types.schema`` JSON form)."""
    import pyarrow.types as at

    if at.is_string(t) or at.is_large_string(t):
        return "string"
    if at.is_boolean(t):
        return "boolean"
    if at.is_integer(t):
        return "long" if t.bit_width > 32 else "integer"
    if at.is_floating(t):
        return "double" if t.bit_width > 32 else "float"
    if at.is_binary(t) or at.is_large_binary(t):
        return "binary"
    if at.is_timestamp(t) or at.is_date(t):
        return "datetime"
    if at.is_list(t) or at.is_large_list(t):
        return {"type": "array", "items": _as_spec(_type(t.value_type))}
    if at.is_struct(t):
        return {"type": "object", "properties": {
            f.name: {**_as_spec(_type(f.type)), "required": not f.nullable} for f in t}}
    return "any"


def _as_spec(t) -> dict:
    return {"type": t} if isinstance(t, str) else t
