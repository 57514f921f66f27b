"""Every module of sandbox.ops imports cleanly as the first module of a fresh interpreter, and
whichever comes first, the registry ends up complete (no import cycle between the OP modules,
their character tables and the compiled kernels)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import sandbox.ops

MODULES = sorted(m.name for m in pkgutil.walk_packages(sandbox.ops.__path__, "sandbox.ops."))


def test_every_module_is_listed():
    assert {"sandbox.ops.common.chars", "sandbox.ops.common.kernels", "sandbox.ops.text.filters",
            "sandbox.ops.text.mappers", "sandbox.ops.video.deduplicators"} <= set(MODULES)
    assert set(sandbox.ops.OP_MODULES) <= set(MODULES)


@pytest.mark.parametrize("first", MODULES)
def test_module_imports_first_in_a_fresh_interpreter(first):
    expected = len(sandbox.ops.all_ops())
    code = (
        f"import {first}\n"
        "import sandbox.ops.common.kernels, sandbox.ops.text.filters, sandbox.ops.text.mappers\n"
        "from sandbox.ops import all_ops\n"
        "print(len(all_ops()))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) == expected
