"""``python -m sandbox.env check NAME --resolve``: what is handed to ``uv pip compile`` (target,
files, the no-build-isolation metadata, overrides), how its answer becomes one paragraph naming
the spec's key, the refusals (no uv, no GitHub), the shipped copies of checkouts' requirements
files, and (slow) every spec in conf/env/ against the real index."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.env import EnvSpec, load_spec, spec_names
from sandbox.env import resolve as R
from sandbox.env.__main__ import main
from sandbox.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

# what `uv pip compile` printed here (uv 0.13.9) for torch==2.1.2 beside torchvision==0.20.0
CONFLICT = """\
warning: The requested Python version 3.10 is not available; 3.11.7 will be used to build dependencies instead.
error: No solution found when resolving dependencies
  cause: Because torchvision==0.20.0 depends on torch==2.5.0 and you require torch==2.1.2, we can conclude that your requirements and torchvision==0.20.0 are incompatible.
         And because you require torchvision==0.20.0, we can conclude that your requirements are unsatisfiable.
"""
# ... and for mmcv-full==1.6.2, whose setup.py imports pkg_resources (shortened traceback)
BUILD_FAILED = """\
error: Failed to build `mmcv-full==1.6.2`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed (exit status: 1)

         [stderr]
         Traceback (most recent call last):
           File "<string>", line 14, in <module>
           File "/root/.cache/uv/builds-v0/.tmp/lib/python3.11/site-packages/setuptools/build_meta.py", line 317, in run_setup
             exec(code, locals())  # noqa: S102 # exec is intentional here
         ModuleNotFoundError: No module named 'pkg_resources'

hint: This error likely indicates that `mmcv-full@1.6.2` depends on `pkg_resources`, but doesn't declare it as a build dependency.

[tool.uv.extra-build-dependencies]
mmcv-full = ["pkg_resources"]
"""
OFFLINE = """\
error: Failed to fetch: `https://pypi.org/simple/six/`
  cause: Request failed after 3 retries
  cause: error sending request for url (https://pypi.org/simple/six/)
  cause: client error (Connect)
  cause: dns error
"""


@pytest.fixture
def fake_uv(tmp_path):
    """A stand-in ``uv`` that records each call (argv and the files it names) and answers with
    ``answers``: a list of (exit code, stdout, stderr), one per call, the last one repeated."""
    record = tmp_path / "uv-calls"
    record.mkdir()
    answers: list[tuple[int, str, str]] = [(0, "", "")]
    program = tmp_path / "bin" / "uv"
    program.parent.mkdir()
    program.write_text(f"""#!{sys.executable}
import json, pathlib, sys
record = pathlib.Path({str(record)!r})
n = len(list(record.glob("*.json")))
files = {{a: pathlib.Path(a).read_text() for a in sys.argv[1:]
         if pathlib.Path(a).suffix in (".in", ".txt", ".toml") and pathlib.Path(a).is_file()}}
(record / f"{{n:02d}}.json").write_text(json.dumps({{"argv": sys.argv[1:], "files": files}}))
if sys.argv[1] == "venv":  # `uv venv DIR`, for the manager
    pathlib.Path(sys.argv[-1], "bin").mkdir(parents=True)
answers = json.loads((record.parent / "answers.json").read_text())
code, out, err = answers[min(n, len(answers) - 1)]
sys.stdout.write(out); sys.stderr.write(err); sys.exit(code)
""")
    program.chmod(0o755)

    class Fake:
        path = str(program)

        @staticmethod
        def answer(*items):
            (tmp_path / "answers.json").write_text(json.dumps(list(items)))

        @staticmethod
        def calls():
            return [json.loads(p.read_text()) for p in sorted(record.glob("*.json"))]

    Fake.answer(*answers)
    return Fake


def _spec(tmp_path, **data):
    return EnvSpec.from_mapping({"name": "demo", **data}, source=str(tmp_path / "demo.yaml"),
                                base_dir=tmp_path)


def _option(argv, flag):
    return argv[argv.index(flag) + 1]


# ------------------------------------------------------------------ what uv is asked
def test_it_resolves_everything_together_for_the_target_and_looks_up_no_deps_alone(
        tmp_path, fake_uv):
    copy = tmp_path / "req" / "requirements.txt"
    copy.parent.mkdir()
    copy.write_text("-r sub/chat.txt\neinops\n")
    (copy.parent / "sub").mkdir()
    (copy.parent / "sub" / "chat.txt").write_text("transformers==4.37.2  # the chat model\n")
    spec = _spec(tmp_path, kind="uv", python="3.10", requirements=["torch==2.1.2", "ninja"],
                 no_deps=["kornia"], no_build_isolation=["flash-attn==2.3.6"],
                 overrides=["numpy>=2"],
                 git={"url": "https://github.com/o/r.git", "commit": "a" * 40,
                      "requirements": "requirements.txt",
                      "requirements_copy": "req/requirements.txt"})
    fake_uv.answer((0, "einops==0.8.2\nflash-attn==2.3.6\ntorch==2.1.2\nninja==1.13.2\n"
                       "transformers==4.37.2\n", ""), (0, "kornia==0.8.2\n", ""))
    result = R.resolve(spec, uv=fake_uv.path)
    first, second = fake_uv.calls()
    argv = first["argv"]
    assert argv[:2] == ["pip", "compile"]
    assert _option(argv, "--python-platform") == "x86_64-manylinux_2_28"
    assert _option(argv, "--python-version") == "3.10"
    assert "--no-python-downloads" in argv
    assert first["files"][argv[2]].splitlines() == [
        f"-r {copy}", "torch==2.1.2", "ninja", "flash-attn==2.3.6"]
    # flash-attn is looked up on the index, not built (its setup.py imports torch)
    assert first["files"][_option(argv, "--config-file")] == (
        '[[dependency-metadata]]\nname = "flash-attn"\nversion = "2.3.6"\nrequires-dist = []\n')
    assert first["files"][_option(argv, "--overrides")] == "numpy>=2\n"
    assert "--no-deps" in second["argv"] and \
        second["files"][second["argv"][2]] == "kornia\n"
    # constrained to what the first call resolved: an installed version that meets the pin stays
    assert second["files"][_option(second["argv"], "-c")].splitlines() == [
        "einops==0.8.2", "flash-attn==2.3.6", "torch==2.1.2", "ninja==1.13.2",
        "transformers==4.37.2"]
    assert result.ok and result.python == "3.10" and result.pins["torch"] == "2.1.2"
    assert result.message == (
        "demo: resolves for Linux x86_64 (manylinux_2_28), Python 3.10: 5 packages "
        "(torch==2.1.2, ninja==1.13.2, flash-attn==2.3.6); installed without dependencies: "
        "kornia==0.8.2; flash-attn==2.3.6 found on the index, but built from source at setup: "
        "that build and its own dependencies are not checked. Nothing was installed.")


def test_without_python_it_targets_the_running_one(tmp_path, fake_uv):
    fake_uv.answer((0, "six==1.17.0\n", ""))
    result = R.resolve(_spec(tmp_path, requirements=["six==1.17.0"], inherit_packages=True),
                       uv=fake_uv.path)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert _option(fake_uv.calls()[0]["argv"], "--python-version") == here
    assert "--config-file" not in fake_uv.calls()[0]["argv"]  # the user's uv config holds
    assert "sandbox's own packages beneath it are not part of this resolution" in result.message


# ------------------------------------------------------------------ uv's answer, one paragraph
def test_a_conflict_is_one_paragraph_that_names_the_spec_and_the_key(tmp_path, fake_uv):
    fake_uv.answer((1, "", CONFLICT))
    spec = _spec(tmp_path, requirements=["torch==2.1.2", "torchvision==0.20.0", "six"])
    result = R.resolve(spec, uv=fake_uv.path)
    assert not result.ok and "\n" not in result.message
    assert result.message.startswith(f"{tmp_path / 'demo.yaml'}: `demo` does not resolve for "
                                     f"Linux x86_64 (manylinux_2_28), Python ")
    assert ("No solution found when resolving dependencies: Because torchvision==0.20.0 depends "
            "on torch==2.5.0 and you require torch==2.1.2") in result.message
    assert "warning" not in result.message and "cause:" not in result.message
    assert ("The packages it names come from `requirements` (torch==2.1.2, torchvision==0.20.0)"
            f": change them in {tmp_path / 'demo.yaml'}") in result.message
    assert "six" not in result.message.split("come from")[1]  # only what uv named


def test_a_failed_build_keeps_its_exception_not_its_traceback(tmp_path, fake_uv):
    fake_uv.answer((1, "", BUILD_FAILED))
    copy = tmp_path / "requirements.txt"
    copy.write_text("mmcv-full==1.6.2\nyapf==0.40.1\n")
    spec = _spec(tmp_path, requirements=["setuptools"],
                 git={"url": "https://github.com/o/r.git", "commit": "b" * 40,
                      "requirements": "requirements.txt", "requirements_copy": "requirements.txt"})
    message = R.resolve(spec, uv=fake_uv.path).message
    assert ("Failed to build `mmcv-full==1.6.2` The build backend returned an error Call to "
            "`setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed (exit status:"
            " 1) (ModuleNotFoundError: No module named 'pkg_resources') hint: This error likely "
            "indicates") in message
    assert "Traceback" not in message and "extra-build-dependencies" not in message
    assert "`git.requirements` (requirements.txt: mmcv-full==1.6.2)" in message
    assert "move the commit" in message


def test_the_no_deps_lookup_names_no_deps(tmp_path, fake_uv):
    fake_uv.answer((0, "six==1.17.0\n", ""), (1, "", "error: No solution found when resolving "
                   "dependencies\n  cause: Because there is no version of vbench==9.9 and you "
                   "require vbench==9.9, we can conclude that your requirements are "
                   "unsatisfiable.\n"))
    result = R.resolve(_spec(tmp_path, requirements=["six"], no_deps=["vbench==9.9"]),
                       uv=fake_uv.path)
    assert not result.ok and "`no_deps` (vbench==9.9)" in result.message


def test_a_no_deps_pin_that_replaces_an_installed_version_is_looked_up_alone(tmp_path, fake_uv):
    fake_uv.answer((0, "numpy==1.26.4\n", ""), (1, "", CONFLICT), (0, "numpy==2.0.0\n", ""))
    result = R.resolve(_spec(tmp_path, requirements=["numpy<2"], no_deps=["numpy==2.0.0"]),
                       uv=fake_uv.path)
    third = fake_uv.calls()[2]["argv"]
    assert "--no-deps" in third and "-c" not in third
    assert result.ok and "installed without dependencies: numpy==2.0.0" in result.message


def test_an_unreachable_index_decides_nothing(tmp_path, fake_uv):
    fake_uv.answer((2, "", OFFLINE))
    result = R.resolve(_spec(tmp_path, requirements=["six"]), uv=fake_uv.path)
    assert not result.ok and "could not ask the package index" in result.message
    assert "Nothing was decided" in result.message and "\n" not in result.message


def test_the_cli_exits_1_when_a_spec_does_not_resolve(tmp_path, fake_uv, monkeypatch, capsys):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "pins.yaml").write_text("kind: venv\nrequirements: [torch==2.1.2]\n")
    monkeypatch.setenv("PATH", f"{Path(fake_uv.path).parent}{os.pathsep}{os.environ['PATH']}")
    fake_uv.answer((1, "", CONFLICT))
    assert main(["--conf-dir", str(tmp_path / "conf"), "check", "pins", "--resolve"]) == 1
    assert "`pins` does not resolve" in capsys.readouterr().err
    fake_uv.answer((0, "torch==2.1.2\n", ""))
    assert main(["--conf-dir", str(tmp_path / "conf"), "check", "pins", "--resolve"]) == 0
    assert capsys.readouterr().out.startswith("pins: resolves for Linux x86_64")


# ------------------------------------------------------------------ refusals
def test_without_uv_the_refusal_says_pip_install_uv(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError) as info:
        R.uv_program()
    assert "`pip install uv`" in str(info.value) and "\n" not in str(info.value)
    assert main(["check", "six_demo", "--resolve"]) == 2
    assert "`pip install uv`" in capsys.readouterr().err


def test_a_checkout_without_a_copy_is_fetched_and_offline_says_how_to_ship_it(
        tmp_path, fake_uv, monkeypatch):
    def offline(url, dest, **kw):
        raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(R, "download", offline)
    spec = _spec(tmp_path, git={"url": "https://github.com/OpenGVLab/InternVL.git",
                                "commit": "c" * 40, "requirements": "requirements.txt"})
    with pytest.raises(ConfigError) as info:
        R.resolve(spec, uv=fake_uv.path)
    message = str(info.value)
    assert f"https://raw.githubusercontent.com/OpenGVLab/InternVL/{'c' * 40}/requirements.txt" \
        in message
    assert "`git.requirements_copy`" in message and "\n" not in message
    assert fake_uv.calls() == []  # nothing resolved on half the packages


def test_a_local_checkout_is_read_at_the_commit_with_its_includes_and_patch(tmp_path, fake_uv):
    repo = tmp_path / "repo"
    (repo / "reqs").mkdir(parents=True)
    (repo / "requirements.txt").write_text("-r reqs/base.txt\ntorch>=2\n")
    (repo / "reqs" / "base.txt").write_text("six\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    (repo / "requirements.txt").write_text("-r reqs/base.txt\ntorch>=2,<2.7\n")
    patch = tmp_path / "cap.patch"
    patch.write_text(subprocess.run([*git, "diff"], capture_output=True, text=True).stdout)
    (repo / "requirements.txt").write_text("changed after the commit\n")  # not what is read
    spec = _spec(tmp_path, git={"url": f"file://{repo}", "commit": commit,
                                "requirements": "requirements.txt", "patch": "cap.patch"})
    fake_uv.answer((1, "", "error: No solution found when resolving dependencies\n  cause: "
                           "Because you require six==0 and torch<2.7 ...\n"))
    result = R.resolve(spec, uv=fake_uv.path)
    call = fake_uv.calls()[0]
    top = call["files"][call["argv"][2]].splitlines()[0]
    assert top.startswith("-r ") and top.endswith("requirements.txt")
    # the file at the commit, patched, and the file it includes
    assert "`git.requirements` (requirements.txt: torch>=2,<2.7, reqs/base.txt: six)" \
        in result.message


def test_requirements_copy_needs_requirements_and_a_file(tmp_path):
    git = {"url": "u", "commit": "abcdef1"}
    with pytest.raises(ConfigError, match="`git.requirements` is not set"):
        _spec(tmp_path, git={**git, "requirements_copy": "x.txt"})
    with pytest.raises(ConfigError, match="requirements_copy: .*x.txt` does not exist"):
        _spec(tmp_path, git={**git, "requirements": "r.txt", "requirements_copy": "x.txt"})
    with pytest.raises(ConfigError, match="`overrides` needs `kind: uv`"):
        _spec(tmp_path, overrides=["numpy>=2"])


def test_the_copy_is_not_in_the_hash_and_overrides_are(tmp_path):
    (tmp_path / "r.txt").write_text("six\n")
    git = {"url": "u", "commit": "abcdef1", "requirements": "r.txt"}
    assert _spec(tmp_path, git=git).hash == \
        _spec(tmp_path, git={**git, "requirements_copy": "r.txt"}).hash
    assert _spec(tmp_path, kind="uv").hash != _spec(tmp_path, kind="uv", overrides=["x>=2"]).hash


def test_the_setup_applies_overrides_to_every_uv_install(tmp_path, fake_uv, monkeypatch):
    """What the check resolves with ``--overrides`` is what the setup installs with them."""
    from sandbox.env import manager

    monkeypatch.setenv("PATH", f"{Path(fake_uv.path).parent}{os.pathsep}{os.environ['PATH']}")
    spec = _spec(tmp_path, kind="uv", requirements=["trinity-rft[vllm]==0.6.0"],
                 no_build_isolation=["flash-attn==2.8.3"], overrides=["numpy>=2"])
    folder = manager.ensure(spec, root=tmp_path / "envs")
    installs = [c for c in fake_uv.calls() if c["argv"][:2] == ["pip", "install"]]
    assert [c["argv"][-1] for c in installs] == ["trinity-rft[vllm]==0.6.0", "flash-attn==2.8.3"]
    for call in installs:
        assert _option(call["argv"], "--overrides") == str(folder / "overrides.txt")
        assert call["files"][str(folder / "overrides.txt")] == "numpy>=2\n"


# ------------------------------------------------------------------ the shipped copies
def _git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# git's blob ids of the files as the setup installs them: InternVL's at its commit (`git ls-tree
# 2410d1db requirements/`), EasyAnimate's after Data-Juicer's patch (the patch's `index 1d66be0..
# b9352d6` line for requirements.txt)
UPSTREAM_BLOBS = {
    "internvl": ("requirements/internvl_chat.txt", "0f09eeae6050d4b09cf02549a9b693be036b740f"),
    "easyanimate": ("requirements.txt", "b9352d6cfb46b8a62faca495143b5bd77ffa4c36"),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_BLOBS))
def test_the_shipped_copy_is_the_file_the_spec_names_verbatim(name):
    spec = load_spec(name)
    upstream, blob = UPSTREAM_BLOBS[name]
    assert spec.git.requirements == upstream
    copy = spec.git.requirements_copy
    assert copy.is_file() and copy.as_posix().endswith(f"conf/env/requirements/{name}/{upstream}")
    assert _git_blob(copy) == blob, f"{copy} is not {upstream} at {spec.git.commit}"
    assert not R._INCLUDE.search(copy.read_text())  # nothing it includes is missing


def test_every_spec_with_a_checkouts_requirements_ships_them():
    """CI has no GitHub: a spec reading a checkout's requirements file must ship its copy."""
    for name in spec_names():
        spec = load_spec(name)
        if spec.git is not None and spec.git.requirements:
            assert spec.git.requirements_copy is not None, name
            assert name in UPSTREAM_BLOBS, f"add {name}'s upstream blob id to UPSTREAM_BLOBS"


# ------------------------------------------------------------------ the real index
@pytest.mark.slow
@pytest.mark.parametrize("name", spec_names())
def test_every_spec_resolves_against_the_real_index(name):
    """A pin that cannot be met fails here, not in a user's GPU job (a few seconds per spec with
    uv's cache, a minute or two without)."""
    result = R.resolve(load_spec(name))
    assert result.ok, result.message
    assert "Nothing was installed." in result.message
