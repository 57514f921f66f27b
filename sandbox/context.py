"""The context: every finished step's outputs, and the ``${ctx:STEP.OUTPUT}`` resolver.

Keys: ``step`` in the single-pipeline form (``pipeline.steps``); ``pipeline.step`` when the
experiment holds several named pipelines (``pipelines.<name>.steps``); ``...@<i>`` for iteration
``i`` of an iterating pipeline; ``...[<element>]`` for one element of a fan-out (``for_each``).
``${ctx:step.output}`` reads the current pipeline (and iteration); ``${ctx:pipe.step.output}``
an earlier pipeline (its last iteration). ``${item:field}`` is the current fan-out element.

A step's inputs are ordinary OmegaConf interpolations into the context, resolved lazily when the
step starts (``use_cache=False``), so one config describes the whole wiring. The context is saved
to ``context.json`` (atomically) after every step; ``resume`` reads it back.
"""
from __future__ import annotations

import contextvars
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sandbox.conditions import Condition, parse_condition  # noqa: F401 (stop_when)
from sandbox.errors import ConfigError
from sandbox.utils import atomic_write_json

REF = re.compile(r"\$\{ctx:\s*([A-Za-z0-9_.\-]+)\s*\}")
_current: contextvars.ContextVar["Context | None"] = contextvars.ContextVar("sandbox_ctx",
                                                                            default=None)
_item: contextvars.ContextVar[Any] = contextvars.ContextVar("sandbox_item", default=None)


class Context:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.steps: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}  # run-level facts, e.g. the tracking run to resume into
        # run-time wiring (not saved): the pipeline whose steps run now, every pipeline's step
        # names (None: the single-pipeline form), and logical -> recorded keys (iterations)
        self.scope: str = ""
        self.layout: dict[str, list[str]] | None = None
        self.aliases: dict[str, str] = {}

    # ------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, path: Path) -> "Context":
        ctx = cls(path)
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"{path} is damaged ({e}); cannot resume from it. Start a new run dir, or "
                    f"delete the file to re-run every step."
                ) from None
            ctx.steps = data.get("steps", {})
            ctx.meta = data.get("meta", {})
        return ctx

    def save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, {"meta": self.meta, "steps": self.steps})

    # ------------------------------------------------------------------ access
    def record(self, step: str, outputs: dict[str, Any], identity: str, seconds: float,
               cpu_seconds: float | None = None) -> None:
        self.steps[step] = {"status": "done", "identity": identity,
                            "seconds": round(seconds, 3), "outputs": outputs}
        if cpu_seconds is not None:  # the compute ledger's cost of the step (runner.compute)
            self.steps[step]["cpu_seconds"] = round(cpu_seconds, 3)

    def done(self, step: str, identity: str) -> bool:
        rec = self.steps.get(step)
        return bool(rec) and rec.get("status") == "done" and rec.get("identity") == identity

    def find(self, identity: str, exclude: str = "") -> str | None:
        """The key of a finished record with this identity (other than ``exclude``), or None."""
        for key, rec in self.steps.items():
            if key != exclude and rec.get("status") == "done" and rec.get("identity") == identity:
                return key
        return None

    def copy(self, source: str, target: str) -> None:
        """Record ``source``'s outputs as ``target``'s (a twin: same identity, same result)."""
        self.steps[target] = dict(self.steps[source], reused_from=source)

    def get(self, ref: str) -> Any:
        pipe, step, output = split_ref(ref, self.scope, self.layout)
        logical = f"{pipe}.{step}" if pipe else step
        key = self.aliases.get(logical, logical)
        if key not in self.steps:
            raise ConfigError(f"${{ctx:{ref}}}: step `{step}` has not run yet.")
        outputs = self.steps[key]["outputs"]
        value: Any = outputs
        for part in output.split(".") if output else []:
            if not isinstance(value, dict) or part not in value:
                raise ConfigError(
                    f"${{ctx:{ref}}}: step `{step}` produced no output `{output}` "
                    f"(it produced: {', '.join(outputs)})."
                )
            value = value[part]
        return value


class _Bound:
    """``with _Bound(var, value):`` sets a context variable for the block, then restores it."""

    def __init__(self, var: contextvars.ContextVar, value: Any):
        self.var, self.value = var, value

    def __enter__(self) -> Any:
        self.token = self.var.set(self.value)
        return self.value

    def __exit__(self, *exc) -> None:
        self.var.reset(self.token)


def active(ctx: Context) -> _Bound:
    """``with active(ctx):`` makes ``${ctx:...}`` resolve against ``ctx``."""
    return _Bound(_current, ctx)


def current_item(item: Any) -> _Bound:
    """``with current_item(element):`` makes ``${item:field}`` resolve to ``element[field]``."""
    return _Bound(_item, item)


def _resolve_item(path: str = "") -> Any:
    item = _item.get()
    if item is None:
        raise ConfigError(f"${{item:{path}}} is only defined in a step with `for_each:` (the "
                          f"element it runs for).")
    value = item
    for part in str(path).split(".") if path else []:
        if not isinstance(value, dict) or part not in value:
            have = ", ".join(value) if isinstance(value, dict) else type(value).__name__
            raise ConfigError(f"${{item:{path}}}: the element has no `{part}` (it has: {have}).")
        value = value[part]
    return value


def split_ref(ref: str, scope: str = "", layout: dict[str, list[str]] | None = None
              ) -> tuple[str, str, str]:
    """``(pipeline, step, output path)`` of a reference read from pipeline ``scope``.

    With several pipelines, ``pipe.step.output`` names pipeline ``pipe``'s step when ``pipe`` is
    a pipeline with a step ``step``; anything else is ``step.output`` of the current pipeline."""
    parts = ref.split(".")
    if layout and len(parts) >= 3 and parts[0] in layout and parts[1] in layout[parts[0]]:
        if parts[0] != scope and parts[0] in layout.get(scope, ()):
            raise ConfigError(
                f"${{ctx:{ref}}} is ambiguous: `{parts[0]}` is both a pipeline and a step of "
                f"pipeline `{scope}`. Rename one of them."
            )
        return parts[0], parts[1], ".".join(parts[2:])
    return scope, parts[0], ".".join(parts[1:])


def _resolve(ref: str) -> Any:
    ctx = _current.get()
    if ctx is None:
        raise ConfigError(
            f"${{ctx:{ref}}} can only be resolved while a pipeline runs (it reads an earlier "
            f"step's output)."
        )
    return ctx.get(ref)


# Deferred interpolations: ``${in:NAME}`` (the step's input NAME), ``${step:WHAT}`` (its
# workdir, seed, environment folders...), ``${each:NAME}`` (the value of one run of a step that
# runs a program once per value) and ``${opt:NAME}`` (one of the component's ``options``). They only have a value inside a step that binds them
# (``bound_values``); anywhere else (planning, the executor's resolution of the component config)
# they resolve to their own text, so the step receives the template and fills it in itself, and a
# step's identity never depends on the folder it happens to run in.
DEFERRED = ("in", "step", "each", "opt")
_deferred: contextvars.ContextVar["dict[str, dict] | None"] = contextvars.ContextVar(
    "sandbox_deferred", default=None)


def bound_values(values: dict[str, dict]) -> _Bound:
    """``with bound_values({"in": inputs, "step": {...}, "each": {...}}):`` gives the deferred
    interpolations their values for the block."""
    return _Bound(_deferred, values)


def _deferred_resolver(kind: str):
    def resolve(path: str = "") -> Any:
        values = _deferred.get()
        if values is None or kind not in values:
            return f"${{{kind}:{path}}}"  # kept verbatim for the step to fill in
        value: Any = values[kind]
        for part in str(path).split(".") if path else []:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                have = ", ".join(map(str, value)) if isinstance(value, dict) else type(value).__name__
                raise ConfigError(f"${{{kind}:{path}}}: there is no `{part}` here (it has: {have}).")
        return value
    return resolve


# ------------------------------------------------------------------ seeds of a search
def as_plain(node: Any) -> Any:
    """A config node as plain containers (``_recursive_: false`` passes DictConfigs)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def seed_list(seeds: Any) -> list[int]:
    """The seeds a ``for_each`` step with ``seeds:`` trains with: a count N is 1..N."""
    seeds = as_plain(seeds)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        return list(range(1, seeds + 1))
    if (isinstance(seeds, list) and seeds and len(set(seeds)) == len(seeds)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        return list(seeds)
    raise ConfigError(f"search seeds={seeds!r} (bottom_up.seeds): give a count >= 1 or a list "
                      f"of distinct integers, the seeds the pipeline's train step uses.")


def explore_seed_list(seeds: list[int], explore_seeds: Any) -> list[int]:
    """The seeds the search explores with: the first ``explore_seeds`` of ``seeds``, or all of
    them when it is None or not fewer."""
    explore_seeds = as_plain(explore_seeds)
    if explore_seeds is None:
        return list(seeds)
    if isinstance(explore_seeds, bool) or not isinstance(explore_seeds, int) or explore_seeds < 1:
        raise ConfigError(f"search explore_seeds={explore_seeds!r} "
                          f"(bottom_up.surrogate.explore_seeds): give how many of the seeds "
                          f"(bottom_up.seeds) the search explores with, an integer >= 1, or "
                          f"null for all of them.")
    return list(seeds)[:explore_seeds]


def search_seeds(method: Any, seeds: Any, explore_seeds: Any) -> list[int]:
    """The seeds the combination stage's ``train`` step trains its pools with (the resolver
    ``${search_seeds:${bottom_up.combine},${bottom_up.seeds},${bottom_up.surrogate.explore_seeds}}``):
    under ``sequential``, the exploration seeds; under the other methods, every seed."""
    every = seed_list(seeds)
    return explore_seed_list(every, explore_seeds) if as_plain(method) == "sequential" else every


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("ctx"):
        OmegaConf.register_new_resolver("ctx", _resolve, use_cache=False)
    if not OmegaConf.has_resolver("item"):
        OmegaConf.register_new_resolver("item", _resolve_item, use_cache=False)
    if not OmegaConf.has_resolver("search_seeds"):  # the sequential search's exploration seeds
        OmegaConf.register_new_resolver("search_seeds", search_seeds)
    for kind in DEFERRED:
        if not OmegaConf.has_resolver(kind):
            OmegaConf.register_new_resolver(kind, _deferred_resolver(kind), use_cache=False)


def references(value: Any) -> list[str]:
    """Every ``STEP.OUTPUT`` a raw (unresolved) config value refers to."""
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in references(v)]
    return []

