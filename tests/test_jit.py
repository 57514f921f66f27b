"""sandbox.jit: kernels run through their module's ahead-of-time extension (no numba import),
just in time when the arguments do not match or the extension cannot be built, and give the same
results either way."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sandbox import jit

ROOT = Path(__file__).resolve().parents[1]

# a kernel module as the project writes them: an inline helper, a helper made by a factory (its
# closure holds a kernel), and two entry points with export signatures (one returns a tuple)
KERNELS = '''
import numpy as np
from sandbox.jit import njit


@njit(inline="always")
def _twice(x):
    return 2.0 * x


def _apply_of(f):
    @njit(inline="always")
    def apply(x):
        return f(x) + 1.0
    return apply


_apply = _apply_of(_twice)


@njit(cache=True, nogil=True, export="f8[::1](f8[::1], i8)")
def scaled(x, k):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _apply(x[i]) * k
    return out


@njit(cache=True, export="(i8[::1], b1[::1])(u4[:, ::1])")
def row_sums(a):
    sums = np.zeros(a.shape[0], dtype=np.int64)
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            sums[r] += a[r, c]
    return sums, sums > 2
'''

CALLS = '''
import json, sys
import numpy as np
import tinykernels as k

x = np.arange(6, dtype=np.float64)
a = np.arange(6, dtype=np.uint32).reshape(3, 2)
sums, big = k.row_sums(a)
out = {"scaled": k.scaled(x, 3).tolist(), "strided": k.scaled(x[::2], 3).tolist(),
       "sums": sums.tolist(), "big": big.tolist(), "numba": "numba" in sys.modules,
       "mismatches": k.scaled.mismatches}
print(json.dumps(out))
'''


def run_calls(tmp_path: Path, **env) -> dict:
    (tmp_path / "tinykernels.py").write_text(KERNELS)
    environ = {k: v for k, v in os.environ.items() if k != "SANDBOX_AOT"}
    environ.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"),
                   PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", **env)
    got = subprocess.run([sys.executable, "-c", CALLS], capture_output=True, text=True,
                         env=environ, timeout=300)
    assert got.returncode == 0, got.stderr[-3000:]
    return json.loads(got.stdout.splitlines()[-1])


EXPECTED = {"scaled": [3.0, 9.0, 15.0, 21.0, 27.0, 33.0], "strided": [3.0, 15.0, 27.0],
            "sums": [1, 5, 9], "big": [False, True, True]}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler: kernels run just in time")
def test_the_extension_is_built_once_then_loaded_without_numba(tmp_path):
    first = run_calls(tmp_path)  # builds the extension (numba compiles it)
    assert {k: first[k] for k in EXPECTED} == EXPECTED
    built = list((tmp_path / "numba" / "aot").glob("_sandbox_aot_tinykernels_*.so"))
    assert len(built) == 1
    second = run_calls(tmp_path)  # loads it: numba is never imported
    assert {k: second[k] for k in EXPECTED} == EXPECTED
    # ... except for the strided array, which the extension would read as contiguous: that
    # call went just in time, and imported numba
    assert second["mismatches"] == 1 and second["numba"]
    assert not list((tmp_path / "numba" / "aot").glob("*.failed"))
    # just in time everywhere: the same numbers
    jitted = run_calls(tmp_path, SANDBOX_AOT="0")
    assert {k: jitted[k] for k in EXPECTED} == EXPECTED and jitted["mismatches"] == 0


@pytest.mark.slow
def test_a_failed_build_is_remembered_and_the_kernels_run_just_in_time(tmp_path):
    got = run_calls(tmp_path, CC="/bin/false")  # the C compiler fails
    assert {k: got[k] for k in EXPECTED} == EXPECTED and got["numba"]
    failed = list((tmp_path / "numba" / "aot").glob("_sandbox_aot_tinykernels_*.failed"))
    assert len(failed) == 1 and failed[0].read_text().strip()
    assert not list((tmp_path / "numba" / "aot").glob("*.so"))
    again = run_calls(tmp_path)  # a working compiler now, but the failure is remembered
    assert {k: again[k] for k in EXPECTED} == EXPECTED and again["numba"]
    assert not list((tmp_path / "numba" / "aot").glob("*.so"))


def test_the_project_kernels_are_served_ahead_of_time():
    from sandbox.ops.common import kernels
    from sandbox.ops.text.filters import char_rep_ratio

    texts = ["ab ab ab ab", "x"]
    got = kernels.char_rep_ratios(*kernels.codepoints(texts), 2)
    assert got.tolist() == [char_rep_ratio(t, 2) for t in texts] == [0.4, 0.0]
    if shutil.which("cc") is None:
        pytest.skip("no C compiler: kernels run just in time")
    assert jit.extension(kernels.__name__) is not None, list(
        (Path(os.environ["NUMBA_CACHE_DIR"]) / "aot").glob("*.failed"))
    assert kernels.char_rep_ratios._aot is not None and kernels.char_rep_ratios.mismatches == 0


def test_export_signatures_are_parsed_and_checked():
    args = jit._parse_args("(f8[::1], i8[::1])(u4[::1], i8[::1], u4[:, ::1], b1[::1], i8)")
    assert args == [("uint32", 1), ("int64", 1), ("uint32", 2), ("bool", 1), ("int64", 0)]
    assert jit._numba_signature("(f8[::1], i8[::1])(u4[::1], i8)") == (
        "Tuple((float64[::1], int64[::1]))(uint32[::1], int64)")
    assert jit._numba_signature("u1[::1](u1[::1], i8[:, ::1])") == (
        "uint8[::1](uint8[::1], int64[:, ::1])")
    with pytest.raises(ValueError, match="u2"):
        jit._parse_args("f8[::1](u2[::1])")
    spec = jit._parse_args("f8[::1](u4[::1], i8[:, ::1], i8)")
    cp = np.zeros(4, np.uint32)
    table = np.zeros((2, 3), np.int64)
    readonly = np.frombuffer(bytes(16), dtype=np.uint32)
    assert jit._matches(spec, (cp, table, 3))
    assert jit._matches(spec, (readonly, table, np.int64(3)))  # read-only arrays are fine
    for bad in ((cp[::2], table, 3), (cp.astype(np.int64), table, 3), (list(cp), table, 3),
                (cp, table.T, 3), (cp, table, 3.0), (cp, table, True), (cp, table)):
        assert not jit._matches(spec, bad)


def test_just_in_time_makes_one_dispatcher_per_kernel(tmp_path, monkeypatch):
    (tmp_path / "onekernels.py").write_text(KERNELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SANDBOX_AOT", "0")
    import onekernels

    x = np.arange(4, dtype=np.float64)
    assert onekernels.scaled(x, 2).tolist() == [2.0, 6.0, 10.0, 14.0]
    # the entry point Python calls and the one the module's other kernels would see are one
    assert jit._jit_globals("onekernels")["scaled"] is jit.jit(onekernels.scaled)
    assert isinstance(vars(onekernels)["scaled"], jit.Kernel)  # the module keeps its kernels
