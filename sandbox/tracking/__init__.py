"""Trackers record a run's params, metrics and files. ``tracking=none`` uses ``NoTracker``;
the default is MLflow (``sandbox.tracking.mlflow_tracker``). ``sandbox.tracking.params`` turns
a config into what a tracker logs (flattened, secrets redacted) and the tags that make runs
comparable; ``run_info`` names a run, records its command line, recipe and group-by tags;
``names`` puts metric names in sections (``eval/``, ``data/``, ``train/``, ``time/``) for the
store; ``datasets`` describes a pool as an MLflow dataset (digest, rows, schema, source)."""
from __future__ import annotations

from sandbox.tracking.base import NoTracker

__all__ = ["NoTracker"]
