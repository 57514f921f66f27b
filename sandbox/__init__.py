"""sandbox: a data-model co-development lab.

``sandbox.run(cfg) -> dict[str, float]`` runs one experiment from a composed config and returns
its metrics; ``python -m sandbox`` is the Hydra command line around it.
"""
from __future__ import annotations

__version__ = "0.1.0"

# Packages imported only inside the functions that use them, so that `python -m sandbox --help`
# and every command that does not need them start fast. Everything else is imported at the top
# of its module. tests/test_startup.py keeps this true.
LAZY_IMPORTS = ("torch", "transformers", "datasets", "tokenizers", "mlflow", "optuna", "numba",
                "matplotlib", "ray", "sklearn", "scipy", "pandas", "plotly")


def run(cfg, run_dir=None, report=None):
    """Run one experiment; see ``sandbox.runner.run``. Imported lazily to keep start-up fast."""
    from sandbox.runner import run as _run

    return _run(cfg, run_dir=run_dir, report=report)


__all__ = ["run", "__version__"]
