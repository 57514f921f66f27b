"""Fan-out: a step with ``for_each: ${ctx:STEP.LIST}`` runs once per element of that list (and
per seed with ``seeds:``). Each element has its own identity and context record
``<step>[<element>]``, so a re-run does only what is missing, and its own nested tracking run,
shared by the steps of one pipeline that fan out over the same element (train and evaluate of one
pool and seed). The step's own record aggregates the elements: ``results`` (one dict per element:
its fields plus its outputs) and each declared output as a list."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from sandbox.console import console, step_line
from sandbox.context import references
from sandbox.errors import ConfigError
from sandbox.runner.identity import files_fingerprint, step_identity
from sandbox.runner.plan import PlannedStep
from sandbox.utils import merge_outputs, stable_hash

if TYPE_CHECKING:
    from sandbox.runner.executor import Executor


class FanOut:
    def __init__(self, executor: "Executor"):
        self.ex = executor

    def run(self, step: PlannedStep) -> None:
        ex = self.ex
        key = step.key + ex.suffix
        node = OmegaConf.select(ex.cfg, step.node_path)
        raw = ex.lookup(references(OmegaConf.to_container(node, resolve=False)["for_each"])[0])
        results, identities, total = [], [], 0.0
        for item in elements(raw, step):
            for seed in (step.seeds or [None]):
                elem = dict(item) if seed is None else dict(item, seed=seed)
                name = str(elem["name"]) + (f"#s{elem['seed']}" if "seed" in elem else "")
                comp_cfg, inputs = ex.resolve(step, elem)
                if seed is not None:
                    comp_cfg["seed"] = seed
                upstream = ex.upstream(step, skip=step.for_each) + [
                    files_fingerprint(inputs, ex.cache_dir), stable_hash(elem)]
                identity = step_identity(step.cls, comp_cfg, inputs, upstream, ex.cache_dir)
                ekey, label = f"{key}[{name}]", f"{step.name}[{name}]"
                if ex.reuse(ekey, identity):
                    console.print(step_line(label, "skipped (unchanged)"))
                    outputs = ex.ctx.steps[ekey]["outputs"]
                else:
                    tracker = self._child(step, str(elem["name"]), elem.get("seed"))
                    workdir = ex.workdir(step, name)
                    outputs, seconds = ex.execute(step, comp_cfg, inputs, ekey, workdir, tracker,
                                                  label, identity)
                    total += seconds
                    metrics = {k: float(v) for k, v in (outputs.get("metrics") or {}).items()}
                    metrics[f"time/{step.name}_s"] = seconds
                    tracker.log_metrics(metrics)
                    tracker.log_dir(workdir, artifact_path=step.name)
                identities.append(identity)
                results.append(dict(merge_outputs(elem, outputs), __id__=identity))
        aggregate = {"results": results}
        for o in step.cls.outputs:
            aggregate[o] = [r.get(o) for r in results]
        ex.ctx.record(key, aggregate, stable_hash(identities), total)
        ex.ctx.save()
        ex.add_metrics(step, {f"time/{step.name}_s": total})
        ex.tracker.log_metrics({ex.prefix(step) + f"time/{step.name}_s": total})

    def _child(self, step: PlannedStep, name: str, seed: Any):
        """The nested tracking run of one element."""
        label = "/".join(x for x in (step.pipeline, self.ex.suffix[1:], name) if x) + \
            (f"#s{seed}" if seed is not None else "")
        return self.ex.child_tracker(label, {"sandbox.pool": name, "sandbox.seed": str(seed)})


def elements(raw: Any, step: PlannedStep) -> list[dict]:
    """The list a step fans out over, as dicts with distinct ``name``s (a mapping's keys name
    its values; other elements are named by their position)."""
    if isinstance(raw, dict):
        raw = [dict(v, name=v.get("name", k)) if isinstance(v, dict) else {"name": k, "value": v}
               for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ConfigError(f"{step.node_path}.for_each: `{step.for_each}` is a "
                          f"{type(raw).__name__}, not a list to fan out over.")
    out = [dict(v, name=v.get("name", str(i))) if isinstance(v, dict)
           else {"name": str(i), "value": v} for i, v in enumerate(raw)]
    names = [(e["name"], e.get("seed")) for e in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{step.node_path}.for_each: element names repeat ({names}); each "
                          f"element needs a distinct `name`.")
    return out


