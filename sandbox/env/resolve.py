"""``python -m sandbox.env check NAME --resolve``: can a spec's packages be installed together on
its target machine? The package index answers, through ``uv pip compile``; nothing is installed.

Resolved together, as the setup leaves them: the git checkout's requirements file
(``git.requirements``, read from its shipped copy ``git.requirements_copy``, else fetched at the
pinned commit with the spec's patch applied), ``requirements``, ``editable`` and
``no_build_isolation``, with ``overrides`` applied as the setup applies them. ``no_deps``
packages are installed without their dependencies, so they are only looked up, on their own (at
the version resolved with the rest where that meets their pin: pip keeps an installed one).
The target is Linux x86_64 (``x86_64-manylinux_2_28``: PyPI's Linux torch wheels there are the
CUDA builds) and the spec's ``python`` (default: this one).

What it cannot prove: a ``no_build_isolation`` package (flash-attn) is an sdist whose metadata
only a build against the installed torch gives. The check finds its pinned version on the index
and resolves it with no dependencies of its own (uv's ``dependency-metadata``); its compilation
(CUDA, a compiler, the prebuilt wheel its setup.py downloads from GitHub) is not checked. Other
sdists are built in isolation for their metadata, as pip would. With ``inherit_packages`` the
sandbox's own packages are not part of the resolution (the environment's win where both exist).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.assets.download import download
from sandbox.env.spec import EnvSpec
from sandbox.errors import ConfigError

PLATFORM = "x86_64-manylinux_2_28"
TARGET = "Linux x86_64 (manylinux_2_28)"
TIMEOUT = 1800.0  # sdists built for their metadata (deepspeed, mmcv-full) take minutes
MAX_EXPLANATION = 1200  # characters of uv's explanation kept in the paragraph
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_INCLUDE = re.compile(r"\s*(?:-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)")
_GITHUB = re.compile(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?")
_OFFLINE = re.compile(r"dns error|error sending request|failed to fetch|client error \(connect\)"
                      r"|could not connect|connection refused|network is unreachable|timed out",
                      re.IGNORECASE)


@dataclass(frozen=True)
class Resolution:
    ok: bool
    python: str                  # the target's major.minor
    message: str                 # one paragraph: what resolved, or why not and what to change
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version (uv's output)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The canonical project name of a requirement line; None for options, paths and comments."""
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith(("#", "-", ".", "/")) or "://" in line.split("@", 1)[0]:
        return None
    m = _NAME.match(line)
    return canonical(m.group(1)) if m else None


def exact_version(line: str) -> str | None:
    """``X`` of a requirement pinned ``name==X`` (no wildcard, no other specifier), else None."""
    m = re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?\s*==\s*([^\s,;*]+)\s*",
                     line.split(" #", 1)[0])
    return m.group(1) if m else None


def target_python(spec: EnvSpec) -> str:
    if spec.python:
        return ".".join(spec.python.split(".")[:2])
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def uv_program() -> str:
    """``uv`` from PATH or beside this Python, or a ConfigError saying how to get it."""
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise ConfigError(f"`python -m sandbox.env check NAME --resolve` asks `uv pip compile` "
                          f"whether a spec's packages resolve, and `uv` is neither on PATH nor "
                          f"beside {sys.executable}. Install it with `pip install uv` (or see "
                          f"https://docs.astral.sh/uv/), then run the check again; it installs "
                          f"nothing else.")
    return found


def resolve(spec: EnvSpec, *, uv: str | None = None, timeout: float = TIMEOUT) -> Resolution:
    """Resolve ``spec``'s packages for its target against the index (see the module's text)."""
    uv = uv or uv_program()
    python = target_python(spec)
    with tempfile.TemporaryDirectory(prefix="sandbox-resolve-") as tmp:
        tmp = Path(tmp)
        sources: dict[str, list[str]] = {}  # spec key -> its requirement lines, to name the key
        lines: list[str] = []
        if spec.git is not None and spec.git.requirements:
            top, by_file = git_requirements(spec, tmp / "checkout")
            lines.append(f"-r {top}")
            sources["git.requirements"] = [f"{rel}: {line}" for rel, got in by_file.items()
                                           for line in got]
        for key in ("requirements", "no_build_isolation"):
            lines += getattr(spec, key)
            sources[key] = list(getattr(spec, key))
        if spec.editable is not None:
            lines.append(f"-e {spec.editable}")
        infile = tmp / "requirements.in"
        infile.write_text("".join(f"{line}\n" for line in lines))
        options = []
        if spec.no_build_isolation:
            config = tmp / "uv.toml"
            config.write_text(dependency_metadata(spec.no_build_isolation))
            options += ["--config-file", str(config)]
        if spec.overrides:
            overrides = tmp / "overrides.txt"
            overrides.write_text("".join(f"{line}\n" for line in spec.overrides))
            options += ["--overrides", str(overrides)]
            sources["overrides"] = list(spec.overrides)
        code, out, err = _compile(uv, infile, python, options, timeout)
        if code != 0:
            return Resolution(False, python, _failure(spec, python, err, sources, code, timeout))
        pins = parse_pins(out)
        found: dict[str, str] = {}
        if spec.no_deps:  # installed --no-deps: only whether each exists for the target
            alone = tmp / "no_deps.in"
            alone.write_text("".join(f"{line}\n" for line in spec.no_deps))
            # an installed version that meets the pin stays (`pip install --no-deps xformers`
            # keeps the xformers the requirements brought); one that does not is replaced
            installed = tmp / "installed.txt"
            installed.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()
                                         if not v.startswith("@")))
            code, out, err = _compile(uv, alone, python, ["--no-deps", "-c", str(installed)],
                                      timeout)
            if code != 0:
                code, out, err = _compile(uv, alone, python, ["--no-deps"], timeout)
            if code != 0:
                return Resolution(False, python, _failure(
                    spec, python, err, {"no_deps": list(spec.no_deps)}, code, timeout))
            found = parse_pins(out)
    return Resolution(True, python, _success(spec, python, pins, found), pins)


def dependency_metadata(requirements: tuple[str, ...]) -> str:
    """A uv.toml giving each ``no_build_isolation`` package empty metadata, so that uv looks its
    version up on the index without building it (an isolated build of flash-attn fails: its
    setup.py imports torch)."""
    out = []
    for line in requirements:
        name = requirement_name(line)
        if name is None:
            raise ConfigError(f"`no_build_isolation` entry {line!r} is not a package requirement "
                              f"that `check --resolve` can look up; write it as `name==version`.")
        version = exact_version(line)
        out.append(f"[[dependency-metadata]]\nname = \"{name}\"\n"
                   + (f"version = \"{version}\"\n" if version else "") + "requires-dist = []\n")
    return "\n".join(out)


def _compile(uv: str, infile: Path, python: str, options: list[str],
             timeout: float) -> tuple[int | None, str, str]:
    argv = [uv, "pip", "compile", str(infile), "--python-version", python, "--python-platform",
            PLATFORM, "--no-header", "--no-annotate", "--no-python-downloads", *options]
    env = {**os.environ, "NO_COLOR": "1"}  # plain text to parse
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        return None, "", err or ""
    return done.returncode, done.stdout, done.stderr


def parse_pins(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of ``uv pip compile``'s output (``name==X`` lines; a direct
    reference keeps its ``@ URL``)."""
    pins = {}
    for line in text.splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(==\s*(\S+)|@\s*(\S+))", line)
        if m:
            pins[canonical(m.group(1))] = m.group(3) or f"@ {m.group(4)}"
    return pins


def explanation(stderr: str) -> str:
    """uv's error and hints as one line: its warnings dropped, a failed build's captured output
    cut to its last exception line, a hint to its first paragraph, ``cause:`` prefixes and a
    terminal's tree drawing removed, at most ``MAX_EXPLANATION`` characters."""
    blocks: list[list[str]] = []
    for line in stderr.splitlines():
        if re.match(r"(warning|error|hint):", line) or not blocks:
            blocks.append([line])
        else:
            blocks[-1].append(line)
    kept = []
    for block in blocks:
        if block[0].startswith("warning:"):
            continue
        if block[0].startswith("hint:") and "" in block:
            block = block[:block.index("")]
        lines, captured = [], None
        for line in block:
            if line.strip() in ("[stderr]", "[stdout]"):
                captured = []
            elif captured is not None and line.strip():
                captured.append(line.strip())
            elif captured is not None:  # the end of a build's captured output
                lines += _last_exception(captured)
                captured = None
            else:
                lines.append(line)
        if captured:
            lines += _last_exception(captured)
        kept.append(" ".join(lines))
    text = " ".join(kept) if kept else stderr
    text = re.sub(r"[×╰─▶│├]+", " ", text)
    text = re.sub(r"\b(error|cause|Caused by):\s*", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"(resolving dependencies):? (?=Because)", r"\1: ", text)
    if len(text) > MAX_EXPLANATION:
        text = text[:MAX_EXPLANATION].rsplit(" ", 1)[0] + " [...]"
    return text


def _last_exception(lines: list[str]) -> list[str]:
    """The last ``SomeError: ...`` line of a build's output (else its last line), bracketed."""
    found = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Exit)\b", line)]
    return [f"({(found or lines)[-1]})"]


def named_keys(text: str, sources: dict[str, list[str]]) -> dict[str, list[str]]:
    """``{spec key: its lines}`` for the requirement lines whose package ``text`` mentions."""
    lowered = text.lower()
    out: dict[str, list[str]] = {}
    for key, lines in sources.items():
        for line in lines:
            name = requirement_name(line.split(": ", 1)[-1] if key == "git.requirements" else line)
            if name and re.search(rf"(?<![a-z0-9._-]){re.escape(name)}(?![a-z0-9_-])", lowered):
                out.setdefault(key, []).append(line.strip())
    return out


def _failure(spec: EnvSpec, python: str, stderr: str, sources: dict[str, list[str]],
             code: int | None, timeout: float) -> str:
    head = f"{spec.source}: `{spec.name}` does not resolve for {TARGET}, Python {python}"
    text = explanation(stderr)
    if code is None:
        said = f" ({text})" if text else ""
        return (f"{head}: `uv pip compile` did not finish within {timeout:.0f} s{said}. Run it "
                f"again (the sdists it built are cached), or give it more time.")
    if "no solution found" not in text.lower() and _OFFLINE.search(stderr):
        return (f"{spec.source}: could not ask the package index whether `{spec.name}` "
                f"resolves ({text}). The check needs PyPI (or the index UV_INDEX_URL names) "
                f"through `uv`; run it where that is reachable. Nothing was decided about the "
                f"spec.")
    named = named_keys(text, sources)
    where = "; ".join(f"`{key}` ({', '.join(lines)})" for key, lines in named.items())
    if not named:
        fix = (f"Change the pins in `{'`, `'.join(sources)}` of {spec.source} until it resolves "
               f"(`uv pip compile` shows the same explanation).")
    else:
        fix = f"The packages it names come from {where}: change them in {spec.source}"
        if "git.requirements" in named:
            fix += (" (the checkout's file is fixed by `git.commit`: move the commit, or choose "
                    "`requirements` pins that it accepts)")
        fix += ", and run the check again."
    return f"{head}: {text} {fix}"


def _success(spec: EnvSpec, python: str, pins: dict[str, str], found: dict[str, str]) -> str:
    names = [n for n in (requirement_name(r) for r in (*spec.requirements,
                                                       *spec.no_build_isolation)) if n]
    if "torch" in pins and "torch" not in names:
        names.insert(0, "torch")
    shown = ", ".join(f"{n}=={pins[n]}" for n in dict.fromkeys(names) if n in pins)
    text = (f"{spec.name}: resolves for {TARGET}, Python {python}: {len(pins)} packages"
            + (f" ({shown})" if shown else ""))
    if found:
        alone = ", ".join(f"{n}=={v}" for n, v in found.items())
        text += f"; installed without dependencies: {alone}"
    if spec.no_build_isolation:
        text += (f"; {', '.join(spec.no_build_isolation)} found on the index, but built from "
                 f"source at setup: that build and its own dependencies are not checked")
    if spec.inherit_packages:
        text += "; the sandbox's own packages beneath it are not part of this resolution"
    return text + ". Nothing was installed."


# ------------------------------------------------------------------ the checkout's requirements
def git_requirements(spec: EnvSpec, workdir: Path) -> tuple[Path, dict[str, list[str]]]:
    """The checkout's requirements file (its shipped copy, else fetched into ``workdir``) and
    ``{file relative to the top one's folder: its requirement lines}`` over its ``-r``/``-c``
    includes."""
    git = spec.git
    assert git is not None and git.requirements
    if git.requirements_copy is not None:
        top = git.requirements_copy
    else:
        top = _fetch_requirements(spec, workdir)
    by_file: dict[str, list[str]] = {}
    pending = [top]
    while pending:
        path = pending.pop(0)
        rel = os.path.relpath(path, top.parent)
        if rel in by_file:
            continue
        if not path.is_file():
            raise ConfigError(f"{spec.source}: the requirements file {path} (included from "
                              f"`git.requirements`) does not exist; copy it beside "
                              f"`git.requirements_copy` as the checkout has it at "
                              f"{git.commit}.")
        by_file[rel] = []
        for line in path.read_text().splitlines():
            include = _INCLUDE.match(line)
            if include:
                pending.append(path.parent / include.group(1))
            elif requirement_name(line):
                by_file[rel].append(line.strip())
    return top, by_file


def _fetch_requirements(spec: EnvSpec, workdir: Path) -> Path:
    """``git.requirements`` and what it includes, from the repository at ``git.commit``, into
    ``workdir`` (as the checkout lays them out), with ``git.patch`` applied to them."""
    git = spec.git
    assert git is not None and git.requirements
    fetched: list[str] = []
    pending = [git.requirements]
    while pending and len(fetched) < 50:
        rel = os.path.normpath(pending.pop(0))
        if rel in fetched:
            continue
        target = workdir / rel
        _fetch_file(spec, rel, target)
        fetched.append(rel)
        for line in target.read_text().splitlines():
            include = _INCLUDE.match(line)
            if include:
                pending.append(os.path.join(os.path.dirname(rel), include.group(1)))
    if git.patch is not None:
        _patch(spec, workdir, fetched)
    return workdir / os.path.normpath(git.requirements)


def _fetch_file(spec: EnvSpec, rel: str, target: Path) -> None:
    git = spec.git
    assert git is not None
    ship = (f"Ship the file beside the spec instead, verbatim as the checkout has it at "
            f"{git.commit} (after `git.patch`), and name it with `git.requirements_copy`")
    github = _GITHUB.fullmatch(git.url)
    if github:
        url = (f"https://raw.githubusercontent.com/{github.group(1)}/{github.group(2)}/"
               f"{git.commit}/{rel}")
        try:
            download(url, target, progress=False)
        except Exception as e:  # offline, moved, refused: one paragraph
            raise ConfigError(f"{spec.source}: `check --resolve` reads `{rel}` of the checkout "
                              f"(`git.requirements`), and fetching {url} failed ({e}). {ship}; "
                              f"or run it where GitHub is reachable.") from None
        return
    local = git.url.removeprefix("file://")
    if not Path(local).is_dir():
        raise ConfigError(f"{spec.source}: `check --resolve` reads `{rel}` of the checkout "
                          f"(`git.requirements`) without cloning it, which it can do for GitHub "
                          f"and local repositories only, and {git.url} is neither. {ship}.")
    done = subprocess.run(["git", "-C", local, "show", f"{git.commit}:{rel}"],
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ConfigError(f"{spec.source}: `check --resolve` could not read `{rel}` at "
                          f"{git.commit} in {local}: {done.stderr.decode(errors='replace').strip()}"
                          f". Check `git.commit` and `git.requirements`, or {ship[0].lower()}"
                          f"{ship[1:]}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(done.stdout)


def _patch(spec: EnvSpec, workdir: Path, files: list[str]) -> None:
    """Apply what ``git.patch`` changes in ``files`` (the setup applies it before installing)."""
    git = spec.git
    assert git is not None and git.patch is not None
    patch = git.patch
    if isinstance(patch, str):
        try:
            download(patch, workdir.parent / "patch.diff", progress=False)
        except Exception as e:
            raise ConfigError(f"{spec.source}: `check --resolve` applies `git.patch` to the "
                              f"fetched `{git.requirements}`, and fetching {patch} failed ({e}). "
                              f"Ship the patched file as `git.requirements_copy`.") from None
        patch = workdir.parent / "patch.diff"
    # its own repository, so that `git apply` takes paths from here even inside another one
    subprocess.run(["git", "init", "-q", str(workdir)], capture_output=True, check=False)
    done = subprocess.run(["git", "apply", *(f"--include={f}" for f in files), str(patch)],
                          cwd=workdir, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ConfigError(f"{spec.source}: `git.patch` ({patch}) does not apply to the fetched "
                          f"{', '.join(files)} at {git.commit}: "
                          f"{done.stderr.decode(errors='replace').strip()}. Fix the patch or the "
                          f"commit.")
