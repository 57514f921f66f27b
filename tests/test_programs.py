"""Running another program: its output reaches the log file and the line parsers, failures are
reported with the log's last lines, and no process of its group survives a timeout, a cancel,
Ctrl-C or an error in the caller."""
from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.programs import Program, ProgramError, run_program

# a shell whose background child outlives it unless the whole group is killed
GRANDCHILD = ["sh", "-c", "sleep 1000 & sleep 1000"]

# a program that ignores SIGTERM, and starts a grandchild that ignores it too
STUBBORN = [sys.executable, "-c", """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    time.sleep(1000)
print("ready", flush=True)
time.sleep(1000)
"""]


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]  # unbuffered: stdout and stderr stay in order


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies waiting for init do not count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _parent, group = stat[stat.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


def assert_group_gone(pgid: int) -> None:
    """No process of the group runs; once init has reaped them, the group no longer exists.

    A process SIGKILLed by the group's stop dies when the kernel next schedules it, which on a
    busy machine (another test worker) can come a moment after the stop returned: a process
    that was never signalled (``sleep 1000``) still runs after that moment."""
    deadline = time.monotonic() + 2
    while live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live_members(pgid) == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    assert live_members(pgid) == []  # init is slow to reap here; every member is dead anyway


def test_output_reaches_the_log_and_the_parsers_line_by_line(tmp_path):
    losses, lines = [], []

    def loss_parser(line: str) -> None:
        if line.startswith("step"):
            losses.append(float(line.split("loss=")[1]))

    log = tmp_path / "logs" / "train.log"
    code = ("import sys\n"
            "print('step 1 loss=2.5')\n"
            "sys.stdout.write('bar 50%\\rbar 100%\\r\\n')\n"
            "print('warn: slow', file=sys.stderr)\n"
            "sys.stdout.write('step 2 loss=1.25')  # no newline at the end\n")
    result = run_program(python(code), log_path=log, parsers=[loss_parser, lines.append],
                         env={"EXTRA_VAR": "x"})
    assert result.ok and result.returncode == 0 and not result.timed_out
    assert losses == [2.5, 1.25]
    assert lines == ["step 1 loss=2.5", "bar 50%", "bar 100%", "warn: slow", "step 2 loss=1.25"]
    assert result.tail == tuple(lines)
    assert result.log_path == log and result.seconds > 0
    raw = log.read_bytes()  # the output as the program wrote it, after the command
    assert raw.startswith(f"{sys.executable} -u -c ".encode())
    assert raw.endswith(b"step 1 loss=2.5\nbar 50%\rbar 100%\r\nwarn: slow\nstep 2 loss=1.25")


def test_environment_working_directory_and_closed_stdin(tmp_path):
    seen = []
    code = "import os, sys; print(os.environ['EXTRA_VAR'], os.getcwd(), repr(sys.stdin.read()))"
    run_program(python(code), log_path=tmp_path / "log", cwd=tmp_path, env={"EXTRA_VAR": 7},
                parsers=[seen.append]).check()
    assert seen == [f"7 {tmp_path} ''"]


def test_a_parser_that_raises_is_reported_once_and_the_run_goes_on(tmp_path, capsys):
    calls = []

    def broken(line: str) -> None:
        calls.append(line)
        raise ValueError("bad metric")

    result = run_program(python("print('a'); print('b'); print('c')"), log_path=tmp_path / "log",
                         parsers=[broken])
    assert result.ok and calls == ["a", "b", "c"]
    assert len(result.parser_errors) == 1
    assert "broken" in result.parser_errors[0] and "bad metric" in result.parser_errors[0]
    assert capsys.readouterr().out.count("bad metric") == 1


def test_a_failed_program_names_itself_its_log_and_its_last_lines(tmp_path):
    log = tmp_path / "eval.log"
    code = "import sys\nfor i in range(40): print(f'line {i}')\nsys.exit(3)"
    result = run_program(python(code), log_path=log)
    assert result.returncode == 3 and not result.ok
    assert result.tail[-1] == "line 39" and "line 0" not in result.tail
    with pytest.raises(ProgramError) as info:
        result.check()
    message = str(info.value)
    assert info.value.result is result
    assert f"`{Path(sys.executable).name}` exited with status 3" in message
    assert str(log) in message and message.endswith("| line 39")


def test_a_missing_program_is_named(tmp_path):
    with pytest.raises(ProgramError, match=r"cannot start `no-such-trainer-x`: No such file"):
        run_program(["no-such-trainer-x", "--epochs", "1"], log_path=tmp_path / "log")
    assert (tmp_path / "log").read_text().startswith("no-such-trainer-x --epochs 1\n")
    with pytest.raises(ProgramError, match=r"cannot start `sh`.*\(/no/such/dir\)\. Check its "
                                           r"working directory"):
        run_program(["sh", "-c", "true"], log_path=tmp_path / "log", cwd="/no/such/dir")


def test_the_timeout_kills_the_whole_group(tmp_path):
    t0 = time.monotonic()
    with Program(GRANDCHILD, log_path=tmp_path / "log", timeout=0.5, grace=0.5) as program:
        result = program.wait()
    assert result.timed_out and not result.ok and result.returncode == -signal.SIGTERM
    assert "stopped at its time limit" in str(result.error())
    assert time.monotonic() - t0 < 10
    assert_group_gone(program.pgid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    ready = threading.Event()
    program = Program(STUBBORN, log_path=tmp_path / "log", timeout=30, grace=0.3,
                      parsers=[lambda line: ready.set()])
    with program:
        assert ready.wait(20)
        program.cancel()
        result = program.wait()
    assert result.cancelled and result.returncode == -signal.SIGKILL
    assert_group_gone(program.pgid)


def test_the_cancel_event_stops_the_program_from_another_thread(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with Program(GRANDCHILD, log_path=tmp_path / "log", cancel=cancel, grace=1) as program:
        result = program.wait()
    assert result.cancelled and not result.timed_out
    assert_group_gone(program.pgid)


def test_ctrl_c_kills_the_whole_group(tmp_path, python_sigint):
    program = Program(GRANDCHILD, log_path=tmp_path / "log", grace=1, timeout=60)
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        with program:
            program.wait()
    assert_group_gone(program.pgid)


def test_an_error_in_the_caller_kills_the_whole_group(tmp_path):
    program = Program(GRANDCHILD, log_path=tmp_path / "log", grace=1)
    with pytest.raises(RuntimeError):
        with program:
            raise RuntimeError("the step failed")
    assert_group_gone(program.pgid)


def test_what_a_finished_program_left_running_is_killed(tmp_path):
    with Program(["sh", "-c", "sleep 1000 & echo done"], log_path=tmp_path / "log") as program:
        result = program.wait()
    assert result.ok and result.tail == ("done",)
    assert result.seconds < 5
    assert_group_gone(program.pgid)
