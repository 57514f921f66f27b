"""The one comparison grammar: pipeline ``stop_when`` conditions and sweep constraints
(``METRIC OP NUMBER``), parsed and never evaluated as code."""
from __future__ import annotations

import pytest

from sandbox.conditions import parse_bound, parse_condition
from sandbox.errors import ConfigError
from sandbox.search.constraints import parse_constraint


def test_conditions_combine_comparisons_with_and_or_not_and_parentheses():
    c = parse_condition("(a.b <= 1 or c.d != 'x') and not e.f == true")
    assert c.refs() == ["a.b", "c.d", "e.f"]
    assert c.evaluate({"a.b": 1.0, "c.d": "x", "e.f": False}.get) is True
    assert c.evaluate({"a.b": 2.0, "c.d": "x", "e.f": False}.get) is False
    assert c.evaluate({"a.b": 2.0, "c.d": "y", "e.f": True}.get) is False
    # and binds tighter than or
    assert parse_condition("a.b > 0 or a.b < 0 and c.d > 0").evaluate(
        {"a.b": 1, "c.d": -1}.get) is True


@pytest.mark.parametrize("text, value", [("1e3", 1000.0), ("-2.5", -2.5), ("+.5", 0.5),
                                         ("3.", 3.0), ("1.2E-2", 0.012)])
def test_numbers_in_every_spelling(text, value):
    assert parse_condition(f"a.b == {text}").evaluate({"a.b": value}.get) is True
    assert parse_bound(f"m == {text}") is None  # == is not a bound
    assert parse_bound(f"m >= {text}") == ("m", ">=", value)


def test_backwards_spelled_operators_read_as_the_usual_ones():
    assert parse_bound("loss =< 2") == ("loss", "<=", 2.0)
    assert parse_bound("loss=>2") == ("loss", ">=", 2.0)
    assert parse_condition("a.b => 2").evaluate({"a.b": 2}.get) is True


def test_stop_when_errors_name_the_key_and_the_grammar():
    with pytest.raises(ConfigError, match=r"^loop.stop_when: cannot parse `a.b < 1; x` at `; x`"):
        parse_condition("a.b < 1; x", "loop.stop_when")
    with pytest.raises(ConfigError, match=r"it ends too early. Grammar: <ref> <op> <value>"):
        parse_condition("(a.b < 1")
    with pytest.raises(ConfigError, match=r"'metric' is not a value or a step.output reference"):
        parse_condition("metric < 1")  # a stop_when name is step.output
    with pytest.raises(ConfigError, match=r"it is empty"):
        parse_condition("  ")
    with pytest.raises(ConfigError, match=r"cannot compare 'x' < 1.0"):
        parse_condition("a.b < 1").evaluate({"a.b": "x"}.get)


@pytest.mark.parametrize("text", ["m >= 1 and n <= 2", "1 <= m", "m >= 'x'", "m >= true",
                                  "m >= n", "m != 1", "not m > 1", "(m > 1)", "m >", ""])
def test_a_bound_is_one_metric_against_one_number(text):
    assert parse_bound(text) is None


def test_constraints_are_bounds_with_their_own_hint():
    c = parse_constraint("eval.perplexity < 80")  # dotted metric names work too
    assert (c.metric, c.op, c.bound) == ("eval.perplexity", "<=", 80.0)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.constraints: cannot read `m == 1`. "
                                          r"Write METRIC OP NUMBER"):
        parse_constraint("m == 1")
