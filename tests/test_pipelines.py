"""Several named pipelines, cross-pipeline wiring and its errors, iteration (max_iter, stop
condition, carried values) and fan-out (for_each) with per-element identities and resume."""
from __future__ import annotations

import importlib
import json

import pytest
from omegaconf import OmegaConf

from sandbox.context import parse_condition
from sandbox.errors import ConfigError
from sandbox.runner import plan, plan_pipelines, run
from sandbox.steps.base import Step
from tests.conftest import compose

CALLS: list[str] = []


def calls() -> list[str]:
    """The steps' call log (they run from module ``tests.test_pipelines``, which pytest may
    have imported under another name)."""
    return importlib.import_module("tests.test_pipelines").CALLS


class Emit(Step):
    """Outputs ``value`` and a list of ``n`` items."""

    outputs = ("value", "items", "metrics")

    def __init__(self, value: float = 1.0, n: int = 3):
        self.value, self.n = value, n

    def run(self, env, **inputs):
        CALLS.append(f"emit:{self.value}")
        return {"value": self.value, "items": [{"name": f"i{k}", "x": k} for k in range(self.n)],
                "metrics": {"emitted": self.value}}


class Add(Step):
    outputs = ("value", "metrics")

    def __init__(self, amount: float = 1.0, seed: int = 0):
        self.amount, self.seed = amount, seed

    def run(self, env, x: float = 0.0):
        CALLS.append(f"add:{x}+{self.amount}:s{self.seed}")
        (env.workdir / "out.txt").write_text(str(x + self.amount))
        return {"value": x + self.amount + self.seed / 100, "metrics": {"sum": x + self.amount}}


def E(**kw):
    return {"_target_": "tests.test_pipelines.Emit", **kw}


def A(**kw):
    return {"_target_": "tests.test_pipelines.Add", **kw}


def cfg_of(pipelines, **top):
    return OmegaConf.create({"pipelines": pipelines, "progress": False, "seed": 0, **top})


def test_later_pipeline_reads_earlier_one_and_two_part_refs_stay_local(tmp_path):
    calls().clear()
    cfg = cfg_of({
        "first": {"steps": {"emit": {"component": E(value=2.0)},
                            "add": {"component": A(amount=1.0),
                                    "inputs": {"x": "${ctx:emit.value}"}}}},
        "second": {"steps": {"emit": {"component": E(value=10.0)},
                             "add": {"component": A(amount=0.5),
                                     "inputs": {"x": "${ctx:first.add.value}"}},
                             "local": {"component": A(amount=0.0),
                                       "inputs": {"x": "${ctx:emit.value}"}}}}})
    assert [s.key for s in plan(cfg)] == ["first.emit", "first.add", "second.emit", "second.add",
                                          "second.local"]
    m = run(cfg, tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert set(ctx) == {"meta", "steps"}
    steps = ctx["steps"]
    assert steps["first.add"]["outputs"]["value"] == 3.0
    assert steps["second.add"]["outputs"]["value"] == 3.5   # read first.add
    assert steps["second.local"]["outputs"]["value"] == 10.0  # `emit` = second's own
    assert m["first/sum"] == 3.0 and m["second/sum"] == 10.0  # metrics: <pipeline>/<name>, last step wins
    assert (tmp_path / "run" / "second" / "add" / "out.txt").read_text() == "3.5"


@pytest.mark.parametrize("pipes,match", [
    ({"a": {"steps": {"s": {"component": E(), "inputs": {}}}},
      "b": {"steps": {"t": {"component": A(), "inputs": {"x": "${ctx:c.u.value}"}}}},
      "c": {"steps": {"u": {"component": E()}}}}, r"pipeline `c` runs later"),
    ({"a": {"steps": {"s": {"component": E()}}},
      "b": {"steps": {"t": {"component": A(), "inputs": {"x": "${ctx:a.s.nope}"}}}}},
     r"declares no output `nope`"),
    ({"a": {"steps": {"s": {"component": E()}}},
      "b": {"steps": {"t": {"component": A(), "inputs": {"x": "${ctx:s.value}"}}}}},
     r"step `s` does not exist"),
    ({"a": {"steps": {"s": {"component": E()}}},
      "b": {"steps": {"a": {"component": E()},
                      "t": {"component": A(), "inputs": {"x": "${ctx:a.s.value}"}}}}},
     r"ambiguous"),
    ({"a": {}}, r"pipelines.a has no `steps:`"),
    ({"a": {"steps": {"s": {"component": E(), "inputs": {"x": "${item:x}"}}}}},
     r"has no `for_each:`"),
    ({"a": {"steps": {"s": {"component": E(), "for_each": "not a ref"}}}},
     r"for_each must be a reference"),
    ({"a": {"steps": {"s": {"component": E()},
                      "t": {"component": E(), "for_each": "${ctx:s.items}", "seeds": 2}}}},
     r"takes no `seed` parameter"),
    ({"a": {"steps": {"s": {"component": E()}}, "max_iter": 0}}, r"max_iter=0 must be"),
    ({"a": {"steps": {"s": {"component": E()}}, "stop_when": "s.value <"}}, r"ends too early"),
    ({"a": {"steps": {"s": {"component": E()}}, "stop_when": "s.nope > 1"}},
     r"declares no output `nope`"),
    ({"a": {"steps": {"s": {"component": E()}}, "carry": {"nokey": "s.value"}}},
     r"has no key `nokey`"),
    ({"a": {"steps": {"s": {"component": E(), "overrides": {"valu": 3}}}}},
     r"overrides.valu is not a parameter of Emit. Did you mean value"),
])
def test_wiring_errors_are_caught_before_running(pipes, match):
    with pytest.raises(ConfigError, match=match):
        plan_pipelines(cfg_of(pipes))


def test_mixing_single_and_multi_pipeline_forms_fails_clearly():
    cfg = compose(["+pipelines={a: {steps: {s: {component: {_target_: tests.test_pipelines.Emit}}}}}"])
    with pytest.raises(ConfigError, match=r"mixes the single-pipeline form \(pipeline.steps\) "
                                          r"and the multi-pipeline form"):
        plan(cfg)
    # the single form is unchanged
    assert [s.name for s in plan(compose())][0] == "load"
    assert [s.key for s in plan(compose())][0] == "load"


def test_condition_grammar_is_parsed_never_evaluated():
    c = parse_condition("a.b < 3 and not (c.d >= 2 or e.f == 'x')")
    assert c.refs() == ["a.b", "c.d", "e.f"]
    assert c.evaluate({"a.b": 1, "c.d": 1, "e.f": "y"}.get) is True
    assert c.evaluate({"a.b": 1, "c.d": 5, "e.f": "y"}.get) is False
    for bad in ["__import__('os').system('x') > 1", "a.b < 1; x", "a.b", "(a.b < 1", "1 < "]:
        with pytest.raises(ConfigError):
            parse_condition(bad)


def test_iteration_carries_values_and_stops_on_condition(tmp_path):
    calls().clear()
    cfg = cfg_of({"loop": {"steps": {"inc": {"component": A(amount=1.0),
                                             "inputs": {"x": "${counter}"}}},
                           "max_iter": 10, "stop_when": "inc.value >= 3",
                           "carry": {"counter": "inc.value"}},
                  "after": {"steps": {"read": {"component": A(amount=0.0),
                                               "inputs": {"x": "${ctx:loop.inc.value}"}}}}},
                 counter=0.0)
    run(cfg, tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    assert [k for k in ctx["steps"] if k.startswith("loop")] == ["loop.inc@1", "loop.inc@2",
                                                                  "loop.inc@3"]
    assert [ctx["steps"][f"loop.inc@{i}"]["outputs"]["value"] for i in (1, 2, 3)] == [1, 2, 3]
    assert ctx["meta"]["iterations"]["loop"] == 3
    assert ctx["steps"]["after.read"]["outputs"]["value"] == 3.0  # the last iteration
    assert cfg.counter == 0.0  # the caller's config is untouched
    # max_iter caps it; without a stop condition every iteration runs
    cfg = cfg_of({"loop": {"steps": {"inc": {"component": A(amount=1.0),
                                             "inputs": {"x": "${counter}"}}},
                           "max_iter": 2, "carry": {"counter": "inc.value"}}}, counter=5.0)
    run(cfg, tmp_path / "run2")
    ctx = json.loads((tmp_path / "run2" / "context.json").read_text())["steps"]
    assert list(ctx) == ["loop.inc@1", "loop.inc@2"] and ctx["loop.inc@2"]["outputs"]["value"] == 7


def test_fan_out_has_one_identity_per_element_and_resume_does_only_whats_missing(tmp_path):
    pipes = {"p": {"steps": {
        "emit": {"component": E(n=3)},
        "each": {"component": A(amount=10.0), "for_each": "${ctx:emit.items}", "seeds": [1, 2],
                 "inputs": {"x": "${item:x}"}},
        "sum": {"component": A(amount=0.0), "inputs": {"x": "${ctx:each.value.5}"}}}}}
    calls().clear()
    with pytest.raises(ConfigError, match="produced no output"):  # a list is not a dict
        run(cfg_of(pipes), tmp_path / "bad")
    pipes["p"]["steps"]["sum"]["inputs"]["x"] = "${ctx:emit.value}"
    run_dir = tmp_path / "run"
    calls().clear()
    run(cfg_of(pipes), run_dir)
    assert sorted(c for c in calls() if c.startswith("add:") and "+10.0" in c) == sorted(
        f"add:{k}+10.0:s{s}" for k in range(3) for s in (1, 2))
    ctx = json.loads((run_dir / "context.json").read_text())["steps"]
    agg = ctx["p.each"]["outputs"]
    assert [(r["name"], r["seed"], r["value"]) for r in agg["results"]] == [
        ("i0", 1, 10.01), ("i0", 2, 10.02), ("i1", 1, 11.01), ("i1", 2, 11.02),
        ("i2", 1, 12.01), ("i2", 2, 12.02)]
    assert agg["value"] == [r["value"] for r in agg["results"]]
    assert "p.each[i1#s2]" in ctx and (run_dir / "p" / "each" / "i1#s2" / "out.txt").exists()
    # a crash lost two elements: resume re-runs exactly those
    data = json.loads((run_dir / "context.json").read_text())
    del data["steps"]["p.each[i2#s1]"], data["steps"]["p.each[i0#s2]"]
    del data["steps"]["p.each"], data["steps"]["p.sum"]
    (run_dir / "context.json").write_text(json.dumps(data))
    calls().clear()
    run(cfg_of(pipes, resume=True), run_dir)
    assert calls() == ["add:0+10.0:s2", "add:2+10.0:s1", "add:1.0+0.0:s0"]
    # more seeds: only the new ones run
    pipes["p"]["steps"]["each"]["seeds"] = [1, 2, 3]
    calls().clear()
    run(cfg_of(pipes, resume=True), run_dir)
    assert calls() == [f"add:{k}+10.0:s3" for k in range(3)]


def test_steps_with_identical_identity_are_not_recomputed(tmp_path):
    calls().clear()
    cfg = cfg_of({"a": {"steps": {"emit": {"component": E(value=4.0)}}},
                  "b": {"steps": {"emit": {"component": E(value=4.0)}}}})
    run(cfg, tmp_path / "run")
    assert calls() == ["emit:4.0"]
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    assert ctx["b.emit"]["outputs"] == ctx["a.emit"]["outputs"]
    assert ctx["b.emit"]["reused_from"] == "a.emit"


def test_single_pipeline_form_can_iterate_and_fan_out(tmp_path):
    calls().clear()
    cfg = OmegaConf.create({"progress": False, "pipeline": {
        "steps": {"emit": {"component": E(n=2)},
                  "each": {"component": A(), "for_each": "${ctx:emit.items}",
                           "inputs": {"x": "${item:x}"}}},
        "max_iter": 2}})
    run(cfg, tmp_path / "run")
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())["steps"]
    assert "emit@1" in ctx and "each@2[i1]" in ctx
    assert calls().count("emit:1.0") == 1  # iteration 2 is identical: reused, not recomputed
