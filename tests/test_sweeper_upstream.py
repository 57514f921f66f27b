"""hydra-optuna-sweeper installed beside ours (a throwaway venv, never the project's): both
register ``hydra/sweeper=optuna`` and the last one loaded wins, so the project's searches use the
plugin's own name, ``sandbox_optuna``, and still run; one warning says what happened."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.test_search import load, tiny  # noqa: F401  (tiny: a fixture)

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = "hydra-optuna-sweeper==1.3.0"
WARNING = "hydra-optuna-sweeper is installed beside sandbox's Optuna sweeper"


@pytest.fixture
def venv_with_upstream(tmp_path) -> Path:
    """A venv that sees the project's packages and has hydra-optuna-sweeper of its own (installed
    ``--no-deps``: it declares optuna<3, which the project's optuna 5 does not satisfy)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the project's environment comes after the venv's own packages, its .pth files included
    (Path(site) / "project_env.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
                          "--disable-pip-version-check", "--target", site, UPSTREAM],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"could not install {UPSTREAM} from the package index: "
                    f"{pip.stderr.strip()[-300:]}")
    return python


@pytest.mark.slow
def test_our_searches_run_beside_hydra_optuna_sweeper_with_one_warning(tmp_path, tiny,  # noqa: F811
                                                                        venv_with_upstream):
    from optuna.trial import TrialState

    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # run from the repository root, where hydra-optuna-sweeper is loaded after ours and takes
    # `hydra/sweeper=optuna` (the case that used to break conf/hparams_search silently)
    run = subprocess.run(
        [str(venv_with_upstream), "-m", "sandbox", "--multirun", *tiny,
         "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=beside",
         f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert output.count(WARNING) == 1, output[-4000:]
    assert "(here: hydra-optuna-sweeper)" in output  # it says who has `optuna` now
    assert "hydra/sweeper=sandbox_optuna" in output  # and what to use instead
    study = load(tmp_path, "beside")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2

    # the warning is true: `optuna` is upstream's here, `sandbox_optuna` stays ours
    for name, target in [("optuna", "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper"),
                         ("sandbox_optuna", "hydra_plugins.sandbox_optuna.optuna_sweeper")]:
        shown = subprocess.run([str(venv_with_upstream), "-m", "sandbox", "--cfg", "hydra",
                                f"hydra/sweeper={name}"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
        assert f"_target_: {target}.OptunaSweeper" in shown.stdout, shown.stdout + shown.stderr
