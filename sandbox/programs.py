"""Running another program: a sweep trial's ``python -m sandbox``, an outside trainer or evaluator.

``run_program(argv, log_path=...)`` (or ``with Program(...) as p: p.wait()``) starts ``argv``
(an argument list, never a shell string) as the leader of its own process group, with stdin
closed, and streams its combined stdout and stderr into ``log_path`` (the command line first)
and, line by line, into any number of parsers (``parser(line) -> None``, e.g. one that picks
``loss=...`` out of a training log). Lines end at ``\\n``, ``\\r\\n`` or a bare ``\\r`` (progress
bars redraw with ``\\r``).

No process of the group outlives the call: when the program ends, when its ``timeout`` passes,
when it is cancelled (``cancel()`` or the ``cancel`` event), on Ctrl-C and on any exception in
the caller, the group gets ``stop_signal``, the program ``grace`` seconds to exit, then SIGKILL.
Only a process that detaches itself (``setsid``) escapes; its output is then not waited for.
"""
from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from rich.markup import escape

from sandbox.console import console
from sandbox.errors import SandboxError

LineParser = Callable[[str], None]

TAIL_LINES = 20  # last lines kept for error messages
POLL_SECONDS = 0.05
DRAIN_SECONDS = 5.0  # how long to wait for the rest of the output once the group is gone
_LINE_END = re.compile(rb"\r\n|\r|\n")
_MAX_LINE_BYTES = 1 << 20  # a longer unterminated run of output is handed on as one line


@dataclass(frozen=True)
class ProgramResult:
    """How a program ended. ``returncode`` is negative (``-signal``) when it was killed."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float
    log_path: Path
    timed_out: bool = False
    cancelled: bool = False
    tail: tuple[str, ...] = ()  # its last lines of output
    parser_errors: tuple[str, ...] = ()  # one message per parser that raised

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not (self.timed_out or self.cancelled)

    def error(self) -> "ProgramError":
        """The failure as a user-facing error: the program, its log file, its last lines."""
        if self.timed_out:
            how = "was stopped at its time limit"
        elif self.cancelled:
            how = "was cancelled"
        elif self.returncode < 0:
            how = f"was killed by {signal.Signals(-self.returncode).name}"
        else:
            how = f"exited with status {self.returncode}"
        lines = "".join(f"\n  | {line}" for line in self.tail)
        return ProgramError(
            f"`{Path(self.argv[0]).name}` {how} after {self.seconds:.0f}s; its output is in "
            f"{self.log_path} (the command is on its first line, to rerun it by hand). Fix the "
            f"cause its last lines show:{lines or ' (it printed nothing)'}", self)

    def check(self) -> "ProgramResult":
        """This result, or raise ``error()`` when the program failed, timed out or was cancelled."""
        if not self.ok:
            raise self.error()
        return self

    def silent_failure(self, what: str, who: str = "") -> "ProgramError":
        """The error for a program that exited 0 but ``what`` (e.g. "did not write X"): some
        tools report failure only so. ``who`` prefixes the message (the stack's name)."""
        lines = "".join(f"\n  | {line}" for line in self.tail)
        return ProgramError(
            f"{who}`{Path(self.argv[0]).name}` exited with status 0 but {what}, so it failed "
            f"without saying so; its output is in {self.log_path}. Its last lines:"
            f"{lines or ' (it printed nothing)'}", self)

    def check_outputs(self, expected: Iterable[str | Path], base: Path | None = None
                      ) -> "ProgramResult":
        """This result, or ``silent_failure`` when a file of ``expected`` (relative ones under
        ``base``, default the current folder) is missing."""
        base = Path.cwd() if base is None else Path(base)
        expected = list(expected)
        missing = [str(p) for p in expected if not (base / Path(p)).exists()]
        if missing:
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more"
                                                if len(missing) > 20 else "")
            count = f" ({len(missing)} of the {len(expected)} files it should write)" \
                if len(expected) > 1 else ""
            raise self.silent_failure(f"did not write {shown}{count}")
        return self


class ProgramError(SandboxError):
    """A program could not start, or failed (``result`` then says how it ended)."""

    def __init__(self, message: str, result: ProgramResult | None = None):
        super().__init__(message)
        self.result = result


class Program:
    """One run of ``argv`` as its own process group; see the module docstring.

    ``env`` adds variables to this process's environment; ``timeout`` is in seconds (None: no
    limit); ``cancel`` is an event another thread sets to stop the program (``cancel()`` does the
    same for this program alone); ``echo`` prints each line to the console as well."""

    def __init__(self, argv: Iterable[str], *, log_path: str | Path, cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None, parsers: Iterable[LineParser] = (),
                 echo: bool = False, timeout: float | None = None, grace: float = 10.0,
                 stop_signal: int = signal.SIGTERM, cancel: threading.Event | None = None):
        self.argv = tuple(str(a) for a in argv)
        if not self.argv:
            raise ValueError("Program needs a command: argv is empty.")
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.parsers = list(parsers)
        self.echo = echo
        self.timeout = timeout
        self.grace = grace
        self.stop_signal = stop_signal
        self._cancel_event = cancel
        self._cancelled = threading.Event()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._parser_errors: dict[int, str] = {}
        self._started = 0.0

    # ------------------------------------------------------------------ public
    def __enter__(self) -> "Program":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._process is not None and self._process.returncode is None:
            self._stop_group()  # the caller failed (or never waited): take the group down
        if self._reader is not None:
            self._reader.join(DRAIN_SECONDS)

    @property
    def pgid(self) -> int:
        """The process group id (the program's pid)."""
        return self._process.pid

    def start(self) -> None:
        """Start the program; ``ProgramError`` when it cannot start (e.g. it is not installed)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        log.write((shlex.join(self.argv) + "\n").encode())
        log.flush()
        try:
            self._process = subprocess.Popen(
                self.argv, cwd=self.cwd, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            in_cwd = bool(e.filename) and str(e.filename) != self.argv[0]  # the working directory
            message = (f"cannot start `{self.argv[0]}`: {e.strerror}"
                       + (f" ({e.filename}). Check its working directory (`cwd`)" if in_cwd else
                          ". Install it, or give its full path")
                       + f"; the command is in {self.log_path}.")
            log.write((message + "\n").encode())
            log.close()
            raise ProgramError(message) from None
        self._started = time.monotonic()
        try:
            self._reader = threading.Thread(target=self._read_output, args=(log,),
                                            name=f"output of {Path(self.argv[0]).name}",
                                            daemon=True)
            self._reader.start()
        except BaseException:  # e.g. Ctrl-C right after the start: no group is left behind
            self._stop_group()
            raise

    def cancel(self) -> None:
        """Stop this program (from any thread); ``wait()`` then returns with ``cancelled``."""
        self._cancelled.set()

    def wait(self) -> ProgramResult:
        """Wait for the program to end (or its timeout, or a cancel), then for its output."""
        deadline = None if self.timeout is None else self._started + self.timeout
        timed_out = cancelled = False
        try:
            while not self._leader_exited():
                cancelled = self._cancelled.is_set() or bool(
                    self._cancel_event and self._cancel_event.is_set())
                timed_out = deadline is not None and time.monotonic() >= deadline
                if cancelled or timed_out:
                    break
                time.sleep(POLL_SECONDS)
        finally:  # however we leave (Ctrl-C included), the group goes down with the program
            self._stop_group()
        seconds = time.monotonic() - self._started
        self._reader.join(DRAIN_SECONDS)
        return ProgramResult(self.argv, self._process.returncode, seconds, self.log_path,
                             timed_out=timed_out and not cancelled, cancelled=cancelled,
                             tail=tuple(self._tail),
                             parser_errors=tuple(self._parser_errors.values()))

    # ------------------------------------------------------------------ the process group
    def _leader_exited(self) -> bool:
        if self._process.returncode is not None:
            return True
        # WNOWAIT leaves the exited leader unreaped: its pid, which is the group id, then cannot
        # be reused by an unrelated group before the group's last signal below
        try:
            return os.waitid(os.P_PID, self._process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # someone else reaped it
            return True

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass

    def _stop_group(self) -> None:
        """``stop_signal`` to the group, ``grace`` seconds for the program, then SIGKILL to all
        that is left (also what a program that ended by itself left running in the background)."""
        try:
            if not self._leader_exited():
                self._signal_group(self.stop_signal)
                give_up = time.monotonic() + self.grace
                while not self._leader_exited() and time.monotonic() < give_up:
                    time.sleep(POLL_SECONDS)
        finally:  # even when a second Ctrl-C cuts the grace period short
            self._signal_group(signal.SIGKILL)
            self._process.wait()

    # ------------------------------------------------------------------ the output
    def _read_output(self, log) -> None:
        pending = b""
        with log:
            for chunk in iter(lambda: os.read(self._process.stdout.fileno(), 1 << 16), b""):
                log.write(chunk)
                log.flush()  # readable while the program runs
                pending = self._split_lines(pending + chunk)
            self._process.stdout.close()
            if pending.strip():
                self._hand_on(pending.rstrip(b"\r"))

    def _split_lines(self, data: bytes) -> bytes:
        """Hand on every complete line of ``data``; return the unfinished rest."""
        held_cr = data.endswith(b"\r")  # perhaps the first half of "\r\n"
        *lines, rest = _LINE_END.split(data[:-1] if held_cr else data)
        for line in lines:
            self._hand_on(line)
        if len(rest) > _MAX_LINE_BYTES:
            self._hand_on(rest)
            rest = b""
        return rest + b"\r" if held_cr else rest

    def _hand_on(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if not line:
            return
        self._tail.append(line)
        if self.echo:
            console.print(line, markup=False, soft_wrap=True)
        for index, parser in enumerate(self.parsers):
            try:
                parser(line)
            except Exception as e:  # a parser's bug must not stop the program: report it once
                if index not in self._parser_errors:
                    name = getattr(parser, "__qualname__", repr(parser))
                    message = (f"line parser {name} failed on `{line[:200]}` "
                               f"({type(e).__name__}: {e}); it keeps getting the later lines")
                    self._parser_errors[index] = message
                    console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def run_program(argv: Iterable[str], **options) -> ProgramResult:
    """Run ``argv`` to its end (see ``Program`` for the options) and return how it ended."""
    with Program(argv, **options) as program:
        return program.wait()
