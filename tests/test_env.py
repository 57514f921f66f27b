"""The environment manager: specs and their hash, real venv/uv environments built once, programs
run inside them with live line parsing, git sources at a pinned commit plus a patch, the CLI."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.env import EnvSpec, load_spec
from sandbox.env import manager
from sandbox.errors import ConfigError
from sandbox.programs import ProgramError
from sandbox.utils import stable_hash

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ specs
@pytest.mark.parametrize("data, words", [
    ({"name": "x", "kind": "docker"}, ["`kind: docker`", "venv, uv, conda"]),
    ({"name": "x", "requirement": ["six"]}, ["unknown key", "requirement"]),
    ({"name": "bad name"}, ["`name`", "'bad name'"]),
    ({"name": "x", "python": 3.1}, ["python: 3.1", "quoted"]),
    ({"name": "x", "requirements": "six"}, ["`requirements` must be a list"]),
    ({"name": "x", "git": {"url": "file:///r", "commit": "main"}}, ["git.commit", "not a branch"]),
    ({"name": "x", "git": {"commit": "abcdef1"}}, ["git.url", "file:///"]),
    ({"name": "x", "git": {"url": "u", "commit": "abcdef1", "patch": "no.patch"}},
     ["git.patch", "does not exist"]),
    ({"name": "x", "editable": "no/such/dir"}, ["`editable:", "not a folder"]),
    ({"name": "x", "git": {"url": "u", "commit": "abcdef1",
                           "patch": "https://example.com/main/fix.diff"}},
     ["must pin a commit in its path"]),
    ({"name": "x", "git": {"url": "u", "commit": "abcdef1", "requirements": "/abs/req.txt"}},
     ["git.requirements", "inside the checkout"]),
    ({"name": "x", "kind": "conda", "inherit_packages": True}, ["inherit_packages", "venv"]),
])
def test_bad_specs_say_which_key_and_how_to_fix(tmp_path, data, words):
    with pytest.raises(ConfigError) as info:
        EnvSpec.from_mapping(data, source="conf/env/x.yaml", base_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("conf/env/x.yaml: ") and "\n" not in message
    for word in words:
        assert word in message, message


def test_the_hash_names_the_folder_and_follows_what_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_CACHE", str(tmp_path / "cache"))
    patch = tmp_path / "fix.patch"
    patch.write_text("one\n")
    data = {"name": "demo", "requirements": ["six"],
            "git": {"url": "file:///r", "commit": "a" * 40, "patch": "fix.patch"}}
    spec = EnvSpec.from_mapping(data, base_dir=tmp_path)
    assert spec.folder() == tmp_path / "cache" / "envs" / f"demo-{spec.hash}"
    assert spec.hash == stable_hash(spec.identity(), n=12)
    assert EnvSpec.from_mapping(data, base_dir=tmp_path).hash == spec.hash  # stable
    assert EnvSpec.from_mapping({**data, "requirements": ["six==1.17.0"]},
                                base_dir=tmp_path).hash != spec.hash
    patch.write_text("two\n")  # the patch counts by content, not by name
    assert EnvSpec.from_mapping(data, base_dir=tmp_path).hash != spec.hash


def test_the_example_spec_in_conf_is_valid():
    spec = load_spec("six_demo")
    assert spec.kind == "venv" and spec.requirements == ("six==1.17.0",)
    with pytest.raises(ConfigError, match="no environment spec `nope`.*six_demo"):
        load_spec("nope")


# ------------------------------------------------------------------ conda, uv: missing tools
def test_conda_without_a_conda_tool_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    spec = EnvSpec.from_mapping({"name": "c", "kind": "conda"})
    with pytest.raises(ConfigError) as info:
        manager.ensure(spec, root=tmp_path / "envs")
    message = str(info.value)
    assert "micromamba, mamba or conda" in message and "micro.mamba.pm/install.sh" in message
    assert "\n" not in message
    assert not manager.is_ready(spec, root=tmp_path / "envs")


def test_conda_environments_run_through_the_tool_found_on_path(tmp_path, monkeypatch):
    """A stand-in `micromamba` records its arguments: creation is `create -p ENV`, running is
    `run -p ENV argv...` (conda's own activation), installs use the env's pip."""
    calls = tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "micromamba"
    fake.parent.mkdir()
    fake.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "create":
    prefix = sys.argv[sys.argv.index("-p") + 1]
    os.makedirs(prefix + "/bin")
    os.symlink({sys.executable!r}, prefix + "/bin/python")
if sys.argv[1] == "run":
    print("ran", *sys.argv[4:])
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    spec = EnvSpec.from_mapping({"name": "c", "kind": "conda", "python": "3.10"})
    folder = manager.ensure(spec, root=tmp_path / "envs")
    lines = []
    manager.run(spec, ["train", "--x", "it's"], log_path=tmp_path / "run.log",
                parsers=[lines.append], root=tmp_path / "envs")
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert recorded[0] == ["create", "-y", "-p", str(folder), "-c", "conda-forge",
                           "python=3.10", "pip"]
    assert recorded[1] == ["run", "-p", str(folder), "train", "--x", "it's"]  # no shell quoting
    assert lines == ["ran train --x it's"]


def _recording_tools(tmp_path, monkeypatch, *names):
    """Stand-ins for ``names`` (uv, git) on PATH that record their arguments in ``calls.jsonl``;
    ``uv venv DIR`` makes ``DIR/bin`` and ``git clone ... DIR`` makes ``DIR``."""
    calls, bin_dir = tmp_path / "calls.jsonl", tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        tool = bin_dir / name
        tool.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps([{name!r}, *sys.argv[1:]]) + "\\n")
if sys.argv[1] in ("venv", "clone"):
    os.makedirs(sys.argv[-1] + ("/bin" if sys.argv[1] == "venv" else ""))
""")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()]


def test_no_build_isolation_packages_are_installed_last_without_isolation(tmp_path, monkeypatch):
    """``no_build_isolation`` is its own pip call, after everything else (flash-attn's setup.py
    imports torch, which an isolated build does not see), and part of the hash."""
    recorded = _recording_tools(tmp_path, monkeypatch, "uv")
    data = {"name": "nbi", "kind": "uv", "requirements": ["torch==2.1.2", "setuptools"],
            "no_deps": ["x==1"], "no_build_isolation": ["flash-attn==2.3.6"]}
    spec = EnvSpec.from_mapping(data)
    folder = manager.ensure(spec, root=tmp_path / "envs")
    python = str(folder / "bin" / "python")
    assert [c[1:] for c in recorded()[1:]] == [
        ["pip", "install", "--python", python, "torch==2.1.2", "setuptools"],
        ["pip", "install", "--python", python, "--no-deps", "x==1"],
        ["pip", "install", "--python", python, "--no-build-isolation", "flash-attn==2.3.6"]]
    assert spec.hash != EnvSpec.from_mapping({**data, "no_build_isolation": []}).hash
    # a spec without the key keeps the hash it had before the key existed
    plain = EnvSpec.from_mapping({"name": "p", "requirements": ["six"]})
    assert "no_build_isolation" not in plain.identity()
    with pytest.raises(ConfigError, match="`no_build_isolation` must be a list"):
        EnvSpec.from_mapping({"name": "x", "no_build_isolation": "flash-attn"})


def test_internvl_builds_torch_before_flash_attn_without_isolation(tmp_path, monkeypatch):
    """conf/env/internvl.yaml, with stand-in uv and git: the checkout's
    requirements/internvl_chat.txt (the whole requirements.txt adds the segmentation demo's
    mmcv-full 1.6.2, whose build fails), then the pinned torch (that file says `torch>=2`,
    `torchvision>=0.15`) with the build tools (setuptools<70: torch 2.1's cpp_extension imports
    `packaging` from pkg_resources), then `flash-attn==2.3.6 --no-build-isolation` (InternVL's
    INSTALLATION.md; Data-Juicer's intervl_coco_captioning/model_hooks.py)."""
    recorded = _recording_tools(tmp_path, monkeypatch, "uv", "git")
    spec = load_spec("internvl")
    folder = manager.ensure(spec, root=tmp_path / "envs")
    checkout = folder / "src" / "InternVL"
    installs = [c[5:] for c in recorded() if c[:3] == ["uv", "pip", "install"]]
    assert installs[0] == ["-r", str(checkout / "requirements" / "internvl_chat.txt")]
    assert "torch==2.1.2" in installs[1] and "torchvision==0.16.2" in installs[1]
    assert {"setuptools<70", "wheel", "packaging", "ninja"} <= set(installs[1])
    assert installs[-1] == ["--no-build-isolation", "flash-attn==2.3.6"]
    assert not any("flash-attn" in a for c in installs[:-1] for a in c)


def test_trinity_installs_its_vllm_extra_and_flash_attn_without_isolation(tmp_path, monkeypatch):
    """trinity-rft 0.6.0's METADATA: `Provides-Extra: vllm` (vllm<=0.23.0,>=0.19.1) and
    `Provides-Extra: flash-attn` (flash-attn>=2.8.3), neither a plain dependency; its README
    installs `.[vllm,flash_attn]`. flash-attn 2.8.3's setup.py imports torch, so it is its own
    call, last, with --no-build-isolation. Every install overrides verl's numpy<2 with numpy>=2
    (which vllm's opencv needs): without that the extra has no solution."""
    recorded = _recording_tools(tmp_path, monkeypatch, "uv")
    spec = load_spec("trinity_rft")
    folder = manager.ensure(spec, root=tmp_path / "envs")
    installs = [c[5:] for c in recorded() if c[:3] == ["uv", "pip", "install"]]
    assert spec.overrides == ("numpy>=2",)
    assert all(c[:2] == ["--overrides", str(folder / "overrides.txt")] for c in installs)
    installs = [c[2:] for c in installs]
    assert installs[0][0] == "trinity-rft[vllm]==0.6.0"
    assert {"setuptools", "wheel", "packaging"} <= set(installs[0])
    assert installs[-1] == ["--no-build-isolation", "flash-attn==2.8.3"]


# Packages whose PyPI metadata requires the GUI `opencv-python` (read from their wheels):
# vbench 0.1.5, pyiqa 0.1.10 (what pip resolves beside transformers==4.33.2), facexlib 0.3.0 and
# imgaug 0.4.0 (both imported by `import pyiqa`), lvis 0.5.3. openai-clip 1.0.1 asks only ftfy,
# regex and tqdm.
GUI_OPENCV_DEPENDENTS = {"vbench", "pyiqa", "facexlib", "imgaug", "lvis"}


def _names(requirements):
    return {re.split(r"[\s\[<>=!~;@]", r, maxsplit=1)[0].lower() for r in requirements}


def test_vbench_keeps_opencv_headless_and_torchvision_matched_to_our_torch():
    spec = load_spec("vbench")
    with_deps, no_deps = _names(spec.requirements), _names(spec.no_deps)
    assert "opencv-python-headless" in with_deps and "opencv-python" not in with_deps | no_deps
    assert not GUI_OPENCV_DEPENDENTS & with_deps  # installed with dependencies: GUI OpenCV
    assert GUI_OPENCV_DEPENDENTS <= no_deps       # pyiqa imports facexlib and imgaug
    # with its dependencies, so timm's `torchvision` resolves to it and its torch==2.13.0 to the
    # sandbox's (pyproject.toml); --no-deps after timm had brought the newest torchvision and,
    # with it, a newer CUDA torch into the environment
    assert "torchvision==0.28.0" in spec.requirements
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
    text = (ROOT / "conf" / "env" / "vbench.yaml").read_text()
    # Data-Juicer's text_to_video/model_hooks.py installs detectron2 at this commit
    assert "detectron2.git@b7c7f4ba82192ff06f2bbb162b9f67b00ea55867" in text
    assert "detectron2.git\"" not in text  # never an unpinned hint
    # the CPU claim says where it holds (a CUDA torch, or a CPU torchvision beside a CPU torch)
    assert "download.pytorch.org/whl/cpu" in text and "torchvision==0.28.0+cpu" in text
    evaluator = (ROOT / "conf" / "evaluator" / "vbench.yaml").read_text()
    assert "temporal_flickering runs on CPU where torchvision imports" in evaluator


def test_uv_without_uv_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError, match=r"pip install uv"):
        manager.uv_tool()


def test_running_in_an_environment_that_is_not_set_up_says_how_to_set_it_up(tmp_path):
    spec = EnvSpec.from_mapping({"name": "later"})
    with pytest.raises(manager.EnvNotReadyError, match=r"python -m sandbox.env setup later"):
        manager.run(spec, ["python", "-V"], log_path=tmp_path / "x.log", root=tmp_path)


# ------------------------------------------------------------------ real environments
@pytest.mark.slow
def test_venv_is_built_once_and_runs_programs_with_live_parsing(tmp_path):
    root = tmp_path / "envs"
    spec = EnvSpec.from_mapping({"name": "six", "kind": "venv", "requirements": ["six==1.17.0"]})
    folder = manager.ensure(spec, root=root)
    marker = folder / manager.MARKER
    assert json.loads(marker.read_text())["spec"]["requirements"] == ["six==1.17.0"]
    assert (folder.with_name(folder.name + ".logs") / "02-requirements.log").is_file()
    first = marker.stat().st_mtime_ns

    assert manager.ensure(spec, root=root) == folder  # the second call reuses it
    assert marker.stat().st_mtime_ns == first

    # a program inside: its python has six; tqdm-style \r lines reach the parser one by one
    script = ("import six, sys, os\n"
              "print('prefix', sys.prefix)\n"
              "for step in range(3):\n"
              "    sys.stdout.write(f'\\rloss={step * 0.5}'); sys.stdout.flush()\n"
              "print()\nprint('mode', os.environ['WANDB_MODE'])\n")
    seen = []
    result = manager.run(spec, ["python", "-c", script], log_path=tmp_path / "step" / "run.log",
                         env_vars={"WANDB_MODE": "offline"}, timeout=60, parsers=[seen.append],
                         cwd=tmp_path, root=root)
    assert result.ok
    assert seen == [f"prefix {folder}", "loss=0.0", "loss=0.5", "loss=1.0", "mode offline"]
    assert "loss=1.0" in (tmp_path / "step" / "run.log").read_text()

    # a failing program: one paragraph with the command, its status, its last lines, the log
    with pytest.raises(ProgramError) as info:
        manager.run(spec, ["python", "-c", "print('bad input x'); raise SystemExit(3)"],
                    log_path=tmp_path / "fail.log", root=root)
    message = str(info.value)
    assert "`python` exited with status 3" in message and "bad input x" in message
    assert str(tmp_path / "fail.log") in message

    # exit 0 without the promised result file is a failure too
    with pytest.raises(ProgramError, match=r"status 0 but did not write result\.json"):
        manager.run(spec, ["python", "-c", "pass"], log_path=tmp_path / "quiet.log",
                    expected_outputs=["result.json"], cwd=tmp_path, root=root)


@pytest.mark.slow
def test_a_crashed_creation_is_redone(tmp_path):
    root = tmp_path / "envs"
    spec = EnvSpec.from_mapping({"name": "crash"})
    half_built = spec.folder(root)
    (half_built / "bin").mkdir(parents=True)
    (half_built / "leftover-from-a-crash").write_text("")
    folder = manager.ensure(spec, root=root)
    assert folder == half_built and manager.is_ready(spec, root=root)
    assert not (folder / "leftover-from-a-crash").exists()
    assert (folder / "bin" / "python").exists()


def _make_repo(path: Path) -> tuple[str, Path]:
    """A local git repo with an installable package: commit 1 says "v1", commit 2 "v2".
    Returns commit 1 and a patch (against commit 1) that adds a line."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    (path / "tinypkg").mkdir(parents=True)
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinypkg"\nversion = "0.1"\n')
    (path / "tinypkg" / "__init__.py").write_text('VERSION = "v1"\n')
    git("add", ".")
    git("commit", "-q", "-m", "one")
    first = git("rev-parse", "HEAD")
    (path / "tinypkg" / "__init__.py").write_text('VERSION = "v1"\nPATCHED = True\n')
    patch = path.parent / "fix.patch"
    patch.write_text(git("diff") + "\n")
    (path / "tinypkg" / "__init__.py").write_text('VERSION = "v2"\n')
    git("commit", "-q", "-am", "two")
    return first, patch


@pytest.mark.slow
def test_git_source_at_a_pinned_commit_with_a_patch(tmp_path):
    first, patch = _make_repo(tmp_path / "repo")
    spec = EnvSpec.from_mapping({"name": "git", "git": {
        "url": f"file://{tmp_path / 'repo'}", "commit": first, "patch": str(patch),
        "install": False}})
    manager.ensure(spec, root=tmp_path / "envs")
    checkout = manager.source_dir(spec, root=tmp_path / "envs")
    text = (checkout / "tinypkg" / "__init__.py").read_text()
    assert text == 'VERSION = "v1"\nPATCHED = True\n'  # commit one, patched; not commit two
    logs = sorted(p.name for p in (tmp_path / "envs").glob("*.logs/*.log"))
    assert logs == ["01-create.log", "02-git-clone.log", "03-git-checkout.log", "04-git-apply.log"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None and not (Path(sys.executable).parent / "uv").exists(),
                    reason="uv is not installed (`pip install uv`)")
def test_uv_environment_with_requirements_and_an_installed_git_repo(tmp_path):
    first, patch = _make_repo(tmp_path / "repo")
    spec = EnvSpec.from_mapping({"name": "uvenv", "kind": "uv", "requirements": ["six==1.17.0"],
                                 "git": {"url": f"file://{tmp_path / 'repo'}", "commit": first[:10],
                                         "patch": str(patch)}})
    folder = manager.ensure(spec, root=tmp_path / "envs")
    assert not (folder / "bin" / "pip").exists()  # uv's venv has no pip: uv installed everything
    seen = []
    manager.run(spec, ["python", "-c", "import six, tinypkg; print(tinypkg.VERSION, tinypkg.PATCHED)"],
                log_path=tmp_path / "uv.log", parsers=[seen.append], cwd=tmp_path,
                root=tmp_path / "envs")
    assert seen == ["v1 True"]


@pytest.mark.slow
def test_inherited_packages_lie_beneath_the_environments_own(tmp_path):
    """inherit_packages: the sandbox's packages are importable in the environment, and the
    environment's own pins win (six 1.16.0 there, 1.17.0 here); the checkout's requirements file
    (git.requirements) is installed."""
    first, _ = _make_repo(tmp_path / "repo")
    repo = tmp_path / "repo"
    (repo / "requirements.txt").write_text("six==1.16.0\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "reqs"], check=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    spec = EnvSpec.from_mapping({"name": "inherit", "inherit_packages": True, "git": {
        "url": f"file://{repo}", "commit": head, "requirements": "requirements.txt",
        "install": False}})
    manager.ensure(spec, root=tmp_path / "envs")
    seen = []
    manager.run(spec, ["python", "-c", "import six, yaml, omegaconf; print(six.__version__)"],
                log_path=tmp_path / "run.log", parsers=[seen.append], root=tmp_path / "envs")
    assert seen == ["1.16.0"]
    import six

    assert six.__version__ == "1.17.0"  # the sandbox's own is untouched


# ------------------------------------------------------------------ the CLI
def _cli(*args, cache: Path, conf: Path):
    env = {**os.environ, "SANDBOX_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "sandbox.env", "--conf-dir", str(conf), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)


def test_cli_list_and_check(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "tiny.yaml").write_text("kind: venv\nrequirements: [six]\n")
    listed = _cli("list", cache=tmp_path / "cache", conf=conf)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:4] == ["tiny", "venv", "not", "set"]
    checked = _cli("check", "tiny", cache=tmp_path / "cache", conf=conf)
    assert checked.returncode == 1 and "python -m sandbox.env setup tiny" in checked.stdout
    missing = _cli("check", "nope", cache=tmp_path / "cache", conf=conf)
    assert missing.returncode == 2 and "no environment spec `nope`" in missing.stderr
    (conf / "bad.yaml").write_text("kind: docker\n")
    bad = _cli("setup", "bad", cache=tmp_path / "cache", conf=conf)
    assert bad.returncode == 2 and "`kind: docker`" in bad.stderr and "Traceback" not in bad.stderr


def test_a_stack_without_its_weights_is_not_ready(tmp_path, monkeypatch):
    """EasyAnimate's patched scripts read the PixArt folder and the motion module from local
    paths and download nothing: `check` says which file belongs in which folder until both are
    there."""
    from sandbox.env import load_spec

    monkeypatch.setenv("SANDBOX_CACHE", str(tmp_path / "cache"))
    spec = load_spec("easyanimate")
    spec.folder().mkdir(parents=True)
    (spec.folder() / manager.MARKER).write_text("")  # the installation is finished
    conf = ROOT / "conf" / "env"
    checked = _cli("check", "easyanimate", cache=tmp_path / "cache", conf=conf)
    src = manager.source_dir(spec)
    assert checked.returncode == 1 and "not ready" in checked.stdout, checked.stdout
    assert f"`PixArt-XL-2-512x512` (the PixArt-XL-2-512x512 folder" in checked.stdout
    assert f"belongs in {src / 'models' / 'Diffusion_Transformer'}/" in checked.stdout
    assert (f"`easyanimate_mm_16x256x256_pretrain.safetensors` (EasyAnimate's motion module) "
            f"belongs in {src / 'models' / 'Motion_Module'}/; get it from https://") in checked.stdout
    assert "no weights" in _cli("list", cache=tmp_path / "cache", conf=conf).stdout
    (src / "models" / "Diffusion_Transformer" / "PixArt-XL-2-512x512").mkdir(parents=True)
    (src / "models" / "Motion_Module").mkdir(parents=True)
    (src / "models" / "Motion_Module" / "easyanimate_mm_16x256x256_pretrain.safetensors").write_bytes(b"")
    checked = _cli("check", "easyanimate", cache=tmp_path / "cache", conf=conf)
    assert checked.returncode == 0 and "easyanimate: ready" in checked.stdout


def test_weights_must_be_a_list_of_paths(tmp_path):
    with pytest.raises(ConfigError, match="`weights` must be a list"):
        EnvSpec.from_mapping({"name": "x", "weights": ["a.bin"]}, base_dir=tmp_path)
    spec = EnvSpec.from_mapping({"name": "x", "weights": [{"path": "a.bin"}]}, base_dir=tmp_path)
    assert spec.hash == EnvSpec.from_mapping({"name": "x"}, base_dir=tmp_path).hash


@pytest.mark.slow
def test_cli_setup_check_remove(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "bare.yaml").write_text("kind: venv\n")
    cache = tmp_path / "cache"
    setup = _cli("setup", "bare", cache=cache, conf=conf)
    assert setup.returncode == 0 and "bare: set up in" in setup.stdout, setup.stderr
    assert _cli("setup", "bare", cache=cache, conf=conf).stdout.startswith("bare: already set up")
    assert _cli("check", "bare", cache=cache, conf=conf).returncode == 0
    assert "ready" in _cli("list", cache=cache, conf=conf).stdout
    removed = _cli("remove", "bare", cache=cache, conf=conf)
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert list((cache / "envs").iterdir()) == []
    assert _cli("check", "bare", cache=cache, conf=conf).returncode == 1
