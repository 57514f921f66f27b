"""How many threads a compute step (training) should use.

Torch's OpenMP threads spin while they wait for each other. On a machine whose cores are also
running other processes, two threads on two busy cores spend most of their time spinning for a
thread that is not scheduled: measured on 2 cores with two other CPU-bound processes, 2 threads
trained several times slower than 1 (see docs/scaling.md). So ``auto`` counts the CPUs
this process may use (affinity, cgroup quota) less those other processes keep busy right now
(``/proc/stat`` over a quarter of a second), and a fixed count that oversubscribes the machine
is kept but reported."""
from __future__ import annotations

import contextlib

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.console import console
from sandbox.errors import ConfigError

SAMPLE_SECONDS = 0.25


def parse_threads(value, key: str = "num_threads") -> int | str:
    """``auto`` or a positive int (the config's value), else a ConfigError naming ``key``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{key}={value!r}: give a number of threads (1, 2, ...) or `auto` "
                          f"(the CPUs not busy with other processes).")
    return n


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _cpu_times() -> dict[str, tuple[int, int]]:
    """``/proc/stat``: cpu name -> (busy jiffies, total jiffies)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        values = [int(v) for v in fields[:8]]
        idle = values[3] + values[4]  # idle + iowait
        out[name] = (sum(values) - idle, sum(values))
    return out


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's CPUs other processes keep busy (this one sleeps while it
    measures); None where ``/proc/stat`` cannot be read."""
    try:
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, AttributeError, ValueError):
        return None
    busy = 0.0
    for name in allowed & before.keys() & after.keys():
        d_busy = after[name][0] - before[name][0]
        d_total = after[name][1] - before[name][1]
        if d_total > 0:
            busy += d_busy / d_total
    return busy


@dataclass
class ThreadChoice:
    threads: int
    cpus: int
    busy: float | None  # CPUs busy with other processes when measured
    auto: bool = False  # chosen by `auto`, not fixed in the config

    @property
    def oversubscribed(self) -> bool:
        return self.busy is not None and self.busy + self.threads > self.cpus + 0.5

    def warning(self, key: str) -> str | None:
        """One line for the console when the threads will compete for the CPUs."""
        if self.threads > self.cpus:
            return (f"{key}={self.threads} but this process may use {self.cpus} CPU(s): the "
                    f"threads will wait for each other; set {key}={self.cpus} or auto")
        if not self.oversubscribed:
            return None
        head = (f"the machine is oversubscribed: other processes keep {self.busy:.1f} of "
                f"{self.cpus} CPU(s) busy")
        if self.auto or self.threads == 1:
            return f"{head}; {key}={'auto: ' if self.auto else ''}{self.threads} thread(s), " \
                   f"expect it to be slow"
        return (f"{head}, and {key}={self.threads} thread(s) will compete with them (torch "
                f"threads slow down far more than their share of CPU when they do): "
                f"{key}=auto picks fewer")


def choose_threads(requested, measure=None) -> ThreadChoice:
    """``auto``: the CPUs not busy with other processes (at least 1); a number: that number.
    ``measure``: how busy the machine is (default ``busy_cpus``, looked up when called)."""
    requested = parse_threads(requested)
    cpus = usable_cpus()
    busy = (measure or busy_cpus)()
    if requested == "auto":
        free = cpus if busy is None else cpus - busy
        threads = max(1, min(cpus, int(free + 0.5)))
    else:
        threads = requested
    return ThreadChoice(threads=threads, cpus=cpus, busy=busy, auto=requested == "auto")


@contextlib.contextmanager
def torch_threads(requested, key: str):
    """``torch.set_num_threads`` from ``choose_threads`` for the block (restored after), saying
    on the console when the machine is oversubscribed; ``key`` names the setting."""
    import torch


    choice = choose_threads(requested)
    note = choice.warning(key)
    if note:
        console.print(f"[yellow]warning:[/] {note}", soft_wrap=True)
    old = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        torch.set_num_threads(old)
