"""How a run presents itself in the tracking store: a name a person can read in the runs table,
the command line that reproduces it, tags to group runs by, and the recipe it used.

* name (``run_name``): ``recipe=default · refine.k=3 · seed=42``, ``baseline · seed=42``,
  ``bottom_up · recipe=default · seed=42``; overrides that only move files, threads or the
  tracking store are left out, and a search trial's name starts with ``trial <n> ·``;
* description (``mlflow.note.content``) and source (``mlflow.source.name``): the command line,
  secrets redacted, and the run dir;
* tags ``recipe``, ``data_pool``, ``trainer``, ``baseline`` (and ``sweep``, set by the tracker
  for a search's runs) to group by, beside the ``sandbox.*`` tags of ``run_tags``;
* the recipe in Data-Juicer format (``recipe.yaml``) and the short param ``recipe`` =
  ``<name>@<digest>``, the digest being that YAML's hash: same digest, same recipe.

The group choices and overrides come from Hydra (``python -m sandbox``, or a config composed
with ``return_hydra_config=True``); a config composed otherwise names things by its content.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sandbox.tracking.params import redact, redact_override, run_tags

if TYPE_CHECKING:
    from sandbox.recipe import Recipe

# overrides that change where things go or how fast, not what a run computes
_QUIET_KEYS = ("tracking", "hydra", "progress", "resume", "cache_dir", "num_proc", "traceback",
               "run_dir", "local", "seed")
_QUIET_SUFFIXES = ("num_threads",)
# group choices the name shows in its own place
_NAMED_GROUPS = ("experiment", "pipeline", "recipe", "hparams_search")
MAX_NAME = 120


@dataclass
class RunInfo:
    name: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    recipe_yaml: str = ""
    command: str | None = None


def describe_run(resolved: dict, step_keys: list[str], run_dir: Path,
                 recipe: Recipe | None = None) -> RunInfo:
    """The name, tags, params and recipe a tracker records for the run of ``resolved``;
    ``recipe``: its configured recipe as planning parsed it."""
    overrides, choices = hydra_job(resolved)
    tags = run_tags(resolved, step_keys)
    trains = any(k.rsplit(".", 1)[-1].startswith("train") for k in step_keys)
    baseline = tags["sandbox.baseline"] == "true"
    name_of_recipe = recipe_name(resolved, choices)
    recipe_yaml = recipe_as_dj_yaml(resolved, recipe)
    digest = hashlib.sha256(recipe_yaml.encode()).hexdigest()[:8]

    name = run_name(resolved, overrides or [], choices, name_of_recipe, baseline)

    command = ("python -m sandbox " + " ".join(shlex.quote(redact_override(o))
                                               for o in overrides)).strip() \
        if overrides is not None else None
    run_dir = Path(run_dir).resolve()
    shown_command = command or "sandbox.run(cfg) (from Python)"
    tags.update({
        "recipe": name_of_recipe,
        "data_pool": pool_name(resolved, choices),
        "trainer": component_name(resolved, choices, "trainer") if trains else "none",
        "baseline": str(baseline).lower(),
        "sandbox.run_dir": str(run_dir),
        "mlflow.source.type": "LOCAL",
        # the UI shows the part after the last "/": paths are shortened to their file name
        "mlflow.source.name": " ".join(
            ["python -m sandbox", *(short_path_override(o) for o in overrides)]
        ) if overrides is not None else "sandbox.run",
        "mlflow.note.content": f"```\n{shown_command}\n```\nrun dir: `{run_dir}`",
    })
    return RunInfo(name=name, tags=tags, params={"recipe": f"{name_of_recipe}@{digest}"},
                   recipe_yaml=recipe_yaml, command=command)


def run_name(resolved: dict, overrides: list[str], choices: dict, recipe: str,
             baseline: bool) -> str:
    """``[experiment or pipeline ·] recipe=<name> | baseline [· overrides] · seed=<n>``: the
    default pipeline is not named; the overrides that shape the recipe come first, then the
    rest in command-line order (the pool has its own column, *Dataset*)."""
    what = choices.get("experiment") or (choices.get("pipeline") if choices.get("pipeline")
                                          not in (None, "default") else None)
    shown = [o for o in overrides if _shown(o) and not (baseline and _key(o) == "refine")]
    shown.sort(key=lambda o: not o.lstrip("+~").startswith(("recipe.", "refine")))
    parts = ([str(what)] if what else []) + ["baseline" if baseline else f"recipe={recipe}"]
    parts += [display_override(o) for o in shown]
    parts.append(_seeds_text(resolved))
    name = " · ".join(parts)
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


def _seeds_text(resolved: dict) -> str:
    """``seed=42``; with several seeds (``seeds=3`` or a list) ``seeds=42,43,44``."""
    seed, seeds = resolved.get("seed", 42), resolved.get("seeds", 1)
    if isinstance(seeds, list) and len(seeds) > 1:
        return "seeds=" + ",".join(map(str, seeds))
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 1 \
            and isinstance(seed, int):
        return "seeds=" + ",".join(str(seed + i) for i in range(seeds))
    return f"seed={seed}"


def hydra_job(resolved: dict) -> tuple[list[str] | None, dict[str, Any]]:
    """The command-line overrides and group choices of this job (None, {} outside Hydra)."""
    node = resolved.get("hydra")
    if isinstance(node, dict) and isinstance(node.get("runtime"), dict):
        return (list((node.get("overrides") or {}).get("task") or []),
                dict(node["runtime"].get("choices") or {}))
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        hc = HydraConfig.get()
        return list(hc.overrides.task), OmegaConf.to_container(hc.runtime.choices)
    except (ValueError, ImportError):  # not running under Hydra (sandbox.run from Python)
        return None, {}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _shown(override: str) -> bool:
    key = _key(override)
    first = key.split(".", 1)[0].split("/", 1)[0]
    if first in _QUIET_KEYS or key.endswith(_QUIET_SUFFIXES):
        return False
    if key in _NAMED_GROUPS or key in ("recipe.path", "data_pool", "data_pool.path", "seeds"):
        return False
    return redact_override(override) == override  # a secret says nothing about the run


def display_override(override: str) -> str:
    """``recipe.ops.text_length_filter.min_len=200`` -> ``text_length_filter.min_len=200``;
    a path value becomes its file name; secrets are redacted."""
    key, sep, value = short_path_override(override).partition("=")
    key = key.replace("recipe.ops.", "", 1) if key.lstrip("+~").startswith("recipe.ops.") else key
    return f"{key}{sep}{value}"


def short_path_override(override: str) -> str:
    """The override with a path value cut to its file name (and secrets redacted)."""
    key, sep, value = redact_override(override).partition("=")
    if "/" in value and not value.startswith(("[", "{")):
        value = value.rstrip("/").rsplit("/", 1)[-1]
    return f"{key}{sep}{value}"


def recipe_name(resolved: dict, choices: dict) -> str:
    node = resolved.get("recipe") or {}
    path = node.get("path") if isinstance(node, dict) else None
    if path:
        return Path(str(path)).stem
    if choices.get("recipe"):
        return str(choices["recipe"])
    ops = node.get("ops") if isinstance(node, dict) else None
    return "custom" if ops else "none"


def pool_name(resolved: dict, choices: dict) -> str:
    node = resolved.get("data_pool") or {}
    path = node.get("path") if isinstance(node, dict) else None
    if path:
        return Path(str(path)).name
    return str(choices.get("data_pool") or _class_of(node) or "none")


def component_name(resolved: dict, choices: dict, group: str) -> str:
    node = resolved.get(group)
    if choices.get(group):
        return str(choices[group])
    return _class_of(node) or "none"


def _class_of(node: Any) -> str | None:
    target = node.get("_target_") if isinstance(node, dict) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def recipe_as_dj_yaml(resolved: dict, recipe: Recipe | None = None) -> str:
    """The run's recipe (as configured, before any refinement) in Data-Juicer's format; without
    ``recipe`` (no recipe config, or one that does not parse and that no step runs) what was
    configured."""
    text = recipe.to_dj() if recipe is not None else resolved.get("recipe")
    return yaml.safe_dump(redact(text), sort_keys=False, allow_unicode=True)
