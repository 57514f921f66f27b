"""numba, set up for the project: compiled functions are cached on disk under ``<cache>/numba``
(``$SANDBOX_CACHE``, else ``~/.cache/sandbox``), so only the first process ever compiles them.

Modules with compiled kernels import ``njit`` from here, and are themselves imported lazily, by
the code that runs them: importing numba costs ~0.3 s that other commands should not pay."""
from __future__ import annotations

import os

from sandbox.assets import cache_root

os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))

from numba import njit  # noqa: E402  (after NUMBA_CACHE_DIR is set)

__all__ = ["njit"]
