"""The context: every finished step's outputs, and the ``${ctx:STEP.OUTPUT}`` resolver.

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

from sandbox.errors import ConfigError
from sandbox.utils import atomic_write_json

REF = re.compile(r"\$\{ctx:\s*([A-Za-z0-9_.\-]+)\s*\}")
_current: contextvars.ContextVar["Context | None"] = contextvars.ContextVar("sandbox_ctx",
                                                                            default=None)


class Context:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.steps: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}  # run-level facts, e.g. the tracking run to resume into
        self.touched: set[str] = set()  # steps read by the last resolution (for identities)

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
    def record(self, step: str, outputs: dict[str, Any], identity: str, seconds: float) -> None:
        self.steps[step] = {"status": "done", "identity": identity,
                            "seconds": round(seconds, 3), "outputs": outputs}

    def done(self, step: str, identity: str) -> bool:
        rec = self.steps.get(step)
        return bool(rec) and rec.get("status") == "done" and rec.get("identity") == identity

    def get(self, ref: str) -> Any:
        step, _, output = ref.partition(".")
        if step not in self.steps:
            raise ConfigError(f"${{ctx:{ref}}}: step `{step}` has not run yet.")
        outputs = self.steps[step]["outputs"]
        value: Any = outputs
        for part in output.split(".") if output else []:
            if not isinstance(value, dict) or part not in value:
                raise ConfigError(
                    f"${{ctx:{ref}}}: step `{step}` produced no output `{output}` "
                    f"(it produced: {', '.join(outputs)})."
                )
            value = value[part]
        self.touched.add(step)
        return value

    def flat(self) -> dict[str, Any]:
        """``{"step.output": value}`` for every recorded output."""
        return {f"{s}.{k}": v for s, rec in self.steps.items() for k, v in rec["outputs"].items()}


class active:
    """``with active(ctx):`` makes ``${ctx:...}`` resolve against ``ctx``."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def __enter__(self) -> Context:
        self.token = _current.set(self.ctx)
        return self.ctx

    def __exit__(self, *exc) -> None:
        _current.reset(self.token)


def _resolve(ref: str) -> Any:
    ctx = _current.get()
    if ctx is None:
        raise ConfigError(
            f"${{ctx:{ref}}} can only be resolved while a pipeline runs (it reads an earlier "
            f"step's output)."
        )
    return ctx.get(ref)


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("ctx"):
        OmegaConf.register_new_resolver("ctx", _resolve, use_cache=False)


def references(value: Any) -> list[str]:
    """Every ``STEP.OUTPUT`` a raw (unresolved) config value refers to."""
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in references(v)]
    return []
