"""``python -m sandbox.ops [NAME]``: list the registered operators, or describe one.

The listing is built from the same constructor signatures the recipe loader validates against,
so what it prints is exactly what a recipe may set. Plain text, readable when piped.
"""
from __future__ import annotations

import inspect
import sys
import textwrap

from sandbox.assets import asset_status
from sandbox.ops import all_ops, get_op_class
from sandbox.ops.base import MAXSIZE, Op

KIND_ORDER = ("mapper", "filter", "deduplicator", "selector")


def _type_name(annotation) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):  # postponed annotations (from __future__ import annotations)
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _value(v) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, (int, float)) and v == MAXSIZE:
        return "sys.maxsize"
    return repr(v)


def _range(low: float, high: float) -> str:
    def fmt(x: float) -> str:
        if x >= float(MAXSIZE):
            return "sys.maxsize"
        return str(int(x)) if float(x).is_integer() else str(x)

    return f"[{fmt(low)}, {fmt(high)}]"


def param_rows(cls: type[Op]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, note) per constructor parameter; the note names the stat a threshold
    bounds and the argument's valid range."""
    rows = []
    for name, p in cls.params().items():
        default = "(required)" if p.default is inspect.Parameter.empty else _value(p.default)
        note = ""
        th = cls.thresholds.get(name)
        if th is not None:
            op = ">=" if th.bound == "min" else "<="
            note = f"keep {th.stat} {op} {name}; range {_range(th.low, th.high)}"
        rows.append((name, _type_name(p.annotation), default, note))
    return rows


def _param_lines(cls: type[Op], indent: str = "    ") -> list[str]:
    rows = param_rows(cls)
    if not rows:
        return [f"{indent}(no parameters)"]
    w_sig = max(len(f"{n}: {t} = {d}") for n, t, d, _ in rows)
    out = []
    for n, t, d, note in rows:
        sig = f"{n}: {t} = {d}"
        out.append(f"{indent}{sig:<{w_sig}}  {note}".rstrip())
    return out


def _asset_lines(cls: type[Op], indent: str = "    ") -> list[str]:
    """One line per asset the OP needs, with whether it is available offline on this machine."""
    out = []
    if cls.adapted_from_data_juicer:
        out.append(f"{indent}runs through Data-Juicer's own implementation (adapter)")
    for name, what in cls.assets.items():
        out.append(f"{indent}needs: {what} [{asset_status(name, cls.name)}]")
    return out


def list_all() -> str:
    """Every registered OP by kind, with its stats, assets and parameters."""
    ops = all_ops()
    lines = [f"{len(ops)} operators. `python -m sandbox.ops NAME` describes one.", ""]
    kinds = sorted({c.kind for c in ops.values()}, key=lambda k: (KIND_ORDER + (k,)).index(k))
    for kind in kinds:
        members = sorted((n, c) for n, c in ops.items() if c.kind == kind)
        lines.append(f"== {kind}s ({len(members)}) ==")
        for name, cls in members:
            lines.append(f"{name}  [{cls.kind}]  {cls.description}")
            stats = getattr(cls, "stat_keys", ())
            if stats:
                lines.append(f"    stats: {', '.join(stats)}")
            lines.extend(_asset_lines(cls))
            lines.extend(_param_lines(cls))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def describe(cls: type[Op]) -> str:
    """One OP in full: kind, class, stats, assets, parameters and its documentation."""
    lines = [
        f"{cls.name}  [{cls.kind}]",
        f"    {cls.description}",
        f"    class: {cls.__module__}.{cls.__qualname__}",
    ]
    stats = getattr(cls, "stat_keys", ())
    if stats:
        lines.append(f"    stats: {', '.join(stats)}")
    lines += _asset_lines(cls)
    lines += ["", "parameters:"] + _param_lines(cls)
    doc = inspect.getdoc(cls)
    if doc:
        lines += ["", "details:"]
        for para in doc.split("\n\n"):
            lines += textwrap.wrap(" ".join(para.split()), width=96, initial_indent="    ",
                                   subsequent_indent="    ") + [""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """The command line: list every OP, or describe the ones named; 2 for an unknown name."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m sandbox.ops [NAME]\n\nList every operator, or describe NAME.")
        return 0
    if not argv:
        sys.stdout.write(list_all())
        return 0
    status = 0
    for name in argv:
        try:
            cls = get_op_class(name)
        except KeyError as e:
            print(e.args[0] if e.args else str(e), file=sys.stderr)
            status = 2
            continue
        sys.stdout.write(describe(cls))
    return status


if __name__ == "__main__":
    sys.exit(main())
