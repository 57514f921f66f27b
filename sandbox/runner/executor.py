"""Execution: planned pipelines run step by step.

``Executor`` runs pipelines (iterations, stop conditions, carried values) and plain steps: it
resolves a step's config when the step starts, computes its identity, reuses a finished record
with that identity or runs the component, and records, tracks and times the outcome. Steps that
fan out over a list are ``sandbox.runner.fan_out.FanOut``'s job.

With ``seeds=N`` (N > 1) a *seeded* step (``Step.seeded``: training) and every step that reads
one run once per seed (``seed``, ``seed+1``, ...): records ``train#s43``, folders
``train/seed43``, one nested tracking run per seed. The step's own record holds the first seed's
outputs with the metrics aggregated over seeds (``sandbox.verdict``: mean, std, t interval and
the per-seed values), which is what the run reports and compares."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sandbox.components import build_component
from sandbox.console import console, step_line
from sandbox.context import Context, active, current_item
from sandbox.errors import ConfigError, DiskFullError
from sandbox.recipe import RecipeBook
from sandbox.runner.compute import Clock, Ledger, on_cuda
from sandbox.runner.fan_out import FanOut
from sandbox.runner.identity import outputs_exist, step_identity
from sandbox.runner.plan import PlannedPipeline, PlannedStep
from sandbox.steps.base import ReportHook, StepEnv
from sandbox.utils import safe_name, stable_hash
from sandbox.verdict import flat, is_companion, over_seeds


class Executor:
    """Runs planned pipelines step by step; ``metrics`` collects every step's metrics."""

    def __init__(self, cfg, ctx: Context, run_dir: Path, cache_dir: Path, tracker, resume: bool,
                 engine, num_proc: int, recipes: RecipeBook | None = None,
                 report: ReportHook | None = None):
        self.cfg, self.ctx, self.run_dir, self.cache_dir = cfg, ctx, run_dir, cache_dir
        self.tracker, self.resume, self.engine, self.num_proc = tracker, resume, engine, num_proc
        # the run's recipes: the configured one (parsed at planning) and those steps return
        self.recipes = recipes if recipes is not None else RecipeBook()
        self.report = report  # every step's StepEnv.report_hook (a sweep trial's pruner)
        self.metrics: dict[str, float] = {}
        self.suffix = ""  # "@<iteration>" while an iterating pipeline runs
        self.fan_out = FanOut(self)
        self.seeds = seed_list(cfg)
        self.children: dict[str, Any] = {}  # nested tracking runs by label (a seed, a pool)
        self.ledger = Ledger()  # what each step cost (sandbox.runner.compute)

    # ------------------------------------------------------------------ pipelines
    def run_pipeline(self, pipe: PlannedPipeline) -> None:
        self.ctx.scope = pipe.name
        self.ctx.meta.setdefault("iterations", {})
        for i in range(1, pipe.max_iter + 1):
            self.suffix = f"@{i}" if pipe.iterate else ""
            for s in pipe.steps:  # ${ctx:step.output} reads this iteration's outputs
                self.ctx.aliases[s.key] = s.key + self.suffix
            if pipe.iterate:
                console.print(f"[bold]{pipe.name or 'pipeline'} iteration {i}/{pipe.max_iter}[/]")
            seeded = self.seeded_steps(pipe)
            for step in pipe.steps:
                if step.for_each:
                    self.fan_out.run(step)
                elif step.key in seeded:
                    self.run_seeded(step, seeded)
                else:
                    self.run_step(step)
            self.ctx.meta["iterations"][pipe.name or "pipeline"] = i
            self.ctx.save()
            if pipe.stop_when is not None and pipe.stop_when.evaluate(self.lookup):
                console.print(f"stop condition `{pipe.stop_when.text}` met after iteration {i}")
                break
            if i < pipe.max_iter:
                self._carry(pipe)
        self.suffix = ""

    def lookup(self, ref: str) -> Any:
        """The value of ``${ctx:ref}`` now."""
        with active(self.ctx):
            return self.ctx.get(ref)

    def _carry(self, pipe: PlannedPipeline) -> None:
        for target, ref in pipe.carry.items():
            value = self.lookup(ref)
            with open_dict(self.cfg):
                OmegaConf.update(self.cfg, target, value, merge=False)

    # ------------------------------------------------------------------ seeds
    def seeded_steps(self, pipe: PlannedPipeline) -> set[str]:
        """Keys of the steps that run once per seed: seeded steps and the steps reading them
        (fan-out steps have their own ``seeds:``)."""
        if len(self.seeds) < 2:
            return set()
        out: set[str] = set()
        for s in pipe.steps:
            if not s.for_each and (getattr(s.cls, "seeded", False) or any(r in out for r in s.refs)):
                out.add(s.key)
        if not out and not any(s.for_each for s in pipe.steps):
            console.print(f"[yellow]seeds={len(self.seeds)} has no effect here: no step of this "
                          f"pipeline trains a model.[/]")
        return out

    def run_seeded(self, step: PlannedStep, seeded: set[str]) -> None:
        key = step.key + self.suffix
        per_seed: dict[int, dict[str, float]] = {}
        for seed in self.seeds:
            for k in seeded:  # ${ctx:train.x} reads this seed's record
                self.ctx.aliases[k] = f"{k}{self.suffix}#s{seed}"
            per_seed[seed] = self.run_step(step, seed)
        for k in seeded:
            self.ctx.aliases[k] = k + self.suffix
        metrics = aggregate_seeds(per_seed)
        records = [self.ctx.steps[f"{key}#s{s}"] for s in self.seeds]
        outputs = dict(records[0]["outputs"], metrics=metrics)
        self.ctx.record(key, outputs, stable_hash([r["identity"] for r in records]),
                        sum(r.get("seconds", 0.0) for r in records))
        self.ctx.save()
        self.add_metrics(step, metrics)
        self.tracker.log_metrics({self.prefix(step) + k: v for k, v in metrics.items()})

    def child_tracker(self, label: str, tags: dict[str, str]):
        """The nested tracking run named ``label`` (one per seed, or per fan-out element), shared
        by the steps that run for it; finished in ``close``."""
        if label not in self.children:
            make = getattr(self.tracker, "child", None)
            self.children[label] = make(label, tags) if make else self.tracker
        return self.children[label]

    # ------------------------------------------------------------------ one step
    def run_step(self, step: PlannedStep, seed: int | None = None) -> dict[str, float]:
        """Run (or reuse) one step; ``seed``: one seed's run of a seeded step. Returns its
        metrics."""
        key = step.key + self.suffix + ("" if seed is None else f"#s{seed}")
        comp_cfg, inputs = self.resolve(step)
        upstream = self.upstream(step)
        if seed is not None:
            if "seed" in comp_cfg:
                comp_cfg["seed"] = seed
            upstream.append(f"seed:{seed}")
        identity = step_identity(step.cls, comp_cfg, inputs, upstream, self.cache_dir)
        if self.reuse(key, identity):
            console.print(step_line(key, "skipped (unchanged, resume)"))
            metrics = {k: float(v) for k, v in
                       (self.ctx.steps[key]["outputs"].get("metrics") or {}).items()}
            if seed is None:
                self.add_metrics(step, metrics)
            return metrics
        workdir = self.workdir(step, None if seed is None else f"seed{seed}")
        tracker = self.tracker if seed is None else \
            self.child_tracker(f"seed {seed}", {"sandbox.seed": str(seed)})
        outputs, seconds = self.execute(step, comp_cfg, inputs, key, workdir, tracker,
                                        key, identity, seed)
        metrics = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
        metrics[f"time/{step.name}_s"] = seconds
        if seed is None:
            self.add_metrics(step, metrics)
            tracker.log_metrics({self.prefix(step) + k: v for k, v in metrics.items()})
        else:
            tracker.log_metrics(metrics)
        tracker.log_dir(workdir, artifact_path=self._artifact_dir(step))
        tracker.log_outputs(step.name, outputs)  # the pool it loaded or made, as a dataset
        return metrics

    def resolve(self, step: PlannedStep, item: Any = None) -> tuple[dict, dict]:
        """The step's component config (with its ``overrides``) and inputs, resolved now."""
        with active(self.ctx), current_item(item):
            node = OmegaConf.select(self.cfg, step.node_path)
            try:
                comp_cfg = OmegaConf.to_container(node.component, resolve=True)
                inputs = OmegaConf.to_container(node.inputs, resolve=True) \
                    if "inputs" in node and node.inputs is not None else {}
                if "overrides" in node and node.overrides is not None:
                    deep_update(comp_cfg, OmegaConf.to_container(node.overrides, resolve=True))
            except OmegaConfBaseException as e:
                raise ConfigError(
                    f"pipeline step `{step.key}` ({step.config_path}): its config cannot be "
                    f"resolved: {str(e).splitlines()[0]}. Fix the interpolation it names."
                ) from None
        return comp_cfg, inputs

    def upstream(self, step: PlannedStep, skip: str | None = None) -> list[str]:
        """Identities of the steps this one reads (``skip``: the list a fan-out iterates)."""
        return [self.ctx.steps[self.ctx.aliases.get(k, k)]["identity"]
                for k in step.refs if k != skip]

    def reuse(self, key: str, identity: str) -> bool:
        """True when ``key`` need not run: resuming, its own record has this identity; or a
        record elsewhere in the context has it (same config and inputs: the same result), and
        is copied to ``key``."""
        if self.resume and self.ctx.done(key, identity) and outputs_exist(self.ctx.steps[key]):
            self.ledger.reused(self.ctx.steps[key])
            return True
        twin = self.ctx.find(identity, exclude=key)
        if twin is None or not outputs_exist(self.ctx.steps[twin]):
            return False
        self.ctx.copy(twin, key)
        self.ctx.save()
        self.ledger.reused(self.ctx.steps[twin])
        return True

    def execute(self, step: PlannedStep, comp_cfg: dict, inputs: dict, key: str,
                workdir: Path, tracker, label: str, identity: str,
                seed: int | None = None) -> tuple[dict, float]:
        """Build the component, run it, check and record its outputs."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = StepEnv(name=step.name, workdir=workdir, run_dir=self.run_dir, cache_dir=self.cache_dir,
                      seed=int(self.cfg.get("seed", 42)) if seed is None else seed,
                      num_proc=self.num_proc, tracker=tracker,
                      show_progress=bool(self.cfg.get("progress", True)), engine=self.engine,
                      report_hook=self.report)
        component = build_component(comp_cfg, step.config_path, step.cls.__name__)
        console.print(step_line(label, f"running {type(component).__name__}"))
        args = self.recipe_args(step, component, inputs)
        clock = Clock().start()
        try:
            outputs = component.run(env, **args) or {}
        except OSError as e:
            if e.errno not in DISK_FULL:
                raise
            raise disk_full(step.name, e, workdir, self.cache_dir) from None
        finally:  # a pruned or failed step's compute counts too
            clock.stop()
            self.ledger.spent(self.prefix(step) + step.name, clock, on_cuda(component))
        seconds = clock.wall
        unknown = set(outputs) - set(step.cls.outputs)
        if unknown:
            raise ConfigError(f"step `{step.name}` returned undeclared outputs {sorted(unknown)}; "
                              f"add them to {step.cls.__name__}.outputs.")
        outputs = self.recipes.record(outputs)  # a returned Recipe is kept, recorded as config
        self.ctx.record(key, outputs, identity, seconds, cpu_seconds=clock.cpu)
        self.ctx.save()
        console.print(step_line(label, f"done in {seconds:.1f}s"))
        return outputs, seconds

    def recipe_args(self, step: PlannedStep, component: Any, inputs: dict) -> dict:
        """``inputs`` with those the step's ``run`` takes as a ``Recipe`` in that form: the
        recipe of the run's ``RecipeBook`` that their config form (``${recipe}``,
        ``${ctx:refine.recipe}``) was read from, or parsed once now (with the step's
        ``text_key``)."""
        if not step.recipe_inputs:
            return inputs
        text_key = str(getattr(component, "text_key", None) or self.cfg.get("text_key", "text"))
        return {k: self.recipes.get(v, text_key) if k in step.recipe_inputs and v is not None
                else v for k, v in inputs.items()}

    # ------------------------------------------------------------------ places and names
    def workdir(self, step: PlannedStep, element: str | None = None) -> Path:
        parts = [step.pipeline] if step.pipeline else []
        if self.suffix:
            parts.append("iter" + self.suffix[1:])
        parts.append(step.name)
        if element is not None:
            parts.append(safe_name(element))
        return self.run_dir.joinpath(*parts)

    def prefix(self, step: PlannedStep) -> str:
        """Metric name prefix: ``<pipeline>/`` in a multi-pipeline experiment."""
        return f"{step.pipeline}/" if step.pipeline else ""

    def _artifact_dir(self, step: PlannedStep) -> str:
        return "/".join(x for x in (step.pipeline, self.suffix[1:] and "iter" + self.suffix[1:],
                                    step.name) if x)

    def add_metrics(self, step: PlannedStep, metrics: dict) -> None:
        pre = self.prefix(step)
        self.metrics.update({pre + k: float(v) for k, v in metrics.items()})

    def close(self, status: str) -> None:
        for child in self.children.values():
            if child is not self.tracker:
                child.finish(status)
        self.children.clear()


def deep_update(base: dict, new: dict) -> dict:
    """``base`` with ``new`` merged in, mapping into mapping (a step's ``overrides: {options:
    {epochs: 4}}`` changes one option and keeps the others)."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def seed_list(cfg) -> list[int]:
    """``seeds``: a count N (the run's ``seed`` and the N-1 after it) or a list of seeds."""
    raw = cfg.get("seeds", 1)
    raw = OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else raw
    base = int(cfg.get("seed", 42))
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return [base + i for i in range(raw)]
    if (isinstance(raw, list) and raw and all(isinstance(s, int) and not isinstance(s, bool)
                                              for s in raw) and len(set(raw)) == len(raw)):
        return list(raw)
    raise ConfigError(f"seeds={raw!r}: give a count >= 1 (seeds=3 runs seeds {base}, {base + 1}, "
                      f"{base + 2}) or a list of distinct integers (seeds='[1,2,3]').")


def aggregate_seeds(per_seed: dict[int, dict[str, float]]) -> dict[str, float]:
    """One step's metrics over seeds: each as mean, std, t interval and per-seed values; times
    summed; a single seed's own intervals (bootstrap) left out: seed variance replaces them."""
    names = [k for k in next(iter(per_seed.values())) if not is_companion(k)]
    out: dict[str, float] = {"n_seeds": float(len(per_seed))}
    for name in names:
        values = {s: m[name] for s, m in per_seed.items() if name in m}
        if name.startswith("time/"):
            out[name] = float(sum(values.values()))
        else:
            out.update(flat(name, over_seeds(values)))
    return out


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full(step: str, error: OSError, workdir: Path, cache_dir: Path) -> DiskFullError:
    """One paragraph for a step whose write found no room: the folders it writes to (its own
    and the cache) with the free space of each, and how to go on."""
    def free(folder: Path) -> str:
        try:
            return f"{shutil.disk_usage(folder).free / 2 ** 20:.0f} MiB free"
        except OSError:
            return "free space unknown"

    if error.errno == errno.EFBIG:
        what = ("a file it wrote grew past this process's file size limit (`ulimit -f`, "
                "RLIMIT_FSIZE)")
        fix = "Raise the limit"
    else:
        what = f"the disk is full ({os.strerror(error.errno)})"
        fix = "Free space there"
    return DiskFullError(
        f"step `{step}` stopped: {what}, while it wrote to its folder {workdir} ({free(workdir)}) "
        f"or the cache {cache_dir} ({free(cache_dir)}). Nothing half-written was kept under a "
        f"final name: files are written beside their place and renamed when complete. {fix}, or "
        f"point hydra.run.dir / cache_dir to a larger disk, then run again with resume=true and "
        f"the same hydra.run.dir: the finished steps are skipped.")
