"""Start-up stays fast: heavy packages (``sandbox.LAZY_IMPORTS``) are imported only where they
are used, and the CLI's --help answers quickly."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import LAZY_IMPORTS

ROOT = Path(__file__).resolve().parent.parent

# modules whose job is a heavy package (none: compiled kernels import numba when they first run
# just in time, never on import)
HEAVY_BY_NATURE: tuple[str, ...] = ()

PROBE = """
import importlib, json, pkgutil, sys
import sandbox, sandbox.__main__
skip = set(json.loads(sys.argv[1]))
for m in pkgutil.walk_packages(sandbox.__path__, "sandbox."):
    if m.name not in skip and not m.name.endswith("__main__"):
        importlib.import_module(m.name)
top = {name.split(".")[0] for name in sys.modules}
print(json.dumps(sorted(top & set(json.loads(sys.argv[2])))))
"""


def test_importing_every_module_loads_no_heavy_package():
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY_BY_NATURE),
                          json.dumps(LAZY_IMPORTS)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], (
        "these packages were imported at module level; import them inside the function that "
        "uses them: " + out.stdout)


def test_cli_module_imports_little():
    out = subprocess.run([sys.executable, "-c", "import json, sys, sandbox.__main__; "
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "sandbox.runner" not in loaded and "sandbox.engine" not in loaded, loaded


def test_help_is_fast():
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sandbox", "--help"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0 and "data_pool" in r.stdout, r.stdout + r.stderr
    assert seconds < 3.0, f"--help took {seconds:.2f}s"  # ~0.5 s on an idle 2-core machine


@pytest.mark.parametrize("args", [["--help"], ["-h", "engine=ray", "experiment=clip"]])
def test_quick_help_is_hydras_help_word_for_word(args):
    """`python -m sandbox --help` answers without Hydra's slow group listing (~2 s); its text
    is exactly what Hydra's own --help prints for the same overrides."""
    quick = subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True,
                           text=True, check=True, cwd=ROOT).stdout
    hydra = subprocess.run([sys.executable, "-c", "import sys; from sandbox.__main__ import main; "
                            "sys.argv = ['sandbox', *sys.argv[1:]]; main()", *args],
                           capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert quick == hydra and "== Configuration groups ==" in quick and "engine: local, ray" in quick


def test_quick_exit_does_what_exit_must(tmp_path):
    # the interpreter's teardown is skipped, not the work of exiting: non-daemon threads finish,
    # atexit handlers run, buffered output reaches the pipe, and the status is sys.exit's
    script = f"""
import atexit, pathlib, sys, threading, time
from sandbox.__main__ import exit_now
out = pathlib.Path({str(tmp_path)!r})
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()
sys.stdout.write("buffered, no newline")
exit_now(int(sys.argv[1]) if len(sys.argv) > 1 else "a message")
"""
    done = subprocess.run([sys.executable, "-c", script, "3"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 3 and done.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and done.stderr.strip() == "a message"


def test_hydra_composes_the_config_once_unless_the_mode_may_come_from_it(tmp_path):
    """Hydra composes the whole config once just to read ``hydra.mode``; skipped where only the
    flags can set it, kept where an override, a config file or another config folder may."""
    from sandbox.__main__ import mode_left_to_flags

    assert mode_left_to_flags(["pipeline=process", "trainer.lr=0.1", "experiment=clip"])
    for override in ("hydra.mode=MULTIRUN", "+hydra.mode=RUN", "++hydra.mode=MULTIRUN",
                     f"hydra.searchpath=[file://{tmp_path}]", "--config-dir=elsewhere",
                     "-cd", "trainer.mode=MULTIRUN"):
        assert not mode_left_to_flags(["pipeline=process", override]), override
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(20)))
    code = ("import sys\nfrom hydra._internal.hydra import Hydra\nn = []\n"
            "compose = Hydra.compose_config\n"
            "Hydra.compose_config = lambda self, *a, **k: n.append(1) or compose(self, *a, **k)\n"
            "import atexit\natexit.register(lambda: print('compositions', len(n)))\n"
            f"sys.argv = ['sandbox', 'pipeline=process', 'data_pool=jsonl', 'recipe=none', "
            f"'data_pool.path={docs}', 'tracking=none', 'progress=false', "
            f"'hydra.run.dir={tmp_path / 'run'}']\n"
            "import runpy\nrunpy.run_module('sandbox', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "compositions 1" in out.stdout, out.stdout + out.stderr


def test_arrow_converts_without_importing_pandas_and_to_pandas_still_works():
    code = ("import sys, pyarrow as pa\n"
            "from sandbox.data.io import arrow_without_pandas\n"
            "arrow_without_pandas()\n"
            "t = pa.table({'text': ['a', 'b']}); pa.array(['x'])\n"
            "print('pandas' in sys.modules)\n"
            "print(list(t.to_pandas()['text']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split("\n")
    assert out[:2] == ["False", "['a', 'b']"], out


def test_a_process_run_imports_no_pandas(tmp_path, docs_file):
    """pyarrow's first conversion would import pandas (~0.3 s on the way to the first span):
    neither the command nor its forked workers import it (``-X importtime`` lists every import
    of the process tree on stderr)."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sandbox", "pipeline=process", "data_pool=jsonl",
         f"data_pool.path={docs_file}", "tracking=none", "progress=false", "num_proc=2",
         f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines()
                if line.startswith("import time:")}
    assert "sandbox.engine.local" in imported  # the listing is there...
    # ...and pandas is not in it ("pandas" alone is the refused attempt, a few microseconds)
    assert not [name for name in imported if name.startswith("pandas.")]
