"""``hydra/sweeper=sandbox_optuna`` (alias ``optuna``): an Optuna sweeper on modern Optuna
(ask-and-tell), written for the sandbox (it does not need ``hydra-optuna-sweeper``, which pins
optuna<3), and usable by any Hydra app.

Same keys as hydra-optuna-sweeper (``direction``, ``study_name``, ``storage``, ``n_trials``,
``n_jobs``, ``sampler`` with the ``hydra/sweeper/sampler`` group, ``max_failure_rate``,
``params``, ``search_space``, ``custom_search_space``), plus ``pruner``, ``constraints``,
``prune_on``, ``threads_per_trial``, ``plots``, ``confirm_seeds``/``confirm_top`` (re-run
the winners with fresh seeds when the search ends) and ``fidelity`` (the token budget in rungs). The work is done by
``sandbox.search.sweeper``.

Both names are registered: ``optuna`` for habit, ``sandbox_optuna`` because hydra-optuna-sweeper
also registers ``optuna`` when it is installed, and the last one loaded wins (a warning says so,
see ``_compat``). The project's own configs use ``sandbox_optuna``.

No ``from __future__ import annotations`` here: Hydra imports plugin modules without adding them
to ``sys.modules``, and ``dataclasses`` then cannot resolve string annotations."""

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING

from hydra_plugins.sandbox_optuna._compat import ALIAS, OWN_NAME


@dataclass
class OptunaSweeperConf:
    """The keys of ``hydra.sweeper`` (their defaults and what they mean)."""

    _target_: str = "hydra_plugins.sandbox_optuna.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler is built by the sweeper (it adds constraints_func)
    # hydra/sweeper/sampler=random|tpe|nsgaii|cmaes|qmc|gp|grid (conf/ beside this file)
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    # "minimize" | "maximize", or a list of them (one per metric of `objective:`)
    direction: Any = "minimize"
    # default: <job name>-<hparams_search option>; the same name resumes the study
    study_name: Optional[str] = None
    # an Optuna storage URL; null keeps the study in memory
    storage: Optional[str] = "sqlite:///optuna.db"
    # total finished trials the study should have (a re-run only runs the missing ones)
    n_trials: int = 20
    # trials running at once (> 1: one process per trial)
    n_jobs: int = 1
    # the sampler group's node, plus any argument of its class (seed, n_startup_trials, ...);
    # MISSING, not None: this node merges after its defaults, and None would erase the group's
    sampler: Any = MISSING
    # e.g. {_target_: optuna.pruners.MedianPruner, n_startup_trials: 5}; null: no pruning
    pruner: Any = None
    # intermediate value the trainer reports for pruning
    prune_on: str = "train_loss"
    # e.g. ["retention >= 0.3"]
    constraints: List[str] = field(default_factory=list)
    # null: every trial runs, and the sweep fails at the end only if none completed; a number in
    # [0, 1]: the sweep also fails (and stops as soon as it is certain) when more than this share
    # of its trials failed
    max_failure_rate: Optional[float] = None
    # "auto" (cores / n_jobs), an int, or null: trainer.num_threads and num_proc of parallel trials
    threads_per_trial: Any = "auto"
    # log Optuna's plots to the study's MLflow run
    plots: bool = True
    # a database study: each sweep records Optuna's heartbeat for its running trials every
    # heartbeat_s seconds; a trial silent for grace_s (its sweep was killed) is failed, its MLflow
    # run ended KILLED, and its parameters run again by a sweep still on the study
    heartbeat_s: int = 30
    grace_s: int = 120
    # override key -> interval(a, b) | range(a, b[, step]) | choice(...) | tag(log, ...) | value
    params: Optional[Dict[str, Any]] = None
    # hydra-optuna-sweeper 1.1's form: key -> {type: int|float|categorical, low, high, step, log,
    # choices}; params wins for a key given in both
    search_space: Optional[Dict[str, Any]] = None
    # dotted path of a function f(cfg, trial) that suggests more parameters (define-by-run)
    custom_search_space: Optional[str] = None
    # K >= 2: when the search ends, re-run the best trial with K fresh seeds (the config's seed
    # + 1000, + 1001, ...; `seeds=[...]` for an app that reads `seeds`, one run per `seed=`
    # otherwise) and report the confirmed value (mean, 95% interval) beside the searched one;
    # 0: off
    confirm_seeds: int = 0
    # how many trials to confirm: the N best (one objective), or up to N Pareto-optimal ones
    # spread along the front (several); null: 1 for one objective, 3 for several
    confirm_top: Optional[int] = None
    # the token budget as a fidelity: {key: trainer.token_budget, rungs: [b0, b1, ...],
    # resume_key: ++trainer.resume_from}; each trial runs rung by rung while the pruner
    # (successive halving by default) keeps it, continuing the last rung's checkpoint
    fidelity: Dict[str, Any] = field(default_factory=dict)  # {}: none


for _name in (OWN_NAME, ALIAS):
    ConfigStore.instance().store(group="hydra/sweeper", name=_name, node=OptunaSweeperConf,
                                 provider="sandbox")


class OptunaSweeper(Sweeper):
    """Hydra's side of the sweeper; ``sandbox.search.sweeper.OptunaSearch`` does the work."""

    def __init__(self, **kwargs: Any) -> None:
        # Hydra executes every plugin module when it starts (``--help`` included), so the
        # search code is imported only once a sweep is set up
        from sandbox.search.sweeper import OptunaSearch

        self._search = None
        self._search = self._reported(OptunaSearch, **kwargs)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self._search.setup(hydra_context=hydra_context, task_function=task_function,
                           config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self._reported(self._search.sweep, arguments)

    def _reported(self, call, *args, **kwargs) -> Any:
        """``call``, with a user-facing error (a bad key, a sweep whose trials failed) ending the
        command in one paragraph and a non-zero status (2: config, 1: failed trials) rather than
        a traceback through Hydra; ``traceback=true`` in the app's config shows the traceback."""
        from sandbox.errors import ConfigError, SandboxError

        try:
            return call(*args, **kwargs)
        except SandboxError as e:
            config = getattr(self._search, "config", None)
            if config is not None and config.get("traceback"):
                raise
            from sandbox.console import console

            console.print(f"[bold red]error:[/] {e}", soft_wrap=True)
            sys.exit(2 if isinstance(e, ConfigError) else 1)
