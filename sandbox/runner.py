"""Run one experiment: ``run(cfg) -> metrics``.

1. *Plan*: for every pipeline step, find its component class, check its parameters against the
   class's signature (names and types), its inputs against ``run``'s signature, and every
   ``${ctx:STEP.OUTPUT}`` against the steps that run earlier and the outputs they declare. All of
   this happens before any step runs, so a typo costs seconds, not an hour.
2. *Execute*: steps run in order; each one's inputs resolve when it starts; its outputs are saved
   to ``context.json``, its metrics and files go to the tracker. A step's identity is a hash of
   its resolved config, inputs and upstream identities: with ``resume=true`` a finished step
   whose identity is unchanged is skipped.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import re
import time
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox.context import Context, active, references, register_resolvers
from sandbox.errors import ConfigError
from sandbox.utils import atomic_write_text, stable_hash

GROUP_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_.]*)\}$")
SECRET = re.compile(r"key|token|secret|password|passwd|credential", re.I)
REDACTED = "***"


@dataclass
class PlannedStep:
    name: str
    cls: type
    config_path: str  # where its component config lives ("trainer", "pipeline.steps.x.component")
    refs: list[str] = field(default_factory=list)  # context keys of the steps it reads
    pipeline: str = ""  # "" in the single-pipeline form
    node_path: str = ""  # "pipeline.steps.x" or "pipelines.p.steps.x"
    for_each: str | None = None  # the context key of the step whose list output it fans out over
    seeds: list[int] | None = None

    @property
    def key(self) -> str:
        """The step's key in the context: ``step`` (single pipeline) or ``pipeline.step``."""
        return f"{self.pipeline}.{self.name}" if self.pipeline else self.name


@dataclass
class PlannedPipeline:
    name: str  # "" in the single-pipeline form
    steps: list[PlannedStep]
    max_iter: int = 1
    stop_when: Any = None  # a parsed condition (sandbox.context.Condition) or None
    carry: dict[str, str] = field(default_factory=dict)  # config key -> context reference
    iterate: bool = False


# ============================================================================ planning
MIXED = ("the config mixes the single-pipeline form (pipeline.steps) and the multi-pipeline form "
         "(pipelines.<name>.steps). Use one: drop `pipeline` (e.g. in an experiment file "
         "`defaults: [override /pipeline: null]`) or move its steps under `pipelines`.")


def plan(cfg) -> list[PlannedStep]:
    """Every step of every pipeline, in run order (checked; see ``plan_pipelines``)."""
    return [s for p in plan_pipelines(cfg) for s in p.steps]


def plan_pipelines(cfg) -> list[PlannedPipeline]:
    from omegaconf import OmegaConf

    single = OmegaConf.select(cfg, "pipeline.steps")
    multi = OmegaConf.select(cfg, "pipelines")
    if single is not None and len(single) and multi is not None and len(multi):
        raise ConfigError(MIXED)
    if multi is not None and len(multi):
        raw_pipes = OmegaConf.to_container(multi, resolve=False)
        if not isinstance(raw_pipes, dict):
            raise ConfigError("`pipelines` must map pipeline names to {steps: {...}}.")
        layout = {}
        for pname, praw in raw_pipes.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", str(pname)):
                raise ConfigError(f"pipelines.{pname}: a pipeline name is letters, digits, _ and -.")
            if not isinstance(praw, dict) or not praw.get("steps"):
                raise ConfigError(f"pipelines.{pname} has no `steps:`. Give it an ordered mapping "
                                  f"of steps, as in conf/pipeline/default.yaml.")
            layout[str(pname)] = list(praw["steps"])
        planned: list[PlannedPipeline] = []
        for pname, praw in raw_pipes.items():
            planned.append(_plan_pipeline(cfg, str(pname), praw, f"pipelines.{pname}", layout,
                                          planned))
        return planned
    if single is None or len(single) == 0:
        raise ConfigError("the config has no pipeline.steps. Choose a pipeline, e.g. pipeline=default.")
    praw = OmegaConf.to_container(OmegaConf.select(cfg, "pipeline"), resolve=False)
    return [_plan_pipeline(cfg, "", praw, "pipeline", None, [])]


def _plan_pipeline(cfg, pname: str, praw: dict, where_p: str, layout: dict | None,
                   earlier: list[PlannedPipeline]) -> PlannedPipeline:
    from sandbox.context import parse_condition

    raw_steps = praw["steps"]
    planned: list[PlannedStep] = []
    earlier_steps = {s.key: s for p in earlier for s in p.steps}
    for name, raw in raw_steps.items():
        where = f"{where_p}.steps.{name}"
        if not isinstance(raw, dict) or "component" not in raw:
            raise ConfigError(f"{where} has no `component:` (a config with `_target_`).")
        unknown = set(raw) - {"component", "inputs", "for_each", "seeds", "overrides"}
        if unknown:
            raise ConfigError(f"{where} has unknown key(s) {sorted(unknown)}; a step takes "
                              f"component, inputs, overrides, for_each, seeds.")
        config_path = f"{where}.component"
        comp = raw["component"]
        m = GROUP_REF.match(comp) if isinstance(comp, str) else None
        if m:  # `component: ${trainer}` -> the `trainer` group's node
            config_path = m.group(1)
            comp = _container(cfg, config_path)
        if not isinstance(comp, dict) or "_target_" not in comp:
            raise ConfigError(
                f"{where}: its component ({config_path}) has no `_target_`. Every component "
                f"config names its class with `_target_: module.Class`."
            )
        cls = _import(comp["_target_"], config_path)
        _check_params(cfg, cls, comp, config_path)
        overrides = raw.get("overrides") or {}
        if overrides:
            if not isinstance(overrides, dict):
                raise ConfigError(f"{where}.overrides must be a mapping of {cls.__name__} parameters.")
            _check_params(cfg, cls, overrides, f"{where}.overrides", required=False)
        inputs = raw.get("inputs") or {}
        _check_inputs(cls, inputs, where)
        for_each = raw.get("for_each")
        seeds = _value(cfg, f"{where}.seeds") if "seeds" in raw else None
        uses_item = _item_refs([comp, inputs, overrides])
        if uses_item and for_each is None:
            raise ConfigError(f"{where} uses ${{item:...}} but has no `for_each:`; ${{item:...}} "
                              f"is the current element of a step that fans out over a list.")
        if for_each is not None and not (isinstance(for_each, str) and references(for_each)):
            raise ConfigError(f"{where}.for_each must be a reference to an earlier step's list "
                              f"output, e.g. for_each: ${{ctx:pools.pools}}.")
        if seeds is not None:
            if for_each is None:
                raise ConfigError(f"{where}.seeds needs `for_each:` (one run per element and seed).")
            if isinstance(seeds, int) and not isinstance(seeds, bool):
                seeds = list(range(1, seeds + 1))
            if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
                raise ConfigError(f"{where}.seeds must be a count or a list of integer seeds.")
            if "seed" not in inspect.signature(cls.__init__).parameters:
                raise ConfigError(f"{where}.seeds: {cls.__name__} takes no `seed` parameter.")
        refs = references(comp) + references(inputs) + references(overrides) + \
            (references(for_each) if for_each else [])
        done = {p.name: p for p in planned}
        keys = []
        for ref in refs:
            keys.append(_check_ref(ref, where, pname, name, raw_steps, done, layout,
                                   earlier_steps))
        fe_key = _check_ref(references(for_each)[0], where, pname, name, raw_steps, done, layout,
                            earlier_steps) if for_each else None
        planned.append(PlannedStep(name, cls, config_path, sorted(set(keys)), pname, where,
                                   fe_key, seeds))
    # ------------------------------------------------------------ iteration
    max_iter = _value(cfg, f"{where_p}.max_iter") if "max_iter" in praw else 1
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ConfigError(f"{where_p}.max_iter={max_iter!r} must be an integer >= 1.")
    stop = _value(cfg, f"{where_p}.stop_when") if "stop_when" in praw else None
    cond = None
    done = {p.name: p for p in planned}
    if stop:
        cond = parse_condition(str(stop), f"{where_p}.stop_when")
        for ref in cond.refs():
            _check_ref(ref, f"{where_p}.stop_when", pname, None, raw_steps, done, layout,
                       earlier_steps)
    carry = praw.get("carry") or {}
    if not isinstance(carry, dict):
        raise ConfigError(f"{where_p}.carry must map config keys to step outputs "
                          f"(e.g. recipe: refine.recipe).")
    for target, ref in carry.items():
        ref = references(ref)[0] if isinstance(ref, str) and references(ref) else ref
        if not isinstance(ref, str):
            raise ConfigError(f"{where_p}.carry.{target} must name a step output (step.output).")
        carry[target] = ref
        _check_ref(ref, f"{where_p}.carry.{target}", pname, None, raw_steps, done, layout,
                   earlier_steps)
        from omegaconf import OmegaConf

        if OmegaConf.select(cfg, str(target)) is None:
            raise ConfigError(f"{where_p}.carry.{target}: the config has no key `{target}` to "
                              f"carry a value into.")
    extra = set(praw) - {"steps", "max_iter", "stop_when", "carry"}
    if extra and layout is not None:
        raise ConfigError(f"{where_p} has unknown key(s) {sorted(extra)}; a pipeline takes steps, "
                          f"max_iter, stop_when, carry.")
    iterate = max_iter > 1 or bool(stop) or bool(carry)
    return PlannedPipeline(pname, planned, max_iter, cond, dict(carry), iterate)


def _check_ref(ref: str, where: str, pname: str, name: str | None, raw_steps: dict,
               done: dict, layout: dict | None, earlier_steps: dict) -> str:
    """Check one ``${ctx:...}`` reference of a step; return the context key it reads."""
    from sandbox.context import split_ref

    pipe, step, output = split_ref(ref, pname, layout)
    output = output.split(".")[0]
    if pipe != pname:  # another pipeline's step
        key = f"{pipe}.{step}"
        if key not in earlier_steps:
            raise ConfigError(
                f"{where} reads ${{ctx:{ref}}}, but pipeline `{pipe}` runs later. Pipelines run "
                f"in this order: {', '.join(layout or {})}. Point it at an earlier pipeline."
            )
        target = earlier_steps[key]
    else:
        if step == name:
            raise ConfigError(
                f"{where} reads ${{ctx:{ref}}}, its own output: a step cannot depend on "
                f"itself. Point it at an earlier step's output."
            )
        if step not in done:
            later = step in raw_steps
            raise ConfigError(
                f"{where} reads ${{ctx:{ref}}}, but step `{step}` "
                + ("runs later" if later else "does not exist")
                + f". Steps run in this order: {', '.join(raw_steps)}. Point it at an earlier "
                f"step's output."
            )
        target = done[step]
    declared = declared_outputs(target)
    if output not in declared:
        raise ConfigError(
            f"{where} reads ${{ctx:{ref}}}, but step `{step}` "
            f"({target.cls.__name__}) declares no output `{output}`. It declares: "
            f"{', '.join(declared) or '(nothing)'}."
        )
    return target.key


def declared_outputs(step: PlannedStep) -> tuple[str, ...]:
    """A fan-out step declares ``results`` (one dict per element: the element's fields plus its
    outputs) and each of its component's outputs as a list."""
    own = tuple(getattr(step.cls, "outputs", ()))
    return (("results",) + own) if step.for_each else own


def _value(cfg, path: str):
    """A plan-time setting (seeds, max_iter, ...), interpolations resolved."""
    from omegaconf import OmegaConf

    try:
        node = OmegaConf.select(cfg, path)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except Exception as e:
        raise ConfigError(f"{path} cannot be resolved: {str(e).splitlines()[0]}") from None


def _container(cfg, path: str):
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, path)
    return OmegaConf.to_container(node, resolve=False) if node is not None else None


ITEM_REF = re.compile(r"\$\{item:")


def _item_refs(value: Any) -> bool:
    if isinstance(value, str):
        return bool(ITEM_REF.search(value))
    if isinstance(value, dict):
        return any(_item_refs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_item_refs(v) for v in value)
    return False


def _import(target: str, where: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            f"{where}._target_={target} cannot be imported ({e}). Check the class path."
        ) from None


def _check_params(cfg, cls: type, raw: dict, where: str, required: bool = True) -> None:
    from omegaconf import OmegaConf

    from sandbox.recipe import _type_name, _type_ok

    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    node = OmegaConf.select(cfg, where)
    for key, value in raw.items():
        if key.startswith("_") and key.endswith("_"):
            continue
        if key not in params and not accepts_any:
            import difflib

            close = difflib.get_close_matches(key, params, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(
                f"{where}.{key} is not a parameter of {cls.__name__}.{hint} It takes: "
                f"{', '.join(params) or '(nothing)'}."
            )
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"{where}.{key} is required: set it on the command line "
                              f"({where}.{key}=VALUE).")
        if references(value) or key not in params:
            continue
        resolved = OmegaConf.to_container(OmegaConf.create({"v": node[key]}), resolve=True)["v"] \
            if not isinstance(node[key], (str, int, float, bool, type(None))) else node[key]
        ann = hints.get(key, params[key].annotation)
        if not _type_ok(resolved, ann):
            raise ConfigError(
                f"{where}.{key}={resolved!r} has the wrong type: {cls.__name__} expects "
                f"{_type_name(ann)}. Fix the value."
            )
    lacking = [n for n, p in params.items() if p.default is p.empty
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in raw]
    if lacking and required:
        raise ConfigError(f"{where} lacks required parameter(s) {', '.join(lacking)} of "
                          f"{cls.__name__}.")


def _check_inputs(cls: type, inputs: dict, where: str) -> None:
    sig = inspect.signature(cls.run)
    try:
        sig.bind(None, None, **inputs)  # self, env, **inputs
    except TypeError as e:
        names = [n for n in sig.parameters if n not in ("self", "env")]
        raise ConfigError(
            f"{where}.inputs do not fit {cls.__name__}.run ({e}). It takes: {', '.join(names)}."
        ) from None


# ============================================================================ execution
def run(cfg, run_dir: str | Path | None = None) -> dict[str, float]:
    """Run the experiment described by a composed config; return its metrics."""
    from omegaconf import OmegaConf

    from sandbox.console import print_summary

    register_resolvers()
    run_dir = Path(run_dir or OmegaConf.select(cfg, "run_dir", default=None)
                   or Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    pipelines = plan_pipelines(cfg)
    _preload_recipe(cfg)
    if any(p.carry for p in pipelines):  # carried values rewrite the config: work on a copy
        cfg = copy.deepcopy(cfg)

    resume = bool(cfg.get("resume", False))
    ctx = Context.load(run_dir / "context.json") if resume else Context(run_dir / "context.json")
    multi = bool(pipelines[0].name)
    ctx.layout = {p.name: [s.name for s in p.steps] for p in pipelines} if multi else None
    resolved = resolved_config(cfg)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(redact(resolved))))
    redact_hydra_record(run_dir)

    tracker = build_tracker(cfg)
    tags = run_tags(cfg, resolved)
    tracker.start(run_name=run_dir.name or "run", params=flatten(redact(resolved)), tags=tags,
                  resume_run_id=ctx.meta.get("tracking_run_id") if resume else None)
    ctx.meta["tracking_run_id"] = getattr(tracker, "run_id", None)
    ctx.save()
    ex = _Executor(cfg, ctx, run_dir, tracker, resume, multi)
    status = "FINISHED"
    t_run = time.perf_counter()
    try:
        for pipe in pipelines:
            ex.run_pipeline(pipe)
        ex.metrics["time/total_s"] = time.perf_counter() - t_run
        tracker.log_metrics({"time/total_s": ex.metrics["time/total_s"]})
    except BaseException:
        status = "FAILED"
        raise
    finally:
        ctx.save()
        ex.close(status)
        tracker.log_artifact(run_dir / "config.yaml")
        tracker.log_artifact(run_dir / "context.json")
        baseline = tracker.find_baseline(tags) if status == "FINISHED" else None
        tracker.finish(status)
    print_summary(ex.metrics, baseline, run_dir, tags.get("sandbox.baseline") == "true")
    return ex.metrics


def _preload_recipe(cfg) -> None:
    """Load what the configured recipe's OPs need (compiled kernels) in the background while the
    first steps run; the engine waits for it before it forks workers."""
    from omegaconf import OmegaConf

    from sandbox.engine import preload_in_background
    from sandbox.recipe import load_recipe

    node = OmegaConf.select(cfg, "recipe", default=None)
    if not OmegaConf.is_dict(node):
        return
    try:
        rec = load_recipe(OmegaConf.to_container(node, resolve=True), cfg.get("text_key", "text"))
    except Exception:  # the step that runs the recipe reports the problem, with context
        return
    preload_in_background(rec.ops, rec.text_key)


class _Executor:
    """Runs planned pipelines step by step (iterations, fan-outs, reuse by identity)."""

    def __init__(self, cfg, ctx: Context, run_dir: Path, tracker, resume: bool, multi: bool):
        self.cfg, self.ctx, self.run_dir, self.tracker = cfg, ctx, run_dir, tracker
        self.resume, self.multi = resume, multi
        self.cache_dir = Path(str(cfg.get("cache_dir") or Path.home() / ".cache" / "sandbox"))
        self.metrics: dict[str, float] = {}
        self.children: dict[str, Any] = {}  # nested tracking runs, one per fan-out element
        self.suffix = ""  # "@<iteration>" while an iterating pipeline runs

    # ------------------------------------------------------------------ pipelines
    def run_pipeline(self, pipe: PlannedPipeline) -> None:
        from sandbox.console import console

        self.ctx.scope = pipe.name
        self.ctx.meta.setdefault("iterations", {})
        i = 0
        for i in range(1, pipe.max_iter + 1):
            self.suffix = f"@{i}" if pipe.iterate else ""
            for s in pipe.steps:  # ${ctx:step.output} reads this iteration's outputs
                self.ctx.aliases[s.key] = s.key + self.suffix
            if pipe.iterate:
                label = f"{pipe.name or 'pipeline'} iteration {i}/{pipe.max_iter}"
                console.print(f"[bold]{label}[/]")
            for step in pipe.steps:
                self.run_step(step, pipe)
            self.ctx.meta["iterations"][pipe.name or "pipeline"] = i
            self.ctx.save()
            if pipe.stop_when is not None and pipe.stop_when.evaluate(self._lookup):
                console.print(f"stop condition `{pipe.stop_when.text}` met after iteration {i}")
                break
            if i < pipe.max_iter:
                self._carry(pipe)
        self.suffix = ""

    def _lookup(self, ref: str) -> Any:
        with active(self.ctx):
            return self.ctx.get(ref)

    def _carry(self, pipe: PlannedPipeline) -> None:
        from omegaconf import OmegaConf, open_dict

        for target, ref in pipe.carry.items():
            value = self._lookup(ref)
            with open_dict(self.cfg):
                OmegaConf.update(self.cfg, target, value, merge=False)

    # ------------------------------------------------------------------ steps
    def _workdir(self, step: PlannedStep) -> Path:
        parts = [step.pipeline] if step.pipeline else []
        if self.suffix:
            parts.append("iter" + self.suffix[1:])
        return self.run_dir.joinpath(*parts, step.name)

    def _prefix(self, step: PlannedStep) -> str:
        return f"{step.pipeline}/" if step.pipeline else ""

    def run_step(self, step: PlannedStep, pipe: PlannedPipeline) -> None:
        if step.for_each:
            return self._run_fan_out(step)
        from sandbox.console import console, step_line

        key = step.key + self.suffix
        comp_cfg, inputs = self._resolve(step)
        identity = step_identity(comp_cfg, inputs, self._upstream(step), self.cache_dir)
        label = key
        if self._reusable(key, identity):
            console.print(step_line(label, "skipped (unchanged, resume)"))
            self._add_metrics(step, self.ctx.steps[key]["outputs"].get("metrics") or {})
            return
        outputs, seconds = self._execute(step, comp_cfg, inputs, key, self._workdir(step),
                                         self.tracker, label, identity)
        step_metrics = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
        step_metrics[f"time/{step.name}_s"] = seconds
        self._add_metrics(step, step_metrics)
        self.tracker.log_metrics({self._prefix(step) + k: v for k, v in step_metrics.items()})
        self.tracker.log_dir(self._workdir(step), artifact_path=self._artifact_dir(step))

    def _artifact_dir(self, step: PlannedStep) -> str:
        return "/".join(x for x in (step.pipeline, self.suffix[1:] and "iter" + self.suffix[1:],
                                    step.name) if x)

    def _add_metrics(self, step: PlannedStep, metrics: dict) -> None:
        pre = self._prefix(step)
        self.metrics.update({pre + k: float(v) for k, v in metrics.items()})

    def _upstream(self, step: PlannedStep, skip: str | None = None) -> list[str]:
        out = []
        for k in step.refs:
            if k == skip:
                continue
            real = self.ctx.aliases.get(k, k)
            out.append(self.ctx.steps[real]["identity"])
        return out

    def _reusable(self, key: str, identity: str) -> bool:
        """Skip a step that already ran with this identity: on resume, its own record; in any
        run, a record elsewhere in the context with the same identity (shared inputs and config:
        the result would be the same) is copied."""
        if self.resume and self.ctx.done(key, identity) and _outputs_exist(self.ctx.steps[key]):
            return True
        twin = self.ctx.find(identity, exclude=key)
        if twin is not None and _outputs_exist(twin):
            self.ctx.steps[key] = dict(twin, reused_from=twin.get("_key"))
            self.ctx.steps[key].pop("_key", None)
            self.ctx.save()
            return True
        return False

    def _execute(self, step: PlannedStep, comp_cfg: dict, inputs: dict, key: str,
                 workdir: Path, tracker, label: str, identity: str) -> tuple[dict, float]:
        from sandbox.console import console, step_line
        from sandbox.engine import resolve_num_proc
        from sandbox.steps.base import StepEnv

        workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.cfg
        env = StepEnv(name=step.name, workdir=workdir, run_dir=self.run_dir,
                      cache_dir=self.cache_dir, seed=int(cfg.get("seed", 42)),
                      num_proc=resolve_num_proc(cfg.get("num_proc")), tracker=tracker,
                      show_progress=bool(cfg.get("progress", True)))
        component = _build(comp_cfg, step)
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

    def _resolve(self, step: PlannedStep, item: Any = None) -> tuple[dict, dict]:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from sandbox.context import current_item

        with active(self.ctx), current_item(item):
            self.ctx.touched = set()
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

    # ------------------------------------------------------------------ fan-out
    def _run_fan_out(self, step: PlannedStep) -> None:
        """One run per element of the ``for_each`` list (and per seed), each with its own
        identity and context record ``<step>[<element>]``: a re-run does only what is missing."""
        from omegaconf import OmegaConf

        from sandbox.console import console, step_line

        key = step.key + self.suffix
        node = OmegaConf.select(self.cfg, step.node_path)
        raw = self._lookup(references(OmegaConf.to_container(node, resolve=False)["for_each"])[0])
        items = _elements(raw, step)
        results, identities, total = [], [], 0.0
        for item in items:
            for seed in (step.seeds or [None]):
                elem = dict(item)
                if seed is not None:
                    elem["seed"] = seed
                name = str(elem["name"]) + (f"#s{elem['seed']}" if "seed" in elem else "")
                comp_cfg, inputs = self._resolve(step, elem)
                if seed is not None:
                    comp_cfg["seed"] = seed
                identity = step_identity(comp_cfg, inputs, self._upstream(step, step.for_each)
                                         + [_files_fingerprint(inputs, self.cache_dir),
                                            stable_hash(elem)], self.cache_dir)
                ekey = f"{key}[{name}]"
                label = f"{step.name}[{name}]"
                if self._reusable(ekey, identity):
                    console.print(step_line(label, "skipped (unchanged)"))
                    outputs = self.ctx.steps[ekey]["outputs"]
                else:
                    tracker = self._child(step, str(elem["name"]), elem.get("seed"))
                    outputs, seconds = self._execute(step, comp_cfg, inputs, ekey,
                                                     self._workdir(step) / _safe(name), tracker,
                                                     label, identity)
                    total += seconds
                    m = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
                    m[f"time/{step.name}_s"] = seconds
                    tracker.log_metrics(m)
                    tracker.log_dir(self._workdir(step) / _safe(name),
                                    artifact_path=step.name)
                identities.append(identity)
                results.append(dict(_merge(elem, outputs), __id__=identity))
        aggregate = {"results": results}
        for o in step.cls.outputs:
            aggregate[o] = [r.get(o) for r in results]
        self.ctx.record(key, aggregate, stable_hash(identities), total)
        self.ctx.save()
        self._add_metrics(step, {f"time/{step.name}_s": total})
        self.tracker.log_metrics({self._prefix(step) + f"time/{step.name}_s": total})

    def _child(self, step: PlannedStep, name: str, seed: Any):
        """The nested tracking run of one element (shared by the steps of one pipeline that fan
        out over the same element, e.g. train and evaluate of one pool and seed)."""
        label = "/".join(x for x in (step.pipeline, self.suffix[1:], name) if x) + \
            (f"#s{seed}" if seed is not None else "")
        if label not in self.children:
            make = getattr(self.tracker, "child", None)
            self.children[label] = make(label, {"sandbox.pool": name,
                                                "sandbox.seed": str(seed)}) if make else self.tracker
        return self.children[label]

    def close(self, status: str) -> None:
        for child in self.children.values():
            if child is not self.tracker:
                child.finish(status)
        self.children.clear()


def _elements(raw: Any, step: PlannedStep) -> list[dict]:
    if isinstance(raw, dict):
        raw = [dict(v, name=v.get("name", k)) if isinstance(v, dict) else {"name": k, "value": v}
               for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ConfigError(f"{step.node_path}.for_each: `{step.for_each}` is a "
                          f"{type(raw).__name__}, not a list to fan out over.")
    out = []
    for i, v in enumerate(raw):
        if isinstance(v, dict):
            out.append(dict(v, name=v.get("name", str(i))))
        else:
            out.append({"name": str(i), "value": v})
    names = [(e["name"], e.get("seed")) for e in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{step.node_path}.for_each: element names repeat ({names}); each "
                          f"element needs a distinct `name`.")
    return out


def _merge(elem: dict, outputs: dict) -> dict:
    out = dict(elem)
    for k, v in outputs.items():
        if k == "metrics" and isinstance(out.get("metrics"), dict) and isinstance(v, dict):
            out["metrics"] = {**out["metrics"], **v}
        else:
            out[k] = v
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+#=-]+", "_", name)[:150]


def _files_fingerprint(inputs: dict, cache_dir: Path | None = None) -> str:
    """Content fingerprints of the data files an element's inputs name (memoised by stat info,
    as for step identities, so a re-run does not re-read every pool)."""
    from sandbox.data.fingerprint import fingerprint

    fps = {}
    for k, v in inputs.items():
        if isinstance(v, str) and ("/" in v) and Path(v).is_file():
            fps[k] = fingerprint(v, cache_dir)
    return stable_hash(fps)


def _build(comp_cfg: dict, step: PlannedStep):
    """Instantiate a component; a constructor that rejects its values is a config error."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(comp_cfg, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__ or e
        raise ConfigError(
            f"{step.config_path}: {step.cls.__name__} rejected its config: {cause}. Fix the value "
            f"under `{step.config_path}`."
        ) from None


def step_identity(comp_cfg: dict, inputs: dict, upstream: list[str],
                  cache_dir: Path | None = None) -> str:
    from sandbox.data.fingerprint import fingerprint

    files = {}
    for k in ("path",):  # a data file that changed on disk must re-run its loading step
        p = comp_cfg.get(k)
        if isinstance(p, str) and Path(p).exists():
            files[k] = fingerprint(p, cache_dir)  # memoised by stat info: big files hash once
    return stable_hash([comp_cfg, inputs, upstream, files])


def _outputs_exist(record: dict) -> bool:
    for v in record.get("outputs", {}).values():
        if isinstance(v, str) and ("/" in v) and not Path(v).exists():
            return False
    return True


def build_tracker(cfg):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.select(cfg, "tracking")
    if node is None:
        from sandbox.tracking import NoTracker

        return NoTracker()
    return instantiate(node, _convert_="all")


def resolved_config(cfg) -> dict:
    """Everything but the pipeline wiring resolved (``${ctx:...}`` cannot resolve yet)."""
    from omegaconf import OmegaConf

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


def redact(obj: Any, _key: str = "") -> Any:
    """Replace the values of keys that look like secrets (api keys, tokens, passwords)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if SECRET.search(str(k)) and not isinstance(v, (dict, list))
                    and v is not None and not _is_threshold_key(str(k)) else redact(v, str(k)))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, _key) for v in obj]
    return obj


def redact_hydra_record(run_dir: Path) -> None:
    """Hydra saves the raw config and command-line overrides in ``.hydra/``: redact secrets there
    too, so that no file in the run dir holds them in clear."""
    import yaml

    hydra_dir = run_dir / ".hydra"
    for name in ("config.yaml", "hydra.yaml"):
        f = hydra_dir / name
        if f.exists():
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
            atomic_write_text(f, yaml.safe_dump(_redact_overrides_in(redact(data)), sort_keys=False))
    f = hydra_dir / "overrides.yaml"
    if f.exists():
        items = yaml.safe_load(f.read_text(encoding="utf-8")) or []
        atomic_write_text(f, yaml.safe_dump([_redact_override(o) for o in items]))


def _redact_overrides_in(obj: Any) -> Any:
    """Redact ``key=value`` strings (Hydra's record of the command line) anywhere in ``obj``."""
    if isinstance(obj, dict):
        return {k: _redact_overrides_in(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_overrides_in(v) for v in obj]
    return _redact_override(obj) if isinstance(obj, str) and "=" in obj else obj


def _redact_override(item: str) -> str:
    key, sep, value = str(item).partition("=")
    last = key.lstrip("+~").rsplit(".", 1)[-1]
    if sep and SECRET.search(last) and not _is_threshold_key(last):
        return f"{key}={REDACTED}"
    return item


def _is_threshold_key(k: str) -> bool:
    # `text_key`, `token_budget`, `num_tokens` are configuration, not secrets.
    return k in {"text_key", "text_keys", "token_budget", "max_tokens", "tokenization"} \
        or k.endswith("_tokens") or k.startswith("min_") or k.startswith("max_")


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """``{"a.b.c": "value"}`` for MLflow params (values capped at 500 chars)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if prefix == "" and k in ("pipeline", "pipelines", "hydra"):
                continue
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        s = str(obj)
        out[prefix[:-1]] = s if len(s) <= 500 else s[:497] + "..."
    return out


def run_tags(cfg, resolved: dict) -> dict[str, str]:
    """Tags that let runs be compared: the same data pool + trainer + evaluator are comparable,
    and a run with no recipe and no refinement is that group's baseline."""
    ops = (resolved.get("recipe") or {}).get("ops") or {}
    path = (resolved.get("recipe") or {}).get("path")
    refine = str((resolved.get("refine") or {}).get("_target_", ""))
    baseline = not ops and not path and (not refine or refine.endswith("NoRefine"))
    comparable = stable_hash([resolved.get(k) for k in ("data_pool", "trainer", "evaluator",
                                                          "seed")])
    steps = ",".join(_step_names(cfg))
    return {"sandbox.baseline": str(baseline).lower(), "sandbox.comparable": comparable,
            "sandbox.pipeline": steps}


def _step_names(cfg) -> list[str]:
    from omegaconf import OmegaConf

    steps = OmegaConf.select(cfg, "pipeline.steps")
    if steps is not None:
        return list(steps.keys())
    pipes = OmegaConf.select(cfg, "pipelines")
    return [f"{p}.{s}" for p in (pipes or {}) for s in (pipes[p].get("steps") or {})]
