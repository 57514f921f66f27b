"""The step contract.

A step is a component built from config (``_target_`` + its parameters) whose ``run`` takes the
step's environment plus its *inputs* (wired from earlier steps' outputs by interpolation) and
returns a dict of named outputs. ``outputs`` declares those names up front so the runner can check
every ``${ctx:step.output}`` reference before anything runs.

Outputs must be JSON-serialisable (paths as strings, numbers, small dicts/lists): they are saved
to ``context.json`` after every step. A ``sandbox.recipe.Recipe`` is the one exception: it is
saved in its config form, and the steps of the run that read it get the object itself (an input
that ``run`` annotates ``Recipe`` always gets a ``Recipe``, parsed by the runner, never a dict).
An output named ``metrics`` (a flat ``{name: float}``) is logged to the tracker and returned by
``sandbox.run``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from sandbox.console import console
from sandbox.tracking.base import NoTracker

# ``hook(name, value, step)``: who receives a step's intermediate values (``StepEnv.report``)
ReportHook = Callable[[str, float, int], None]


class Pruned(Exception):
    """Raised by ``StepEnv.report`` when a sweep's pruner stops the current trial early."""


@dataclass
class StepEnv:
    """What a step may use besides its inputs."""

    name: str  # the step's name in the pipeline ("probe", "train", ...)
    workdir: Path  # the step's own folder in the run dir; created before ``run``
    run_dir: Path
    cache_dir: Path  # shared across runs (content-addressed caches)
    seed: int = 42
    num_proc: int = 1
    tracker: Any = field(default_factory=NoTracker)
    show_progress: bool = True
    engine: Any = None  # the data engine (sandbox.engine.Engine) the run was configured with
    # a sweep trial's pruning hook, passed in by the runner (``sandbox.run(..., report=hook)``);
    # None outside a sweep
    report_hook: ReportHook | None = None

    def report(self, name: str, value: float, step: int) -> None:
        """Report an intermediate value (e.g. ``train_loss`` at ``step`` tokens) to a sweep's
        trial, if any. Raises ``Pruned`` when the trial's pruner says stop."""
        if self.report_hook is not None:
            self.report_hook(name, value, step)

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Any]:
        """``with env.progress(n, "training") as advance: advance(k)`` shows a progress bar."""
        if not self.show_progress or not console.is_terminal:  # no bars in logs and pipes
            yield lambda n=1: None
            return
        columns = [TextColumn(f"[bold]{self.name}[/] {description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, transient=True, console=console) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)


class Step:
    outputs: ClassVar[tuple[str, ...]] = ()
    # Parameters or inputs (dotted names) that name files or directories the step reads besides
    # its upstream steps' outputs: a script, an environment spec, a model dir. Their contents are
    # part of the step's identity, so a changed file is re-run, never silently resumed. Every
    # `path` key is covered without being named here.
    reads: ClassVar[tuple[str, ...]] = ()
    # True for steps whose result depends on the run's seed in a way worth repeating (training a
    # model): with `seeds=N` such a step, and every step that reads it, runs once per seed.
    seeded: ClassVar[bool] = False

    def run(self, env: StepEnv, **inputs: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
