"""Creating an environment once, and running programs inside it.

``ensure(spec)`` builds ``spec.folder()`` unless it is already complete: a marker file written
last says so, so a creation that crashed half-way (Ctrl-C during a pip install) is redone from
scratch on the next call. A file lock keeps two processes (parallel sweep trials) from building
the same environment at once. Every setup command goes through ``sandbox.programs.run_program``
with its own log file, so a failed install is one paragraph with its last lines and log path.

``run(spec, argv, ...)`` runs an argument list with the environment's ``bin`` first on PATH
(``conda``: through ``<tool> run -p ENV``, which also applies the packages' activation scripts)."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import site
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterable, Mapping

from sandbox.assets.download import download
from sandbox.env.spec import EnvSpec
from sandbox.errors import ConfigError, SandboxError
from sandbox.programs import LineParser, ProgramError, ProgramResult, run_program

MARKER = ".sandbox-env-ready"
CONDA_TOOLS = ("micromamba", "mamba", "conda")
SETUP_TIMEOUT = 3 * 3600.0  # a large stack (torch, CUDA wheels) can take long; never forever
# pip's chatter that only slows installs down or waits for input
_QUIET_PIP = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


class EnvNotReadyError(SandboxError):
    """An environment a step needs has not been set up."""


def is_ready(spec: EnvSpec, root: str | Path | None = None) -> bool:
    return (spec.folder(root) / MARKER).is_file()


def missing_weights(spec: EnvSpec, root: str | Path | None = None) -> list[str]:
    """One line per file of ``spec.weights`` that is not in place: the file, what it is, the
    folder it belongs in and where to get it (its programs read local paths only)."""
    base = source_dir(spec, root) or spec.editable or Path.cwd()
    out = []
    for w in spec.weights:
        path = Path(w["path"]).expanduser()
        path = path if path.is_absolute() else Path(base) / path
        if not path.exists():
            what = f" ({w['what']})" if w.get("what") else ""
            source = f"; get it from {w['source']}" if w.get("source") else ""
            out.append(f"`{path.name}`{what} belongs in {path.parent}/{source}")
    return out


def source_dir(spec: EnvSpec, root: str | Path | None = None) -> Path | None:
    """Where the spec's git repository is checked out (a ``cwd`` for its scripts), if it has one."""
    return None if spec.git is None else spec.folder(root) / "src" / spec.git.folder_name


def bin_dir(spec: EnvSpec, root: str | Path | None = None) -> Path:
    return spec.folder(root) / "bin"


def conda_tool() -> str:
    """The first of micromamba, mamba, conda on PATH, or a ConfigError saying how to get one."""
    for tool in CONDA_TOOLS:
        found = shutil.which(tool)
        if found:
            return found
    raise ConfigError(
        "`kind: conda` needs micromamba, mamba or conda on PATH, and none was found. Install "
        "micromamba (one static binary): `\"${SHELL}\" <(curl -L micro.mamba.pm/install.sh)` "
        "(see https://mamba.readthedocs.io), or Miniforge from "
        "https://github.com/conda-forge/miniforge, then open a new shell; or use `kind: venv` "
        "or `kind: uv` in the environment spec if the stack needs nothing outside pip.")


def uv_tool() -> str:
    """``uv`` from PATH or beside this Python (``pip install uv`` puts it there)."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise ConfigError("`kind: uv` needs the `uv` program, and it is neither on PATH nor beside "
                          f"{sys.executable}. Install it with `pip install uv` (or see "
                          "https://docs.astral.sh/uv/), or use `kind: venv`.")
    return found


def ensure(spec: EnvSpec, log: str | Path | None = None, root: str | Path | None = None) -> Path:
    """The environment's folder, created first unless a complete one exists.

    ``log`` is the folder for the setup logs (one file per command; default: ``<folder>.logs``)."""
    folder = spec.folder(root)
    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    log_dir = Path(log) if log is not None else folder.with_name(folder.name + ".logs")

    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if (folder / MARKER).is_file():
            return folder
        if folder.exists():  # a creation that did not finish: start again from nothing
            shutil.rmtree(folder)
        started = time.monotonic()
        _Builder(spec, folder, log_dir).build()
        marker = {"name": spec.name, "spec": spec.identity(), "source": spec.source,
                  "created": time.time(), "seconds": round(time.monotonic() - started, 1)}
        # written last: its presence means every step above finished
        (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return folder


def remove(spec: EnvSpec, root: str | Path | None = None) -> bool:
    """Delete the environment (and its setup logs); False when there was none."""
    folder = spec.folder(root)
    existed = folder.exists()
    for path in (folder, folder.with_name(folder.name + ".logs")):
        if path.exists():
            shutil.rmtree(path)
    folder.with_name(folder.name + ".lock").unlink(missing_ok=True)
    return existed


def run(spec: EnvSpec, argv: Iterable[str], *, log_path: str | Path, cwd: str | Path | None = None,
        env_vars: Mapping[str, str] | None = None, timeout: float | None = None,
        parsers: Iterable[LineParser] = (), expected_outputs: Iterable[str | Path] = (),
        root: str | Path | None = None, **options) -> ProgramResult:
    """Run ``argv`` inside the (ready) environment; see ``sandbox.programs.Program`` for the rest.

    A failure (non-zero exit, timeout, Ctrl-C) raises ``ProgramError``; so does a program that
    exits 0 but leaves one of ``expected_outputs`` missing (some tools report failure only so)."""
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("run needs a command: argv is empty.")
    folder = spec.folder(root)
    if not (folder / MARKER).is_file():
        raise EnvNotReadyError(
            f"the environment `{spec.name}` ({spec.source}) is not set up: {folder} has no "
            f"completed installation. Build it with `python -m sandbox.env setup {spec.name}` "
            f"(or `sandbox.env.manager.ensure(spec)`), then run again.")
    env = dict(env_vars or {})
    if spec.kind == "conda":
        argv = [conda_tool(), "run", "-p", str(folder), *argv]
    else:
        binaries = folder / "bin"
        if (binaries / argv[0]).exists() and "/" not in argv[0]:
            argv[0] = str(binaries / argv[0])  # `python` means this environment's python
        env.setdefault("PATH", f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}")
        env.setdefault("VIRTUAL_ENV", str(folder))
    result = run_program(argv, log_path=log_path, cwd=cwd, env=env, timeout=timeout,
                         parsers=parsers, **options).check()
    return result.check_outputs(expected_outputs, None if cwd is None else Path(cwd))


class _Builder:
    """The setup commands of one spec, in order, each logged to ``log_dir/NN-what.log``."""

    def __init__(self, spec: EnvSpec, folder: Path, log_dir: Path):
        self.spec, self.folder, self.log_dir = spec, folder, log_dir
        self.python = folder / "bin" / "python"
        self._count = 0

    def build(self) -> None:
        spec = self.spec
        self._create()
        if spec.inherit_packages:
            self._inherit()
        if spec.git is not None:
            checkout = self.folder / "src" / spec.git.folder_name
            self._step("git-clone", ["git", "clone", "--no-checkout", spec.git.url, str(checkout)])
            self._step("git-checkout", ["git", "-C", str(checkout), "checkout", "--detach",
                                        spec.git.commit])
            if spec.git.patch is not None:
                patch = spec.git.patch
                if isinstance(patch, str):  # a pinned URL: fetched into the environment's folder
                    patch = self.folder / "src" / "patch.diff"
                    self._download(spec.git.patch, patch)
                self._step("git-apply", ["git", "-C", str(checkout), "apply", str(patch)])
            if spec.git.requirements:
                self._pip("git-requirements", "-r", str(checkout / spec.git.requirements))
            if spec.git.install:
                self._pip("git-install", str(checkout))
        # after the checkout's own requirements: packages that build against them (deepspeed
        # needs torch) and --no-deps ones that would otherwise drag in conflicting pins
        if spec.requirements:
            self._pip("requirements", *spec.requirements)
        if spec.no_deps:
            self._pip("no-deps", "--no-deps", *spec.no_deps)
        if spec.editable is not None:
            self._pip("editable", "-e", str(spec.editable))
        # last: source builds that import installed packages (flash-attn's setup.py imports
        # torch), which an isolated build environment would not have
        if spec.no_build_isolation:
            self._pip("no-build-isolation", "--no-build-isolation", *spec.no_build_isolation)

    def _download(self, url: str, target: Path) -> None:
        try:
            download(url, target)
        except Exception as e:  # offline, moved, refused: one paragraph, the URL and a way out
            raise ProgramError(f"setting up the environment `{self.spec.name}` "
                               f"({self.spec.source}) failed fetching its patch {url}: {e}. "
                               f"Download it by hand and set `git.patch` to the file's path.")

    def _create(self) -> None:
        spec, folder = self.spec, str(self.folder)
        if spec.kind == "venv":
            self._step("create", [_venv_python(spec), "-m", "venv", folder])
        elif spec.kind == "uv":
            python = ["--python", spec.python] if spec.python else ["--python", sys.executable]
            self._step("create", [uv_tool(), "venv", *python, folder])
        else:
            tool = conda_tool()
            version = f"python={spec.python}" if spec.python else \
                f"python={sys.version_info.major}.{sys.version_info.minor}"
            channel = ["-c", "conda-forge"] if Path(tool).name == "micromamba" else []
            self._step("create", [tool, "create", "-y", "-p", folder, *channel, version, "pip"])

    def _inherit(self) -> None:
        """Make the sandbox's own packages importable beneath the environment's: a ``.pth`` file
        that adds this interpreter's site folders *after* the environment's own (its packages
        win where both have one; their ``.pth`` files are processed too). A venv's
        ``--system-site-packages`` would show the base Python's packages instead, not these."""
        if self.spec.python not in (None, f"{sys.version_info.major}.{sys.version_info.minor}"):
            raise ConfigError(f"{self.spec.source}: `inherit_packages: true` needs the sandbox's "
                              f"Python version ({sys.version_info.major}.{sys.version_info.minor}); "
                              f"drop `python:` or the inheritance.")
        purelib = Path(sysconfig.get_path("purelib", vars={"base": str(self.folder),
                                                           "platbase": str(self.folder)}))
        dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
        lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs)
        purelib.mkdir(parents=True, exist_ok=True)
        (purelib / "zz_sandbox_inherited.pth").write_text(lines)

    def _pip(self, what: str, *args: str) -> None:
        if self.spec.kind == "uv":  # `uv venv` makes no pip
            overrides = []
            if self.spec.overrides:  # on every install, so that no later step undoes them
                path = self.folder / "overrides.txt"
                path.write_text("".join(f"{line}\n" for line in self.spec.overrides))
                overrides = ["--overrides", str(path)]
            self._step(what, [uv_tool(), "pip", "install", "--python", str(self.python),
                              *overrides, *args])
        else:
            self._step(what, [str(self.python), "-m", "pip", "install", *args])

    def _step(self, what: str, argv: list[str]) -> None:
        self._count += 1
        log_path = self.log_dir / f"{self._count:02d}-{what}.log"
        try:
            run_program(argv, log_path=log_path, env=_QUIET_PIP, timeout=SETUP_TIMEOUT).check()
        except ProgramError as e:
            raise ProgramError(f"setting up the environment `{self.spec.name}` "
                               f"({self.spec.source}) failed at `{what}`: {e}", e.result) from None


def _venv_python(spec: EnvSpec) -> str:
    """The interpreter that makes a ``venv``: this one, or ``pythonX.Y`` from PATH."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if spec.python is None or spec.python in (here, f"{here}.{sys.version_info.micro}"):
        return sys.executable
    found = shutil.which(f"python{spec.python}")
    if not found:
        raise ConfigError(
            f"{spec.source}: `python: \"{spec.python}\"` needs `python{spec.python}` on PATH for a "
            f"`kind: venv` environment, and there is none (this is Python {here}). Install that "
            f"Python, or use `kind: uv` (uv fetches the interpreter itself) or `kind: conda`.")
    return found
