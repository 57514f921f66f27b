"""MLflow tracking: one store for all runs (SQLite by default), one run per experiment run.

Uses ``MlflowClient`` rather than the fluent API, so that several runs in one process (a Hydra
multirun) never collide on a global "active run". ``mlflow`` is imported only here.

What the MLflow UI then shows: the experiment is a model-training experiment (tag
``mlflow.experimentKind``) and a finished run prints the address of its runs table
(``ui_address``); metrics are grouped into sections
(``sandbox.tracking.names``); each run lists the data pool and the processed pool it used as
dataset inputs (``log_outputs``); a search trial's run is named ``trial <n> · ...`` and tagged
``sweep=<study>``; ``child`` opens a nested run (a pool of the bottom-up workflow, a seed).

Faults. A store that does not answer at start fails the run before any work, in one paragraph,
or (``on_error: warn``) leaves the run untracked and says so at its end. One that stops
answering mid-run costs nothing: every later call goes to the run dir's
``tracking-buffer.jsonl`` (``sandbox.tracking.buffer``), which ``python -m sandbox.tracking sync
RUN_DIR``, or the next start in that run dir, sends. A resumed run that an attempt killed
without ending it (SIGKILL) left RUNNING is first marked KILLED, and counted in its tag
``sandbox.killed_attempts``."""
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
from sandbox.tracking import buffer as offline
from sandbox.tracking.base import NoTracker
from sandbox.tracking.datasets import parquet_dataset
from sandbox.tracking.names import short_name, tracked_name

# MLflow 3 UIs read this tag to open an experiment on its runs rather than its GenAI overview
# (3.17's follows its own GenAI / Model training switch instead: see `ui_address`)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# tags a nested run takes from its parent, so that grouping by them keeps families together
GROUP_TAGS = ("recipe", "data_pool", "trainer", "baseline", "sweep")
ON_ERROR = ("fail", "warn")
# MLflow's client retries an unreachable server for minutes (7 tries, doubling waits); a run
# gives up after about 10 s and buffers instead, unless these are set
QUICK_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
KILLED_TAG = "sandbox.killed_attempts"


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
                 run_name: str | None = None, max_artifact_mb: float = 50,
                 on_error: str = "fail"):
        if on_error not in ON_ERROR:
            raise ConfigError(f"tracking.on_error={on_error!r}: use `fail` (a store that does "
                              f"not answer at start stops the run) or `warn` (the run goes on "
                              f"untracked and says so at its end).")
        self.uri, self.experiment, self.run_name = absolute_sqlite(uri), experiment, run_name
        self.on_error = on_error
        self.untracked: str | None = None  # why this run is not tracked (on_error=warn)
        # shared with the nested runs: where calls go while the store does not answer, since
        # when and why, and how many records went there
        self.link: dict = {"buffer": None, "offline": None, "buffered": 0}
        self.group_tags: dict[str, str] = {}
        self.max_artifact_bytes = int(max_artifact_mb * 1024 * 1024)
        self.client = None
        self.run_id: str | None = None
        self.pool, self.pool_source = "pool", None  # names the dataset inputs (log_outputs)
        self.experiment_id: str | None = None
        self.announce = False  # print where to see the run when it ends (a top-level run)

    def start(self, run_name: str, params: dict[str, str], tags: dict[str, str],
              resume_run_id: str | None = None, run_dir: str | Path | None = None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.link["buffer"] = None if run_dir is None else offline.buffer_path(run_dir)
        if self.uri.startswith(("http://", "https://")):
            for name, value in QUICK_RETRIES.items():
                os.environ.setdefault(name, value)
        try:
            self._preflight()
        except ConfigError as e:
            if self.on_error == "warn":
                return self._untracked(str(e))
            raise
        self.pool = tags.get("data_pool") or "pool"
        source = params.get("data_pool.path")
        self.pool_source = source if source not in (None, "", "None", "???") else None
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            parent = os.environ.get(env_vars.PARENT_RUN_ID)
            self.announce = not parent  # a search's trials: the study's run says it once
            self._replay(run_dir)
            self.group_tags = {k: v for k, v in tags.items() if k in GROUP_TAGS}
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
            message = (f"cannot reach the MLflow tracking store tracking.uri={self.uri} "
                       f"({type(e).__name__}: {e}). Fix the URI, start the server, or run with "
                       f"tracking=none (or tracking.on_error=warn to run untracked).")
            if self.on_error == "warn":
                return self._untracked(message)
            raise ConfigError(message) from None
        self.run_id = run.info.run_id
        self.group_tags = {k: v for k, v in all_tags.items() if k in GROUP_TAGS}
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _untracked(self, reason: str) -> None:
        self.untracked = reason
        self.client = self.run_id = None
        console.print(f"[yellow]warning:[/] tracking.on_error=warn: this run is not tracked: "
                      f"{reason}", soft_wrap=True)

    def _replay(self, run_dir: str | Path | None) -> None:
        """Send what an earlier attempt in this run dir buffered, before anything new."""
        if run_dir is None or not offline.buffer_path(run_dir).is_file():
            return
        sent, left = offline.replay(run_dir, self.client)
        console.print(f"MLflow: sent {sent} records an earlier attempt kept in "
                      f"{offline.buffer_path(run_dir)}" + (f"; {left} could not go yet" if left
                                                            else ""), soft_wrap=True)

    def _call(self, record: dict | None, send) -> None:
        """``send()`` to the store; once the store has failed, ``record`` to the run dir's
        buffer instead (None: nothing worth keeping, e.g. a dataset record the run dir holds)."""
        link = self.link
        if link["offline"] is None:
            try:
                send()
                return
            except Exception as e:
                if link["buffer"] is None:
                    raise
                link["offline"] = f"{type(e).__name__}: {str(e)[:300]}"
                console.print(f"[yellow]warning:[/] the MLflow store tracking.uri={self.uri} "
                              f"stopped answering ({link['offline']}). The run goes on; what it "
                              f"tracks from now on is kept in {link['buffer']} (replay it with "
                              f"`python -m sandbox.tracking sync {link['buffer'].parent}`).",
                              soft_wrap=True)
        if record is not None:
            offline.append(link["buffer"], record)
            link["buffered"] += 1

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
        if run.info.status == "RUNNING":  # the attempt that ran it died without ending it
            killed = int(run.data.tags.get(KILLED_TAG, "0")) + 1
            self.client.set_terminated(run_id, "KILLED")
            self.client.set_tag(run_id, KILLED_TAG, str(killed))
            console.print(f"MLflow: run {run_id} was left RUNNING by an attempt that was killed; "
                          f"marked KILLED ({KILLED_TAG}={killed}), and this resume continues it.",
                          soft_wrap=True)
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

        def send():
            for i in range(0, len(items), 500):
                self.client.log_batch(self.run_id, metrics=items[i:i + 500])

        self._call({"op": "metrics", "run_id": self.run_id,
                    "metrics": [[m.key, m.value, m.timestamp, m.step] for m in items]}, send)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.run_id is not None:
            self._call({"op": "text", "run_id": self.run_id, "text": text,
                        "artifact_file": artifact_file},
                       lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_outputs(self, step: str, outputs: dict) -> None:
        """A step's ``dataset`` output (a Parquet file) as a dataset input of the run: the
        loader's is the data pool (named after it, digest = its fingerprint, source = the file
        the user named), a later step's is ``<pool>/<step>`` (``default/process``: the
        processed pool)."""
        path = outputs.get("dataset")
        if self.run_id is None or not isinstance(path, str) or not path.endswith(".parquet") \
                or not Path(path).is_file() or self.link["offline"] is not None:
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
        self._call({"op": "artifact", "run_id": self.run_id, "path": str(p.resolve()),
                    "artifact_path": artifact_path},
                   lambda: self.client.log_artifact(self.run_id, str(p), artifact_path))

    def log_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        root = Path(path)
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                sub = f.parent.relative_to(root)
                dest = "/".join(x for x in (artifact_path, str(sub) if str(sub) != "." else None) if x)
                self.log_artifact(f, dest or None)

    def find_baseline(self, tags: dict[str, str]) -> dict[str, float] | None:
        """Metrics of the latest finished baseline run comparable with this one."""
        if self.client is None or tags.get("sandbox.baseline") == "true" \
                or self.link["offline"] is not None:
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
        kid.pool, kid.pool_source, kid.link = self.pool, self.pool_source, self.link
        if self.run_id is None:
            return kid
        kid.client, kid.experiment_id = self.client, self.experiment_id
        all_tags = {**self.group_tags, **(tags or {})}
        kid.group_tags = {k: v for k, v in all_tags.items() if k in GROUP_TAGS}
        kid.run_id = offline.pending_id()  # the store's id replaces it once the run is made

        def send():
            run = self.client.create_run(self.experiment_id, run_name=run_name,
                                         tags={**all_tags, "mlflow.parentRunId": self.run_id})
            kid.run_id = run.info.run_id

        self._call({"op": "child", "pending": kid.run_id, "parent": self.run_id,
                    "experiment_id": self.experiment_id, "name": run_name, "tags": all_tags,
                    "start_time": int(time.time() * 1000)}, send)
        return kid

    def ui_address(self) -> str:
        """Where the MLflow UI shows this experiment's runs table. ``workflowType`` matters:
        MLflow 3.17's UI follows its GenAI / Model training switch (GenAI until the user
        flips it) rather than the experiment's kind tag."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) \
            else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning"

    def finish(self, status: str = "FINISHED") -> None:
        if self.untracked is not None:
            console.print(f"[yellow]This run was not tracked[/] (tracking.on_error=warn): "
                          f"{self.untracked}", soft_wrap=True)
            self.untracked = None
        if self.run_id is not None:
            run_id, ended = self.run_id, int(time.time() * 1000)
            self._call({"op": "end", "run_id": run_id, "status": status, "end_time": ended},
                       lambda: self.client.set_terminated(run_id, status, end_time=ended))
            self.run_id = None
            link = self.link
            if self.announce and link["offline"] is not None:
                console.print(f"[yellow]MLflow did not get all of this run:[/] the store stopped "
                              f"answering ({link['offline']}); {link['buffered']} records are "
                              f"kept in {link['buffer']}. Send them with `python -m "
                              f"sandbox.tracking sync {link['buffer'].parent}` once it answers "
                              f"(a resume in this run dir sends them first).", soft_wrap=True)
            elif self.announce and self.experiment_id is not None:
                serve = "" if self.uri.startswith(("http://", "https://")) else \
                    f"`mlflow ui --backend-store-uri {self.uri}`, then "
                console.print(f"MLflow: {serve}{self.ui_address()}", soft_wrap=True)
