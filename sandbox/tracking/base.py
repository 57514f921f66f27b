"""The tracker interface, and ``NoTracker``: the ``tracking=none`` implementation that every
tracker extends (so a step can always call ``env.tracker.log_metrics`` without checking)."""
from __future__ import annotations

from pathlib import Path


class NoTracker:
    """Tracks nothing; the run dir still holds everything."""

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def find_baseline(self, tags: dict[str, str]) -> dict[str, float] | None:
        return None

    def finish(self, status: str = "FINISHED") -> None:
        pass
