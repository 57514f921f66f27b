"""The tracker interface, and ``NoTracker``: the ``tracking=none`` implementation that every
tracker extends (so a step can always call ``env.tracker.log_metrics`` without checking)."""
from __future__ import annotations

from pathlib import Path


class NoTracker:
    """Tracks nothing; the run dir still holds everything."""

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, run_dir: str | Path | None = None) -> None:
        """Open the run (``resume_run_id``: continue that one); ``run_dir`` is where a tracker
        keeps what its store could not take."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_outputs(self, step: str, outputs: dict) -> None:
        """Record what a step produced that the run *used* (its ``dataset``)."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def find_baseline(self, tags: dict[str, str]) -> dict[str, float] | None:
        return None

    def baseline_artifacts(self, artifact_path: str, dest: str | Path) -> Path | None:
        """The folder ``artifact_path`` of the baseline ``find_baseline`` found, copied under
        ``dest``; None when there is none."""
        return None

    def child(self, run_name: str, tags: dict[str, str] | None = None) -> "NoTracker":
        """A nested run under this one; ``finish`` it when done."""
        return NoTracker()

    def finish(self, status: str = "FINISHED") -> None:
        pass
