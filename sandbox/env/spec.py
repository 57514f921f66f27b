"""What an environment is: its kind, Python, packages and sources, and the hash that names it.

An ``EnvSpec`` comes from a small mapping (``conf/env/NAME.yaml`` or a component's ``env:`` key):

    name: vbench            # the folder's prefix and what `python -m sandbox.env` calls it
    kind: venv              # venv | uv | conda
    python: "3.11"          # optional; default: the Python running the sandbox
    requirements: [...]     # pip requirement strings, installed together
    no_deps: [...]          # installed afterwards with --no-deps (packages whose pins lie)
    no_build_isolation: [...]  # installed last with --no-build-isolation: sdists whose build
                             # imports what is already installed (flash-attn imports torch)
    overrides: [...]        # `kind: uv` only: requirements that replace every package's own
                             # pin of that name (uv's --overrides), for published pins that
                             # contradict each other
    editable: path/to/repo  # a local checkout, `pip install -e`
    git: {url: ..., commit: <sha>, patch: file.patch, requirements: requirements.txt, install: true,
          requirements_copy: requirements/NAME/requirements.txt}  # the copy: that file verbatim
                             # at `commit`, beside the spec, read by `check --resolve`
    inherit_packages: false  # true: the sandbox's own packages (e.g. its torch) importable
                             # beneath the environment's, which win where both have one
    weights: [{path: models/x.safetensors, what: ..., source: URL}]  # files its programs read
                             # and never download (relative paths: in the git checkout); not
                             # in the hash, since they are placed after setup

The environment lives in ``<cache root>/envs/<name>-<hash>``; the hash covers everything that
changes what gets installed (the patch by its content), so editing a spec builds a new
environment beside the old one instead of silently reusing a stale one."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sandbox.cache import cache_root
from sandbox.errors import ConfigError
from sandbox.utils import sha256_file, stable_hash

KINDS = ("venv", "uv", "conda")
_KEYS = ("name", "kind", "python", "requirements", "no_deps", "no_build_isolation",
         "overrides", "editable", "git", "inherit_packages", "weights")
_WEIGHT_KEYS = ("path", "what", "source")
_GIT_KEYS = ("url", "commit", "patch", "requirements", "install", "requirements_copy")
_URL = re.compile(r"https?://\S+")
_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PYTHON = re.compile(r"3\.\d+(\.\d+)?")


@dataclass(frozen=True)
class GitSource:
    """A repository at a pinned commit, optionally patched, optionally pip-installed."""

    url: str
    commit: str
    patch: Path | str | None = None  # a file, or an https URL pinned by a commit in its path
    requirements: str | None = None  # a requirements file inside the checkout, installed after it
    install: bool = True  # False: a repo of scripts that is run from its folder, not installed
    patch_sha256: str | None = None  # read once, when the spec is read: the hash cannot drift
    # `requirements` verbatim at `commit`, shipped beside the spec, so that `check --resolve` can
    # read it without GitHub; not in the hash: the checkout's own file is what gets installed
    requirements_copy: Path | None = None

    @property
    def folder_name(self) -> str:
        """The clone's folder name (the repository's name, as `git clone` would pick it)."""
        tail = self.url.rstrip("/").rsplit("/", 1)[-1]
        return tail[:-4] if tail.endswith(".git") else tail


@dataclass(frozen=True)
class EnvSpec:
    name: str
    kind: str = "venv"
    python: str | None = None
    requirements: tuple[str, ...] = ()
    no_deps: tuple[str, ...] = ()
    no_build_isolation: tuple[str, ...] = ()  # last, built against the installed packages
    overrides: tuple[str, ...] = ()  # kind uv: replace every dependency's pin of these names
    editable: Path | None = None
    git: GitSource | None = None
    inherit_packages: bool = False
    weights: tuple[dict[str, str], ...] = ()  # {path, what, source}: files placed by hand
    source: str = field(default="<spec>", compare=False)  # where it was read, for messages

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<spec>",
                     base_dir: str | Path | None = None) -> "EnvSpec":
        """Validate ``data``; relative paths (``editable``, ``git.patch``) are taken from
        ``base_dir`` (the spec file's folder). Every problem is a one-paragraph ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: an environment spec must be a mapping with at least "
                              f"`name` and `kind` ({', '.join(KINDS)}); got {type(data).__name__}.")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown} in the environment spec. "
                              f"The keys are {list(_KEYS)}; fix the spelling or remove them.")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{source}: `name` must be a short folder-safe name (letters, digits, "
                              f"`_ . -`), e.g. `name: vbench`; got {name!r}.")
        kind = data.get("kind", "venv")
        if kind not in KINDS:
            raise ConfigError(f"{source}: `kind: {kind}` is not an environment kind; use one of "
                              f"{', '.join(KINDS)} (`conda` uses micromamba, mamba or conda, "
                              f"whichever is on PATH).")
        python = data.get("python")
        if python is not None:
            # unquoted, YAML reads 3.10 as the float 3.1: only a string says what was meant
            if not isinstance(python, str) or not _PYTHON.fullmatch(python):
                raise ConfigError(f"{source}: `python: {python}` is not a Python version; write it "
                                  f"quoted as major.minor, e.g. `python: \"3.10\"`.")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        editable = data.get("editable")
        if editable is not None:
            editable = _path(editable, base, source, "editable")
            if not editable.is_dir():
                raise ConfigError(f"{source}: `editable: {editable}` is not a folder. Give the path "
                                  f"of a local checkout (relative paths start at {base}).")
        inherit = data.get("inherit_packages", False)
        if not isinstance(inherit, bool):
            raise ConfigError(f"{source}: `inherit_packages` must be true or false; got "
                              f"{inherit!r}.")
        if inherit and kind == "conda":
            raise ConfigError(f"{source}: `inherit_packages: true` needs `kind: venv` or "
                              f"`kind: uv` (a conda environment has its own Python).")
        overrides = _strings(data.get("overrides"), source, "overrides")
        if overrides and kind != "uv":
            raise ConfigError(f"{source}: `overrides` needs `kind: uv` (uv's `--overrides`; pip "
                              f"has no way to replace a dependency's own pin); got `kind: "
                              f"{kind}`. Use `kind: uv`, or install the package with `no_deps`.")
        return cls(name=name, kind=kind, python=python, inherit_packages=inherit,
                   overrides=overrides,
                   requirements=_strings(data.get("requirements"), source, "requirements"),
                   no_deps=_strings(data.get("no_deps"), source, "no_deps"),
                   no_build_isolation=_strings(data.get("no_build_isolation"), source,
                                               "no_build_isolation"),
                   editable=editable, git=_git(data.get("git"), source, base), source=source,
                   weights=_weights(data.get("weights"), source))

    def identity(self) -> dict[str, Any]:
        """What decides the environment's content (the hash's input)."""
        git = None
        if self.git is not None:
            git = {"url": self.git.url, "commit": self.git.commit.lower(),
                   "install": self.git.install, "requirements": self.git.requirements,
                   "patch": self.git.patch_sha256 or (self.git.patch if isinstance(
                       self.git.patch, str) else None)}
        return {"kind": self.kind, "python": self.python, "requirements": list(self.requirements),
                "no_deps": list(self.no_deps),
                "editable": str(self.editable) if self.editable else None, "git": git,
                **({"no_build_isolation": list(self.no_build_isolation)}
                   if self.no_build_isolation else {}),
                **({"overrides": list(self.overrides)} if self.overrides else {}),
                **({"inherit_packages": True} if self.inherit_packages else {})}

    @property
    def hash(self) -> str:
        return stable_hash(self.identity(), n=12)

    def folder(self, root: str | Path | None = None) -> Path:
        """``<root>/<name>-<hash>``; ``root`` defaults to ``<cache root>/envs``."""
        return Path(root if root is not None else cache_root() / "envs") / f"{self.name}-{self.hash}"


def _weights(value: Any, source: str) -> tuple[dict[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(w, Mapping) and isinstance(w.get("path"), str) and w["path"].strip()
            and set(w) <= set(_WEIGHT_KEYS) and all(isinstance(v, str) for v in w.values())
            for w in value):
        raise ConfigError(f"{source}: `weights` must be a list of {{path: FILE, what: TEXT, "
                          f"source: URL}} (path required; relative paths start in the git "
                          f"checkout); got {value!r}.")
    return tuple(dict(w) for w in value)


def _strings(value: Any, source: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{source}: `{key}` must be a list of pip requirement strings, e.g. "
                          f"`{key}: [\"six==1.17.0\"]`; got {value!r}.")
    return tuple(value)


def _path(value: Any, base: Path, source: str, key: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{source}: `{key}` must be a path; got {value!r}.")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _git(value: Any, source: str, base: Path) -> GitSource | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: `git` must be a mapping like `git: {{url: ..., commit: "
                          f"<sha>, patch: fix.patch}}`; got {value!r}.")
    unknown = sorted(set(value) - set(_GIT_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} under `git`; the keys are "
                          f"{list(_GIT_KEYS)}.")
    url, commit = value.get("url"), value.get("commit")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{source}: `git.url` is missing; give the repository's clone URL "
                          f"(https://..., git@..., or file:///path for a local repository).")
    # a branch or tag moves; only a commit id makes the environment reproducible
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise ConfigError(f"{source}: `git.commit` must pin a commit id (7-40 hex characters, "
                          f"e.g. from `git rev-parse HEAD`), not a branch or tag; got {commit!r}.")
    patch = value.get("patch")
    if isinstance(patch, str) and _URL.fullmatch(patch):
        # fetched when the environment is built; the URL names a commit, so its content is fixed
        if not re.search(r"/[0-9a-fA-F]{40}/", patch):
            raise ConfigError(f"{source}: `git.patch: {patch}` must pin a commit in its path "
                              f"(e.g. raw.githubusercontent.com/OWNER/REPO/<40-hex sha>/FILE), "
                              f"so the environment cannot change under the same spec.")
    elif patch is not None:
        patch = _path(patch, base, source, "git.patch")
        if not patch.is_file():
            raise ConfigError(f"{source}: `git.patch: {patch}` does not exist. Give the path of a "
                              f"file made by `git diff` (relative paths start at {base}).")
    requirements = value.get("requirements")
    if requirements is not None and (not isinstance(requirements, str) or not requirements
                                     or Path(requirements).is_absolute()):
        raise ConfigError(f"{source}: `git.requirements` must be a requirements file's path "
                          f"inside the checkout, e.g. `requirements.txt`; got {requirements!r}.")
    install = value.get("install", True)
    if not isinstance(install, bool):
        raise ConfigError(f"{source}: `git.install` must be true or false; got {install!r}.")
    copy = value.get("requirements_copy")
    if copy is not None:
        if requirements is None:
            raise ConfigError(f"{source}: `git.requirements_copy` is a copy of the checkout's "
                              f"`git.requirements` file, and `git.requirements` is not set; set "
                              f"it (e.g. `requirements: requirements.txt`) or drop the copy.")
        copy = _path(copy, base, source, "git.requirements_copy")
        if not copy.is_file():
            raise ConfigError(f"{source}: `git.requirements_copy: {copy}` does not exist. Copy "
                              f"`{requirements}` from the checkout at commit {commit} there "
                              f"verbatim (relative paths start at {base}), or drop the key.")

    return GitSource(url=url, commit=commit, patch=patch, requirements=requirements,
                     install=install, requirements_copy=copy,
                     patch_sha256=sha256_file(patch) if isinstance(patch, Path) else None)
