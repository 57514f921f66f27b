"""Compose-based config tests: every YAML in conf/ composes, plans and instantiates."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sandbox.errors import ConfigError
from sandbox.runner import plan
from tests.conftest import CONF_DIR, compose

GROUPS = ["data_pool", "recipe", "probe", "refine", "trainer", "evaluator", "pipeline", "tracking"]
# Values a group option cannot run without (its `???`), for composing it in tests.
REQUIRED = {
    "data_pool": lambda tmp: [f"data_pool.path={tmp}"],
    "recipe": lambda tmp: [],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_plans_and_instantiates(group, option, docs_file):
    overrides = [f"{group}={option}"]
    if group == "data_pool" and option not in ("default",):
        overrides.append(f"data_pool.path={docs_file}")
    if group == "recipe" and option == "dj":
        dj = docs_file.parent / "recipe.yaml"
        dj.write_text("process:\n  - text_length_filter:\n      min_len: 5\n")
        overrides.append(f"recipe.path={dj}")
    cfg = compose(overrides)
    steps = plan(cfg)
    assert [s.name for s in steps] == list(cfg.pipeline.steps)
    node = cfg.get(group)
    if "_target_" in node:
        obj = instantiate(node, _convert_="all")
        assert type(obj).__name__ == node._target_.rsplit(".", 1)[1]
    if group == "recipe":
        from sandbox.recipe import load_recipe

        rec = load_recipe(OmegaConf.to_container(node, resolve=True), cfg.text_key)
        rec.build()


def test_every_group_has_options():
    for g in GROUPS:
        assert options(g), g


def test_default_pipeline_order_and_wiring():
    cfg = compose()
    names = [s.name for s in plan(cfg)]
    assert names == ["load", "probe", "refine", "process", "train", "evaluate_data", "evaluate_model"]
    raw = OmegaConf.to_container(cfg.pipeline.steps, resolve=False)
    assert raw["process"]["inputs"]["recipe"] == "${ctx:refine.recipe}"


def test_reference_to_later_step_fails_before_running():
    cfg = compose(["pipeline.steps.probe.inputs.dataset=${ctx:train.model_dir}"])
    with pytest.raises(ConfigError, match=r"step `train` runs later"):
        plan(cfg)


def test_reference_to_undeclared_output_names_step_and_key():
    cfg = compose(["pipeline.steps.train.inputs.dataset=${ctx:process.no_such_output}"])
    with pytest.raises(ConfigError) as e:
        plan(cfg)
    msg = str(e.value)
    assert "pipeline.steps.train" in msg and "no output `no_such_output`" in msg
    assert "dataset" in msg  # lists what `process` does declare


def test_reference_to_unknown_step():
    cfg = compose(["pipeline.steps.train.inputs.dataset=${ctx:nope.dataset}"])
    with pytest.raises(ConfigError, match="step `nope` does not exist"):
        plan(cfg)


def test_unknown_component_parameter_suggests_closest():
    cfg = compose(["+trainer.token_budgt=5"])
    with pytest.raises(ConfigError, match=r"trainer.token_budgt.*Did you mean token_budget"):
        plan(cfg)


def test_wrong_parameter_type_named():
    cfg = compose(["trainer.token_budget=lots"])
    with pytest.raises(ConfigError, match=r"trainer.token_budget='lots' has the wrong type"):
        plan(cfg)


def test_missing_required_value_named(tmp_path):
    cfg = compose(["data_pool=jsonl"])
    with pytest.raises(ConfigError, match=r"data_pool.path is required"):
        plan(cfg)


def test_bad_target_named():
    cfg = compose(["probe._target_=sandbox.steps.probe.NoSuchProbe"])
    with pytest.raises(ConfigError, match=r"probe._target_=sandbox.steps.probe.NoSuchProbe cannot be imported"):
        plan(cfg)


def test_inputs_must_fit_run_signature():
    cfg = compose(["+pipeline.steps.train.inputs.bogus=1"])
    with pytest.raises(ConfigError, match=r"pipeline.steps.train.inputs do not fit"):
        plan(cfg)
