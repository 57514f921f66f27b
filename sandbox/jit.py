"""numba, set up for the project: compiled functions are cached on disk under ``<cache>/numba``
(``sandbox.cache.numba_cache_dir``), so only the first process ever compiles them.

Modules with compiled kernels import ``njit`` from here, and are themselves imported lazily, by
the code that runs them: importing numba costs ~0.3 s that other commands should not pay."""
from __future__ import annotations

import os

from sandbox import env_vars
from sandbox.cache import numba_cache_dir

# numba reads its cache location once, when imported; a location set by the user wins
os.environ.setdefault(env_vars.NUMBA_CACHE_DIR, str(numba_cache_dir()))

from numba import njit  # noqa: E402  (after NUMBA_CACHE_DIR is set)

__all__ = ["njit"]
