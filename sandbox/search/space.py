"""Search spaces in the Hydra Optuna-sweeper syntax -> Optuna distributions.

``hydra.sweeper.params`` maps an override key to one of

=================================  ===============================================
``interval(a, b)``                  FloatDistribution(a, b); written with two integers
                                    (``interval(1, 10)``) or tagged ``int`` -> IntDistribution
``tag(log, interval(a, b))``        the same, sampled on a log scale
``range(a, b[, step])``             IntDistribution(a, b, step) (floats: FloatDistribution with
                                    ``step``); **b is included**, as in hydra-optuna-sweeper
``choice(x, y, ...)`` or a list     CategoricalDistribution((x, y, ...))
anything else                       a fixed value, applied to every trial
=================================  ===============================================

A log scale and a step do not go together (Optuna samples a log range continuously):
``tag(log, range(1, 64, 4))`` is a config error rather than a silently dropped step.
``hydra.sweeper.search_space`` (hydra-optuna-sweeper 1.1's form, ``{type, low, high, step, log,
choices}`` per key) is read by ``distributions_from_search_space``; ``grid_values`` lists a
distribution's points for ``hydra/sweeper/sampler=grid``.

Keys are override keys, so ``+key`` / ``++key`` work, and a config group (``refine``) can be a
``choice`` of its options.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from sandbox.errors import ConfigError

_INT = r"[+-]?\d+"
_INT_INTERVAL = re.compile(rf"interval\(\s*({_INT})\s*,\s*({_INT})\s*\)\s*\)*\s*$")
# range(a, b) or range(a, b, step): whether a step was written (Hydra fills in 1 when it is not)
_RANGE_ARGS = re.compile(r"range\(([^()]*)\)")
GRID_MAX_POINTS = 1_000_000  # a float range with a tiny step would enumerate forever


@dataclass
class SearchSpace:
    distributions: dict[str, Any] = field(default_factory=dict)  # param name -> distribution
    keys: dict[str, str] = field(default_factory=dict)  # param name -> override key (+/++ kept)
    fixed: list[str] = field(default_factory=list)  # overrides applied to every trial

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The trial's command-line overrides for sampled ``params``."""
        # a parameter suggested by custom_search_space has no entry: its name is its key
        return [f"{self.keys.get(name, name)}={format_value(v)}" for name, v in params.items()]


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    return str(value)


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back (strings quoted when they need it)."""
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z0-9_./:\-]+", value) and value.lower() not in (
                "true", "false", "null", "none") or value == "none":
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, float):
        return repr(value)
    return _value_text(value)


def distribution_for(key: str, text: str):
    """The Optuna distribution for one ``key: text`` entry, or None when the value is fixed."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    try:
        override = OverridesParser.create().parse_overrides([f"{key}={text}"])[0]
    except HydraException as e:
        raise ConfigError(f"hydra.sweeper.params.{key}: cannot parse `{text}` ({e}). Use "
                          f"interval(a, b), range(a, b[, step]), choice(x, y, ...) or "
                          f"tag(log, interval(a, b)).") from None
    value = override.value()
    where = f"hydra.sweeper.params.{key}={text}"
    if isinstance(value, list):  # a YAML list: the choices
        value = ChoiceSweep(list=value)
    if not override.is_sweep_override() and not isinstance(value, ChoiceSweep):
        return None
    tags = set(getattr(value, "tags", set()) or set())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(f"{where}: unknown tag(s) {sorted(unknown)}; supported: log, int.")
    log = "log" in tags
    if isinstance(value, ChoiceSweep):
        choices = tuple(value.list)
        if not choices:
            raise ConfigError(f"{where}: choice() needs at least one value.")
        if log:
            raise ConfigError(f"{where}: tag(log, ...) applies to interval and range, not choice.")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if step is None or step <= 0 or stop < start:
            raise ConfigError(f"{where}: range(a, b, step) needs a <= b and step > 0.")
        args = _RANGE_ARGS.search(text)
        step_written = bool(args) and args.group(1).count(",") >= 2
        if log and step_written and not (step == 1 and isinstance(step, int)):
            raise ConfigError(f"{where}: a log scale cannot have a step (Optuna samples log "
                              f"ranges continuously, so the step would be ignored). Write "
                              f"tag(log, range({start}, {stop})) or tag(log, interval({start}, "
                              f"{stop})), or drop `log` to keep the step.")
        if all(isinstance(x, int) for x in (start, stop, step)) or "int" in tags:
            return IntDistribution(int(start), int(stop), log=log, step=1 if log else int(step))
        return FloatDistribution(float(start), float(stop), step=None if log else float(step),
                                 log=log)
    if isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        if not start < end:
            raise ConfigError(f"{where}: interval(a, b) needs a < b.")
        if log and start <= 0:
            raise ConfigError(f"{where}: a log interval needs a > 0.")
        if "int" in tags or _INT_INTERVAL.search(text.strip()):
            return IntDistribution(int(start), int(end), log=log)
        return FloatDistribution(float(start), float(end), log=log)
    raise ConfigError(f"{where}: `{type(value).__name__}` sweeps are not supported by the "
                      f"Optuna sweeper; use interval, range or choice.")


_SEARCH_SPACE_KEYS = {"type", "low", "high", "step", "log", "choices"}


def distributions_from_search_space(search_space: dict[str, Any] | None) -> dict[str, Any]:
    """``hydra.sweeper.search_space`` (hydra-optuna-sweeper 1.1): ``key: {type: int | float |
    categorical, low, high, step, log, choices}`` -> Optuna distributions."""
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    out: dict[str, Any] = {}
    for key, node in (search_space or {}).items():
        where = f"hydra.sweeper.search_space.{key}"
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: expected a mapping like {{type: float, low: 0.1, high: "
                              f"1.0}}, got {node!r}. Or write it under hydra.sweeper.params as "
                              f"interval(0.1, 1.0).")
        unknown = set(node) - _SEARCH_SPACE_KEYS
        kind = str(node.get("type", "")).split(".")[-1].lower()
        if unknown or kind not in ("int", "float", "categorical"):
            raise ConfigError(f"{where}: needs `type: int | float | categorical`"
                              + (f"; unknown key(s) {sorted(unknown)}" if unknown else "")
                              + ". Keys: type, low, high, step, log, choices.")
        if kind == "categorical":
            choices = node.get("choices")
            if not choices:
                raise ConfigError(f"{where}: a categorical entry needs `choices: [...]`.")
            out[str(key)] = CategoricalDistribution(tuple(choices))
            continue
        low, high, step, log = node.get("low"), node.get("high"), node.get("step"), \
            bool(node.get("log", False))
        if low is None or high is None or not low <= high:
            raise ConfigError(f"{where}: needs `low` and `high` with low <= high.")
        if log and step is not None:
            raise ConfigError(f"{where}: `log: true` and `step` do not go together (a log scale "
                              f"is sampled continuously): drop one of them.")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0.")
        if kind == "int":
            out[str(key)] = IntDistribution(int(low), int(high), log=log,
                                            step=1 if step is None else int(step))
        else:
            out[str(key)] = FloatDistribution(float(low), float(high), log=log,
                                              step=None if step is None else float(step))
    return out


def grid_values(name: str, dist) -> list:
    """Every point of ``dist`` for a grid search: the choices, or a range's points (its end
    included). A continuous interval has no grid: a ConfigError says what to write instead."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is None or getattr(dist, "log", False):
        raise ConfigError(
            f"hydra.sweeper.params.{name}: the grid sampler needs a finite set of values, but "
            f"this parameter is continuous{' (log scale)' if dist.log else ''}. Write "
            f"choice(...) or range(a, b, step) for it, or pick another sampler "
            f"(hydra/sweeper/sampler=tpe).")
    count = int(round((dist.high - dist.low) / step)) + 1
    if count > GRID_MAX_POINTS:
        raise ConfigError(f"hydra.sweeper.params.{name}: {count} grid points; use a coarser step.")
    if isinstance(dist, FloatDistribution):
        digits = max(0, -int(math.floor(math.log10(step)))) + 6 if step > 0 else 12
        return [round(dist.low + i * step, digits) for i in range(count)]
    return [int(dist.low + i * step) for i in range(count)]


def parse_space(params: dict[str, Any] | None, cli_overrides: list[str] = ()) -> SearchSpace:
    """``hydra.sweeper.params`` plus sweep overrides from the command line (these win)."""
    space = SearchSpace()
    entries: dict[str, tuple[str, str]] = {}  # name -> (override key, value text)
    for key, value in (params or {}).items():
        if isinstance(value, (list, tuple)):
            text = "choice(" + ",".join(format_value(v) for v in value) + ")"
        else:
            text = value if isinstance(value, str) else _value_text(value)
        entries[str(key).lstrip("+~")] = (str(key), text)
    for arg in cli_overrides:
        key, sep, text = arg.partition("=")
        if sep and key.lstrip("+~") in entries:
            entries[key.lstrip("+~")] = (key, text)
    for name, (key, text) in entries.items():
        dist = distribution_for(key, text)
        if dist is None:
            space.fixed.append(f"{key}={text}")
        else:
            space.distributions[name] = dist
            space.keys[name] = key
    return space


def split_cli(arguments: list[str]) -> tuple[list[str], list[str]]:
    """Command-line overrides -> (fixed ones, sweep ones) (``refine.k='interval(1,3)'``)."""
    fixed, sweep = [], []
    parser = OverridesParser.create()
    for arg in arguments:
        override = parser.parse_overrides([arg])[0]
        (sweep if override.is_sweep_override() else fixed).append(arg)
    return fixed, sweep
