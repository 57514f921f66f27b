"""Small helpers shared across the package: hashing, safe file names, atomic writes, JSON."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # Windows: no child-process accounting
    resource = None  # type: ignore[assignment]


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    data = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()[:n]


def sha256_file(path: str | Path) -> str:
    """Full sha256 hex digest of a file (pinned downloads, cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_name(name: str) -> str:
    """``name`` as a file or folder name: runs of other characters become ``_``, at most 150. A
    longer name keeps its first 133 characters and a hash of the whole name, so that two long
    names with a common start (intersections of many pools, with their ``#s<seed>``) stay two."""
    out = re.sub(r"[^A-Za-z0-9_.+#=-]+", "_", name)
    return out if len(out) <= 150 else f"{out[:133]}-{stable_hash(name, 16)}"


def merge_outputs(fields: dict, outputs: dict) -> dict:
    """``fields`` updated with a step's ``outputs``, ``metrics`` merged, not replaced (how a
    fan-out element, or a pool trained inside a step, takes its training's outputs)."""
    out = dict(fields)
    for k, v in outputs.items():
        if k == "metrics" and isinstance(out.get("metrics"), dict) and isinstance(v, dict):
            out["metrics"] = {**out["metrics"], **v}
        else:
            out[k] = v
    return out


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through ``atomic_path``, synced to disk: never a half-written
    file."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class atomic_path:
    """``with atomic_path(final) as tmp: write to tmp`` then rename to ``final`` on success: the
    one way this package writes a file or folder that others may read while it is written.

    ``tmp`` sits beside ``final`` (same file system, so the rename is atomic), keeps its suffix
    (writers that pick a format by extension still do) and is unique per process and thread,
    so concurrent writers of one ``final`` never share a temp; the last to finish wins. With
    ``done`` (a file that only a complete ``final`` holds, such as its manifest), a writer that
    finds ``done`` already there when it finishes keeps that one and discards its own. On failure
    the temp is removed and ``final`` is untouched."""

    def __init__(self, final: str | Path, done: str | Path | None = None):
        self.final = Path(final)
        self.done = Path(done) if done is not None else None
        self.final.parent.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}-{threading.get_ident()}-{os.urandom(3).hex()}"
        self.tmp = self.final.parent / f".{self.final.stem}.tmp-{unique}{self.final.suffix}"

    def __enter__(self) -> Path:
        self._remove(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None or self._finished_elsewhere():
                return
            if self.final.is_dir() and not self.final.is_symlink():
                shutil.rmtree(self.final, ignore_errors=True)  # a folder cannot be replaced
            try:
                os.replace(self.tmp, self.final)
            except OSError:
                if not self._finished_elsewhere():
                    raise
        finally:
            self._remove(self.tmp)

    def _finished_elsewhere(self) -> bool:
        return self.done is not None and self.done.is_file()

    @staticmethod
    def _remove(p: Path) -> None:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class OneBehind:
    """Calls run in order on a thread of their own, at most one call behind the caller: work
    that releases the GIL (Arrow's writers, compiled kernels) overlaps the caller's next step
    while memory stays bounded. The thread ends with ``stack``; call ``settle`` before the
    files it writes close (also on an error), then ``result`` for its error."""

    def __init__(self, stack: ExitStack, name: str):
        self._pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix=name))
        self._pending: Future | None = None

    def submit(self, fn, *args) -> None:
        self.result()
        self._pending = self._pool.submit(fn, *args)

    def settle(self) -> None:
        """Wait for the last call, without raising its error."""
        if self._pending is not None:
            wait((self._pending,))

    def result(self) -> None:
        """Wait for the last call; its error, if any, is raised here."""
        if self._pending is not None:
            self._pending.result()


def _children_cpu() -> float:
    if resource is None:
        return 0.0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Clock:
    """Wall and CPU seconds between ``start`` and ``stop``."""

    wall0: float = 0.0
    cpu0: float = 0.0
    wall: float = 0.0
    cpu: float = 0.0

    def start(self) -> "Clock":
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time() + _children_cpu()
        return self

    def stop(self) -> "Clock":
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() + _children_cpu() - self.cpu0
        return self
