"""MLflow tracking: one store for all runs (SQLite by default), one run per experiment run.

Uses ``MlflowClient`` rather than the fluent API, so that several runs in one process (a Hydra
multirun) never collide on a global "active run". ``mlflow`` is imported only here.

What the MLflow UI then shows: the experiment is a model-training experiment (tag
``mlflow.experimentKind``) and a finished run prints the address of its runs table
(``ui_address``); metrics are grouped into sections
(``sandbox.tracking.names``); each run lists the data pool and the processed pool it used as
dataset inputs (``log_outputs``); a search trial's run is named ``trial <n> · ...`` and tagged
``sweep=<study>``; ``child`` opens a nested run (a pool of the bottom-up workflow, a seed)."""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from sandbox import env_vars
from sandbox.console import console
from sandbox.data.fingerprint import fingerprint
from sandbox.errors import ConfigError
from sandbox.tracking.base import NoTracker
from sandbox.tracking.datasets import parquet_dataset
from sandbox.tracking.names import short_name, tracked_name

# MLflow 3 UIs read this tag to open an experiment on its runs rather than its GenAI overview
# (3.17's follows its own GenAI / Model training switch instead: see `ui_address`)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# tags a nested run takes from its parent, so that grouping by them keeps families together
GROUP_TAGS = ("recipe", "data_pool", "trainer", "baseline", "sweep")


def absolute_sqlite(uri: str) -> str:
    """A relative ``sqlite:///FILE`` URI made absolute (from the current folder), so that the
    store is the same file whatever folder the run moves to later: MLflow caches stores by URI
    string, so a relative one would keep following the folder it was first opened from."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    path, sep, query = uri[len(prefix):].partition("?")
    if path in ("", ":memory:"):
        return uri
    return prefix + str(Path(path).resolve()) + sep + query


class MLflowTracker(NoTracker):
    def __init__(self, uri: str = "sqlite:///mlflow.db", experiment: str = "sandbox",
                 run_name: str | None = None, max_artifact_mb: float = 50):
        self.uri, self.experiment, self.run_name = absolute_sqlite(uri), experiment, run_name
        self.max_artifact_bytes = int(max_artifact_mb * 1024 * 1024)
        self.client = None
        self.run_id: str | None = None
        self.pool, self.pool_source = "pool", None  # names the dataset inputs (log_outputs)
        self.experiment_id: str | None = None
        self.announce = False  # print where to see the run when it ends (a top-level run)

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self._preflight()
        self.pool = tags.get("data_pool") or "pool"
        source = params.get("data_pool.path")
        self.pool_source = source if source not in (None, "", "None", "???") else None
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            parent = os.environ.get(env_vars.PARENT_RUN_ID)
            self.announce = not parent  # a search's trials: the study's run says it once
            if resume_run_id and self._reopen(resume_run_id):
                return
            exp_id = self.experiment_id = self._experiment_id()
            all_tags = dict(tags)
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            if os.environ.get(env_vars.RUN_TAGS):  # e.g. a search trial's number and study
                all_tags.update({str(k): str(v) for k, v in
                                 json.loads(os.environ[env_vars.RUN_TAGS]).items()})
            name = self.run_name or run_name
            if "sandbox.study" in all_tags:
                all_tags["sweep"] = all_tags["sandbox.study"]
            if "sandbox.trial" in all_tags and not self.run_name:
                name = f"trial {all_tags['sandbox.trial']} · {name}"
            run = self.client.create_run(exp_id, run_name=name, tags=all_tags)
        except Exception as e:
            raise ConfigError(
                f"cannot reach the MLflow tracking store tracking.uri={self.uri} ({type(e).__name__}: "
                f"{e}). Fix the URI, start the server, or run with tracking=none."
            ) from None
        self.run_id = run.info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _experiment_id(self) -> str:
        """The experiment's id, created (or tagged) as a model-training experiment."""
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            try:
                return self.client.create_experiment(
                    self.experiment, artifact_location=self._artifact_location(),
                    tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
            except Exception:  # another process (a parallel trial) created it meanwhile
                exp = self.client.get_experiment_by_name(self.experiment)
                if exp is None:
                    raise
        kind = exp.tags.get(EXPERIMENT_KIND_TAG)
        # an earlier store, or a kind the UI inferred; a kind someone chose is left alone
        if kind is None or kind.endswith("_inferred") or kind == "no_inferred_type":
            self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG,
                                           MODEL_TRAINING_KIND)
        return exp.experiment_id

    def _reopen(self, run_id: str) -> bool:
        """Continue logging into the run a crashed run left behind (resume)."""
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        self.client.update_run(run_id, status="RUNNING")
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
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
        items = [Metric(tracked_name(k), float(v), ts, int(step or 0)) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i:i + 500])

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.run_id is not None:
            self.client.log_text(self.run_id, text, artifact_file)

    def log_outputs(self, step: str, outputs: dict) -> None:
        """A step's ``dataset`` output (a Parquet file) as a dataset input of the run: the
        loader's is the data pool (named after it, digest = its fingerprint, source = the file
        the user named), a later step's is ``<pool>/<step>`` (``default/process``: the
        processed pool)."""
        path = outputs.get("dataset")
        if self.run_id is None or not isinstance(path, str) or not path.endswith(".parquet") \
                or not Path(path).is_file():
            return
        from mlflow.entities import DatasetInput, InputTag

        loader = "fingerprint" in outputs
        try:
            dataset = parquet_dataset(
                path, self.pool if loader else f"{self.pool}/{step}",
                outputs.get("fingerprint") or fingerprint(path),
                source=self.pool_source if loader else None)
            context = "data_pool" if loader else step
            self.client.log_inputs(self.run_id, [DatasetInput(
                dataset, [InputTag("mlflow.data.context", context)])])
        except Exception as e:  # the run dir has the data; the run goes on without the record
            console.print(f"[yellow]warning:[/] {step}'s dataset was not recorded in MLflow: "
                          f"{type(e).__name__}: {e}")

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
        if not runs:
            return None
        self.baseline_run_id = runs[0].info.run_id
        return {short_name(k): v for k, v in runs[0].data.metrics.items()}

    def baseline_artifacts(self, artifact_path: str, dest: str | Path) -> Path | None:
        run_id = getattr(self, "baseline_run_id", None)
        if self.client is None or run_id is None:
            return None
        dest = Path(dest)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        try:
            return Path(self.client.download_artifacts(run_id, artifact_path, str(dest)))
        except Exception:  # a baseline from before per-document scores: compare summary values
            return None

    def child(self, run_name: str, tags: dict[str, str] | None = None) -> "MLflowTracker":
        """A nested run under this one (tag ``mlflow.parentRunId``), e.g. one pool's training
        and evaluation in the bottom-up workflow, or one seed of a run; it takes this run's
        group-by tags (``GROUP_TAGS``), logs like this one, and is ``finish``ed by its maker."""
        kid = MLflowTracker(self.uri, self.experiment, run_name, self.max_artifact_bytes / 2 ** 20)
        kid.pool, kid.pool_source = self.pool, self.pool_source
        if self.run_id is None:
            return kid
        kid.client = self.client
        parent = self.client.get_run(self.run_id)
        inherited = {k: v for k, v in parent.data.tags.items() if k in GROUP_TAGS}
        run = self.client.create_run(parent.info.experiment_id, run_name=run_name,
                                     tags={**inherited, **(tags or {}),
                                           "mlflow.parentRunId": self.run_id})
        kid.run_id, kid.experiment_id = run.info.run_id, parent.info.experiment_id
        return kid

    def ui_address(self) -> str:
        """Where the MLflow UI shows this experiment's runs table. ``workflowType`` matters:
        MLflow 3.17's UI follows its GenAI / Model training switch (GenAI until the user
        flips it) rather than the experiment's kind tag."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) \
            else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"

    def finish(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)
            self.run_id = None
            if self.announce and self.experiment_id is not None:
                serve = "" if self.uri.startswith(("http://", "https://")) else \
                    f"`mlflow ui --backend-store-uri {self.uri}`, then "
                console.print(f"MLflow: {serve}{self.ui_address()}", soft_wrap=True)
