"""The Data-Juicer sandbox config importer: ``Converter`` turns a parsed config into the body
of an experiment file, ``convert_file`` reads one and renders the file's text, ``main`` is
``python -m sandbox.convert_dj_sandbox``. What maps to what is described in
``sandbox.convert_dj_sandbox``; the tables are in ``tables``."""
from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from sandbox.assets.networks import NETWORKS
from sandbox.convert_dj_sandbox.tables import (CONF_DIR, CONV_STYLE, CONVERSIONS, EVALUATORS,
                                               GLOBAL_KEYS, INCEPTION_KEYS, INFER_KEYS, INFERS,
                                               JOB_KEYS, METRIC_NAMES, PHASES, POOL_TYPES,
                                               TRAINER_INPUT, TRAINERS)
from sandbox.errors import ConfigError, SandboxError


@dataclass
class Produced:
    """What a converted job left in the context: role -> (pipeline, step, output)."""

    roles: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    fan: bool = False  # the outputs are lists (pools or per-pool results): consumers fan out


@dataclass
class Report:
    mapped: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # whole jobs or keys with no counterpart
    dropped_jobs: list[tuple[str, dict]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ============================================================================ reading
def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None


def find_side_file(ref: str, origin: Path) -> Path | None:
    """A config file a job names (``extra_configs: 'configs/.../model_train.yaml'``): as given
    (from the working directory), relative to the sandbox file's folder or any folder above it
    (Data-Juicer resolves them from its repository root), or by name beside the sandbox file."""
    p = Path(ref)
    candidates = [p] if p.is_absolute() else [p, *(d / p for d in [origin.parent,
                                                                   *origin.parent.parents])]
    candidates.append(origin.parent / p.name)
    found = next((c for c in candidates if c.is_file()), None)
    return found if found is None or found == p else found.resolve()


def _side(value: Any, origin: Path, what: str, report: Report) -> tuple[Any, str | None]:
    """``(config dict or the value, the file it came from)`` of a dj_configs/extra_configs."""
    if isinstance(value, str) and value.endswith((".yaml", ".yml", ".json")):
        found = find_side_file(value, origin)
        if found is None:
            report.warnings.append(f"{what}: {value} was not found (looked from the working "
                                   f"directory, {origin.parent} and the folders above it); its "
                                   f"settings are not carried over")
            return None, value
        doc = _load_yaml(found) if found.suffix != ".json" else \
            __import__("json").loads(found.read_text(encoding="utf-8"))
        return (doc if isinstance(doc, dict) else None), str(found)
    return value, None


def _placeholder(value: str) -> bool:
    """Data-Juicer's stand-ins for values an input mapping fills in
    (``'<updated_by_the_input_mapping>'``); ``'<internvl_home>/x.jsonl'`` is a path."""
    return bool(re.fullmatch(r"\s*<[^<>/]*>\s*", value))


def as_list(v: Any) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def _fraction(v: Any) -> float:
    return float(Fraction(v)) if isinstance(v, str) else float(v)


def _name(text: str) -> str:
    s = re.sub(r"\W+", "_", str(text)).strip("_") or "step"
    return s if re.match(r"[A-Za-z_]", s) else f"s_{s}"


# ============================================================================ converting
class Converter:
    def __init__(self, doc: dict, origin: Path):
        self.doc, self.origin = doc, origin
        self.report = Report()
        self.pipelines: dict[str, dict] = {}  # name -> {"steps": {...}}
        self.jobs: dict[tuple[str, str], Produced] = {}
        self.last: Produced | None = None
        self.last_probe: dict[str, tuple[str, str]] = {}  # pipeline -> (step, recipe ref)
        self.last_data: Produced | None = None
        self.defaults: list[Any] = []
        self.groups: dict[str, str] = {}  # group -> option chosen for ${group}
        self.globals: dict[str, Any] = {}  # top-level values (trainer options, ...)
        self.single = False
        self.exports: dict[str, Produced] = {}  # a job's export_path -> what it produced
        self.last_top_n: int | None = None  # the last ranking's top_n (what a combination gets)

    @staticmethod
    def _norm(path: str) -> str:
        return os.path.normpath(path.strip())

    # ------------------------------------------------------------------ helpers
    def ref(self, pipe: str, target: tuple[str, str, str]) -> str:
        tp, step, out = target
        return f"${{ctx:{step}.{out}}}" if tp == pipe or self.single else \
            f"${{ctx:{tp}.{step}.{out}}}"

    def add_step(self, pipe: str, base: str, step: dict) -> str:
        steps = self.pipelines[pipe]["steps"]
        name, k = _name(base), 1
        while name in steps or name == pipe:
            k += 1
            name = f"{_name(base)}_{k}"
        steps[name] = step
        return name

    def group_component(self, group: str, option: str, step_base: str) -> str:
        """``${group}`` for the first option of a group; other options of the same group get a
        key of their own (``${<group>s.<step>}``)."""
        if group not in self.groups:
            self.groups[group] = option
            self.defaults.append({f"override /{group}": option})
            return f"${{{group}}}"
        if self.groups[group] == option:
            return f"${{{group}}}"
        key = f"{group}s.{_name(step_base)}"
        self.defaults.append({f"/{group}@{key}": option})
        return f"${{{key}}}"

    def resolve_input(self, value: str, where: str) -> Produced | None:
        parts = str(value).split(".")
        if parts[0] == "-1":
            if self.last is None:
                self.report.warnings.append(f"{where}: input {value!r} reads the previous job, "
                                            f"but none ran before it")
            return self.last
        if len(parts) >= 2 and (parts[0], parts[1]) in self.jobs:
            return self.jobs[(parts[0], parts[1])]
        if len(parts) >= 2 and parts[0] == "anonymous" and ("", parts[1]) in self.jobs:
            return self.jobs[("", parts[1])]
        self.report.warnings.append(f"{where}: input {value!r} names no earlier job with outputs")
        return None

    def inputs_of(self, job: dict, where: str) -> dict[str, Produced]:
        """The job's input mapping: config key (``extra_configs.dataset_path``) -> Produced."""
        out = {}
        for key, value in (job.get("input") or {}).items():
            prod = self.resolve_input(value, where)
            if prod is not None:
                out[str(key)] = prod
        return out

    def load_step(self, pipe: str, path: str) -> Produced:
        """A load step for a dataset file a job names."""
        fmt = "parquet" if path.endswith(".parquet") else "json" if path.endswith(".json") \
            else "jsonl"  # a converted file (a ${ctx:...} reference) is jsonl
        name = self.add_step(pipe, "load", {"component": {
            "_target_": "sandbox.steps.data.load.FilePool", "path": path, "format": fmt,
            "text_key": "${text_key}"}})
        return Produced({"dataset": (pipe, name, "dataset")})

    def as_loaded(self, pipe: str, prod: Produced | None) -> Produced | None:
        """A converted file (jsonl) read by a load step, for the steps that read pools."""
        if prod is not None and "dataset" not in prod.roles and "file" in prod.roles \
                and not prod.fan:
            return self.load_step(pipe, self.ref(pipe, prod.roles["file"]))
        return prod

    def dataset_from(self, pipe: str, cfg: dict | None, inputs: dict[str, Produced],
                     keys: tuple[str, ...], where: str) -> Produced | None:
        for k in keys:
            if k in inputs:
                return self.as_loaded(pipe, inputs[k])
        for k in keys:
            section, _, key = k.partition(".")
            value = (cfg or {}).get(key) if isinstance(cfg, dict) else None
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, str) and value and not _placeholder(value):
                return self.file_input(pipe, value)
        return self.as_loaded(pipe, self.last_data)

    def file_input(self, pipe: str, path: str) -> Produced:
        """What an earlier job exported to ``path`` (Data-Juicer chains jobs through files), or
        a load step reading it."""
        return self.as_loaded(pipe, self.exports.get(self._norm(path))) or \
            self.load_step(pipe, path)

    def data_input(self, pipe: str, prod: Produced,
                   roles=("dataset", "file", "pools", "results")) -> tuple[dict, dict]:
        """``({"for_each": ...} or {}, {"item": role} or {"ref": ...})``: a list of pools (or of
        per-pool results) fans out, each element's ``dataset`` read as ``${item:dataset}``."""
        if prod.fan:
            roles = tuple(r for r in ("pools", "results") if r in prod.roles) + tuple(roles)
        role = next((r for r in roles if r in prod.roles), None)
        if role is None:
            raise _Skip(f"its input has none of {', '.join(roles)}")
        if prod.fan or role in ("pools", "results"):
            return {"for_each": self.ref(pipe, prod.roles[role])}, {"item": role}
        return {}, {"ref": self.ref(pipe, prod.roles[role])}

    def recipe_of(self, cfg: Any, path: str | None, where: str) -> dict | None:
        if path is not None and cfg is not None:
            return {"path": path}
        if isinstance(cfg, dict) and isinstance(cfg.get("process"), list):
            return self.inline_recipe(cfg["process"], where)
        return None

    def inline_recipe(self, process: list, where: str) -> dict:
        from sandbox.ops import OPS

        ops: dict[str, dict] = {}
        for entry in process:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            (op, args), = entry.items()
            args = {k: v for k, v in (args or {}).items() if v is not None}
            key, k = op, 1
            while key in ops:
                k += 1
                key = f"{op}_{k}"
            if key != op:
                args["_op"] = op
            ops[key] = args
            if op not in OPS:
                self.report.unmapped.append(f"{where}: OP `{op}` is not implemented here (its "
                                            f"step fails until it is, or Data-Juicer is "
                                            f"installed for its adapter)")
        return {"ops": ops}

    def dropped_keys(self, where: str, cfg: Any, keys: tuple[str, ...], why: str) -> None:
        if isinstance(cfg, dict):
            for k in keys:
                if cfg.get(k) not in (None, "", []):
                    self.report.unmapped.append(f"{where}: {k}={cfg[k]!r} not carried ({why})")

    # ------------------------------------------------------------------ jobs
    def convert(self) -> dict:
        doc = self.doc
        unknown = sorted(set(doc) - set(GLOBAL_KEYS) - {"dataset_path", "export_path"})
        for k in unknown:
            self.report.unmapped.append(f"top-level key {k}={doc[k]!r} has no counterpart")
        if doc.get("hpo_config"):
            self.report.unmapped.append(f"hpo_config={doc['hpo_config']!r}: searches here are "
                                        f"Optuna sweeps, `--multirun hparams_search=...` (see "
                                        f"conf/hparams_search/); not converted")
        pipes = doc.get("pipelines")
        if pipes:
            items = []
            for p in pipes if isinstance(pipes, list) else [{k: v} for k, v in pipes.items()]:
                if isinstance(p, dict) and len(p) == 1:
                    items.append(next(iter(p.items())))
                else:
                    raise ConfigError(f"{self.origin}: each entry of `pipelines` must be "
                                      f"{{name: {{<phase>_job_configs: [...]}}}}.")
        else:
            self.single = True
            items = [("", doc)]
        for pname, pcfg in items:
            pipe = "" if self.single else _name(pname)
            self.pipelines[pipe] = {"steps": {}}
            for phase in PHASES:
                for job in (pcfg or {}).get(phase) or []:
                    self.convert_job(pipe, str(pname), phase, job)
            if not self.pipelines[pipe]["steps"]:
                self.report.warnings.append(f"pipeline {pname or '(top level)'} has no step "
                                            f"that converts; it is left out")
                del self.pipelines[pipe]
        self.iteration()
        return self.render()

    def convert_job(self, pipe: str, pname: str, phase: str, job: Any) -> None:
        if not isinstance(job, dict):
            self.report.unmapped.append(f"{pname}.{phase}: an entry that is not a job ({job!r})")
            return
        hook = str(job.get("hook"))
        meta = job.get("meta_name") or ""
        where = f"{pname + '.' if pname else ''}{phase}[{meta or hook}]"
        for k in sorted(set(job) - set(JOB_KEYS)):
            self.report.unmapped.append(f"{where}: job key {k}={job[k]!r} has no counterpart")
        dj, dj_path = _side(job.get("dj_configs"), self.origin, f"{where}.dj_configs", self.report)
        extra, extra_path = _side(job.get("extra_configs"), self.origin,
                                  f"{where}.extra_configs", self.report)
        dj, extra = copy.deepcopy(dj), copy.deepcopy(extra)
        for key, value in (job.get("local") or {}).items():  # local settings override the files
            section, _, rest = str(key).partition(".")
            target = {"dj_configs": dj, "extra_configs": extra}.get(section)
            if isinstance(target, dict) and rest:
                node = target
                *head, last = rest.split(".")
                for h in head:
                    node = node.setdefault(h, {})
                node[last] = value
            else:
                self.report.unmapped.append(f"{where}: local {key}={value!r} not applied")
        inputs = self.inputs_of(job, where)
        handler = getattr(self, f"job_{hook}", None)
        try:
            if handler is None:
                raise _Skip(f"hook {hook} has no counterpart here")
            prod = handler(pipe, where, meta, job, dj, dj_path, extra, extra_path, inputs)
        except _Skip as e:
            self.report.unmapped.append(f"{where}: not converted: {e}")
            self.report.dropped_jobs.append((where, job))
            return
        self.report.mapped.append(where)
        for cfg in (dj, extra):
            if prod is not None and isinstance(cfg, dict) \
                    and isinstance(cfg.get("export_path"), str):
                self.exports[self._norm(cfg["export_path"])] = prod
        if prod is not None and prod.roles:
            self.last = prod
            self.jobs[(pipe if not self.single else "", str(meta))] = prod
            if not self.single:
                self.jobs[(pname, str(meta))] = prod

    # each job_<Hook> returns what it produced (or raises _Skip)
    def job_ProbeViaAnalyzerHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path,
                                 inputs):
        data = self.dataset_from(pipe, dj, inputs, ("dj_configs.dataset_path",), where)
        if data is None or "dataset" not in data.roles:
            raise _Skip("no dataset to probe (dj_configs.dataset_path)")
        recipe = self.recipe_of(dj, dj_path, where)
        if recipe is None:
            raise _Skip("no recipe (dj_configs with a process list)")
        self.dropped_keys(where, dj, ("export_path",),
                          "the probe writes its stats and summary into the run dir")
        step: dict[str, Any] = {
            "component": "${probe}",
            "inputs": {"dataset": self.ref(pipe, data.roles["dataset"]), "recipe": recipe}}
        if isinstance(dj, dict) and dj.get("percentiles"):
            step["overrides"] = {"quantiles": [float(q) for q in dj["percentiles"]]}
        name = self.add_step(pipe, meta or "probe", step)
        self.last_probe[pipe] = (name, recipe)
        self.last_data = data
        return Produced({"dataset": data.roles["dataset"], "stats": (pipe, name, "stats"),
                         "summary": (pipe, name, "summary")})

    def job_RefineRecipeViaKSigmaHook(self, pipe, where, meta, job, dj, dj_path, extra,
                                      extra_path, inputs):
        if pipe not in self.last_probe:
            raise _Skip("k-sigma refinement reads a probe's statistics, and no probe job runs "
                        "before it in this pipeline")
        probe, recipe = self.last_probe[pipe]
        recipe = self.recipe_of(dj, dj_path, where) or recipe
        self.group_component("refine", "ksigma", "refine")
        self.dropped_keys(where, extra, ("path_k_sigma_recipe",),
                          "the refined recipe is written to the step's folder, refine/recipe.yaml")
        name = self.add_step(pipe, meta if meta and meta != probe else "refine", {
            "component": "${refine}",
            "inputs": {"recipe": recipe, "summary": self.ref(pipe, (pipe, probe, "summary"))}})
        return Produced({"recipe": (pipe, name, "recipe")})

    def job_ProcessDataHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path,
                            inputs):
        recipe_in = inputs.get("dj_configs")
        if recipe_in is not None and "recipe" in recipe_in.roles:
            recipe: Any = self.ref(pipe, recipe_in.roles["recipe"])
            data = self.last_data
        else:
            recipe = self.recipe_of(dj, dj_path, where)
            data = self.dataset_from(pipe, dj, inputs, ("dj_configs.dataset_path",), where)
        if recipe is None:
            raise _Skip("no recipe (dj_configs with a process list)")
        if data is None or not ({"dataset", "pools"} & set(data.roles)):
            raise _Skip("no dataset to process (dj_configs.dataset_path)")
        self.dropped_keys(where, dj, ("export_path",), "the run dir holds process/processed."
                          "parquet; set the step's overrides.export_path to also write a file")
        fan, how = self.data_input(pipe, data)
        step = {"component": "${process}", **fan,
                "inputs": {"dataset": "${item:dataset}" if "item" in how else how["ref"],
                           "recipe": recipe}}
        name = self.add_step(pipe, meta or "process", step)
        out = Produced({"results": (pipe, name, "results")}, fan=True) if fan else \
            Produced({"dataset": (pipe, name, "dataset")})
        self.last_data = out
        return out

    def job_DataPoolManipulationHook(self, pipe, where, meta, job, dj, dj_path, extra,
                                     extra_path, inputs):
        extra = extra or {}
        kind = extra.get("type")
        if kind not in POOL_TYPES:
            raise _Skip(f"pool manipulation type {kind!r} has no counterpart")
        cls = POOL_TYPES[kind]
        comp: dict[str, Any] = {"_target_": f"sandbox.steps.pools.{cls}"}
        ins: dict[str, Any] = {}
        self.dropped_keys(where, extra, ("export_path",), "pools are written into the run dir")
        src = self.dataset_from(pipe, extra, inputs, ("extra_configs.dataset_path",), where)
        if kind == "data_pool_construction":
            if extra.get("ignore_stats") or extra.get("split_num"):
                raise _Skip("construction by count (split_num/ignore_stats) has no counterpart: "
                            "PoolConstruction splits by stat quantiles")
            if src is None or "stats" not in src.roles:
                raise _Skip("PoolConstruction needs a probe's stats: put a ProbeViaAnalyzerHook "
                            "job before it")
            if extra.get("split_ratios") is not None:
                comp["split_ratios"] = [_fraction(r) for r in extra["split_ratios"]]
            comp["seed"] = "${seed}"
            ins = {"dataset": self.ref(pipe, src.roles["dataset"]),
                   "stats": self.ref(pipe, src.roles["stats"])}
        elif kind == "data_pool_cartesian_join":
            left = inputs.get("extra_configs.dataset_path_1") or self._pool_file(
                pipe, extra.get("dataset_path_1"))
            right = inputs.get("extra_configs.dataset_path_2") or self._pool_file(
                pipe, extra.get("dataset_path_2"))
            if left is None or right is None:
                raise _Skip("both sides of the join (dataset_path_1, dataset_path_2) are needed")
            ins = {"left": self._pools_ref(pipe, left), "right": self._pools_ref(pipe, right)}
        else:
            if src is None:
                raise _Skip("no input pools (extra_configs.dataset_path)")
            ins = {"pools": self._pools_ref(pipe, src)}
            if kind == "data_pool_duplication":
                times = extra.get("duplicating_times") or [2]
                times = times if isinstance(times, list) else [times]
                if len(times) > 1:
                    self.report.unmapped.append(f"{where}: duplicating_times={times}: one "
                                                f"PoolDuplication step per value would be "
                                                f"needed; only {times[0]} is converted")
                comp.update(times=int(times[0]), shuffle=bool(extra.get("shuffle", False)),
                            seed=int(extra.get("shuffle_seed", 42)))
            elif kind == "data_pool_downsampling":
                if extra.get("target_num_samples"):
                    comp["target_size"] = int(extra["target_num_samples"])
                comp["seed"] = int(extra.get("shuffle_seed", extra.get("seed", 42)))
            elif kind == "data_pool_combination":
                listed = extra.get("dataset_path")
                top_k = len(listed) if isinstance(listed, list) and len(listed) > 1 else \
                    self.last_top_n or 3
                comp.update(top_k=int(top_k), exclude=[])
        name = self.add_step(pipe, meta or kind.replace("data_pool_", "pool_"),
                             {"component": comp, "inputs": ins})
        return Produced({"pools": (pipe, name, "pools")}, fan=True)

    def _pool_file(self, pipe: str, value: Any) -> Produced | None:
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str) and value and not _placeholder(value):
            return self.file_input(pipe, value)
        return None

    def _conversion_input(self, pipe: str, prod: Produced) -> Any:
        """A conversion reads one file (a path in, a path out) or a list of pools."""
        if not prod.fan:
            for role in ("dataset", "file"):
                if role in prod.roles:
                    return self.ref(pipe, prod.roles[role])
        return self._pools_ref(pipe, prod)

    def _pools_ref(self, pipe: str, prod: Produced) -> Any:
        """A list of pools: a pool step's ``pools``, a fan-out step's ``results`` (whose
        elements carry the pool fields), or one dataset wrapped as a pool by the pool steps."""
        for role in ("pools", "results"):
            if role in prod.roles:
                return self.ref(pipe, prod.roles[role])
        for role in ("dataset", "file"):
            if role in prod.roles:
                _, step, _ = prod.roles[role]
                return [{"name": step, "dataset": self.ref(pipe, prod.roles[role])}]
        raise _Skip("its input holds no pools")

    def job_GeneralProbeHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path,
                             inputs):
        extra = extra or {}
        if extra.get("type") != "data_pool_ranking":
            raise _Skip(f"general probe type {extra.get('type')!r} has no counterpart")
        results = inputs.get("extra_configs.metrics")
        if results is None or "results" not in results.roles:
            raise _Skip("ranking needs the per-pool evaluation results (input "
                        "extra_configs.metrics from an evaluation over pools)")
        keys = [METRIC_NAMES.get(k, k) for k in extra.get("ranking_keys") or ["avg_score"]]
        desc = extra.get("descending", True)
        comp = {"_target_": "sandbox.steps.pools.PoolRanking", "keys": keys,
                "descending": bool(desc) if not isinstance(desc, list) else [bool(d) for d in desc]}
        name = self.add_step(pipe, meta or "rank", {
            "component": comp, "inputs": {"results": self.ref(pipe, results.roles["results"])}})
        out = Produced({"pools": (pipe, name, "pools"), "best": (pipe, name, "best")}, fan=True)
        if extra.get("top_n"):
            self.last_top_n = int(extra["top_n"])
            sel = self.add_step(pipe, f"{name}_top", {
                "component": {"_target_": "sandbox.steps.pools.PoolSelection",
                              "top_k": int(extra["top_n"]), "keep": [], "exclude": []},
                "inputs": {"pools": self.ref(pipe, (pipe, name, "pools"))}})
            out = Produced({"pools": (pipe, sel, "pools")}, fan=True)
        return out

    def job_GeneralDataExecutorHook(self, pipe, where, meta, job, dj, dj_path, extra,
                                    extra_path, inputs):
        extra = extra or {}
        kind = extra.get("type")
        if kind not in CONVERSIONS:
            raise _Skip(f"data executor type {kind!r} has no counterpart")
        option = CONVERSIONS[kind]
        src = inputs.get("extra_configs.dataset_path")
        if src is not None:
            value = self._conversion_input(pipe, src)
        else:
            paths = extra.get("dataset_path")
            paths = [p for p in (paths if isinstance(paths, list) else [paths])
                     if isinstance(p, str) and p and not _placeholder(p)]
            if not paths:
                raise _Skip("no input (extra_configs.dataset_path)")
            known = [self.exports.get(self._norm(p)) for p in paths]
            if len(paths) == 1 and known[0] is not None:
                src = known[0]
                value = self._conversion_input(pipe, src)
            else:
                value = paths[0] if len(paths) == 1 else paths
        base = meta or option
        if option == "coco_caption_meta" and src is not None and "pools" in src.roles \
                and "file" not in src.roles:
            # the sandbox's pools are Parquet in Data-Juicer's format; InternVL's meta names a
            # jsonl in its own format: convert them first (Data-Juicer's pools kept both)
            key = self._convert_key(f"{base}_to_coco", "dj_to_coco_caption")
            first = self.add_step(pipe, f"{base}_to_coco", {
                "component": f"${{{key}}}", "inputs": {"dataset": value}})
            value = self.ref(pipe, (pipe, first, "pools"))
            self.report.warnings.append(f"{where}: a dj_to_coco_caption step ({first}) was put "
                                        f"before it, since InternVL's meta names a jsonl in its "
                                        f"own format and the pools here are Parquet")
        key = self._convert_key(base, option)
        overrides: dict[str, Any] = {}
        if kind == "coco_caption_meta_generation" and extra.get("data_root_path"):
            overrides["data_root"] = extra["data_root_path"]
        if kind == "coco_caption_to_dj_conversion" and isinstance(extra.get("export_path"), str):
            # Data-Juicer writes the pool into that folder, so InternVL's relative image paths
            # resolve against it; here the pool is in the run dir: make them absolute
            overrides["image_root"] = extra["export_path"]
        else:
            self.dropped_keys(where, extra, ("export_path",), "conversions write into the "
                              "step's folder; set export_dir to change it")
        step: dict[str, Any] = {"component": f"${{{key}}}", "inputs": {"dataset": value}}
        if overrides:
            self.globals.setdefault("convert", {}).setdefault(key.split(".", 1)[1], {}).update(
                overrides)
        name = self.add_step(pipe, base, step)
        out = Produced({"file": (pipe, name, "dataset"), "pools": (pipe, name, "pools")},
                       fan=src is not None and src.fan)
        if not out.fan:
            self.last_data = out
        return out

    def _convert_key(self, base: str, option: str) -> str:
        """A key of its own under `convert` for a conversion step's component."""
        key = f"convert.{_name(base)}"
        while any(f"/convert@{key}" in d for d in self.defaults if isinstance(d, dict)):
            key += "_2"
        self.defaults.append({f"/convert@{key}": option})
        return key

    # ------------------------------------------------------------------ model jobs
    @staticmethod
    def _conf(group: str, option: str) -> dict:
        """The component config conf/<group>/<option>.yaml as written ({} when absent)."""
        path = CONF_DIR / group / f"{option}.yaml"
        if not path.is_file():
            return {}
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}

    def _options(self, group: str, option: str, mapped: dict) -> dict | None:
        """The component's `options` with DJ's values merged in (an `overrides` replaces the
        whole key), or None when nothing maps."""
        if not mapped:
            return None
        base = self._conf(group, option).get("options") or {}
        merged = copy.deepcopy(base)
        for k, v in mapped.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
        return merged

    def job_TrainModelHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path, inputs):
        extra = extra if isinstance(extra, dict) else {}
        kind = extra.get("type")
        if kind not in TRAINERS:
            raise _Skip(f"training type {kind!r} has no counterpart (trainers here: "
                        f"{', '.join(sorted(set(TRAINERS.values())))}, gpt2)")
        option = TRAINERS[kind]
        mapped: dict[str, Any] = {}
        if option == "easyanimate":
            t = extra.get("train") or {}
            mp, dp = t.get("model_path") or {}, t.get("dataset_path") or {}
            for src, dst in (("pretrained_model_name_or_path", "pretrained_model"),
                             ("transformer_path", "transformer_path")):
                if mp.get(src):
                    mapped[dst] = mp[src]
            if dp.get("dataset_name") is not None:
                mapped["video_root"] = dp["dataset_name"]
            mapped.update({k: v for k, v in (t.get("training_config") or {}).items()
                           if k != "seed"})
            mapped.update({k: v for k, v in (t.get("tracker_config") or {}).items()})
            self.dropped_keys(where, dp, ("dataset_meta_name",), "the dataset is the step's "
                              "`dataset` input (a convert step's output)")
            self.dropped_keys(where, t.get("saving_config") or {}, ("output_dir",),
                              "checkpoints go to the step's folder")
        elif option == "internvl_coco_caption":
            for src, dst in (("num_gpus", "num_gpus"), ("batch_size_per_device",
                                                        "batch_size_per_device"),
                             ("model_name_or_path", "model_path")):
                if extra.get(src) is not None:
                    mapped[dst] = extra[src]
            scale = str(extra.get("conv_style_or_scale") or "")
            if scale:
                mapped["conv_style"] = CONV_STYLE.get(scale, scale)
            # gradient_accumulation_steps: the trainer derives it (its `global_batch`)
            self.dropped_keys(where, extra, ("internvl_home", "work_dir", "script_dir"),
                              "the environment manager owns the checkout (python -m "
                              "sandbox.env setup internvl); outputs go to the step's folder")
        elif option == "modelscope":
            for src, dst in (("model_name", "model"), ("trainer_name", "trainer_name"),
                             ("key_remapping", "key_remapping"), ("train", "train"),
                             ("eval_dataset", "eval_dataset")):
                if extra.get(src) is not None:
                    mapped[dst] = extra[src]
        elif option == "trinity_rft":
            self.dropped_keys(where, extra, ("trinity_config_path", "trinity_home"),
                              "put Trinity's configuration under trainer.options.config")
        env = self._conf("trainer", option).get("env") or option
        self.dropped_keys(where, extra, ("env_name", "env_manager", "env_params"),
                          f"the stack's environment is described here: python -m sandbox.env "
                          f"setup {env}")
        src_key = next((k for k in inputs), None)
        data = inputs[src_key] if src_key else self.last_data
        in_name = TRAINER_INPUT.get(option, "dataset")
        step: dict[str, Any] = {}
        if data is not None:
            fan, how = self.data_input(pipe, data)
            step.update(fan)
            step["inputs"] = {in_name: "${item:dataset}" if "item" in how else how["ref"]}
        else:
            literal = extra.get("train_dataset") or (as_list(extra.get("meta_paths")) or [None])[0]
            if not isinstance(literal, str) or _placeholder(literal):
                raise _Skip("no training data: no input mapping and no dataset before it")
            step["inputs"] = {in_name: literal}
        step = {"component": self.group_component("trainer", option, meta or "train"), **step}
        options = self._options("trainer", option, mapped)
        if options is not None:
            step["overrides"] = {"options": options}
        name = self.add_step(pipe, meta or "train", step)
        fan = "for_each" in step
        return Produced({"results" if fan else "model_dir": (pipe, name, "results" if fan
                                                            else "model_dir")}, fan=fan)

    def _last_role(self, role: str) -> tuple[str, str, str] | None:
        prod = self.last
        return prod.roles.get(role) if prod else None

    def job_InferModelHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path, inputs):
        extra = extra if isinstance(extra, dict) else {}
        kind = extra.get("type")
        if kind in INFERS and kind != "easyanimate":
            return self._llm_infer(pipe, where, meta, extra, inputs, INFERS[kind])
        if kind != "easyanimate":
            raise _Skip(f"inference type {kind!r} has no counterpart (here: easyanimate, api, "
                        f"huggingface, vllm)")
        t = extra.get("train") or {}
        ic, mp = t.get("infer_config") or {}, t.get("model_path") or {}
        mapped = {k: ic[k] for k in ("image_size", "gpu_num", "batch_size", "mixed_precision",
                                     "video_num_per_prompt") if ic.get(k) is not None}
        for src, dst in (("pretrained_model_name_or_path", "pretrained_model"),
                         ("transformer_path", "transformer_path")):
            if mp.get(src):
                mapped[dst] = mp[src]
        model = self._find_role("model_dir")
        step: dict[str, Any] = {"component": self.group_component("infer", "easyanimate",
                                                                  meta or "infer")}
        ins: dict[str, Any] = {"info": ic.get("prompt_info_path") or "VBench_mini_info.json"}
        if model is not None and model[1]:
            ins["model_dir"] = self.ref(pipe, model)
            if mp.get("lora_path"):
                self.report.unmapped.append(f"{where}: lora_path={mp['lora_path']!r} replaced "
                                            f"by the training step's model_dir")
        elif mp.get("lora_path"):
            ins["model_dir"] = mp["lora_path"]
        else:
            raise _Skip("no model: no training before it and no lora_path")
        step["inputs"] = ins
        options = self._options("infer", "easyanimate", mapped)
        if options is not None:
            step["overrides"] = {"options": options}
        name = self.add_step(pipe, meta or "infer", step)
        return Produced({"videos": (pipe, name, "output_dir"), "info_path": ("", "", ins["info"])})

    def _accepted(self, group: str, option: str) -> set[str]:
        """The parameters a component takes: its YAML's keys and its class's arguments."""
        conf = self._conf(group, option)
        names = {k for k in conf if not k.startswith("_")}
        target = conf.get("_target_")
        if target:
            module, _, cls = target.rpartition(".")
            try:
                init = getattr(importlib.import_module(module), cls).__init__
                names |= {n for n, p in inspect.signature(init).parameters.items()
                          if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
            except (ImportError, AttributeError, ValueError):
                pass
        return names

    def _carried(self, where: str, group: str, option: str, extra: dict,
                 skip: tuple[str, ...], renames: dict[str, str] | None = None) -> dict:
        """Data-Juicer's settings that are parameters of the component here (``renames``
        first); the others are reported."""
        accepted, out = self._accepted(group, option), {}
        for key, value in extra.items():
            if key in skip or key == "type":
                continue
            name = (renames or {}).get(key, key)
            if name in accepted:
                out[name] = value
            elif value not in (None, "", [], {}):
                self.report.unmapped.append(f"{where}: {key}={value!r} is not a parameter of "
                                            f"{group}={option}; not carried")
        return out

    def _llm_infer(self, pipe, where, meta, extra, inputs, option: str) -> Produced:
        if not (CONF_DIR / "infer" / f"{option}.yaml").is_file():
            raise _Skip(f"infer={option} does not exist here yet")
        src = inputs.get("extra_configs.dataset_path")
        if src is None:
            paths = [p for p in as_list(extra.get("dataset_path"))
                     if isinstance(p, str) and not _placeholder(p)]
            src = self.file_input(pipe, paths[0]) if paths else self.as_loaded(pipe,
                                                                               self.last_data)
        if src is None:
            raise _Skip("no dataset to run the model on (extra_configs.dataset_path)")
        self.dropped_keys(where, extra, ("export_path",), "the answers are written into the "
                          "step's folder")
        fan, how = self.data_input(pipe, src)
        step: dict[str, Any] = {
            "component": self.group_component("infer", option, meta or "infer"), **fan,
            "inputs": {"dataset": "${item:dataset}" if "item" in how else how["ref"]}}
        overrides = self._carried(where, "infer", option, extra,
                                  ("dataset_path", "export_path"), INFER_KEYS)
        if overrides:
            step["overrides"] = overrides
        name = self.add_step(pipe, meta or "infer", step)
        return Produced({"results": (pipe, name, "results")}, fan=True) if fan else \
            Produced({"dataset": (pipe, name, "dataset")})

    def _find_role(self, role: str) -> tuple[str, str, str] | None:
        """The newest job that produced ``role`` (Data-Juicer's jobs read ``-1`` or paths)."""
        for prod in reversed(list(self.jobs.values()) + ([self.last] if self.last else [])):
            if role in prod.roles:
                return prod.roles[role]
        return None

    def _evaluate(self, pipe, where, meta, job, extra, inputs, data_hook: bool):
        extra = extra if isinstance(extra, dict) else {}
        kind = extra.get("type")
        if kind not in EVALUATORS:
            raise _Skip(f"evaluation type {kind!r} has no counterpart")
        group, option = EVALUATORS[kind]
        if not (CONF_DIR / group / f"{option}.yaml").is_file():
            raise _Skip(f"{group}={option} does not exist here yet")
        step: dict[str, Any] = {}
        if option == "vbench":
            videos = self._find_role("videos")
            info = extra.get("full_json_dir")
            infer = next((p for p in reversed(list(self.jobs.values())) if "videos" in p.roles),
                         None)
            if infer is not None and "info_path" in infer.roles:
                info = info or infer.roles["info_path"][2]
            ins = {"videos": self.ref(pipe, videos) if videos else extra.get("videos_path"),
                   "info": info}
            if ins["videos"] is None:
                raise _Skip("no videos to evaluate (videos_path, or an inference job before it)")
            if videos and extra.get("videos_path"):
                self.report.unmapped.append(f"{where}: videos_path={extra['videos_path']!r} "
                                            f"replaced by the inference step's output_dir")
            step["inputs"] = ins
            if extra.get("dimension_list"):
                step["overrides"] = {"each": {"dimension": list(extra["dimension_list"])}}
            self.dropped_keys(where, extra, ("output_path", "eval_name", "num_gpus",
                                             "load_ckpt_from_local"),
                              "results go to the step's folder; GPUs are used when present")
        elif option in ("internvl_coco_caption", "coco_caption"):
            src = inputs.get("extra_configs.ckpt_paths")
            model = (src.roles.get("results") or src.roles.get("model_dir")) if src else \
                self._find_role("model_dir")
            if model is None:
                raise _Skip("no checkpoint to evaluate (extra_configs.ckpt_paths)")
            if src is not None and src.fan:
                step["for_each"] = self.ref(pipe, model)
                step["inputs"] = {"model_dir": "${item:model_dir}"}
            else:
                step["inputs"] = {"model_dir": self.ref(pipe, model)}
            if option == "internvl_coco_caption":
                mapped = {"num_gpus": extra["num_gpus"]} if extra.get("num_gpus") else {}
                options = self._options("evaluator", option, mapped)
                if options is not None:
                    step["overrides"] = {"options": options}
                self.dropped_keys(where, extra, ("internvl_home", "env_name", "env_manager",
                                                 "env_params"),
                                  "the environment manager owns InternVL's checkout: python -m "
                                  "sandbox.env setup internvl")
        elif option == "inception":
            self._inception(pipe, where, extra, inputs, step)
        elif option == "default":  # the data evaluator
            data = self.last_data
            src = inputs.get("extra_configs.dataset_path") or data
            if src is None or "dataset" not in src.roles:
                raise _Skip("no dataset to evaluate")
            first = next((s for s in self.pipelines[pipe]["steps"] if s.startswith("load")), None)
            step["inputs"] = {"dataset": self.ref(pipe, src.roles["dataset"]),
                              "source_dataset": self.ref(pipe, (pipe, first, "dataset"))
                              if first else self.ref(pipe, src.roles["dataset"])}
        else:  # accuracy, mse: predicted rows against the truth
            src = inputs.get("extra_configs.predicted_dataset_path")
            if src is None:
                raise _Skip(f"evaluator={option}: no predictions input")
            fan, how = self.data_input(pipe, src)
            step.update(fan)
            step["inputs"] = {"predicted_dataset_path": "${item:dataset}" if "item" in how
                              else how["ref"]}
            carried = self._carried(where, group, option, extra,
                                    ("predicted_dataset_path", "ground_truth_dataset_path"))
            if extra.get("ground_truth_dataset_path"):
                step["inputs"]["ground_truth_dataset_path"] = extra["ground_truth_dataset_path"]
            if carried:
                step["overrides"] = carried
        step = {"component": self.group_component(group, option, meta or "evaluate"), **step}
        name = self.add_step(pipe, meta or ("evaluate_data" if group == "data_evaluator"
                                            else "evaluate"), step)
        fan = "for_each" in step
        return Produced({"results" if fan else "metrics": (pipe, name,
                                                           "results" if fan else "metrics")},
                        fan=fan)

    def _inception(self, pipe, where, extra: dict, inputs: dict, step: dict) -> None:
        """video_inception_evaluator: its settings carried; generated media from an input
        mapping or the newest generation job when fake_data_path is not a path."""
        network_of = {m: key for key, net in NETWORKS.items() for m in net.metrics}
        dj = dict(extra)
        metric = dj.pop("metric", None)
        if metric is not None:
            names = as_list(metric)
            unknown = [m for m in names if m not in network_of]
            if unknown:
                raise _Skip(f"metric {', '.join(map(str, unknown))} is not one of Data-Juicer's "
                            f"inception metrics ({', '.join(network_of)})")
            dj["metrics"] = names
        detector = dj.pop("detector_path", None)
        if detector:
            nets = {network_of[m] for m in dj.get("metrics") or []}
            if len(nets) != 1:
                raise _Skip(f"detector_path={detector!r} needs exactly one metric to say which "
                            f"network it replaces")
            dj[f"{nets.pop()}_path"] = detector
        ins: dict[str, Any] = {}
        src = inputs.get("extra_configs.fake_data_path")
        fake = dj.get("fake_data_path")
        if src is not None and "dataset" in src.roles:
            ins["dataset"] = self.ref(pipe, src.roles["dataset"])
            dj.pop("fake_data_path", None)
        elif not fake or (isinstance(fake, str) and _placeholder(fake)):
            videos = self._find_role("videos")
            if videos is not None:
                ins["videos"] = self.ref(pipe, videos)
                dj.pop("fake_data_path", None)
        real = inputs.get("extra_configs.real_data_path")
        if real is not None and "dataset" in real.roles:
            ins["source_dataset"] = self.ref(pipe, real.roles["dataset"])
            dj.pop("real_data_path", None)
        if ins:
            step["inputs"] = ins
        carried = self._carried(where, "data_evaluator", "inception", dj, (), INCEPTION_KEYS)
        if carried:
            step["overrides"] = carried

    def job_EvaluateDataHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path,
                             inputs):
        return self._evaluate(pipe, where, meta, job, extra, inputs, True)

    def job_EvaluateModelHook(self, pipe, where, meta, job, dj, dj_path, extra, extra_path,
                              inputs):
        return self._evaluate(pipe, where, meta, job, extra, inputs, False)

    # ------------------------------------------------------------------ iteration
    def iteration(self) -> None:
        doc = self.doc
        max_iter = doc.get("max_iter_num", doc.get("max_iter"))
        targets = doc.get("iter_targets") or doc.get("stop_condition") or []
        targets = [targets] if isinstance(targets, str) else list(targets)
        updater = doc.get("iter_updater") or {}
        if not (max_iter not in (None, 1) or targets or updater):
            return
        if len(self.pipelines) != 1:
            self.report.unmapped.append(
                f"iteration (max_iter_num={max_iter}, iter_targets={targets}, iter_updater="
                f"{updater}) runs all {len(self.pipelines)} pipelines again here; a pipeline "
                f"here iterates on its own (max_iter, stop_when, carry): not converted")
            return
        (pipe, node), = self.pipelines.items()
        if isinstance(max_iter, int) and max_iter > 0:
            node["max_iter"] = max_iter
        elif max_iter == 0:
            node["max_iter"] = 100
            self.report.warnings.append("max_iter_num=0 (until the targets hold) became "
                                        "max_iter=100")
        conds = []
        for t in targets:
            m = re.match(r"^\s*([\w.\-]+)\s*(==|>=|<=|>|<)\s*(\S+)\s*$", str(t))
            if not m:
                self.report.unmapped.append(f"iter_targets {t!r}: not understood")
                continue
            parts = m.group(1).split(".")
            key = (parts[0], parts[1]) if len(parts) >= 3 else None
            if key and self.single and key[0] == "anonymous":
                key = ("", key[1])
            prod = self.jobs.get(key) if key else None
            role = prod and (prod.roles.get("metrics"))
            if role is None:
                self.report.unmapped.append(f"iter_targets {t!r}: its job has no metrics here")
                continue
            conds.append(f"{role[1]}.metrics.{parts[-1]} {m.group(2)} {m.group(3)}")
        if conds:
            mode = " or " if doc.get("iter_targets_mode") == "any" else " and "
            node["stop_when"] = mode.join(conds)
        if updater:
            self.report.unmapped.append(f"iter_updater {updater}: here `carry` copies a step's "
                                        f"output into the config of the next iteration; write it "
                                        f"by hand")

    # ------------------------------------------------------------------ output
    def render(self) -> dict:
        if not self.pipelines:
            raise ConfigError(f"{self.origin}: none of its jobs converts, so there is no "
                              f"pipeline to write: {'; '.join(self.report.unmapped[:5])}.")
        out: dict[str, Any] = {"defaults": [{"override /pipeline": None},
                                            {"override /data_evaluator": None}
                                            if "data_evaluator" not in self.groups else None,
                                            *self.defaults]}
        # Hydra wants the `override` entries after the others
        entries = [d for d in out["defaults"] if d is not None]
        out["defaults"] = [d for d in entries if not next(iter(d)).startswith("override ")] + \
            [d for d in entries if next(iter(d)).startswith("override ")]
        out.update(copy.deepcopy(self.globals))
        if self.single:
            out["pipeline"] = self.pipelines[""]
        else:
            out["pipelines"] = self.pipelines
        return out


class _Skip(Exception):
    """A job with no counterpart here (the message says why)."""


# ============================================================================ files
def convert_file(path: str | Path) -> tuple[str, Report]:
    """The experiment file's text for the Data-Juicer sandbox config ``path``, and the report."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist. Give a Data-Juicer sandbox config (a YAML with "
                          f"probe_job_configs / execution_job_configs / ... or pipelines).")
    doc = _load_yaml(path)
    if isinstance(doc, dict) and doc.get("type") in EVALUATORS and \
            not (set(doc) & {"pipelines", *PHASES}):
        # one evaluator's config (configs/demo/sandbox/*_eval_config.yaml): a sandbox config
        # whose only job is that evaluation, as Data-Juicer runs it from a job's extra_configs
        group = EVALUATORS[doc["type"]][0]
        doc = {"experiment_name": path.stem, "evaluation_job_configs": [{
            "hook": "EvaluateDataHook" if group == "data_evaluator" else "EvaluateModelHook",
            "meta_name": _name(path.stem), "extra_configs": str(path.resolve())}]}
    if not isinstance(doc, dict) or not (set(doc) & {"pipelines", *PHASES}):
        raise ConfigError(f"{path} is not a Data-Juicer sandbox config: it has none of "
                          f"`pipelines`, {', '.join(PHASES)}. (A Data-Juicer recipe, with "
                          f"`process:`, runs as recipe=dj recipe.path={path}.)")
    conv = Converter(doc, path)
    body = conv.convert()
    return render_text(body, conv.report, path, doc), conv.report


def _comment(text: str) -> str:
    return "\n".join("# " + line if line else "#" for line in text.splitlines())


def render_text(body: dict, report: Report, source: Path, doc: dict) -> str:
    name = doc.get("experiment_name") or doc.get("project_name") or source.stem
    head = [
        "# @package _global_",
        f"# Imported from the Data-Juicer sandbox config {source}",
        f"# (project {doc.get('project_name')!r}, experiment {name!r}) by",
        f"#   python -m sandbox.convert_dj_sandbox {source}",
        "# Run it with:  python -m sandbox experiment=<this file's name>",
        "# Paths are as written there: relative to where Data-Juicer ran.",
    ]
    if report.unmapped or report.warnings:
        head.append("#")
        head.append("# Not carried over (no counterpart here), to redo by hand where needed:")
        for line in report.unmapped:
            head.append(_comment("  - " + line))
        for line in report.warnings:
            head.append(_comment("  - warning: " + line))
    text = "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True,
                                                   width=100)
    if report.dropped_jobs:
        text += "\n# Jobs not converted, as they were written:\n"
        for where, job in report.dropped_jobs:
            text += f"# --- {where}\n" + _comment(yaml.safe_dump(job, sort_keys=False,
                                                                 allow_unicode=True)) + "\n"
    return text


def summary(report: Report, out: str | None) -> str:
    lines = [f"converted {len(report.mapped)} job(s): {', '.join(report.mapped) or 'none'}"]
    if report.unmapped:
        lines.append(f"{len(report.unmapped)} item(s) with no counterpart here (kept as comments "
                     f"in the output):")
        lines += [f"  - {u}" for u in report.unmapped]
    for w in report.warnings:
        lines.append(f"warning: {w}")
    if out:
        lines.append(f"wrote {out}; run it with: python -m sandbox experiment={Path(out).stem}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.convert_dj_sandbox",
        description="Turn a Data-Juicer sandbox config into an experiment file of this sandbox.")
    parser.add_argument("config", help="the Data-Juicer sandbox config (YAML)")
    parser.add_argument("-o", "--output", help="where to write the experiment file (e.g. "
                        "conf/experiment/NAME.yaml); default: print it to stdout")
    args = parser.parse_args(argv)
    try:
        text, report = convert_file(args.config)
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(summary(report, str(out)))
    else:
        sys.stdout.write(text)
        print(summary(report, None), file=sys.stderr)
    return 0

