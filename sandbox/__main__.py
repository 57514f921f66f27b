"""``python -m sandbox [overrides]``: the Hydra command line around ``sandbox.run``."""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.get().mode == RunMode.RUN and not cfg.get("resume"):
        # a big data file is parsed from now on (or since the start, read_ahead_from_overrides),
        # while the runner is imported and set up
        from sandbox.data.io import arrow_without_pandas
        from sandbox.data.stream import read_ahead_pool

        arrow_without_pandas()
        read_ahead_pool(cfg.get("data_pool"))
    elif "sandbox.data.stream" in sys.modules:  # a guess from the command line: not needed
        sys.modules["sandbox.data.stream"].stop_read_aheads()
    # imported here, not at the top: `--help` and Hydra's other informational commands never
    # need the runner, and answer in a fraction of the time
    from sandbox.cli.experiment import main as run_experiment

    return run_experiment(cfg)


def read_ahead_early(argv: list[str]) -> None:
    """Start parsing the data file that the command line names (``data_pool.path=``) before
    Hydra composes the config (``sandbox.data.stream.read_ahead_from_overrides``); pyarrow is
    imported only where the command line names one."""
    if any(arg.lstrip("+").startswith("data_pool.path=") for arg in argv):
        from sandbox.data.stream import read_ahead_from_overrides

        read_ahead_from_overrides(argv)


def quick_help(argv: list[str]) -> str | None:
    """The text of Hydra's ``--help`` for ``argv`` (the config groups of ``conf/``, then the
    composed config), or None where Hydra should answer (other flags than ``--help``/``-h``, or
    overrides that do not compose).
    Hydra lists the groups by copying its whole config repository once per group (~2 s here),
    while one composition takes ~0.3 s; the text is the same (``tests/test_startup.py``)."""
    flags = [a for a in argv if a.startswith("-")]
    if not flags or any(f not in ("--help", "-h") for f in flags):
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[a for a in argv if not a.startswith("-")])
    except Exception:  # a bad override: Hydra says so in its own words
        return None
    root = Path(CONFIG_DIR)
    groups = sorted(str(d.relative_to(root)) for d in root.rglob("*")
                    if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml")))
    listing = "\n".join(f"{g}: {', '.join(sorted(p.stem for p in (root / g).glob('*.yaml')))}"
                         for g in groups)
    return (f"sandbox is powered by Hydra.\n\n== Configuration groups ==\nCompose your "
            f"configuration from those groups (group=option)\n\n{listing}\n\n\n== Config ==\n"
            f"Override anything in the config (foo.bar=value)\n\n{OmegaConf.to_yaml(cfg)}\n\n"
            f"Powered by Hydra (https://hydra.cc)\nUse --hydra-help to view Hydra specific help"
            f"\n\n")


_SETS_MODE = re.compile(r"\bmode\s*[:=]\s*['\"]?(RUN|MULTIRUN)\b")
_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")


def mode_left_to_flags(overrides: list[str]) -> bool:
    """Whether ``hydra.mode`` can only come from the command line's flags: no override and no
    config file of ``conf/`` sets it, and no other config folder (searchpath, ``--config-dir``)
    is in play. Then Hydra's rule for a config that leaves it unset (``--multirun`` or not)
    gives the same mode as composing the whole config first to read it, which Hydra does on
    every run (~0.15 s) before it composes the config again to run it."""
    for arg in overrides:
        if arg.startswith(_CONFIG_FLAGS) or "searchpath" in arg or _SETS_MODE.search(arg) \
                or arg.lstrip("+~").startswith("hydra.mode"):
            return False
    for path in Path(CONFIG_DIR).rglob("*.yaml"):
        if _SETS_MODE.search(path.read_text(encoding="utf-8", errors="replace")):
            return False
    return True


def compose_once() -> None:
    """Skip Hydra's first composition (``Hydra.get_mode``) where ``mode_left_to_flags``: its
    answer is then "unset", and Hydra falls back to the flags itself."""
    from hydra._internal.hydra import Hydra

    get_mode = Hydra.get_mode

    def mode(self, config_name, overrides):
        return None if mode_left_to_flags(overrides) else get_mode(self, config_name, overrides)

    Hydra.get_mode = mode


def exit_now(code: object = 0) -> NoReturn:
    """End the process as ``sys.exit(code)`` would, without the interpreter's own teardown.

    Everything that must happen at exit happens first, in the interpreter's order: the
    non-daemon threads are joined, the ``atexit`` handlers run (multiprocessing's, MLflow's,
    logging's flush), and the standard streams are flushed. What is skipped is freeing every
    module and object one by one, which after a data run (numba's compiled code, Arrow's pools)
    takes ~0.4 s of a few-second command. Under a profiler or a tracer (``python -m cProfile -m
    sandbox``, coverage) it is ``sys.exit(code)``: those write their results after this returns."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        status = 1
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(status)


if __name__ == "__main__":
    text = quick_help(sys.argv[1:])
    try:
        if text is None:
            read_ahead_early(sys.argv[1:])
            compose_once()
            main()
        else:
            print(text)
    except SystemExit as e:
        exit_now(e.code)
    exit_now(0)
