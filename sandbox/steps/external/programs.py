"""Outside programs as steps: a trainer, an inference job or an evaluator that runs in an
environment of its own (``sandbox.env``), described by one YAML and no Python.

A component YAML says:

    _target_: sandbox.steps.external.ExternalTrainer   # or ExternalInfer / ExternalEvaluator
    stack: EasyAnimate LoRA training    # for messages
    env: easyanimate                    # conf/env/easyanimate.yaml (or an inline spec; null: ours)
    needs: an NVIDIA GPU with CUDA ...  # said when the environment is missing
    options: {epochs: 2}                # the knobs a user overrides (trainer.options.epochs=3)
    cwd: ${step:src}                    # where the program runs (default: the step's folder)
    argv: [bash, train_lora.sh, "${in:dataset}", "${opt:epochs}", "${step:seed}"]
    env_vars: {WANDB_MODE: offline}
    timeout: null                       # seconds
    each: {dimension: [a, b]}           # optional: one run per value, ${each:dimension} in it
    choices: {dimension: [a, b, c]}     # the values `each` may take, checked before any run
    files: {config.yaml: {...}}         # written into the step's folder before each run
    metrics: {train_loss: 'step_loss=(?P<value>\\S+)'}   # parsed from the output as it arrives
    results: [{path: "out/*_eval_results.json", metrics: {"x/${each:dimension}": "${each:dimension}.0"}}]
    mean: {vbench/mean: vbench/}        # a metric that averages every metric with that prefix
    outputs: {model_dir: {path: "out/checkpoint-*.safetensors", pick: highest_number}}
    expect: [out/done.json]             # files a successful run must leave, or
    expect: [{path: "videos/{prompt_en}-{i}.mp4", records: "${in:info}", count: 5}]
                                        # ... one per record of a JSON array/jsonl and index i
    expect_metrics: [train_loss]        # `metrics` (or `results`) a successful run must give
    global_batch: {size: 512, devices: num_gpus, per_device: batch_size, accumulation: grad_acc}
                                        # sets options.grad_acc = 512 / (num_gpus x batch_size)

Templates use four interpolations the step fills in when it runs (anything else, e.g.
``${ctx:...}``, is resolved before): ``${in:NAME}`` (the step's input NAME), ``${opt:NAME}``
(one of ``options``), ``${step:WHAT}``
(``workdir``, ``run_dir``, ``cache_dir``, ``seed``, ``name``, ``num_proc``, ``env_dir``,
``python`` (the environment's), ``src`` (its git checkout or editable folder), ``stacks``
(the folder of the driver scripts in ``sandbox/stacks``)) and
``${each:NAME}``. Relative paths in ``files``, ``results``, ``outputs`` and ``expect`` start in
the step's folder.

Output is streamed to ``<step>/logs/<run>.log`` as it arrives; each ``metrics`` pattern is
matched against every line (``\\r``-separated progress bars included) and the value goes to the
tracker at once (a group named ``step`` gives the x-axis; otherwise the match count). A program
that fails, times out or is interrupted raises one paragraph with its last lines; one that exits
0 without its ``results`` or ``expect`` files, or without a value for each of its
``expect_metrics``, is a failure too.
"""
from __future__ import annotations

import difflib
import glob
import itertools
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import sandbox.env as environments  # load_spec looked up when called
from sandbox.data.rows import iter_rows
from sandbox.env import EnvSpec, manager
from sandbox.errors import ConfigError, DiskFullError
from sandbox.programs import ProgramError, run_program
from sandbox.steps.base import Step, StepEnv

PICKS = ("highest_number", "newest", "all", "one")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class ExternalProgram(Step):
    """Run an outside program (see the module docstring for every key)."""

    outputs: ClassVar[tuple[str, ...]] = ("metrics", "logs")

    def __init__(self, argv: list[str], stack: str = "", env: Any = None, needs: str = "",
                 cwd: str | None = None, env_vars: dict[str, Any] | None = None,
                 timeout: float | None = None, each: dict[str, list] | None = None,
                 choices: dict[str, list] | None = None, files: dict[str, Any] | None = None,
                 metrics: dict[str, str] | None = None, results: list[dict] | None = None,
                 mean: dict[str, str] | None = None, outputs: dict[str, Any] | None = None,
                 expect: list[str] | None = None, options: dict[str, Any] | None = None,
                 seed: int = 42, expect_metrics: list[str] | None = None,
                 global_batch: dict[str, Any] | None = None):
        if isinstance(argv, str) or not argv or not all(isinstance(a, (str, int, float))
                                                        for a in argv):
            raise ConfigError(f"`argv` must be a non-empty list of arguments (a program and its "
                              f"arguments, never one shell string); got {argv!r}.")
        self.argv = [str(a) for a in argv]
        self.stack = stack or Path(self.argv[0]).name
        self.env = env
        self.needs = needs
        self.cwd = cwd
        self.env_vars = {str(k): str(v) for k, v in (env_vars or {}).items()}
        self.timeout = timeout
        self.each = _check_each(each, choices)
        self.files = files or {}
        self.metric_patterns = _compile_patterns(metrics or {})
        self.results = _check_results(results or [])
        self.mean = mean or {}
        self.output_specs = _check_outputs(outputs or {}, type(self).outputs)
        self.expect = _check_expect(expect or [])
        if isinstance(expect_metrics, str):
            raise ConfigError(f"`expect_metrics` must be a list of metric names; got "
                              f"{expect_metrics!r}.")
        self.expect_metrics = [str(m) for m in expect_metrics or []]
        self.options = _derive_accumulation(global_batch, dict(options or {}), "")
        self.seed = seed

    # ------------------------------------------------------------------ before anything runs
    @classmethod
    def preflight(cls, cfg: dict[str, Any], where: str) -> None:
        """At planning time: the environment exists and is set up, and ``each`` takes only
        values in ``choices``, and ``global_batch`` divides. Called with the component config
        (``where``: its key)."""
        _check_each(cfg.get("each"), cfg.get("choices"), where)
        if cfg.get("global_batch") and isinstance(cfg.get("options"), dict):
            _derive_accumulation(cfg["global_batch"], dict(cfg["options"]), where)
        spec = environment_spec(cfg.get("env"), where)
        if spec is None:
            return

        if not manager.is_ready(spec):
            stack = cfg.get("stack") or where
            needs = cfg.get("needs")
            raise manager.EnvNotReadyError(
                f"`{where}` ({stack}) runs in its own environment `{spec.name}`, which is not "
                f"set up on this machine ({spec.folder()} has no finished installation), so "
                f"nothing was run. Build it once with `python -m sandbox.env setup {spec.name}` "
                f"(spec: {spec.source}){'; it also needs ' + needs.rstrip('.') if needs else ''}. "
                f"`python -m sandbox.env list` shows every stack and whether it is ready.")
        missing = manager.missing_weights(spec)
        if missing:
            raise manager.EnvNotReadyError(
                f"`{where}` ({cfg.get('stack') or where}) needs weights that are not in place, so "
                f"nothing was run; its programs read them from local paths and download "
                f"nothing: {'; '.join(missing)}. `python -m sandbox.env check {spec.name}` "
                f"says when they are.")

    @classmethod
    def identity_extra(cls, cfg: dict[str, Any]) -> str | None:
        """The environment's hash: a changed spec (another pin, another commit) is another
        result, never a resumed one."""
        try:
            spec = environment_spec(cfg.get("env"), "env")
        except Exception:  # noqa: BLE001 - a bad spec fails the step itself, saying why
            return None
        return None if spec is None else spec.hash

    # ------------------------------------------------------------------ running
    def run(self, env: StepEnv, **inputs: Any) -> dict[str, Any]:
        spec = environment_spec(self.env, env.name)

        step_values = self._step_values(env, spec)
        options = _fill(self.options, {"in": inputs, "step": step_values})  # may use both
        logs = env.workdir / "logs"
        metrics: dict[str, float] = {}
        combos = [dict(zip(self.each, values)) for values in
                  itertools.product(*self.each.values())] if self.each else [{}]
        for each in combos:
            values = {"in": inputs, "step": step_values, "each": each, "opt": options}
            t = _fill({"argv": self.argv, "cwd": self.cwd, "env_vars": self.env_vars,
                       "files": self.files, "results": self.results, "expect": self.expect,
                       "expect_metrics": self.expect_metrics,
                       "metrics": {k: p.pattern for k, p in self.metric_patterns.items()}},
                      values)
            label = "-".join(_safe(v) for v in each.values()) or "run"
            self._write_files(t["files"], env.workdir)
            cwd = Path(t["cwd"]) if t["cwd"] else env.workdir
            cwd.mkdir(parents=True, exist_ok=True)
            parser = LiveMetrics({k: re.compile(p) for k, p in t["metrics"].items()}, env)
            started = time.time()
            argv = [sys.executable if (spec is None and a == "python" and i == 0) else a
                    for i, a in enumerate(t["argv"])]
            expected = [self._path(p, env.workdir) for p in _expected_files(t["expect"])]
            try:
                if spec is None:
                    result = run_program(argv, log_path=logs / f"{label}.log", cwd=cwd,
                                         env=t["env_vars"], timeout=self.timeout,
                                         parsers=[parser]).check().check_outputs(expected)
                else:
                    result = manager.run(spec, argv, log_path=logs / f"{label}.log", cwd=cwd,
                                         env_vars=t["env_vars"], timeout=self.timeout,
                                         parsers=[parser], expected_outputs=expected)
            except ProgramError as e:
                full = _disk_full(e, self.stack, [cwd, env.workdir])
                if full is None:
                    raise
                raise full from None
            found = dict(parser.last)
            for spec_r in t["results"]:
                found.update(self._read_results(spec_r, env.workdir, started, result))
            missing = [m for m in t["expect_metrics"] if m not in found]
            if missing:
                raise result.silent_failure(f"gave no value for {', '.join(missing)} (no output "
                                            f"line matched its `metrics` pattern)",
                                            f"{self.stack}: ")
            metrics.update(found)
        for name, prefix in self.mean.items():
            parts = [v for k, v in metrics.items() if k.startswith(prefix) and k != name]
            if parts:
                metrics[name] = float(sum(parts) / len(parts))
        out: dict[str, Any] = {"metrics": metrics, "logs": str(logs)}
        values = {"in": inputs, "step": step_values, "each": {}, "opt": options}
        for name, spec_o in _fill(self.output_specs, values).items():
            out[name] = self._find_output(name, spec_o, env.workdir)
        return out

    def _step_values(self, env: StepEnv, spec) -> dict[str, Any]:
        values = {"workdir": str(env.workdir), "run_dir": str(env.run_dir),
                  "cache_dir": str(env.cache_dir), "seed": env.seed, "name": env.name,
                  "num_proc": env.num_proc, "python": sys.executable, "env_dir": "", "src": "",
                  "stacks": str(Path(__file__).resolve().parents[2] / "stacks")}
        if spec is not None:
            values["env_dir"] = str(spec.folder())
            if spec.kind != "conda":
                values["python"] = str(manager.bin_dir(spec) / "python")
            src = manager.source_dir(spec) or spec.editable
            values["src"] = str(src) if src else ""
        return values

    @staticmethod
    def _path(path: str, workdir: Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else workdir / p

    def _write_files(self, files: dict[str, Any], workdir: Path) -> None:
        for name, content in files.items():
            path = self._path(name, workdir)
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            elif path.suffix == ".json":
                path.write_text(json.dumps(content, indent=2) + "\n")
            else:
                import yaml

                path.write_text(yaml.safe_dump(content, sort_keys=False))

    def _read_results(self, spec: dict, workdir: Path, started: float, result) -> dict[str, float]:
        """Metrics from the newest file matching ``spec['path']`` written by this run (a file
        from an earlier run is never read: its numbers would be stale)."""
        pattern = str(self._path(spec["path"], workdir))
        fresh = [Path(p) for p in glob.glob(pattern) if Path(p).stat().st_mtime >= started - 1]
        if not fresh:
            raise result.silent_failure(f"wrote no result file matching {pattern}",
                                        f"{self.stack}: ")
        path = max(fresh, key=lambda p: p.stat().st_mtime)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ProgramError(f"{self.stack}: its result file {path} is not valid JSON ({e}).",
                               result) from None
        out = {}
        for name, key in (spec.get("metrics") or {}).items():
            value = _dig(data, str(key))
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                raise ProgramError(f"{self.stack}: its result file {path} has no number at "
                                   f"`{key}` (found {value!r}) for the metric `{name}`.",
                                   result) from None
        return out

    def _find_output(self, name: str, spec: dict, workdir: Path) -> Any:
        pattern = str(self._path(spec["path"], workdir))
        found = sorted(glob.glob(pattern))
        if not found:
            raise ConfigError(f"{self.stack} finished, but its output `{name}` was not found: "
                              f"nothing matches {pattern}. Check `outputs.{name}.path` against "
                              f"where the program writes (its log is in {workdir / 'logs'}).")
        pick = spec.get("pick", "one")
        if pick == "all":
            return found
        if pick == "highest_number":  # checkpoint-1000 beats checkpoint-200 (not by name)
            numbered = [(int(m.group(1)), p) for p in found
                        if (m := _NUMBER.search(Path(p).name))]
            return max(numbered)[1] if numbered else found[-1]
        if pick == "newest":
            return max(found, key=lambda p: Path(p).stat().st_mtime)
        return found[0]


class ExternalTrainer(ExternalProgram):
    """An outside trainer: ``outputs.model_dir`` is what later steps read."""

    outputs: ClassVar[tuple[str, ...]] = ("model_dir", "metrics", "logs")
    seeded: ClassVar[bool] = True


class ExternalInfer(ExternalProgram):
    """An outside inference job: it writes a ``dataset`` (rows with responses) or a folder of
    generated media (``output_dir``)."""

    outputs: ClassVar[tuple[str, ...]] = ("dataset", "output_dir", "metrics", "logs")
    seeded: ClassVar[bool] = True


class ExternalEvaluator(ExternalProgram):
    """An outside evaluator: its numbers are in ``metrics``; ``output_dir`` names its files
    (not ``results``: a fan-out step's list of per-element results has that name)."""

    outputs: ClassVar[tuple[str, ...]] = ("metrics", "output_dir", "logs")


class LiveMetrics:
    """A line parser: each pattern's value goes to the tracker as soon as its line arrives."""

    def __init__(self, patterns: dict[str, re.Pattern], env: StepEnv):
        self.patterns, self.env = patterns, env
        self.last: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        for name, pattern in self.patterns.items():
            m = pattern.search(line)
            if not m:
                continue
            groups = m.groupdict()
            raw = groups.get("value") if "value" in groups else m.group(1)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                continue
            self.counts[name] = self.counts.get(name, 0) + 1
            step = int(float(groups["step"])) if groups.get("step") else self.counts[name]
            self.last[name] = value
            self.env.tracker.log_metrics({name: value}, step=step)


# ---------------------------------------------------------------------- config helpers
def environment_spec(env: Any, where: str):
    """The ``EnvSpec`` of a component's ``env`` key: a name in ``conf/env``, an inline mapping,
    or None (the sandbox's own environment)."""
    if env is None or env == "":
        return None

    if isinstance(env, str):
        return environments.load_spec(env)
    if isinstance(env, dict):
        return EnvSpec.from_mapping(env, source=f"{where}.env")
    raise ConfigError(f"{where}.env must name a spec in conf/env (e.g. `env: vbench`) or be an "
                      f"inline spec mapping; got {env!r}.")


def _check_each(each: Any, choices: Any, where: str = "") -> dict[str, list]:
    at = f"{where}." if where else ""
    if not each:
        return {}
    if not isinstance(each, dict) or not all(isinstance(v, list) and v for v in each.values()):
        raise ConfigError(f"{at}each must map a name to a non-empty list of values (one run per "
                          f"value), e.g. `each: {{dimension: [temporal_flickering]}}`; got {each!r}.")
    for name, allowed in (choices or {}).items():
        if name not in each or (isinstance(allowed, str) and allowed.startswith("${")):
            continue
        wrong = [v for v in each[name] if v not in allowed]
        if wrong:
            hints = [f"{w} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(
                str(w), [str(a) for a in allowed], n=1)) else str(w) for w in wrong]
            raise ConfigError(f"{at}each.{name} has value(s) that are not allowed: "
                              f"{', '.join(hints)}. The allowed values are: "
                              f"{', '.join(map(str, allowed))}.")
    return dict(each)


def _derive_accumulation(spec: dict | None, options: dict, where: str) -> dict:
    """``options`` with ``options[spec['accumulation']]`` set to ``spec['size']`` / (devices x
    per-device batch), so that changing the device count keeps the global batch; a count that
    does not divide it is a ConfigError naming the keys."""
    if not spec:
        return options
    at = f"{where}." if where else ""
    try:
        size, dev, per, acc = (spec[k] for k in ("size", "devices", "per_device", "accumulation"))
    except (KeyError, TypeError):
        raise ConfigError(f"{at}global_batch must be {{size: N, devices: OPTION, per_device: "
                          f"OPTION, accumulation: OPTION}}; got {spec!r}.") from None
    try:
        devices, per_device = int(options[dev]), int(options[per])
    except KeyError as e:
        raise ConfigError(f"{at}global_batch names the option {e.args[0]!r}, which "
                          f"{at}options does not have.") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{at}options.{dev} and {at}options.{per} must be whole numbers; got "
                          f"{options[dev]!r} and {options[per]!r}.") from None
    per_step = devices * per_device
    if devices <= 0 or per_device <= 0 or int(size) % per_step:
        raise ConfigError(
            f"The global batch of {size} must be divisible by {at}options.{dev} x "
            f"{at}options.{per} (the samples of one step on all devices), but {devices} x "
            f"{per_device} = {per_step} does not divide it, so {at}options.{acc} cannot keep it. "
            f"Choose values whose product divides {size} (e.g. 8 x 4, giving {acc}="
            f"{int(size) // 32 if int(size) % 32 == 0 else int(size)}).")
    derived = int(size) // per_step
    given = options.get(acc)
    if given is not None and str(given) != str(derived):
        raise ConfigError(f"{at}options.{acc} is derived from the global batch ({size} / "
                          f"({devices} x {per_device}) = {derived}); it was set to {given!r}. "
                          f"Leave it out, or change {at}options.{dev} / {at}options.{per}.")
    options[acc] = derived
    return options


def _compile_patterns(metrics: dict[str, str]) -> dict[str, re.Pattern]:
    out = {}
    for name, pattern in metrics.items():
        try:
            compiled = re.compile(str(pattern))
        except re.error as e:
            raise ConfigError(f"metrics.{name}: `{pattern}` is not a regular expression ({e}).")
        if "value" not in compiled.groupindex and compiled.groups < 1:
            raise ConfigError(f"metrics.{name}: `{pattern}` must capture the number, with a group "
                              f"`(...)` or `(?P<value>...)`.")
        out[name] = compiled
    return out


def _check_results(results: list) -> list[dict]:
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "path" not in r or not isinstance(r.get("metrics", {}), dict):
            raise ConfigError(f"results[{i}] must be {{path: GLOB, metrics: {{NAME: dotted.key}}}}; "
                              f"got {r!r}.")
    return results


def _check_expect(expect: list) -> list:
    for i, e in enumerate(expect):
        if not isinstance(e, str) and not (isinstance(e, dict) and "path" in e and "records" in e
                                           and set(e) <= {"path", "records", "count"}):
            raise ConfigError(f"expect[{i}] must be a path or {{path: TEMPLATE, records: FILE, "
                              f"count: N}} (one file per record and index: \"{{prompt_en}}-{{i}}"
                              f".mp4\"); got {e!r}.")
    return list(expect)


def _expected_files(expect: list) -> list[str]:
    """The files ``expect`` names: a path as written; ``{path, records, count}`` expands
    ``path`` (``str.format`` with the record's fields and ``i``) for every record of the JSON
    array or jsonl file ``records`` and every ``i`` below ``count`` (default 1), in order and
    without repeats (records that name the same file are one file, as for the program)."""
    out: dict[str, None] = {}
    for e in expect:
        if isinstance(e, str):
            out[e] = None
            continue
        count = int(e.get("count", 1))
        for n, record in enumerate(iter_rows(Path(e["records"])), 1):
            for i in range(count):
                try:
                    out[str(e["path"]).format_map({**record, "i": i})] = None
                except (KeyError, IndexError, AttributeError, TypeError) as err:
                    raise ConfigError(f"expect: record {n} of {e['records']} has no field "
                                      f"{err} for the file name {e['path']!r}.") from None
    return list(out)


def _check_outputs(outputs: dict, declared: tuple[str, ...]) -> dict[str, dict]:
    out = {}
    for name, spec in outputs.items():
        if name not in declared or name in ("metrics", "logs"):
            raise ConfigError(f"outputs.{name}: this step's outputs are "
                              f"{', '.join(n for n in declared if n not in ('metrics', 'logs'))}.")
        spec = {"path": spec} if isinstance(spec, str) else dict(spec or {})
        if "path" not in spec or spec.get("pick", "one") not in PICKS:
            raise ConfigError(f"outputs.{name} must be a path/glob or {{path: GLOB, pick: "
                              f"{'|'.join(PICKS)}}}; got {outputs[name]!r}.")
        out[name] = spec
    return out


def _fill(template: Any, values: dict[str, dict]) -> Any:
    """``template`` with ``${in:...}``, ``${step:...}`` and ``${each:...}`` filled in."""
    from omegaconf import OmegaConf

    from sandbox.context import bound_values, register_resolvers

    register_resolvers()

    def keys(node: Any) -> Any:  # OmegaConf leaves mapping keys as written: fill them too
        if isinstance(node, dict):
            return {(OmegaConf.create({"k": k}).k if isinstance(k, str) and "${" in k else k):
                    keys(v) for k, v in node.items()}
        if isinstance(node, list):
            return [keys(v) for v in node]
        return node

    with bound_values(values):
        return keys(OmegaConf.to_container(OmegaConf.create({"t": template}), resolve=True)["t"])


def _dig(data: Any, key: str) -> Any:
    value = data
    for part in key.split(".") if key else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _safe(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value))[:80] or "run"


# what programs print when a write finds no room (strerror of ENOSPC, EDQUOT; errno 28 and 122)
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|\[Errno (28|122)\]")
LOW_SPACE_BYTES = 1 << 20


def _disk_full(error: ProgramError, stack: str, folders: list[Path]) -> DiskFullError | None:
    """The failure as a full disk, naming the fullest of ``folders``, when the program's last
    lines say so or that disk has (almost) no room left; else None."""
    said = any(_DISK_FULL.search(line) for line in (error.result.tail if error.result else ()))
    free = {}
    for folder in folders:
        try:
            free[folder] = shutil.disk_usage(folder).free
        except OSError:
            continue
    if not free or not (said or min(free.values()) < LOW_SPACE_BYTES):
        return None
    folder = min(free, key=free.get)
    log = error.result.log_path if error.result else "its log"
    lines = "".join(f"\n  | {line}" for line in (error.result.tail[-5:] if error.result else ()))
    return DiskFullError(
        f"{stack}: its program failed because the disk holding {folder} is full "
        f"({free[folder] / 2 ** 20:.1f} MiB free). Nothing it wrote is taken as a result; its "
        f"output is in {log}. Free space there (or give the stack a folder on a larger disk), "
        f"then run again with resume=true and the same hydra.run.dir. Its last lines:{lines}")
