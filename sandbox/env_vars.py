"""Names of the environment variables the sandbox reads or sets, in one place.

Child processes (sweep trials, worker pools, outside programs) learn their context through these,
so a name is written once here and imported everywhere else."""
from __future__ import annotations

# where every cache lives (corpus, assets, stats, compiled kernels); `cache_dir=` sets it
CACHE = "SANDBOX_CACHE"
NUMBA_CACHE_DIR = "NUMBA_CACHE_DIR"
# "0": run every compiled kernel just in time, never through its ahead-of-time extension
AOT = "SANDBOX_AOT"
# "1": never download an asset (sandbox.assets); missing ones are reported instead
OFFLINE = "SANDBOX_OFFLINE"

# a search trial run in its own process
RESULT_FILE = "SANDBOX_RESULT_FILE"  # where the trial writes its status and metrics
SWEEP_PID = "SANDBOX_SWEEP_PID"  # the sweep that started this trial's process: it ends with it
OPTUNA_STORAGE = "SANDBOX_OPTUNA_STORAGE"
OPTUNA_STUDY = "SANDBOX_OPTUNA_STUDY"
OPTUNA_TRIAL_ID = "SANDBOX_OPTUNA_TRIAL_ID"
OPTUNA_PRUNE_ON = "SANDBOX_OPTUNA_PRUNE_ON"
OPTUNA_SIGN = "SANDBOX_OPTUNA_SIGN"

# tracking: the parent run a trial's run nests under, and extra tags for it (a JSON object)
PARENT_RUN_ID = "SANDBOX_PARENT_RUN_ID"
RUN_TAGS = "SANDBOX_RUN_TAGS"

