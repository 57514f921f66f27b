"""Comparisons written as text, parsed and never ``eval``-ed: a pipeline's ``stop_when`` and a
sweep's constraints. Grammar::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | operand CMP operand
    operand := NUMBER | 'string' | true | false | NAME
    CMP     := < <= > >= == !=          (=< and => read as <= and >=)

In ``stop_when`` a NAME is a context reference (``step.output[.key...]``), e.g.
``evaluate.metrics.perplexity < 80 or train.final_loss <= 2.5``. A constraint is the special case
``METRIC OP NUMBER`` (``parse_bound``), e.g. ``retention >= 0.3``."""
from __future__ import annotations

import operator
import re
from typing import Any, Callable

from sandbox.errors import ConfigError

_TOKEN = re.compile(r"""\s*(?:(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
                    |(?P<op><=|>=|=<|=>|==|!=|<|>)
                    |(?P<paren>[()])|(?P<str>'[^']*'|"[^"]*")
                    |(?P<word>[A-Za-z_][A-Za-z0-9_./\-]*))""", re.X)
_SPELLED_BACKWARDS = {"=<": "<=", "=>": ">="}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}
_KEYWORDS = ("and", "or", "not")
ORDERINGS = ("<", "<=", ">", ">=")


class Condition:
    """A parsed condition: ``refs()`` names what it reads, ``evaluate(lookup)`` decides it."""

    def __init__(self, text: str, tree: tuple):
        self.text, self.tree = text, tree

    def refs(self) -> list[str]:
        out: list[str] = []

        def walk(node):
            if node[0] == "ref":
                out.append(node[1])
            elif node[0] in ("and", "or", "cmp"):
                for n in node[2:] if node[0] == "cmp" else node[1:]:
                    walk(n)
            elif node[0] == "not":
                walk(node[1])

        walk(self.tree)
        return out

    def evaluate(self, lookup: Callable[[str], Any]) -> bool:
        def val(node):
            return lookup(node[1]) if node[0] == "ref" else node[1]

        def ev(node) -> bool:
            kind = node[0]
            if kind == "or":
                return ev(node[1]) or ev(node[2])
            if kind == "and":
                return ev(node[1]) and ev(node[2])
            if kind == "not":
                return not ev(node[1])
            a, b = val(node[2]), val(node[3])
            try:
                return bool(_COMPARE[node[1]](a, b))
            except TypeError:
                raise ConfigError(f"stop condition `{self.text}`: cannot compare {a!r} "
                                  f"{node[1]} {b!r}.") from None

        return ev(self.tree)


class _Unreadable(Exception):
    """The text breaks the grammar; ``at`` is where tokenizing stopped (None: a grammar error)."""

    def __init__(self, reason: str, at: int | None = None):
        super().__init__(reason)
        self.reason, self.at = reason, at


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _Unreadable("no token", at=pos)
        kind = m.lastgroup
        value = m.group(kind)
        tokens.append((kind, _SPELLED_BACKWARDS.get(value, value) if kind == "op" else value))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    """Recursive descent over the tokens; ``dotted_names``: a NAME must contain a dot."""

    def __init__(self, text: str, dotted_names: bool):
        self.tokens = _tokenize(text)
        self.i = 0
        self.dotted_names = dotted_names

    def peek(self) -> tuple[str | None, str | None]:
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise _Unreadable("it ends too early")
        self.i += 1
        return self.tokens[self.i - 1]

    def whole(self, rule: Callable[[], tuple]) -> tuple:
        """``rule`` must read every token."""
        if not self.tokens:
            raise _Unreadable("it is empty")
        tree = rule()
        if self.i != len(self.tokens):
            raise _Unreadable(f"unexpected {self.tokens[self.i][1]!r}")
        return tree

    def expr(self) -> tuple:
        node = self.term()
        while self.peek() == ("word", "or"):
            self.take()
            node = ("or", node, self.term())
        return node

    def term(self) -> tuple:
        node = self.factor()
        while self.peek() == ("word", "and"):
            self.take()
            node = ("and", node, self.factor())
        return node

    def factor(self) -> tuple:
        if self.peek() == ("word", "not"):
            self.take()
            return ("not", self.factor())
        if self.peek() == ("paren", "("):
            self.take()
            node = self.expr()
            if self.take() != ("paren", ")"):
                raise _Unreadable("a `(` is not closed")
            return node
        return self.comparison()

    def comparison(self) -> tuple:
        left = self.operand()
        kind, op = self.peek()
        if kind != "op":
            raise _Unreadable(f"expected a comparison after {left[1]!r}")
        self.take()
        return ("cmp", op, left, self.operand())

    def operand(self) -> tuple:
        kind, v = self.take()
        if kind == "num":
            return ("lit", float(v))
        if kind == "str":
            return ("lit", v[1:-1])
        if kind == "word" and v in ("true", "false"):
            return ("lit", v == "true")
        if kind == "word" and v not in _KEYWORDS and ("." in v or not self.dotted_names):
            return ("ref", v)
        raise _Unreadable(f"{v!r} is not a value or a step.output reference")


def parse_condition(text: str, where: str = "stop_when") -> Condition:
    """The full grammar, NAMEs being ``step.output`` references; ``where`` names the config key
    in error messages."""
    text = text.strip()
    try:
        parser = _Parser(text, dotted_names=True)
        tree = parser.whole(parser.expr)
    except _Unreadable as e:
        if e.at is not None:
            raise ConfigError(f"{where}: cannot parse `{text}` at `{text[e.at:]}`. Write e.g. "
                              f"`evaluate.metrics.perplexity < 80 and train.final_loss < 3`."
                              ) from None
        raise ConfigError(f"{where}: `{text}`: {e.reason}. Grammar: <ref> <op> <value> joined by "
                          f"and/or/not and parentheses; ops < <= > >= == !=.") from None
    return Condition(text, tree)


def parse_bound(text: str) -> tuple[str, str, float] | None:
    """``METRIC OP NUMBER`` (OP one of ``ORDERINGS``) as ``(metric, op, number)``; None when
    ``text`` is anything else, so the caller can say what it expected."""
    try:
        parser = _Parser(text.strip(), dotted_names=False)
        _, op, left, right = parser.whole(parser.comparison)
    except _Unreadable:
        return None
    if left[0] != "ref" or right[0] != "lit" or type(right[1]) is not float or \
            op not in ORDERINGS:
        return None
    return left[1], op, right[1]
