"""Execution: planned pipelines run step by step.

``Executor`` runs pipelines (iterations, stop conditions, carried values) and plain steps: it
resolves a step's config when the step starts, computes its identity, reuses a finished record
with that identity or runs the component, and records, tracks and times the outcome. Steps that
fan out over a list are ``sandbox.runner.fan_out.FanOut``'s job."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sandbox.components import build_component
from sandbox.console import console, step_line
from sandbox.context import Context, active, current_item
from sandbox.errors import ConfigError
from sandbox.runner.fan_out import FanOut
from sandbox.runner.identity import outputs_exist, step_identity
from sandbox.runner.plan import PlannedPipeline, PlannedStep
from sandbox.steps.base import StepEnv
from sandbox.utils import safe_name


class Executor:
    """Runs planned pipelines step by step; ``metrics`` collects every step's metrics."""

    def __init__(self, cfg, ctx: Context, run_dir: Path, cache_dir: Path, tracker, resume: bool,
                 engine, num_proc: int):
        self.cfg, self.ctx, self.run_dir, self.cache_dir = cfg, ctx, run_dir, cache_dir
        self.tracker, self.resume, self.engine, self.num_proc = tracker, resume, engine, num_proc
        self.metrics: dict[str, float] = {}
        self.suffix = ""  # "@<iteration>" while an iterating pipeline runs
        self.fan_out = FanOut(self)

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
            for step in pipe.steps:
                if step.for_each:
                    self.fan_out.run(step)
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

    # ------------------------------------------------------------------ one step
    def run_step(self, step: PlannedStep) -> None:
        key = step.key + self.suffix
        comp_cfg, inputs = self.resolve(step)
        identity = step_identity(step.cls, comp_cfg, inputs, self.upstream(step), self.cache_dir)
        if self.reuse(key, identity):
            console.print(step_line(key, "skipped (unchanged, resume)"))
            self.add_metrics(step, self.ctx.steps[key]["outputs"].get("metrics") or {})
            return
        workdir = self.workdir(step)
        outputs, seconds = self.execute(step, comp_cfg, inputs, key, workdir, self.tracker,
                                        key, identity)
        metrics = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
        metrics[f"time/{step.name}_s"] = seconds
        self.add_metrics(step, metrics)
        self.tracker.log_metrics({self.prefix(step) + k: v for k, v in metrics.items()})
        self.tracker.log_dir(workdir, artifact_path=self._artifact_dir(step))

    def resolve(self, step: PlannedStep, item: Any = None) -> tuple[dict, dict]:
        """The step's component config (with its ``overrides``) and inputs, resolved now."""
        with active(self.ctx), current_item(item):
            node = OmegaConf.select(self.cfg, step.node_path)
            try:
                comp_cfg = OmegaConf.to_container(node.component, resolve=True)
                inputs = OmegaConf.to_container(node.inputs, resolve=True) \
                    if "inputs" in node and node.inputs is not None else {}
                if "overrides" in node and node.overrides is not None:
                    comp_cfg.update(OmegaConf.to_container(node.overrides, resolve=True))
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
            return True
        twin = self.ctx.find(identity, exclude=key)
        if twin is None or not outputs_exist(self.ctx.steps[twin]):
            return False
        self.ctx.copy(twin, key)
        self.ctx.save()
        return True

    def execute(self, step: PlannedStep, comp_cfg: dict, inputs: dict, key: str,
                workdir: Path, tracker, label: str, identity: str) -> tuple[dict, float]:
        """Build the component, run it, check and record its outputs."""
        workdir.mkdir(parents=True, exist_ok=True)
        env = StepEnv(name=step.name, workdir=workdir, run_dir=self.run_dir,
                      cache_dir=self.cache_dir, seed=int(self.cfg.get("seed", 42)),
                      num_proc=self.num_proc, tracker=tracker,
                      show_progress=bool(self.cfg.get("progress", True)), engine=self.engine)
        component = build_component(comp_cfg, step.config_path, step.cls.__name__)
        console.print(step_line(label, f"running {type(component).__name__}"))
        t0 = time.perf_counter()
        outputs = component.run(env, **inputs) or {}
        seconds = time.perf_counter() - t0
        unknown = set(outputs) - set(step.cls.outputs)
        if unknown:
            raise ConfigError(f"step `{step.name}` returned undeclared outputs {sorted(unknown)}; "
                              f"add them to {step.cls.__name__}.outputs.")
        self.ctx.record(key, outputs, identity, seconds)
        self.ctx.save()
        console.print(step_line(label, f"done in {seconds:.1f}s"))
        return outputs, seconds

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
        self.fan_out.close(status)
