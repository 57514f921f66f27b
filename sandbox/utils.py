"""Small helpers shared across the package: hashing, safe file names, atomic writes, JSON."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any


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
    """``name`` as a file or folder name: runs of other characters become ``_``, at most 150."""
    return re.sub(r"[^A-Za-z0-9_.+#=-]+", "_", name)[:150]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write to a temp file beside ``path`` then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class atomic_path:
    """``with atomic_path(final) as tmp: write to tmp`` then rename to ``final`` on success.

    Works for files and directories; on failure the temp is removed and ``final`` is untouched."""

    def __init__(self, final: str | Path):
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.parent / f".{self.final.name}.tmp-{os.getpid()}"

    def __enter__(self) -> Path:
        self._remove(self.tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._remove(self.tmp)
            return
        self._remove(self.final)
        os.replace(self.tmp, self.final)

    @staticmethod
    def _remove(p: Path) -> None:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
