"""Trackers record a run's params, metrics and files. ``tracking=none`` uses ``NoTracker``;
the default is MLflow (``sandbox.tracking.mlflow_tracker``)."""
from __future__ import annotations

from pathlib import Path

from sandbox.steps.base import NullTracker


class NoTracker(NullTracker):
    """Tracks nothing; the run dir still holds everything."""

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None) -> None:
        pass

    def log_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def find_baseline(self, tags: dict[str, str]) -> dict[str, float] | None:
        return None

    def finish(self, status: str = "FINISHED") -> None:
        pass
