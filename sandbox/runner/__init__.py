"""Run one experiment: ``run(cfg) -> metrics``.

1. *Plan* (``sandbox.runner.plan``): every step of every pipeline is checked against its class
   (parameters, inputs) and every ``${ctx:STEP.OUTPUT}`` against the steps that run earlier,
   before any step runs; the configured recipe is parsed and validated, once: that ``Recipe``
   is what the tracker records and the steps that read ``${recipe}`` get.
2. *Execute* (``sandbox.runner.executor``): steps run in order; each one's inputs resolve when
   it starts; its outputs are saved to ``context.json``, its metrics and files go to the tracker.
   A step's identity (``sandbox.runner.identity``) is a hash of its resolved config, inputs,
   upstream identities and the files it reads: with ``resume=true`` a finished step whose
   identity is unchanged is skipped.
"""
from __future__ import annotations

import copy
import time
from datetime import datetime
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from sandbox.cache import cache_root, using_cache_root
from sandbox.console import print_summary
from sandbox.context import Context, register_resolvers
from sandbox.engine import build_engine, preload_in_background, resolve_num_proc
from sandbox.errors import ConfigError
from sandbox.recipe import Recipe
from sandbox.runner import doc_scores
from sandbox.runner.compute import per_decision
from sandbox.runner.executor import Executor
from sandbox.runner.plan import (PlannedPipeline, PlannedStep, RunPlan, plan, plan_pipelines,
                                 plan_run)
from sandbox.steps.base import ReportHook
from sandbox.tracking import NoTracker
from sandbox.tracking.params import flatten, redact, redact_hydra_record
from sandbox.tracking.run_info import describe_run, hydra_job
from sandbox.utils import atomic_write_text

__all__ = ["run", "plan", "plan_pipelines", "plan_run", "PlannedPipeline", "PlannedStep",
           "RunPlan"]


def run(cfg, run_dir: str | Path | None = None,
        report: ReportHook | None = None) -> dict[str, float]:
    """Run the experiment described by a composed config; return its metrics. ``report``: the
    hook every step's ``env.report(name, value, step)`` calls (a sweep trial's pruner, which
    raises ``Pruned`` to stop the run), or None."""
    register_resolvers()
    run_dir = Path(run_dir or OmegaConf.select(cfg, "run_dir", default=None)
                   or Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(str(OmegaConf.select(cfg, "cache_dir") or cache_root()))
    with using_cache_root(cache_dir):  # before anything reads a cache (corpus, kernels)
        return _run(cfg, run_dir, cache_dir, report)


def _run(cfg, run_dir: Path, cache_dir: Path, report: ReportHook | None) -> dict[str, float]:
    planned = plan_run(cfg)
    pipelines = planned.pipelines
    _preload_recipe(planned.recipe)
    if any(p.carry for p in pipelines):  # carried values rewrite the config: work on a copy
        cfg = copy.deepcopy(cfg)

    resume = bool(cfg.get("resume", False))
    ctx = Context.load(run_dir / "context.json") if resume else Context(run_dir / "context.json")
    if pipelines[0].name:  # the multi-pipeline form
        ctx.layout = {p.name: [s.name for s in p.steps] for p in pipelines}
    resolved = resolved_config(cfg)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(redact(resolved))))
    redact_hydra_record(run_dir)

    num_proc = resolve_num_proc(cfg.get("num_proc"))
    engine = build_engine(OmegaConf.select(cfg, "engine"))
    tracker = build_tracker(cfg)
    info = describe_run(resolved, [s.key for p in pipelines for s in p.steps], run_dir,
                        planned.recipe)
    tags = info.tags
    tracker.start(run_name=info.name, params={**flatten(redact(resolved)), **info.params},
                  tags=tags, resume_run_id=ctx.meta.get("tracking_run_id") if resume else None,
                  run_dir=run_dir)
    tracker.log_text(info.recipe_yaml, "recipe.yaml")
    ctx.meta["tracking_run_id"] = getattr(tracker, "run_id", None)
    ctx.save()
    ex = Executor(cfg, ctx, run_dir, cache_dir, tracker, resume, engine, num_proc,
                  planned.recipes, report)
    status = "FINISHED"
    t_run = time.perf_counter()
    try:
        for pipe in pipelines:
            ex.run_pipeline(pipe)
        ex.metrics["time/total_s"] = time.perf_counter() - t_run
        ledger = ex.ledger.metrics()
        ledger.update(per_decision(ex.metrics, ledger["compute/total_cpu_s"]))
        ex.metrics.update(ledger)
        tracker.log_metrics({"time/total_s": ex.metrics["time/total_s"], **ledger})
    except BaseException as e:
        status = "FAILED"
        # what a stopped run spent so far: its tracking run and the sweep's ledger keep it
        partial = ex.ledger.metrics()
        try:
            e.compute_ledger = partial  # type: ignore[attr-defined]
            tracker.log_metrics(partial)
        except Exception:
            pass  # the run's own error is the one to report
        raise
    finally:
        ctx.save()
        ex.close(status)
        tracker.log_artifact(run_dir / "config.yaml")
        tracker.log_artifact(run_dir / "context.json")
        baseline = paired = None
        if status == "FINISHED":
            folder = doc_scores.collect(ctx.steps, run_dir, int(cfg.get("seed", 0)))
            if folder is not None:
                tracker.log_dir(folder, artifact_path=doc_scores.FOLDER)
            baseline = tracker.find_baseline(tags)
            if baseline and folder is not None:
                paired = doc_scores.pairs(doc_scores.load(folder), doc_scores.load(
                    tracker.baseline_artifacts(doc_scores.FOLDER, run_dir / ".baseline")))
        tracker.finish(status)
    experiment = hydra_job(resolved)[1].get("experiment")
    evaluator = OmegaConf.select(cfg, "evaluator") or {}
    print_summary(ex.metrics, baseline, run_dir, tags.get("sandbox.baseline") == "true",
                  baseline_command="python -m sandbox " + (f"experiment={experiment} " if
                                                           experiment else "") +
                  "recipe=none refine=none",
                  primary=evaluator.get("primary"), paired=paired,
                  signal=OmegaConf.to_container(evaluator.signal, resolve=True)
                  if evaluator.get("signal") else None)
    return ex.metrics


def _preload_recipe(recipe: Recipe | None) -> None:
    """Load what the configured recipe's OPs need (compiled kernels) in the background while the
    first steps run; the engine waits for it before it forks workers."""
    if recipe is not None:
        preload_in_background(list(recipe.ops), recipe.text_key)


def build_tracker(cfg):
    node = OmegaConf.select(cfg, "tracking")
    return NoTracker() if node is None else instantiate(node, _convert_="all")


def resolved_config(cfg) -> dict:
    """Everything but the pipeline wiring resolved (``${ctx:...}`` cannot resolve yet)."""
    out = {}
    for key in cfg:
        if key in ("pipeline", "pipelines", "hydra"):
            out[key] = OmegaConf.to_container(cfg[key], resolve=False)
        else:
            try:
                out[key] = OmegaConf.to_container(cfg[key], resolve=True) \
                    if OmegaConf.is_config(cfg[key]) else cfg[key]
            except Exception as e:  # a missing value: report it clearly
                raise ConfigError(f"config key `{key}` cannot be resolved: {e}") from None
    return out
