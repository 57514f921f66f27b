"""A step's identity: what decides whether a finished step can be reused (resume, or a twin
elsewhere in the run).

identity = hash(resolved component config, resolved inputs, upstream steps' identities,
               contents of the files and directories the step reads)

Files a step reads are every ``path`` key (at any depth: ``data_pool.path``, ``recipe.path``)
plus the parameters and inputs its class names in ``Step.reads`` (a script, an environment
spec, a model dir). Their contents, not their names, count: a changed file re-runs the step.
File fingerprints are memoised by stat info, so a big file is hashed once per change."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.data.fingerprint import fingerprint
from sandbox.utils import stable_hash


def step_identity(cls: type, comp_cfg: dict, inputs: dict, upstream: list[str],
                  cache_dir: Path | None = None) -> str:
    reads = read_paths({**comp_cfg, **inputs}, getattr(cls, "reads", ()))
    files = {name: path_fingerprint(p, cache_dir) for name, p in sorted(reads.items())}
    # what else decides the result, by the class's own account (an outside stack's environment)
    extra = getattr(cls, "identity_extra", None)
    parts = [comp_cfg, inputs, upstream, files]
    if extra is not None:
        parts.append(extra(comp_cfg))
    return stable_hash(parts)


def read_paths(values: dict, named: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``{dotted name: path}`` of the existing files/directories among ``values``: every key
    called ``path``, and the dotted names in ``named`` (a list value contributes each element)."""
    found: dict[str, str] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, str) and value and Path(value).exists():
            found[name] = value
        elif isinstance(value, list):
            for i, v in enumerate(value):
                add(f"{name}[{i}]", v)

    def walk(obj: dict, prefix: str) -> None:
        for k, v in obj.items():
            name = f"{prefix}{k}"
            if k == "path" or name in named:
                add(name, v)
            elif isinstance(v, dict):
                walk(v, name + ".")

    walk(values, "")
    return found


def path_fingerprint(path: str | Path, cache_dir: Path | None = None) -> str:
    """Content fingerprint of a file, or of a directory (every file's relative name and
    fingerprint)."""
    p = Path(path)
    if not p.is_dir():
        return fingerprint(p, cache_dir)
    parts = [[str(f.relative_to(p)), fingerprint(f, cache_dir)]
             for f in sorted(p.rglob("*")) if f.is_file()]
    return stable_hash(parts)


def files_fingerprint(inputs: dict, cache_dir: Path | None = None) -> str:
    """Content fingerprints of the data files a fan-out element's inputs name (the element's
    pool comes from a list output, which its upstream identity does not cover file by file)."""
    fps = {}
    for k, v in inputs.items():
        if isinstance(v, str) and ("/" in v) and Path(v).is_file():
            fps[k] = fingerprint(v, cache_dir)
    return stable_hash(fps)


def outputs_exist(record: dict) -> bool:
    """False when a recorded output file has gone (then the step must run again)."""
    for v in record.get("outputs", {}).values():
        if isinstance(v, str) and ("/" in v) and not Path(v).exists():
            return False
    return True
