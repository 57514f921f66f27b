"""Cheap fingerprints of big data files, for the stats cache.

A fingerprint is a hash of the file's *content* (never its path), so two runs that load the same
data into different run dirs, and every trial of a sweep, share one stats-cache entry.

Trade-off: hashing a whole file is exact but reads it; at xxh3's speed (several GB/s, I/O-bound)
that is ~1 s per GB cold and far less when the file was just written (page cache). To make the
second and later look-ups free, the result is memoised under the cache dir (by default the cache
root, ``sandbox.cache.cache_root``) keyed by the file's stat info (real path, size, mtime in ns,
inode, device). A file rewritten in place with the same size, the same nanosecond mtime and the
same inode would be missed; editors, ``cp`` and our own atomic writes all change at least one of
those. Sampling bytes instead of hashing them all would be cheaper still on a cold multi-GB
file, but a one-character edit inside an unsampled block of an equally sized file would then reuse
stale stats, which we consider worse than one read.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from sandbox.cache import cache_dir_or_root
from sandbox.utils import atomic_path, stable_hash

try:
    import xxhash as _xxhash  # a dependency of `datasets`; ~10x blake2b's speed
except ImportError:  # pragma: no cover
    _xxhash = None

CHUNK = 1 << 22


def _hasher():
    if _xxhash is not None:
        return "x3", _xxhash.xxh3_128()
    return "b2", hashlib.blake2b(digest_size=16)


def content_hash(path: str | Path, n: int = 16) -> str:
    """Hash of the bytes of a file (or of every file under a directory, names included)."""
    path = Path(path)
    tag, h = _hasher()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    buf = bytearray(CHUNK)  # one buffer, refilled: a fresh 4 MB bytes per read costs page faults
    view = memoryview(buf)
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb", buffering=0) as fh:
            while True:
                got = fh.readinto(buf)
                if not got:
                    break
                h.update(view[:got])
    return (tag + h.hexdigest())[:n]


def _memo_path(path: Path, cache_dir: str | Path | None) -> Path:
    """Where the fingerprint of ``path`` as it is now (its stat info) is memoised."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_dev}"
    key = hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()
    return cache_dir_or_root(cache_dir) / "fingerprints" / f"{key}.txt"


def fingerprint(path: str | Path, cache_dir: str | Path | None = None, n: int = 16) -> str:
    """Content fingerprint of a file, memoised by stat info under ``<cache_dir>/fingerprints``
    (``cache_dir`` defaults to the cache root). A directory is hashed every time."""
    path = Path(path)
    if path.is_dir():
        return content_hash(path, n)
    memo = _memo_path(path, cache_dir)
    try:
        got = memo.read_text().strip()
        if got:
            return got[:n]
    except OSError:
        pass
    value = content_hash(path, n)
    remember(path, value, cache_dir)
    return value


def remember(path: str | Path, value: str, cache_dir: str | Path | None = None) -> None:
    """Record a fingerprint computed elsewhere (e.g. while writing the file)."""
    memo = _memo_path(Path(path), cache_dir)
    try:
        with atomic_path(memo) as tmp:
            tmp.write_text(value)
    except OSError:  # a read-only cache only costs the memo
        pass


def derived(source: str | Path, cache_dir: str | Path | None, *how) -> str:
    """Fingerprint of a file made *deterministically* from ``source`` (a conversion): the
    source's content fingerprint hashed with ``how`` (what made it: reader, options, library
    versions). Naming a converted pool this way saves reading back and hashing the hundreds of
    MB just written; a change to any part of ``how`` gives another fingerprint."""
    return "dv" + stable_hash([fingerprint(source, cache_dir), *map(str, how)], n=14)
