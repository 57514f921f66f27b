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
from sandbox.utils import atomic_write_text, file_fingerprint, stable_hash

GROUP_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_.]*)\}$")
SECRET = re.compile(r"key|token|secret|password|passwd|credential", re.I)
REDACTED = "***"


@dataclass
class PlannedStep:
    name: str
    cls: type
    config_path: str  # where its component config lives ("trainer", "pipeline.steps.x.component")
    refs: list[str] = field(default_factory=list)


# ============================================================================ planning
def plan(cfg) -> list[PlannedStep]:
    from omegaconf import OmegaConf

    steps = OmegaConf.select(cfg, "pipeline.steps")
    if steps is None or len(steps) == 0:
        raise ConfigError("the config has no pipeline.steps. Choose a pipeline, e.g. pipeline=default.")
    raw_steps = OmegaConf.to_container(steps, resolve=False)
    planned: list[PlannedStep] = []
    for name, raw in raw_steps.items():
        where = f"pipeline.steps.{name}"
        if not isinstance(raw, dict) or "component" not in raw:
            raise ConfigError(f"{where} has no `component:` (a config with `_target_`).")
        config_path = f"{where}.component"
        comp = raw["component"]
        m = GROUP_REF.match(comp) if isinstance(comp, str) else None
        if m:  # `component: ${trainer}` -> the `trainer` group's node
            config_path = m.group(1)
            comp = OmegaConf.to_container(OmegaConf.select(cfg, config_path), resolve=False) \
                if OmegaConf.select(cfg, config_path) is not None else None
        if not isinstance(comp, dict) or "_target_" not in comp:
            raise ConfigError(
                f"{where}: its component ({config_path}) has no `_target_`. Every component "
                f"config names its class with `_target_: module.Class`."
            )
        cls = _import(comp["_target_"], config_path)
        _check_params(cfg, cls, comp, config_path)
        inputs = raw.get("inputs") or {}
        _check_inputs(cls, inputs, where)
        refs = references(comp) + references(inputs)
        done = {p.name: p for p in planned}
        for ref in refs:
            step, _, output = ref.partition(".")
            output = output.split(".")[0]
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
            declared = getattr(done[step].cls, "outputs", ())
            if output not in declared:
                raise ConfigError(
                    f"{where} reads ${{ctx:{ref}}}, but step `{step}` "
                    f"({done[step].cls.__name__}) declares no output `{output}`. It declares: "
                    f"{', '.join(declared) or '(nothing)'}."
                )
        planned.append(PlannedStep(name, cls, config_path, sorted({r.split('.')[0] for r in refs})))
    return planned


def _import(target: str, where: str) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            f"{where}._target_={target} cannot be imported ({e}). Check the class path."
        ) from None


def _check_params(cfg, cls: type, raw: dict, where: str) -> None:
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
    required = [n for n, p in params.items() if p.default is p.empty
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in raw]
    if required:
        raise ConfigError(f"{where} lacks required parameter(s) {', '.join(required)} of "
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

    from sandbox.console import console, print_summary, step_line
    from sandbox.steps.base import StepEnv

    register_resolvers()
    run_dir = Path(run_dir or OmegaConf.select(cfg, "run_dir", default=None)
                   or Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg)

    resume = bool(cfg.get("resume", False))
    ctx = Context.load(run_dir / "context.json") if resume else Context(run_dir / "context.json")
    resolved = resolved_config(cfg)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(redact(resolved))))
    redact_hydra_record(run_dir)

    tracker = build_tracker(cfg)
    cache_dir = Path(str(cfg.get("cache_dir") or Path.home() / ".cache" / "sandbox"))
    tags = run_tags(cfg, resolved)
    tracker.start(run_name=run_dir.name or "run", params=flatten(redact(resolved)), tags=tags,
                  resume_run_id=ctx.meta.get("tracking_run_id") if resume else None)
    ctx.meta["tracking_run_id"] = getattr(tracker, "run_id", None)
    ctx.save()
    metrics: dict[str, float] = {}
    status = "FAILED"
    t_run = time.perf_counter()
    try:
        for step in steps:
            comp_cfg, inputs = _resolve_step(cfg, ctx, step)
            identity = step_identity(comp_cfg, inputs, [ctx.steps[s]["identity"] for s in step.refs])
            if resume and ctx.done(step.name, identity) and _outputs_exist(ctx.steps[step.name]):
                console.print(step_line(step.name, "skipped (unchanged, resume)"))
                metrics.update(ctx.steps[step.name]["outputs"].get("metrics") or {})
                continue
            workdir = run_dir / step.name
            workdir.mkdir(parents=True, exist_ok=True)
            env = StepEnv(name=step.name, workdir=workdir, run_dir=run_dir, cache_dir=cache_dir,
                          seed=int(cfg.get("seed", 42)), num_proc=int(cfg.get("num_proc", 1)),
                          tracker=tracker, show_progress=bool(cfg.get("progress", True)))
            component = _build(comp_cfg, step)
            console.print(step_line(step.name, f"running {type(component).__name__}"))
            t0 = time.perf_counter()
            outputs = component.run(env, **inputs) or {}
            seconds = time.perf_counter() - t0
            unknown = set(outputs) - set(step.cls.outputs)
            if unknown:
                raise ConfigError(f"step `{step.name}` returned undeclared outputs {sorted(unknown)}; "
                                  f"add them to {step.cls.__name__}.outputs.")
            ctx.record(step.name, outputs, identity, seconds)
            ctx.save()
            step_metrics = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
            step_metrics[f"time/{step.name}_s"] = seconds
            metrics.update(step_metrics)
            tracker.log_metrics(step_metrics)
            tracker.log_dir(workdir, artifact_path=step.name)
            console.print(step_line(step.name, f"done in {seconds:.1f}s"))
        metrics["time/total_s"] = time.perf_counter() - t_run
        tracker.log_metrics({"time/total_s": metrics["time/total_s"]})
        status = "FINISHED"
    finally:
        ctx.save()
        tracker.log_artifact(run_dir / "config.yaml")
        tracker.log_artifact(run_dir / "context.json")
        baseline = tracker.find_baseline(tags) if status == "FINISHED" else None
        tracker.finish(status)
    print_summary(metrics, baseline, run_dir, tags.get("sandbox.baseline") == "true")
    return metrics


def _resolve_step(cfg, ctx: Context, step: PlannedStep) -> tuple[dict, dict]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    with active(ctx):
        ctx.touched = set()
        node = OmegaConf.select(cfg, f"pipeline.steps.{step.name}")
        try:
            comp_cfg = OmegaConf.to_container(node.component, resolve=True)
            inputs = OmegaConf.to_container(node.inputs, resolve=True) \
                if "inputs" in node and node.inputs is not None else {}
        except OmegaConfBaseException as e:
            raise ConfigError(
                f"pipeline step `{step.name}` ({step.config_path}): its config cannot be resolved: "
                f"{str(e).splitlines()[0]}. Fix the interpolation it names."
            ) from None
    return comp_cfg, inputs


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


def step_identity(comp_cfg: dict, inputs: dict, upstream: list[str]) -> str:
    files = {}
    for k in ("path",):  # a data file that changed on disk must re-run its loading step
        p = comp_cfg.get(k)
        if isinstance(p, str) and Path(p).exists():
            files[k] = file_fingerprint(p)
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
        if key in ("pipeline", "hydra"):
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
            if prefix == "" and k in ("pipeline", "hydra"):
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
    return list(steps.keys()) if steps is not None else []
