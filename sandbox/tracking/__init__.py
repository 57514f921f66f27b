"""Trackers record a run's params, metrics and files. ``tracking=none`` uses ``NoTracker``;
the default is MLflow (``sandbox.tracking.mlflow_tracker``). ``sandbox.tracking.params`` turns
a config into what a tracker logs (flattened, secrets redacted) and the tags that make runs
comparable."""
from __future__ import annotations

from sandbox.tracking.base import NoTracker

__all__ = ["NoTracker"]
