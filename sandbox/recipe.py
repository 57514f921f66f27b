"""Recipes: an ordered list of OPs with their arguments.

Two forms are accepted and produce the same ``Recipe``:

* the config tree (``conf/recipe/*.yaml``): ``ops: {key: {arg: value}}``, keys are stable
  addresses (``recipe.ops.text_length_filter.min_len=...``); a key that is not an OP name says
  which OP it is with ``_op: NAME``; ``_enabled: false`` switches an OP off;
* a Data-Juicer recipe file (``recipe.path``): ``process: [{op_name: {args}}]``, unchanged; its
  global keys (``text_keys``, ``np``, ...) are read where they mean something here.

Every OP name and argument is checked against the OP's signature before anything runs, and
values are read as Data-Juicer reads them (``coerce``): ``2e5``, ``1e-3``, ``"10"`` are numbers
where the argument is numeric, and whole floats are integers where it is an integer.
``check_recipe`` goes further, before any data is read: every asset of every OP (models, word
lists, tokenizers) is resolved, all missing ones reported in one paragraph, and every OP is built
once so that a value its constructor refuses fails now, not after the pool is loaded.
"""
from __future__ import annotations

import difflib
import inspect
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from sandbox.assets import AssetMissing, check
from sandbox.errors import RecipeError
from sandbox.ops import OpSpec, get_op_class
from sandbox.ops.registry import OPS
from sandbox.utils import stable_hash

RESERVED = ("_op", "_enabled")
# Data-Juicer global keys that this loader knows and ignores (they concern its own engine).
DJ_GLOBAL_KEYS = {
    "project_name", "dataset_path", "export_path", "np", "text_keys", "use_cache", "open_tracer",
    "op_fusion", "skip_op_error", "executor_type", "ds_cache_dir", "cache_compress",
    "export_shard_size", "export_in_parallel", "keep_stats_in_res_ds", "keep_hashes_in_res_ds",
    "trace_num", "op_list_to_trace", "use_checkpoint", "temp_dir", "open_monitor", "suffixes",
    "turbo", "image_key", "audio_key", "video_key", "eoc_special_token", "image_special_token",
    "add_suffix", "fusion_strategy", "work_dir", "dataset", "generated_dataset_config",
    "validators", "export_type", "load_dataset_kwargs", "percentiles", "save_stats_in_one_file",
    "auto", "auto_num", "data_probe_algo", "data_probe_ratio", "debug", "adaptive_batch_size",
}


CONFIG_SOURCE = "the recipe config (conf/recipe)"


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe: its OPs in order (``OpSpec``: key, OP name, arguments as the
    OP reads them), the sample field that holds the text, and where it came from (for
    messages). Made by ``load_recipe``/``load_dj_file``/``Recipe.coerce``; the runner parses the
    configured one once, at planning, and hands this object to the engine, the tracker and the
    steps. Treat it as immutable: ``with_args`` gives a changed copy."""

    ops: tuple[OpSpec, ...] = ()
    text_key: str = "text"
    source: str = CONFIG_SOURCE

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))

    @classmethod
    def coerce(cls, value: Any, text_key: str = "text") -> Recipe:
        """``value`` as a ``Recipe``: a ``Recipe`` as it is; a mapping in the config-tree form
        (the ``recipe`` config node, or a recipe a step wrote, read back from the run's context)
        or a Data-Juicer recipe file's path, parsed and validated (``load_recipe``)."""
        if isinstance(value, Recipe):
            return value
        if isinstance(value, (str, Path)):
            return load_recipe({"path": str(value)}, text_key)
        if isinstance(value, Mapping) or value is None:
            return load_recipe(value, text_key)
        raise RecipeError(f"a recipe must be a mapping ({{ops: {{...}}}}, the `recipe` config) "
                          f"or a Data-Juicer recipe file, got {type(value).__name__} {value!r}.")

    @property
    def keys(self) -> list[str]:
        """The OPs' keys, in order."""
        return [s.key for s in self.ops]

    def op(self, key: str) -> OpSpec:
        """The OP under ``key``."""
        for s in self.ops:
            if s.key == key:
                return s
        raise KeyError(f"{self.source} has no OP `{key}`; its OPs are: "
                       f"{', '.join(self.keys) or '(none)'}.")

    def build(self):
        """Instantiate every OP (validated first)."""
        validate(self)
        ops = []
        for s in self.ops:
            try:
                ops.append(get_op_class(s.name)(text_key=self.text_key, **s.args))
            except (ValueError, TypeError) as e:  # a value the OP's constructor rejects
                raise RecipeError(f"{self.source}, OP `{s.key}`: {e}. Fix its arguments.") from None
        return ops

    def thresholds(self) -> dict[str, dict[str, Any]]:
        """Per OP key, the thresholds of the OP (``{argument: Threshold}``) as this recipe builds
        it: some bound another stat depending on their arguments (``alphanumeric_filter`` with
        ``tokenization``, the field of ``specified_numeric_field_filter``). Native OPs are built
        (a model one loads stays loaded for the run); Data-Juicer's adapted ones keep their
        class's."""
        out = {}
        for s in self.ops:
            if s.name in OPS:
                out[s.key] = OPS[s.name](text_key=self.text_key, **s.args).thresholds
            else:
                out[s.key] = get_op_class(s.name).thresholds
        return out

    def with_args(self, changes: Mapping[str, Mapping[str, Any]]) -> Recipe:
        """A copy with ``changes[key]`` merged into the arguments of OP ``key`` (validated);
        this recipe is left as it is."""
        unknown = [k for k in changes if k not in self.keys]
        if unknown:
            raise KeyError(f"{self.source} has no OP(s) {unknown}; its OPs are: "
                           f"{', '.join(self.keys) or '(none)'}.")
        ops = [OpSpec(key=s.key, name=s.name, args={**s.args, **dict(changes.get(s.key) or {})})
               for s in self.ops]
        out = replace(self, ops=ops)
        validate(out)
        return out

    @property
    def fingerprint(self) -> str:
        """A hash of what the recipe does (its OPs, their arguments, the text key)."""
        return stable_hash([self.to_config(), self.text_key])

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def to_config(self) -> dict[str, Any]:
        """The config-tree form (what ``recipe.ops`` holds)."""
        ops = {}
        for s in self.ops:
            args = dict(s.args)
            if s.key != s.name:
                args["_op"] = s.name
            ops[s.key] = args
        return {"path": None, "ops": ops}

    def to_dj(self) -> dict[str, Any]:
        """Data-Juicer's format: ``process: [{op_name: {args}}]``."""
        return {"text_keys": self.text_key, "process": [{s.name: dict(s.args)} for s in self.ops]}

    def to_dj_yaml(self) -> str:
        return yaml.safe_dump(self.to_dj(), sort_keys=False, allow_unicode=True)


class RecipeBook:
    """The recipes of one run, by what they were read from: the configured one (parsed at
    planning) and those that steps return. A step input that is one of them in its config form
    (``${recipe}``, ``${ctx:refine.recipe}``) gets that very object; anything else is parsed
    once (``Recipe.coerce``) and kept. A step's identity still hashes the config form."""

    def __init__(self):
        self._by_source: dict[str, Recipe] = {}

    @staticmethod
    def _key(value: Any, text_key: str) -> str:
        return stable_hash([value, str(text_key)])

    def add(self, recipe: Recipe, value: Any = None, text_key: str | None = None) -> Recipe:
        """Keep ``recipe`` as what ``value`` read with ``text_key`` gives (default: its own config
        form and text key)."""
        value = recipe.to_config() if value is None else value
        self._by_source[self._key(value, text_key or recipe.text_key)] = recipe
        return recipe

    def get(self, value: Any, text_key: str = "text") -> Recipe:
        """``value`` as a ``Recipe`` (see ``Recipe.coerce``), parsed only if not seen before."""
        if isinstance(value, Recipe):
            return value
        key = self._key(value, text_key)
        if key not in self._by_source:
            self._by_source[key] = Recipe.coerce(value, text_key)
        return self._by_source[key]

    def record(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """A step's outputs as the run's context records them: each ``Recipe`` in its config form
        (and kept, so that the steps reading it get the object)."""
        out = dict(outputs)
        for name, value in outputs.items():
            if isinstance(value, Recipe):
                self.add(value)
                out[name] = value.to_config()
        return out


def load_recipe(cfg: Mapping | None, text_key: str = "text") -> Recipe:
    """Build a ``Recipe`` from the ``recipe`` config node (a plain dict)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - {"path", "ops", "name"})
    if unknown:
        hint = (" A Data-Juicer `process:` list belongs in a recipe file: recipe=dj "
                "recipe.path=FILE." if "process" in unknown else "")
        raise RecipeError(f"the recipe config has unknown key(s) {unknown}: it takes `ops` (OPs "
                          f"by key, with their arguments) and `path` (a Data-Juicer recipe "
                          f"file).{hint}")
    path = cfg.get("path")
    overrides = dict(cfg.get("ops") or {})
    if path:
        base = load_dj_file(path, text_key)
        keys = set(base.keys)
        for key in overrides:
            if key not in keys:
                raise RecipeError(
                    f"recipe.ops.{key} overrides an OP that {path} does not contain. Its OPs are: "
                    f"{', '.join(base.keys) or '(none)'}. Fix the key, or add the OP to the file."
                )
        ops = []
        for spec in base.ops:
            args = dict(overrides.get(spec.key) or {})
            if args.pop("_enabled", True) is False:
                continue
            ops.append(OpSpec(key=spec.key, name=spec.name, args={
                **spec.args, **{k: v for k, v in args.items() if k not in RESERVED}}))
        recipe = replace(base, ops=ops)
        validate(recipe)
        return recipe

    ops = []
    for key, args in overrides.items():
        args = dict(args or {})
        name = args.pop("_op", key)
        if args.pop("_enabled", True) is False:
            continue
        ops.append(OpSpec(key=str(key), name=str(name), args=args))
    recipe = Recipe(ops=ops, text_key=text_key)
    validate(recipe)
    return recipe


def load_dj_file(path: str | Path, text_key: str = "text") -> Recipe:
    p = Path(path)
    if not p.is_file():
        raise RecipeError(
            f"recipe file {p} does not exist. Give an existing Data-Juicer recipe with "
            f"recipe.path=FILE (a YAML file with a `process:` list)."
        )
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe file {p} is not valid YAML: {e}. Fix the file's syntax.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("process"), list):
        raise RecipeError(
            f"recipe file {p} has no `process:` list. A Data-Juicer recipe looks like\n"
            f"process:\n  - text_length_filter:\n      min_len: 10"
        )
    keys = doc.get("text_keys", text_key)
    if isinstance(keys, list):
        if len(keys) != 1:
            raise RecipeError(f"recipe file {p}: text_keys={keys}; only one text key is supported.")
        keys = keys[0]
    ops, seen = [], {}
    for i, entry in enumerate(doc["process"]):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise RecipeError(
                f"recipe file {p}, process[{i}]: expected `- op_name: {{args}}`, got {entry!r}."
            )
        (name, args), = entry.items()
        if args is not None and not isinstance(args, dict):
            raise RecipeError(
                f"recipe file {p}, process[{i}] ({name}): arguments must be a mapping, got {args!r}."
            )
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}_{seen[name]}"
        ops.append(OpSpec(key=key, name=name, args=dict(args or {})))
    return Recipe(ops=ops, text_key=str(keys), source=f"recipe file {p}")


def type_ok(value: Any, annotation: Any) -> bool:
    """Loose check of a YAML value against an annotation (int accepted where float is)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


class NotCoercible(ValueError):
    """A value that cannot be read as the type its argument asks for."""


def _number(value: Any, kind: type) -> Any:
    """``value`` as an int or float the way Data-Juicer's YAML and parser read numbers: numeric
    strings (``"2e5"``, ``" 10 "``, ``"1_000"``) are numbers, a whole float is an int where an
    int is asked for; booleans, ``inf``/``nan`` and non-whole floats for ints are refused."""
    if isinstance(value, bool):
        raise NotCoercible
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise NotCoercible from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NotCoercible
    if kind is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise NotCoercible
            return int(value)
        return value
    return value  # an int stays an int where a float is asked for (as YAML gives it)


def coerce(value: Any, annotation: Any) -> Any:
    """``value`` read as ``annotation`` asks (numbers as ``_number`` reads them, lists element by
    element, the first member of a Union that fits); ``NotCoercible`` when nothing fits."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        members = typing.get_args(annotation)
        for member in members:  # an exact fit first: a str stays a str in Union[str, int]
            if type_ok(value, member):
                return coerce(value, member)
        for member in members:
            try:
                return coerce(value, member)
            except NotCoercible:
                continue
        raise NotCoercible
    if annotation is type(None):
        if value is None:
            return None
        raise NotCoercible
    if annotation in (int, float):
        return _number(value, annotation)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        (elem,) = typing.get_args(annotation)[:1] or (Any,)
        return [coerce(v, elem) for v in value]
    if type_ok(value, annotation):
        return value
    raise NotCoercible


def validate(recipe: Recipe) -> None:
    """Check names, argument names and types (coercing values as Data-Juicer reads them, in
    place) and min <= max for every OP; raise ``RecipeError``."""
    for spec in recipe.ops:
        where = f"{recipe.source}, OP `{spec.key}`"
        try:
            cls = get_op_class(spec.name)
        except KeyError as e:
            raise RecipeError(f"{where}: {e.args[0]}") from None
        params = cls.params()
        hints = typing.get_type_hints(cls.__init__)
        for arg, value in spec.args.items():
            if arg not in params:
                close = difflib.get_close_matches(arg, params, n=2)
                hint = f" Did you mean {' or '.join(close)}?" if close else ""
                raise RecipeError(
                    f"{where}: unknown parameter `{arg}`.{hint} {spec.name} takes: "
                    f"{', '.join(p for p in params if p != 'text_key')}."
                )
            ann = hints.get(arg, params[arg].annotation)
            try:
                spec.args[arg] = coerce(value, ann)
            except NotCoercible:
                raise RecipeError(
                    f"{where}: parameter `{arg}` must be {type_name(ann)}, got {value!r} "
                    f"({type(value).__name__}). Fix the value in the recipe."
                ) from None
        # min <= max for each pair of thresholds on the same stat
        values = {n: spec.args.get(n, p.default) for n, p in params.items()}
        by_stat: dict[str, dict[str, Any]] = {}
        for arg, th in cls.thresholds.items():
            by_stat.setdefault(th.stat, {})[th.bound] = (arg, values.get(arg))
        for stat, b in by_stat.items():
            if "min" in b and "max" in b:
                (lo_arg, lo), (hi_arg, hi) = b["min"], b["max"]
                if lo is not None and hi is not None and lo > hi:
                    raise RecipeError(
                        f"{where}: {lo_arg}={lo} is greater than {hi_arg}={hi}, so every sample "
                        f"would be dropped. Make {lo_arg} <= {hi_arg}."
                    )


def type_name(ann: Any) -> str:
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def full_args(spec: OpSpec) -> dict[str, Any]:
    """The OP's arguments with its defaults filled in (what its constructor will see)."""
    params = get_op_class(spec.name).params()
    out = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update(spec.args)
    return out


def op_asset_needs(spec: OpSpec) -> list:
    """``(OP key, AssetRef)`` for every asset the OP of ``spec`` needs, as it declares them
    (``Op.needed_assets``) for its arguments."""
    return [(spec.key, ref) for ref in get_op_class(spec.name).needed_assets(full_args(spec))]


def asset_needs(recipe: Recipe) -> list:
    """``(OP key, AssetRef)`` for every asset every OP of the recipe needs."""
    return [need for spec in recipe.ops for need in op_asset_needs(spec)]


def _missing_assets(recipe: Recipe, fetch_args: str) -> str:
    """The ``AssetMissing`` paragraph of the OPs that can be read (an unknown OP, or one whose
    arguments do not fit, is left out), without downloading anything; "" when none is missing."""
    needs = []
    for spec in recipe.ops:
        try:
            needs += op_asset_needs(spec)
        except Exception:  # the error being reported already covers this OP
            continue
    try:
        check(needs, recipe.source, fetch_args, allow_download=False, progress=False)
    except AssetMissing as e:
        return str(e)
    return ""


def check_recipe(recipe: Recipe, fetch_args: str = "") -> None:
    """Everything that can be checked before data is read: ``validate``, then every asset of
    every OP (one ``AssetMissing`` listing all that are missing), then each native OP is built
    once (a value its constructor refuses is a ``RecipeError`` now). Models loaded here stay
    loaded for the run (``sandbox.assets`` keeps one copy per process)."""
    path = recipe.source.removeprefix("recipe file ") if recipe.source.startswith("recipe file") \
        else ""
    fetch_args = fetch_args or (f"--recipe {path}" if path else "")
    try:
        validate(recipe)
    except RecipeError as e:  # say the missing assets too, so that one fix-and-run does both
        missing = _missing_assets(recipe, fetch_args)
        if missing:
            raise RecipeError(f"{e} Besides, the recipe's other OPs are not ready: {missing}") \
                from None
        raise
    check(asset_needs(recipe), recipe.source, fetch_args)
    for spec in recipe.ops:
        if spec.name in OPS:  # an adapted Data-Juicer OP is built by the step that runs it
            try:
                OPS[spec.name](text_key=recipe.text_key, **spec.args)
            except (ValueError, TypeError) as e:
                raise RecipeError(f"{recipe.source}, OP `{spec.key}`: {e}. Fix its arguments.") \
                    from None
