"""Downloading one asset file: resumable, checksummed, with a progress bar.

The bytes go to ``<dest>.part`` first; an interrupted download resumes from there with an HTTP
``Range`` request (a server that ignores it starts over). The finished file is checked against
every checksum available: the one the caller expects (``sha256=``), the length the server
announced, the sha256 Hugging Face sends for large files (``X-Linked-ETag``) and a
``Content-MD5`` header. Only a file that passes is moved to ``dest``; a mismatch deletes the
partial file and raises ``DownloadError`` saying what differed.

Two processes fetching one file at once (runs sharing a cache) take turns on a lock file beside
it (``<dest>.lock``): the second finds the first one's file in place and downloads nothing,
and neither ever appends to a ``.part`` the other is writing.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import sys
from pathlib import Path
from urllib.error import HTTPError, URLError

from sandbox.errors import SandboxError

CHUNK = 1 << 20
USER_AGENT = "sandbox-assets/1"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(SandboxError, RuntimeError):
    """A download failed (unreachable, HTTP error) or its bytes did not match a checksum."""


def download(url: str, dest: str | Path, sha256: str | None = None, progress: bool = True,
             timeout: float = 30.0) -> str:
    """Fetch ``url`` into ``dest``; return the file's sha256. Raises ``DownloadError``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    there = dest.is_file()  # the caller's to judge (a damaged file is deleted before this)
    with open(dest.with_name(dest.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching it right now
        if not there and dest.is_file():  # it did, while this one waited
            digest, _ = _digests(dest)
            if sha256 is None or sha256.lower() == digest:
                return digest
        return _download(url, dest, sha256, progress, timeout)


def _download(url: str, dest: Path, sha256: str | None, progress: bool, timeout: float) -> str:
    import urllib.request  # with ssl, http.client and email: ~25-100 ms, paid only when downloading

    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and have:  # the part file is already complete
            return _finish(part, dest, url, sha256, {}, have)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: unreachable ({reason})") from None
    with resp:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        resumed = resp.status == 206
        if not resumed:
            have = 0  # the server sent the whole file
        length = headers.get("content-length")
        total = have + int(length) if length and length.isdigit() else None
        bar = _bar(total, have, dest.name, progress)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        except OSError as e:  # a dropped connection: keep the part file for the next try
            raise DownloadError(f"{url}: interrupted after {part.stat().st_size} bytes ({e}); "
                                f"run the same command again to resume") from None
        finally:
            bar.close()
    return _finish(part, dest, url, sha256, headers, total)


def _finish(part: Path, dest: Path, url: str, sha256: str | None, headers: dict,
            total: int | None) -> str:
    size = part.stat().st_size
    problems = []
    if total is not None and size != total:
        problems.append(f"{size} bytes received, the server announced {total}")
    digest, md5 = _digests(part)
    linked = (headers.get("x-linked-etag") or "").strip('"').lower()
    if _SHA256.match(linked) and linked != digest:
        problems.append(f"sha256 {digest}, the server's X-Linked-ETag says {linked}")
    if "content-md5" in headers:
        want = headers["content-md5"].strip()
        got = base64.b64encode(bytes.fromhex(md5)).decode()
        if want != got:
            problems.append(f"MD5 {got}, the server's Content-MD5 says {want}")
    if sha256 and sha256.lower() != digest:
        problems.append(f"sha256 {digest}, expected {sha256.lower()}")
    if problems:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: checksum mismatch ({'; '.join(problems)}); the partial file "
                            f"was deleted, nothing was installed")
    os.replace(part, dest)
    return digest


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int | None, initial: int, name: str, progress: bool):
    if not progress:
        return _NoBar()
    from tqdm import tqdm  # comes with transformers/datasets

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, file=sys.stderr, leave=False)
