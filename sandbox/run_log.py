"""The run's log file gets what the console shows.

Hydra writes a job's Python log records to ``<run dir>/sandbox.log`` (its ``job_logging``), but
the sandbox talks to the user through a rich console, so that file used to stay empty. While a
job runs, ``RunLogCallback`` (``hydra.callbacks.run_log`` in ``conf/config.yaml``) copies every
console line (step lines, tables, the search's lines) and every Python warning, as plain text,
to the log files Hydra configured for the job, and to nothing else: the console is not printed
twice. A job-logging config without a file (``hydra/job_logging=disabled``) simply gets nothing.
"""
from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from hydra.experimental.callback import Callback
from rich.console import Console, RenderHook
from rich.control import Control
from rich.text import Text

from sandbox.console import console

LOGGER_NAME = "sandbox.console"
LOG_WIDTH = 120  # tables are laid out for the file at this width


class _FileHandlersOfRoot(logging.Handler):
    """Hands records to the root logger's file handlers (Hydra's ``sandbox.log``), whichever
    they are when the record comes: Hydra configures them anew for every job."""

    def emit(self, record: logging.LogRecord) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)


def _logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _FileHandlersOfRoot) for h in logger.handlers):
        logger.addHandler(_FileHandlersOfRoot())
    logger.propagate = False  # the root's console handler must not print the line again
    logger.setLevel(logging.INFO)
    return logger


def plain_text(renderable: Any) -> str:
    """What ``renderable`` shows, without colours or markup."""
    if isinstance(renderable, Text):
        return renderable.plain
    if isinstance(renderable, str):
        return renderable
    buffer = io.StringIO()
    Console(file=buffer, width=LOG_WIDTH, color_system=None, force_terminal=False,
            highlight=False).print(renderable)
    return buffer.getvalue().rstrip("\n")


class _CopyToLog(RenderHook):
    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def process_renderables(self, renderables):
        for renderable in renderables:
            if isinstance(renderable, Control):  # cursor movements of live progress bars
                continue
            try:
                text = plain_text(renderable)
            except Exception:  # never let logging break the console
                continue
            if text.strip():
                self.logger.info(text)
        return renderables


class RunLog:
    """Copies the console and warnings to the run's log while active (``start``/``stop``)."""

    def __init__(self) -> None:
        self._hook: _CopyToLog | None = None
        self._showwarning = None

    def start(self) -> None:
        if self._hook is not None:
            return
        logger = _logger()
        self._hook = _CopyToLog(logger)
        console.push_render_hook(self._hook)
        shown = self._showwarning = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            shown(message, category, filename, lineno, file, line)  # the console, as before
            logger.warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)

        warnings.showwarning = showwarning

    def stop(self) -> None:
        if self._hook is None:
            return
        # hooks are a stack; ours may not be on top if a progress display is still live
        if console._render_hooks and console._render_hooks[-1] is self._hook:
            console.pop_render_hook()
        elif self._hook in console._render_hooks:
            console._render_hooks.remove(self._hook)
        warnings.showwarning = self._showwarning
        self._hook = self._showwarning = None


class RunLogCallback(Callback):
    """Hydra callback: the console and warnings go to the job's log while each job runs."""

    def __init__(self) -> None:
        self.run_log = RunLog()

    def on_job_start(self, config, **kwargs) -> None:
        self.run_log.start()

    def on_job_end(self, config, job_return, **kwargs) -> None:
        self.run_log.stop()
