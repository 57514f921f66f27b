"""``hydra/sweeper=optuna``: an Optuna sweeper on modern Optuna (ask-and-tell), written for the
sandbox (it does not need ``hydra-optuna-sweeper``, which pins optuna<3).

Same keys as hydra-optuna-sweeper (``direction``, ``study_name``, ``storage``, ``n_trials``,
``n_jobs``, ``sampler``, ``params``), plus ``pruner``, ``constraints``, ``prune_on``,
``threads_per_trial`` and ``plots``. The work is done by ``sandbox.search.sweeper``.

No ``from __future__ import annotations`` here: Hydra imports plugin modules without adding them
to ``sys.modules``, and ``dataclasses`` then cannot resolve string annotations."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OptunaSweeperConf:
    """The keys of ``hydra.sweeper`` (their defaults and what they mean)."""

    _target_: str = "hydra_plugins.sandbox_optuna.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler is built by the sweeper (it adds constraints_func)
    # "minimize" | "maximize", or a list of them (one per metric of `objective:`)
    direction: Any = "minimize"
    # default: sandbox-<hparams_search option>; the same name resumes the study
    study_name: Optional[str] = None
    # an Optuna storage URL; null keeps the study in memory
    storage: Optional[str] = "sqlite:///optuna.db"
    # total finished trials the study should have (a re-run only runs the missing ones)
    n_trials: int = 20
    # trials running at once (> 1: one process per trial)
    n_jobs: int = 1
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler",
                                                  "seed": None})
    # e.g. {_target_: optuna.pruners.MedianPruner, n_startup_trials: 5}; null: no pruning
    pruner: Any = None
    # intermediate value the trainer reports for pruning
    prune_on: str = "train_loss"
    # e.g. ["retention >= 0.3"]
    constraints: List[str] = field(default_factory=list)
    # "auto" (cores / n_jobs), an int, or null: trainer.num_threads and num_proc of parallel trials
    threads_per_trial: Any = "auto"
    # log Optuna's plots to the study's MLflow run
    plots: bool = True
    # override key -> interval(a, b) | range(a, b[, step]) | choice(...) | tag(log, ...) | value
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="sandbox")


class OptunaSweeper(Sweeper):
    """Hydra's side of the sweeper; ``sandbox.search.sweeper.OptunaSearch`` does the work."""

    def __init__(self, **kwargs: Any) -> None:
        # Hydra executes every plugin module when it starts (``--help`` included), so the
        # search code is imported only once a sweep is set up
        from sandbox.search.sweeper import OptunaSearch

        self._search = OptunaSearch(**kwargs)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self._search.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self._search.sweep(arguments)
