"""Planning: every step of every pipeline checked before anything runs.

For each step: find its component class, check its parameters against the class's signature
(names and types), its inputs against ``run``'s signature, and every ``${ctx:STEP.OUTPUT}``
against the steps that run earlier and the outputs they declare. A step whose component is empty
or has ``_target_: null`` (a group option such as ``trainer=none``) is switched off: it is left out of the plan, and a
step that reads it is an error. A typo costs seconds, not an hour.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from sandbox.conditions import Condition, parse_condition
from sandbox.context import references, split_ref
from sandbox.env.manager import EnvNotReadyError
from sandbox.errors import ConfigError
from sandbox.recipe import Recipe, RecipeBook, type_name, type_ok

GROUP_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_.]*)\}$")

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
    recipe_inputs: tuple[str, ...] = ()  # its inputs that ``run`` takes as a ``Recipe``

    @property
    def key(self) -> str:
        """The step's key in the context: ``step`` (single pipeline) or ``pipeline.step``."""
        return f"{self.pipeline}.{self.name}" if self.pipeline else self.name


@dataclass
class PlannedPipeline:
    name: str  # "" in the single-pipeline form
    steps: list[PlannedStep]
    max_iter: int = 1
    stop_when: Condition | None = None
    carry: dict[str, str] = field(default_factory=dict)  # config key -> context reference
    iterate: bool = False


@dataclass
class RunPlan:
    """What planning hands the executor: the pipelines, checked, and the configured recipe,
    parsed and validated once (``recipe``; None without a ``recipe`` config, or when no step
    reads it and it does not parse), kept in the run's ``RecipeBook`` so that the steps that read
    it get that object."""

    pipelines: list[PlannedPipeline]
    recipe: Recipe | None = None
    recipes: RecipeBook = field(default_factory=RecipeBook)


# ============================================================================ planning
MIXED = ("the config mixes the single-pipeline form (pipeline.steps) and the multi-pipeline form "
         "(pipelines.<name>.steps). Use one: drop `pipeline` (e.g. in an experiment file "
         "`defaults: [override /pipeline: null]`) or move its steps under `pipelines`.")


def plan(cfg) -> list[PlannedStep]:
    """Every step of every pipeline, in run order (checked; see ``plan_pipelines``)."""
    return [s for p in plan_pipelines(cfg) for s in p.steps]


def plan_pipelines(cfg) -> list[PlannedPipeline]:
    return plan_run(cfg).pipelines


def plan_run(cfg) -> RunPlan:
    """The pipelines, checked (``_plan_pipelines``), and the configured recipe, parsed and checked
    (``plan_recipe``): everything a run needs before its first step."""
    _missing_envs.clear()
    pipelines = _plan_pipelines(cfg)
    if _missing_envs:  # every stack that is not set up, in one message
        raise EnvNotReadyError("\n\n".join(dict.fromkeys(_missing_envs)))
    out = RunPlan(pipelines)
    out.recipe = plan_recipe(cfg, out.recipes)
    return out


_missing_envs: list[str] = []


RECIPE_REF = re.compile(r"\$\{recipe(\.[^}]*)?\}")


def plan_recipe(cfg, book: RecipeBook | None = None) -> Recipe | None:
    """The configured recipe (the ``recipe`` node), parsed and validated: the run's one parse of
    it, added to ``book``. When a step reads it (``${recipe}``) all of it is checked now, before
    the load step: names, argument types and ranges, and every asset its OPs need (all missing
    ones in one paragraph; see ``sandbox.recipe.check_recipe``). When none does, it is parsed
    for the run's record only, and one that does not parse is None."""
    from sandbox.recipe import check_recipe, load_recipe

    node = OmegaConf.select(cfg, "recipe", default=None)
    if node is None or not OmegaConf.is_dict(node):
        return None
    text_key = str(cfg.get("text_key", "text"))
    wiring = {k: OmegaConf.to_container(cfg[k], resolve=False) for k in ("pipeline", "pipelines")
              if OmegaConf.select(cfg, k) is not None}
    if not RECIPE_REF.search(str(wiring)):
        try:
            value = _value(cfg, "recipe")
            rec = load_recipe(value, text_key)
        except Exception:  # noqa: BLE001 - no step runs it: the record shows what was configured
            return None
    else:
        if OmegaConf.is_missing(node, "path"):
            raise ConfigError("recipe.path is required with recipe=dj: give the recipe file, "
                              "recipe=dj recipe.path=FILE.yaml.")
        value = _value(cfg, "recipe")
        rec = load_recipe(value, text_key)
        check_recipe(rec)
    if book is not None:
        book.add(rec, value, text_key)
    return rec


def recipe_params(cls: type) -> tuple[str, ...]:
    """The inputs of ``cls.run`` that take a ``Recipe`` (annotated ``Recipe`` or ``Recipe |
    None``): the executor hands them the parsed recipe, not its config form."""
    try:
        hints = typing.get_type_hints(cls.run)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: read its text
        hints = {}
    out = []
    for name, p in inspect.signature(cls.run).parameters.items():
        ann = hints.get(name, p.annotation)
        if ann is Recipe or Recipe in typing.get_args(ann) or \
                (isinstance(ann, str) and re.search(r"\bRecipe\b", ann)):
            out.append(name)
    return tuple(out)


def _plan_pipelines(cfg) -> list[PlannedPipeline]:
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
    raw_steps = praw["steps"]
    planned: list[PlannedStep] = []
    earlier_steps = {s.key: s for p in earlier for s in p.steps}
    off: dict[str, str] = {}  # switched-off step -> where its empty component comes from
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
        if comp is None or comp == {} or (isinstance(comp, dict) and "_target_" in comp
                                           and comp["_target_"] is None):
            # `trainer=none` (`_target_: null`, whatever other files set there): the step is off
            off[name] = config_path
            continue
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
        preflight = getattr(cls, "preflight", None)
        if preflight is not None:  # the component's own checks: an outside stack's environment
            try:
                preflight({**_static(cfg, config_path, comp),
                           **_static(cfg, f"{where}.overrides", overrides)}, config_path)
            except EnvNotReadyError as e:
                _missing_envs.append(str(e))
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
                                   earlier_steps, off))
        fe_key = _check_ref(references(for_each)[0], where, pname, name, raw_steps, done, layout,
                            earlier_steps, off) if for_each else None
        planned.append(PlannedStep(name, cls, config_path, sorted(set(keys)), pname, where,
                                   fe_key, seeds, recipe_params(cls)))
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
                       earlier_steps, off)
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
                   earlier_steps, off)
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
               done: dict, layout: dict | None, earlier_steps: dict, off: dict[str, str]) -> str:
    """Check one ``${ctx:...}`` reference of a step; return the context key it reads."""
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
        if step in off:
            raise ConfigError(
                f"{where} reads ${{ctx:{ref}}}, but step `{step}` is switched off: its component "
                f"`{off[step]}` has no class (`{off[step]}=none`). Choose an option for "
                f"`{off[step]}`, or switch off this step too."
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
    try:
        node = OmegaConf.select(cfg, path)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except Exception as e:
        raise ConfigError(f"{path} cannot be resolved: {str(e).splitlines()[0]}") from None


def _container(cfg, path: str):
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
        resolved = _resolved(node, key)
        ann = hints.get(key, params[key].annotation)
        if not type_ok(resolved, ann):
            raise ConfigError(
                f"{where}.{key}={resolved!r} has the wrong type: {cls.__name__} expects "
                f"{type_name(ann)}. Fix the value."
            )
    lacking = [n for n, p in params.items() if p.default is p.empty
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in raw]
    if lacking and required:
        raise ConfigError(f"{where} lacks required parameter(s) {', '.join(lacking)} of "
                          f"{cls.__name__}.")


def _resolved(node, key: str) -> Any:
    """``node[key]`` resolved in place (``${a.b}`` against the whole config), as plain data."""
    value = node[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _static(cfg, where: str, raw: dict) -> dict:
    """The values of ``raw`` (a component config at ``where``) that can be resolved before any
    step runs: those reading no step output."""
    node = OmegaConf.select(cfg, where)
    out = {}
    for key, value in (raw or {}).items():
        if references(value) or node is None:
            continue
        try:
            out[key] = _resolved(node, key)
        except Exception:  # noqa: BLE001 - unresolvable now: the step's own run will say why
            continue
    return out


def _check_inputs(cls: type, inputs: dict, where: str) -> None:
    sig = inspect.signature(cls.run)
    try:
        sig.bind(None, None, **inputs)  # self, env, **inputs
    except TypeError as e:
        names = [n for n in sig.parameters if n not in ("self", "env")]
        raise ConfigError(
            f"{where}.inputs do not fit {cls.__name__}.run ({e}). It takes: {', '.join(names)}."
        ) from None


