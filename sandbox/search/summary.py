"""The study's parent MLflow run, and the closing summary of a search.

The parent run is created when the sweep starts (its id is kept in the study's user attrs, so a
resumed study reuses it); each trial's run is its child (``SANDBOX_PARENT_RUN_ID``) and is tagged
with the trial's number, Optuna state and error, and gets the sampled values as ``optuna.*``
params. When the sweep ends the parent gets: ``best_<objective>`` metrics (single objective) or
``pareto_size``; trial counts; tags naming the best trial(s); ``study_summary.json`` (every
trial); ``best_recipe.yaml`` (the best trial's refined recipe, Data-Juicer format; for several
objectives ``pareto/trial_<n>_recipe.yaml`` per Pareto-optimal trial); and Optuna's plots as
self-contained HTML (plotly) under ``plots/`` (matplotlib PNGs when plotly is missing).

Noise (``sandbox.search.noise``, ``sandbox.search.confirm``): the summary counts the trials within
noise of the best (parent metric ``trials_within_noise``, or ``trials_within_noise_<objective>``
for several objectives; absent when unknown) and, with ``hydra.sweeper.confirm_seeds``, reports
each confirmed trial's value over fresh seeds beside the searched one: ``confirmed_<objective>``
with ``_std``, ``_ci_low``, ``_ci_high`` and ``.seed<S>`` for the best trial (one objective),
``confirmed/trial<n>/<objective>`` and companions for any other confirmed trial, and the tags
``sandbox.confirmed_trials`` and ``sandbox.winners_curse``. ``study_summary.json`` is also
written to the sweep dir (any Hydra app, with or without MLflow).

Compute (``sandbox.search.compute``): the summary's ``compute`` entry, its printed line and the
parent's ``compute/...`` metrics add up the trials' ledgers: the total spent, what pruning and
reuse saved, and the CPU-seconds per decided comparison.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from sandbox import env_vars
from sandbox.console import console
from sandbox.search.compute import ledger_line, ledger_metrics, search_ledger
from sandbox.search.confirm import ATTR as CONFIRMATIONS
from sandbox.search.confirm import confirmation_lines, stored_estimate
from sandbox.search.noise import within_noise
from sandbox.tracking.mlflow_tracker import MLflowTracker
from sandbox.verdict import flat


def _mlflow_target(config) -> tuple[str, str] | None:
    node = OmegaConf.select(config, "tracking")
    if node is None or not str(node.get("_target_", "")).endswith("MLflowTracker"):
        return None
    return str(node.get("uri", "sqlite:///mlflow.db")), str(node.get("experiment", "sandbox"))


def best_trials(study) -> list:
    """The best trial (one objective) or the Pareto-optimal ones; [] while none is feasible."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    try:
        return list(study.best_trials) if len(study.directions) > 1 else [study.best_trial]
    except ValueError:  # no feasible trial under the constraints
        return []


class ParentRun:
    """The study's MLflow run: its trials' runs are children of it."""

    def __init__(self, tracker, experiment_objectives: list[str], directions: list[str]):
        self.tracker = tracker
        self.run_id: str = tracker.run_id
        self.objectives, self.directions = experiment_objectives, directions
        self.client = tracker.client

    @classmethod
    def open(cls, config, study, study_name: str, space, objectives, directions, constraints):
        """The study's run (the stored one on a resume), or None when tracking is not MLflow."""
        target = _mlflow_target(config)
        if target is None:
            return None
        uri, experiment = target
        tracker = MLflowTracker(uri=uri, experiment=experiment)
        existing = study.user_attrs.get("mlflow_parent_run")
        if existing and existing.get("uri") == uri:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            try:
                client.get_run(existing["run_id"])
                client.update_run(existing["run_id"], status="RUNNING")
                tracker.client, tracker.run_id = client, existing["run_id"]
                return cls(tracker, objectives, directions)
            except Exception:
                pass  # deleted: make a new one
        saved = os.environ.pop(env_vars.PARENT_RUN_ID, None)
        try:
            params = {"study_name": study_name, "storage": str(study._storage.__class__.__name__),
                      "objectives": ",".join(objectives), "directions": ",".join(directions),
                      "constraints": "; ".join(map(str, constraints)) or "none",
                      "sampler": type(study.sampler).__name__,
                      "pruner": type(study.pruner).__name__}
            params.update({f"space.{k}": repr(v)[:500] for k, v in space.distributions.items()})
            tracker.start(run_name=f"study {study_name}", params=params,
                          tags={"sandbox.study": study_name, "sandbox.search": "parent"})
        finally:
            if saved is not None:
                os.environ[env_vars.PARENT_RUN_ID] = saved
        study.set_user_attr("mlflow_parent_run", {"uri": uri, "run_id": tracker.run_id})
        return cls(tracker, objectives, directions)

    def _child(self, number: int):
        runs = self.client.search_runs(
            [self.client.get_run(self.run_id).info.experiment_id],
            filter_string=(f"tags.`mlflow.parentRunId` = '{self.run_id}' and "
                           f"tags.`sandbox.trial` = '{number}'"),
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def record_trial(self, number: int, state: str, params: dict, error: str | None) -> None:
        """Tag trial ``number``'s run with its Optuna state, error and sampled params."""
        from mlflow.entities import Param, RunTag

        try:
            child = self._child(number)
            if child is None:
                return
            tags = [RunTag("optuna.state", state)]
            if error:
                tags.append(RunTag("optuna.error", str(error)[-4000:]))
            items = [Param(f"optuna.{k}", str(v)[:500]) for k, v in params.items()
                     if f"optuna.{k}" not in child.data.params]
            self.client.log_batch(child.info.run_id, params=items, tags=tags)
            if state == "PRUNED" or (state == "FAIL" and child.info.status == "RUNNING"):
                # pruned, or failed because its worker died and no one could end its run
                self.client.set_terminated(child.info.run_id, "KILLED")
        except Exception as e:  # tracking must not stop the study
            console.print(f"[yellow]warning:[/] could not tag trial {number}'s run: {e}")

    def finish(self, study, status: str) -> None:
        """Log the study's summary to the run and end it with ``status``."""
        try:
            self._summarise(study)
        except Exception as e:
            console.print(f"[yellow]warning:[/] the study summary was not logged: {e}")
        finally:
            self.tracker.finish(status)

    def _summarise(self, study) -> None:
        from mlflow.entities import Metric, RunTag

        best = best_trials(study)
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
        metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
        tags = {"sandbox.best_trials": ",".join(str(t.number) for t in best) or "none"}
        if len(self.objectives) == 1 and best:
            metrics[f"best_{self.objectives[0]}"] = float(best[0].value)
            for k, v in best[0].params.items():
                tags[f"best.{k}"] = str(v)[:500]
        else:
            metrics["pareto_size"] = float(len(best))
        metrics.update(noise_metrics(study, self.objectives, best))
        metrics.update(ledger_metrics(search_ledger(
            study.get_trials(deepcopy=False), within_noise(study, self.objectives, best))))
        tags.update(confirmation_tags(study))
        ts = time.time()
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, v, int(ts * 1000), len(study.trials)) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()])
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            (out / "study_summary.json").write_text(json.dumps(study_summary(study, self.objectives),
                                                               indent=1))
            self.client.log_artifact(self.run_id, str(out / "study_summary.json"))
            for path, dest in export_best_recipes(study, best, out):
                self.client.log_artifact(self.run_id, str(path), dest)
            for path in write_plots(study, self.objectives, out / "plots"):
                self.client.log_artifact(self.run_id, str(path), "plots")


def noise_metrics(study, objectives: list[str], best: list) -> dict[str, float]:
    """The parent run's metrics on noise: the within-noise count(s) when known, and the
    confirmed values (see the module docstring)."""
    out: dict[str, float] = {}
    for name, entry in within_noise(study, objectives, best).items():
        if entry["count"] is not None:
            key = "trials_within_noise" if len(objectives) == 1 else f"trials_within_noise_{name}"
            out[key] = float(entry["count"])
    stored = study.user_attrs.get(CONFIRMATIONS) or {}
    for key, record in stored.items():
        for name, r in (record.get("objectives") or {}).items():
            est = stored_estimate(r)
            if math.isnan(est.mean):
                continue
            if len(objectives) == 1 and best and int(key) == best[0].number:
                out.update(flat(f"confirmed_{name}", est))
            else:  # another confirmed trial (confirm_top > 1, a Pareto front, an earlier best)
                out.update(flat(f"confirmed/trial{key}/{name}", est))
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and
            math.isfinite(float(v))}


def confirmation_tags(study) -> dict[str, str]:
    """``sandbox.confirmed_trials`` and ``sandbox.winners_curse`` (``trial 7: perplexity``)."""
    stored = study.user_attrs.get(CONFIRMATIONS) or {}
    if not stored:
        return {}
    cursed = [f"trial {k}: {name}" for k in sorted(stored, key=int)
              for name, r in (stored[k].get("objectives") or {}).items()
              if r.get("verdict") == "worse"]
    return {"sandbox.confirmed_trials": ",".join(sorted(stored, key=int)),
            "sandbox.winners_curse": "; ".join(cursed) or "none"}


def confirmation_of(study, number: int, objective: str) -> dict | None:
    """Trial ``number``'s confirmed ``objective`` (mean, std, interval, seeds, verdict), if any."""
    record = (study.user_attrs.get(CONFIRMATIONS) or {}).get(str(number))
    if not record or record.get("status") != "ok":
        return None
    r = (record.get("objectives") or {}).get(objective)
    if r is None:
        return None
    return {"value": r["mean"], "std": r["std"], "ci_low": r["low"], "ci_high": r["high"],
            "seeds": list(record["seeds"]), "verdict": r["verdict"]}


def _finite(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None


def study_summary(study, objectives: list[str]) -> dict:
    """Every trial of the study as JSON-able data (``study_summary.json``), with the noise
    summary: ``within_noise`` per objective and ``confirmations`` (``sandbox.search.confirm``)."""
    best_list = best_trials(study)
    best = {t.number for t in best_list}
    noise = within_noise(study, objectives, best_list)
    stored = study.user_attrs.get(CONFIRMATIONS) or {}
    return {
        "study_name": study.study_name,
        "objectives": objectives,
        "directions": [d.name.lower() for d in study.directions],
        "best_trials": sorted(best),
        "within_noise": noise,
        "confirmations": [stored[k] for k in sorted(stored, key=int)],
        "compute": search_ledger(study.get_trials(deepcopy=False), noise),
        "trials": [{
            "number": t.number, "state": t.state.name,
            "values": [_finite(v) for v in t.values] if t.values else None,
            "params": t.params, "best": t.number in best,
            "constraints": t.user_attrs.get("constraints"),
            "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error"),
            "seconds": t.user_attrs.get("seconds"),
            "metrics": t.user_attrs.get("metrics"),
        } for t in study.get_trials(deepcopy=False)],
    }


def write_study_summary(study, objectives: list[str], folder: Path) -> Path | None:
    """``<folder>/study_summary.json``; None (with a warning) when it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "study_summary.json"
        path.write_text(json.dumps(study_summary(study, objectives), indent=1))
        return path
    except Exception as e:  # a summary must not turn a finished sweep into a failed one
        console.print(f"[yellow]warning:[/] study_summary.json was not written: {e}")
        return None


def export_best_recipes(study, best: list, out: Path) -> list[tuple[Path, str | None]]:
    """The refined recipe (Data-Juicer YAML) of the best trial, or of each Pareto-optimal one."""
    exported = []
    for t in best:
        run_dir = t.user_attrs.get("run_dir")
        src = Path(run_dir) / "refine" / "recipe.yaml" if run_dir else None
        if src is None or not src.is_file():
            continue
        if len(best) == 1 and len(study.directions) == 1:
            dst = out / "best_recipe.yaml"
            dest_dir = None
        else:
            (out / "pareto").mkdir(exist_ok=True)
            dst = out / "pareto" / f"trial_{t.number}_recipe.yaml"
            dest_dir = "pareto"
        values = ", ".join(f"{v:.6g}" for v in t.values)
        dst.write_text(f"# best recipe of study {study.study_name}: trial {t.number} "
                       f"(objective {values})\n# params: {json.dumps(t.params)}\n"
                       + src.read_text())
        exported.append((dst, dest_dir))
    return exported


def write_plots(study, objectives: list[str], out: Path) -> list[Path]:
    """Optuna's plots: optimisation history, parameter importances, slice, Pareto front."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    out.mkdir(parents=True, exist_ok=True)
    multi = len(study.directions) > 1
    try:
        import plotly  # noqa: F401

        from optuna import visualization as vis

        ext = "html"
    except ImportError:
        from optuna.visualization import matplotlib as vis

        ext = "png"
    names = objectives if multi else [objectives[0]]
    jobs: list[tuple[str, Callable[[], Any]]] = []
    for i, name in enumerate(names):
        target = (lambda t, i=i: t.values[i]) if multi else None
        suffix = f"_{name.replace('/', '_')}" if multi else ""
        kw = {"target": target, "target_name": name} if multi else {"target_name": name}
        jobs.append((f"optimization_history{suffix}", lambda kw=kw: vis.plot_optimization_history(
            study, **kw)))
        jobs.append((f"slice{suffix}", lambda kw=kw: vis.plot_slice(study, **kw)))
        if len(complete) >= 2 and len(study.trials[0].distributions) >= 1:
            jobs.append((f"param_importances{suffix}",
                         lambda kw=kw: vis.plot_param_importances(study, **kw)))
    if multi and len(study.directions) in (2, 3):
        jobs.append(("pareto_front", lambda: vis.plot_pareto_front(study, target_names=objectives)))
    paths = []
    for name, make in jobs:
        path = out / f"{name}.{ext}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
            if ext == "html":
                fig.write_html(str(path), include_plotlyjs=True, full_html=True)
            else:
                figure = fig.figure if hasattr(fig, "figure") else fig[0].figure
                figure.savefig(path, dpi=100, bbox_inches="tight")
                import matplotlib.pyplot as plt

                plt.close(figure)
            paths.append(path)
        except Exception:  # a plot that does not apply (e.g. importances of one trial)
            continue
    return paths


def print_summary(study, objectives: list[str], say: Callable[[str], None]) -> None:
    """The trial counts and the best trial(s), through ``say``."""
    best = best_trials(study)
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    say(f"study `{study.study_name}`: {len(study.trials)} trial(s) "
        f"({', '.join(f'{n} {k.lower()}' for k, n in sorted(counts.items()))})")
    for t in best:
        values = ", ".join(f"{o}={v:.4g}" for o, v in zip(objectives, t.values))
        say(f"best trial {t.number}: {values}; {json.dumps(t.params)}; "
            f"run dir {t.user_attrs.get('run_dir')}")
    line = ledger_line(search_ledger(study.get_trials(deepcopy=False),
                                     within_noise(study, objectives, best)))
    if line:
        say(line)
    if not best:
        say("no complete (feasible) trial yet")
        return
    for name, entry in within_noise(study, objectives, best).items():
        label = "within noise" if len(objectives) == 1 else f"within noise ({name})"
        say(f"{label}: {entry['text']}")
    for line in confirmation_lines(study, objectives):
        say(line)

