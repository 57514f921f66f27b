"""Faults across processes, injected for real on this machine (loopback only): outside programs
that hang, Ctrl-C during an environment's setup, damaged and concurrently written cache files,
a tracking server that is down or dies, an inference server that dies, a full disk.

Each test measures how long the sandbox took to recover where there is something to recover;
docs/faults.md holds the table of what survives what."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.programs import ProgramError
from sandbox.steps.base import StepEnv
from sandbox.steps.external import ExternalTrainer

ROOT = Path(__file__).resolve().parent.parent


def running_with(token: str) -> list[int]:
    """Pids of live processes (zombies do not count) whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if token in cmdline and stat[stat.rindex(")") + 2] != "Z":
            found.append(int(entry.name))
    return found


def wait_until_gone(token: str, seconds: float = 5.0) -> list[int]:
    """The processes with ``token`` still alive after ``seconds`` (a SIGKILLed process dies when
    the kernel next schedules it, a moment after the kill on a busy machine)."""
    deadline = time.monotonic() + seconds
    while running_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running_with(token)


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# ------------------------------------------------------------------ outside programs
def test_a_stack_program_that_hangs_silently_is_ended_with_its_whole_group(tmp_path):
    """The program prints nothing and waits on a `sleep` grandchild: at `timeout` the step fails
    in one paragraph, and neither the program nor the grandchild is left in the process table."""
    token = f"{os.getpid()}{time.monotonic_ns() % 10**6}"  # a `sleep` duration no one else uses
    hang = ("import subprocess, sys\n"
            f"subprocess.Popen(['sleep', '{token}'])\n"
            f"subprocess.run(['sleep', '{token}'])\n")
    work = tmp_path / "step"
    work.mkdir()
    env = StepEnv(name="train", workdir=work, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  seed=0)
    step = ExternalTrainer(stack="a hanging stack", argv=["python", "-c", hang], timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProgramError) as info:
        step.run(env)
    took = time.monotonic() - started
    message = str(info.value)
    assert "was stopped at its time limit after 1s" in message
    assert "(it printed nothing)" in message and str(work / "logs" / "run.log") in message
    assert wait_until_gone(token) == []
    assert took < 12, took  # the timeout, SIGTERM, and at most the grace period


# a build backend that needs nothing from an index: it writes its wheel by hand, and hangs in
# the build while $SLOWPKG_STARTED names a file (where it writes its pid first)
SLOW_BACKEND = """
import os, time, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    started = os.environ.get("SLOWPKG_STARTED")
    if started:
        with open(started, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    name = "slowpkg-0.1-py3-none-any.whl"
    files = {"slowpkg/__init__.py": "READY = True\\n",
             "slowpkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\\nName: slowpkg\\nVersion: 0.1\\n",
             "slowpkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: hand\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
        whl.writestr("slowpkg-0.1.dist-info/RECORD",
                     "".join(f"{p},,\\n" for p in files) + "slowpkg-0.1.dist-info/RECORD,,\\n")
    return name
"""


@pytest.mark.slow
def test_ctrl_c_during_env_setup_leaves_nothing_marked_ready_and_setup_finishes_it(tmp_path):
    """SIGINT (what Ctrl-C sends) reaches `python -m sandbox.env setup` while pip builds a local
    package whose build script sleeps: the setup stops in one paragraph, leaves no environment
    marked ready and no build process running; the next setup builds it from the start."""
    package = tmp_path / "slowpkg"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n')
    (package / "backend.py").write_text(SLOW_BACKEND)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "slow.yaml").write_text(f"kind: venv\nrequirements: ['{package}']\n")
    cache = tmp_path / "cache"
    started = tmp_path / "build-started"
    base = {**os.environ, "SANDBOX_CACHE": str(cache)}
    command = [sys.executable, "-m", "sandbox.env", "--conf-dir", str(conf), "setup", "slow"]

    setup = subprocess.Popen(command, cwd=ROOT, env={**base, "SLOWPKG_STARTED": str(started)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not started.exists() or not started.read_text():
        assert setup.poll() is None, setup.communicate()
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.1)
    builder = int(started.read_text())
    interrupted = time.monotonic()
    setup.send_signal(signal.SIGINT)
    out, err = setup.communicate(timeout=60)
    stopped = time.monotonic() - interrupted
    assert setup.returncode == 130, out + err
    assert "interrupted: the environment `slow` is not set up" in err and "Traceback" not in err
    assert "python -m sandbox.env setup slow" in err
    deadline = time.monotonic() + 5
    while is_alive(builder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(builder), "the build process outlived the setup"
    folders = [p for p in (cache / "envs").iterdir() if p.is_dir() and p.suffix != ".logs"]
    assert folders and not any((p / ".sandbox-env-ready").exists() for p in folders)
    check = subprocess.run([*command[:-2], "check", "slow"], cwd=ROOT, env=base,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "not set up" in check.stdout

    again = subprocess.run(command, cwd=ROOT, env=base, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "slow: set up in" in again.stdout, again.stderr
    folder = Path(again.stdout.split(" set up in ")[1].strip())
    assert (folder / ".sandbox-env-ready").is_file()
    probe = subprocess.run([str(folder / "bin" / "python"), "-c", "import slowpkg; "
                            "print(slowpkg.READY)"], capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "True", probe.stderr
    print(f"setup stopped {stopped:.1f}s after SIGINT")
