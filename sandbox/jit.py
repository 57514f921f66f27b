"""Compiled kernels (numba), set up for the project.

Kernel modules decorate their loops with ``njit`` from here; nothing imports numba until a
kernel runs. Then, per kernel module, one of two paths serves it:

* **Ahead of time**, the usual one after the first run. The module's entry points (the kernels
  given an ``export`` signature) were compiled once into an extension module under
  ``<numba cache>/aot/``. Loading it takes a millisecond and needs no numba, whose import and
  first call cost ~1 CPU-s in every process that used it (and ~0.5 s of wall time that a
  process run spent waiting for them).
* **Just in time**: numba compiles each function on its first call, or loads it from its own
  on-disk cache (``sandbox.cache.numba_cache_dir``). This serves the functions without an
  ``export``, calls whose arguments do not match the exported signature (the extension does not
  check them itself, so ``Kernel`` does, and a mismatch goes here), every kernel with
  ``SANDBOX_AOT=0``, and modules whose extension could not be built (no C compiler, or
  ``numba.pycc`` gone).

The extension is built in the process that first runs one of the module's kernels, under a file
lock (a concurrent process waits for that build and loads it). Its name holds a digest of the
module's source, of numba's and Python's versions and of the CPU, so any change builds anew. A
build that failed is remembered in ``<name>.failed`` (which says why) and not tried again.

Export signatures are a small subset of numba's: ``u1 u4 u8 i8 f8 b1`` scalars, arrays
``<type>[::1]`` and ``<type>[:, ::1]`` (C-contiguous; read-only ones are accepted), and
``(<type>, <type>)`` for a tuple result, e.g. ``"(f8[::1], i8[::1])(u4[::1], i8[::1], i8)"``.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import types
import warnings
from importlib.metadata import version
from pathlib import Path

from sandbox import env_vars
from sandbox.cache import numba_cache_dir
from sandbox.utils import atomic_path, atomic_write_text

# numba reads its cache location once, when imported; a location set by the user wins
os.environ.setdefault(env_vars.NUMBA_CACHE_DIR, str(numba_cache_dir()))

_LOCK = threading.RLock()  # resolving kernels (preload threads, writer threads)
_DISPATCHERS: dict = {}  # Kernel -> numba dispatcher
_JIT_GLOBALS: dict[str, dict] = {}  # kernel module -> the globals its dispatchers see
_EXTENSIONS: dict[str, types.ModuleType | None] = {}  # kernel module -> its extension, if any

_DTYPES = {"u1": "uint8", "u4": "uint32", "u8": "uint64", "i8": "int64", "f8": "float64",
           "b1": "bool"}
_NUMBA_NAMES = {**_DTYPES, "b1": "boolean"}
_ARG = re.compile(r"^(u1|u4|u8|i8|f8|b1)(\[::1\]|\[:, ::1\])?$")


class Kernel:
    """A function compiled on its first call: through the module's ahead-of-time extension when
    it has an ``export`` signature and the arguments match it, else by numba just in time."""

    def __init__(self, py_func, options: dict, export: str | None):
        self.py_func = py_func
        self.options = options
        self.export = export
        self.args = _parse_args(export) if export else None
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__doc__ = py_func.__doc__
        self.__module__ = py_func.__module__
        self._aot = None  # the extension's function, once known
        self._resolved = False
        self.mismatches = 0  # calls that went just in time as their arguments did not match

    def __call__(self, *args):
        if not self._resolved:
            self._resolve()
        if self._aot is not None:
            if _matches(self.args, args):
                return self._aot(*args)
            self.mismatches += 1
        return jit(self)(*args)

    def _resolve(self) -> None:
        with _LOCK:
            if self.export is not None and not self._resolved:
                ext = extension(self.__module__)
                self._aot = getattr(ext, self.__name__, None) if ext is not None else None
            self._resolved = True

    def __repr__(self) -> str:
        return f"<Kernel {self.__module__}.{self.__name__}>"


def njit(fn=None, *, export: str | None = None, **options):
    """numba's ``njit`` (the same options), deferred until the first call; ``export``: the
    signature the module's ahead-of-time extension compiles this function for (entry points
    called from Python only)."""
    def wrap(f):
        return Kernel(f, options, export)

    return wrap(fn) if fn is not None else wrap


# ------------------------------------------------------------------------------ just in time
def jit(kernel: Kernel):
    """The numba dispatcher of ``kernel``."""
    d = _DISPATCHERS.get(kernel)
    if d is None:
        with _LOCK:
            d = _dispatcher(kernel)
    return d


def _dispatcher(kernel: Kernel):
    """``numba.njit`` of the kernel's function, bound to ``_jit_globals`` of its module (and,
    for a function made by a factory, to the dispatchers of the kernels its closure holds):
    numba's compiler needs every function a kernel calls to be a dispatcher."""
    d = _DISPATCHERS.get(kernel)
    if d is None:
        import numba

        fn = kernel.py_func
        cells = tuple(types.CellType(_dispatcher(c.cell_contents)
                                     if isinstance(c.cell_contents, Kernel) else c.cell_contents)
                      for c in fn.__closure__ or ())
        g = _jit_globals(kernel.__module__)
        d = _DISPATCHERS.get(kernel)  # made while the module's globals were filled in
        if d is None:
            fn = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, cells or None)
            d = _DISPATCHERS[kernel] = numba.njit(**kernel.options)(fn)
    return d


def _jit_globals(module_name: str) -> dict:
    """A copy of the module's globals with its kernels as dispatchers (the module itself keeps
    its kernels, so that its callers still go through the extension where there is one)."""
    g = _JIT_GLOBALS.get(module_name)
    if g is None:
        g = _JIT_GLOBALS[module_name] = dict(vars(sys.modules[module_name]))
        for name, value in list(g.items()):
            if isinstance(value, Kernel):
                g[name] = _dispatcher(value)
    return g


# ------------------------------------------------------------------------------ ahead of time
def _parse_args(signature: str) -> list[tuple[str, int]]:
    """``[(dtype name, ndim)]`` of the arguments of an export signature (ndim 0: a scalar)."""
    signature = signature.strip()
    if not signature.endswith(")") or "(" not in signature:
        raise ValueError(f"export signature {signature!r}: expected 'result(arg, ...)'.")
    out = []
    for arg in re.split(r",\s*(?![^\[]*\])", signature[signature.rindex("(") + 1:-1].strip()):
        a = _ARG.match(arg.strip())
        if a is None:
            raise ValueError(f"export signature {signature!r}: argument {arg!r} is not one of "
                             f"{sorted(_DTYPES)} or their [::1] / [:, ::1] arrays.")
        out.append((_DTYPES[a.group(1)], {None: 0, "[::1]": 1, "[:, ::1]": 2}[a.group(2)]))
    return out


def _matches(spec: list[tuple[str, int]], args: tuple) -> bool:
    """Whether ``args`` are what the extension was compiled for: it does not check them (a
    strided array is read as contiguous, a list crashes the process)."""
    if len(args) != len(spec):
        return False
    for (dtype, ndim), a in zip(spec, args):
        if ndim == 0:
            if dtype == "float64":
                if not isinstance(a, (float, int)):
                    return False
            elif dtype == "bool":
                if not isinstance(a, bool):
                    return False
            elif not isinstance(a, int) or isinstance(a, bool):
                kind = getattr(getattr(a, "dtype", None), "kind", "")
                if kind not in "iu" or getattr(a, "ndim", 1) != 0:
                    return False
        elif (getattr(a, "ndim", -1) != ndim or a.dtype.name != dtype
              or not a.flags.c_contiguous):
            return False
    return True


def _numba_signature(signature: str) -> str:
    """An export signature in numba's own spelling."""
    out = re.sub(r"\b(u1|u4|u8|i8|f8|b1)\b", lambda m: _NUMBA_NAMES[m.group(1)], signature)
    result, _, args = out.partition(")(") if out.startswith("(") else (None, None, None)
    if result is not None:  # a tuple result: "(a, b)(args)" -> "Tuple((a, b))(args)"
        out = f"Tuple({result}))({args}"
    return out


def extension(module_name: str) -> types.ModuleType | None:
    """The ahead-of-time extension of kernel module ``module_name`` (built now if it was never
    built for this source, numba, Python and CPU), or None where there is none."""
    if module_name in _EXTENSIONS:
        return _EXTENSIONS[module_name]
    with _LOCK:
        if module_name not in _EXTENSIONS:
            _EXTENSIONS[module_name] = _load_or_build(sys.modules[module_name])
    return _EXTENSIONS[module_name]


def _exports(module: types.ModuleType) -> dict[str, Kernel]:
    return {name: k for name, k in vars(module).items()
            if isinstance(k, Kernel) and k.export and k.__module__ == module.__name__}


def _digest(module: types.ModuleType) -> str:
    """What the extension depends on: the source of the module and of every module whose
    kernels it calls, numba's and Python's versions, and the CPU it is compiled for."""
    sources = {module.__name__} | {k.__module__ for k in vars(module).values()
                                   if isinstance(k, Kernel)}
    h = hashlib.sha256(f"{version('numba')} {sys.version} {platform.machine()}".encode())
    for name in sorted(sources):
        h.update(Path(sys.modules[name].__file__).read_bytes())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:  # model and instruction sets
            h.update("".join(sorted({ln for ln in fh if ln.startswith(("model name", "flags"))}))
                     .encode())
    except OSError:
        h.update(platform.processor().encode())
    return h.hexdigest()[:16]


def _load_or_build(module: types.ModuleType) -> types.ModuleType | None:
    exports = _exports(module)
    if not exports or os.environ.get(env_vars.AOT, "1") == "0":
        return None
    folder = Path(os.environ[env_vars.NUMBA_CACHE_DIR]) / "aot"
    name = f"_sandbox_aot_{module.__name__.rsplit('.', 1)[-1]}_{_digest(module)}"
    path = folder / (name + importlib.machinery.EXTENSION_SUFFIXES[0])
    failed = folder / f"{name}.failed"
    if not path.exists() and not failed.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
            if not path.exists() and not failed.exists():
                _build(module, exports, name, path, failed)
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return ext


def _build(module: types.ModuleType, exports: dict[str, Kernel], name: str, path: Path,
           failed: Path) -> None:
    try:
        import llvmlite.binding as llvm
        with warnings.catch_warnings():  # numba.pycc's deprecation notice
            warnings.simplefilter("ignore")
            from numba.pycc import CC

        cc = CC(name)
        cc.verbose = False
        cc.target_cpu = llvm.get_host_cpu_name()  # the vector units of this CPU (in the digest)
        for export_name, kernel in exports.items():
            cc.export(export_name, _numba_signature(kernel.export))(_dispatcher(kernel).py_func)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            cc.output_dir = tmp
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cc.compile()
            built = next(Path(tmp).glob(name + "*"))
            with atomic_path(path) as out:
                shutil.copyfile(built, out)
    except Exception as e:  # no compiler, no numba.pycc, ...: the module runs just in time
        atomic_write_text(failed, f"{type(e).__name__}: {e}\n")


__all__ = ["njit", "Kernel", "jit", "extension"]
