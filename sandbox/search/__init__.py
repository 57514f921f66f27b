"""Recipe search: an Optuna study driven by Hydra's ``--multirun`` (``hparams_search=...``).

* ``space``: ``hydra.sweeper.params`` (``interval``, ``choice``, ``range``, ``tag(log, ...)``)
  -> Optuna distributions;
* ``constraints``: ``"retention >= 0.3"`` -> Optuna constraint values (parsed, never eval'd);
* ``sweeper``: the ask-and-tell loop behind ``hydra/sweeper=optuna``
  (``hydra_plugins.sandbox_optuna`` registers it with Hydra);
* ``study``: the Optuna study (sampler, pruner, storage), created or resumed, and the trials a
  killed sweep left running;
* ``launch``: running one trial, in this process (``n_jobs: 1``) or as its own process group;
* ``trial``: what a running trial sees (intermediate values for pruning, the result file);
* ``summary``: the study's parent MLflow run (best trials, best recipe, plots);
* ``noise``: the trials within noise of the best, and the winner's-curse wording;
* ``confirm``: re-running the best trial(s) with fresh seeds (``confirm_seeds``).
"""
