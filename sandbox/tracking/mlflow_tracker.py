"""MLflow tracking: one store for all runs (SQLite by default), one run per experiment run.

Uses ``MlflowClient`` rather than the fluent API, so that several runs in one process (a Hydra
multirun) never collide on a global "active run". ``mlflow`` is imported only here."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from sandbox import env_vars
from sandbox.errors import ConfigError
from sandbox.tracking.base import NoTracker


class MLflowTracker(NoTracker):
    def __init__(self, uri: str = "sqlite:///mlflow.db", experiment: str = "sandbox",
                 run_name: str | None = None, max_artifact_mb: float = 50):
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.max_artifact_bytes = int(max_artifact_mb * 1024 * 1024)
        self.client = None
        self.run_id: str | None = None

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._preflight()
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            if resume_run_id and self._reopen(resume_run_id):
                return
            exp = self.client.get_experiment_by_name(self.experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(
                self.experiment, artifact_location=self._artifact_location())
            all_tags = dict(tags)
            parent = os.environ.get(env_vars.PARENT_RUN_ID)
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            if os.environ.get(env_vars.RUN_TAGS):  # e.g. a search trial's number and study
                all_tags.update({str(k): str(v) for k, v in
                                 json.loads(os.environ[env_vars.RUN_TAGS]).items()})
            run = self.client.create_run(exp_id, run_name=self.run_name or run_name, tags=all_tags)
        except Exception as e:
            raise ConfigError(
                f"cannot reach the MLflow tracking store tracking.uri={self.uri} ({type(e).__name__}: "
                f"{e}). Fix the URI, start the server, or run with tracking=none."
            ) from None
        self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _reopen(self, run_id: str) -> bool:
        """Continue logging into the run a crashed run left behind (resume)."""
        try:
            self.client.get_run(run_id)
        except Exception:
            return False
        self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        return True

    def _preflight(self) -> None:
        """Fail in seconds, before any work, when a tracking server does not answer (MLflow's
        own client would retry for minutes)."""
        if not self.uri.startswith(("http://", "https://")):
            return
        url = self.uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            return  # it answered: authentication and such are MLflow's to report
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"the MLflow tracking server tracking.uri={self.uri} does not answer ({e}). Start "
                f"it, fix the URI, or run with tracking=none; nothing has run yet."
            ) from None

    def _artifact_location(self) -> str | None:
        # Keep artifacts beside a local SQLite store (absolute), whatever directory runs later.
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///"):]).resolve()
            return (db.parent / "mlartifacts").as_uri()
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, int(step or 0)) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i:i + 500])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if self.run_id is None or not p.is_file() or p.stat().st_size > self.max_artifact_bytes:
            return
        self.client.log_artifact(self.run_id, str(p), artifact_path)

    def log_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        root = Path(path)
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                sub = f.parent.relative_to(root)
                dest = "/".join(x for x in (artifact_path, str(sub) if str(sub) != "." else None) if x)
                self.log_artifact(f, dest or None)

    def find_baseline(self, tags: dict[str, str]) -> dict[str, float] | None:
        """Metrics of the latest finished baseline run comparable with this one."""
        if self.client is None or tags.get("sandbox.baseline") == "true":
            return None
        exp = self.client.get_experiment_by_name(self.experiment)
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string=("tags.`sandbox.baseline` = 'true' and tags.`sandbox.comparable` = "
                           f"'{tags['sandbox.comparable']}' and attributes.status = 'FINISHED'"),
            order_by=["attributes.start_time DESC"], max_results=1)
        return dict(runs[0].data.metrics) if runs else None

    def child(self, run_name: str, tags: dict[str, str] | None = None) -> "MLflowTracker":
        """A nested run under this one (tag ``mlflow.parentRunId``), e.g. one pool's training
        and evaluation in the bottom-up workflow; ``finish`` it when done."""
        kid = MLflowTracker(self.uri, self.experiment, run_name, self.max_artifact_bytes / 2 ** 20)
        if self.run_id is None:
            return kid
        kid.client = self.client
        exp_id = self.client.get_run(self.run_id).info.experiment_id
        run = self.client.create_run(exp_id, run_name=run_name,
                                     tags={**(tags or {}), "mlflow.parentRunId": self.run_id})
        kid.run_id = run.info.run_id
        return kid

    def finish(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)
            self.run_id = None
