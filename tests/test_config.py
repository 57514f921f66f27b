"""Every option of every config group in conf/ (found by listing the folders, so a new group or
option is tested without touching this file) composes, plans and instantiates; wiring errors are
caught before anything runs."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sandbox.errors import ConfigError
from sandbox.recipe import load_recipe
from sandbox.runner import plan
from sandbox.search.constraints import parse_constraints
from sandbox.search.space import parse_space
from sandbox.search.sweeper import OptunaSearch
from tests.conftest import CONF_DIR, compose

CONF = Path(CONF_DIR)
PERSONAL = {"local"}  # conf/local/: each user's own git-ignored overrides, not the project's
DEFAULTS_ENTRY = re.compile(r"^\s*-\s+(?:optional\s+)?(\w+):\s*(\S+)\s*(?:#\s*(.*))?$")


def groups() -> list[str]:
    return sorted(d.name for d in CONF.iterdir()
                  if d.is_dir() and d.name not in PERSONAL and any(d.glob("*.yaml")))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def is_empty(group: str, option: str) -> bool:
    """An option that switches its steps off (``_target_: null``): they are left out."""
    node = yaml.safe_load((CONF / group / f"{option}.yaml").read_text(encoding="utf-8"))
    return isinstance(node, dict) and "_target_" in node and node["_target_"] is None


def defaults_entries() -> dict[str, tuple[str, str]]:
    """config.yaml's defaults list: group -> (default option, its comment)."""
    out = {}
    for line in (CONF / "config.yaml").read_text(encoding="utf-8").splitlines():
        m = DEFAULTS_ENTRY.match(line)
        if m:
            out[m.group(1)] = (m.group(2), m.group(3) or "")
    return out


def select(group: str, option: str) -> str:
    """The override that picks ``option``: a group of the defaults list is overridden, any
    other one is added."""
    return f"{group}={option}" if group in defaults_entries() else f"+{group}={option}"


EMPTY = [(g, o) for g in groups() for o in options(g) if is_empty(g, o)]


@pytest.fixture
def required_values(docs_file) -> dict[str, str]:
    """A value for every `???` an option may leave to the user."""
    dj = docs_file.parent / "recipe.yaml"
    dj.write_text("process:\n  - text_length_filter:\n      min_len: 5\n")
    return {"data_pool.path": str(docs_file), "recipe.path": str(dj),
            "t2v.prompts": str(docs_file)}


def missing_keys(node, prefix: str = "") -> list[str]:
    """The `???` keys of a container (OmegaConf.missing_keys would resolve ${ctx:...})."""
    if isinstance(node, dict):
        return [k for key, v in node.items() for k in missing_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


def compose_filled(overrides: list[str], required_values: dict[str, str]):
    cfg = compose(overrides)
    missing = missing_keys(OmegaConf.to_container(cfg, resolve=False))
    unknown = [k for k in missing if k not in required_values]
    assert not unknown, f"add a test value for {unknown} to required_values"
    for key in missing:
        OmegaConf.update(cfg, key, required_values[key])
    return cfg


def has_runtime_refs(node) -> bool:
    """Whether a config holds ${ctx:...} / ${item:...}, which only resolve while a run executes."""
    return bool(re.search(r"\$\{(ctx|item):", str(OmegaConf.to_container(node, resolve=False))))


def instantiate_steps(cfg) -> list[str]:
    """Build the component of every planned step whose config resolves before the run (with its
    `overrides:`); return the names of the steps built."""
    built = []
    for step in plan(cfg):
        node = OmegaConf.select(cfg, step.node_path)
        parts = [node.component] + ([node.overrides] if node.get("overrides") else [])
        if any(has_runtime_refs(part) for part in parts):
            continue
        comp = {}
        for part in parts:
            comp.update(OmegaConf.to_container(part, resolve=True))
        assert isinstance(instantiate(comp, _convert_="all"), step.cls), step.key
        built.append(step.key)
    return built


@pytest.mark.parametrize("group,option", [(g, o) for g in groups() for o in options(g)])
def test_every_option_composes_plans_and_instantiates(group, option, required_values,
                                                      monkeypatch):
    # outside stacks: plan as on a machine where their environments are set up and their
    # weights placed (their specs in conf/env are still read and checked);
    # tests/test_external.py covers the missing cases
    monkeypatch.setattr("sandbox.env.manager.is_ready", lambda spec, root=None: True)
    monkeypatch.setattr("sandbox.env.manager.missing_weights", lambda spec, root=None: [])
    overrides = [select(group, option)]
    if (group, option) == ("infer", "vllm") and importlib.util.find_spec("vllm") is None:
        with pytest.raises(Exception, match="pip install vllm"):  # says so before any work
            instantiate(compose_filled(overrides, required_values).infer, _convert_="all")
        return
    if is_empty(group, option):  # with the other empty options: no kept step reads a dropped one
        overrides += [select(g, o) for g, o in EMPTY if g != group]
    cfg = compose_filled(overrides, required_values)
    built = instantiate_steps(cfg)
    assert built  # every planned step whose config resolves before the run was built
    node = OmegaConf.select(cfg, group)  # None for options that merge at the top level
    if node is not None and node.get("_target_"):
        obj = instantiate(node, _convert_="all")
        assert type(obj).__name__ == node._target_.rsplit(".", 1)[1]
    load_recipe(OmegaConf.to_container(cfg.recipe, resolve=True), cfg.text_key).build()


def test_no_training_and_no_model_evaluation_plans_the_data_steps():
    steps = plan(compose(["trainer=none", "evaluator=none"]))
    assert [s.name for s in steps] == ["load", "probe", "refine", "process", "evaluate_data"]


def test_no_training_stays_off_when_other_files_set_trainer_values():
    steps = plan(compose(["trainer=none", "evaluator=none", "debug=default"]))
    assert "train" not in [s.name for s in steps]


def test_no_training_with_a_model_evaluator_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        plan(compose(["trainer=none"]))
    assert "evaluate_model" in str(e.value) and "`train`" in str(e.value)


def test_config_comments_list_exactly_the_options_that_exist():
    for group, (default, comment) in defaults_entries().items():
        if group in PERSONAL or default == "null":
            continue
        assert default in options(group), f"config.yaml: {group}: {default} has no file"
        if "|" in comment:
            advertised = {t.split()[0] for t in comment.split("(")[0].split("|")}
            assert advertised == set(options(group)), group


@pytest.mark.parametrize("option", options("hparams_search"))
def test_search_spaces_parse_and_every_bound_composes_and_plans(option, required_values):
    """The sweeper node only instantiates under --multirun: check what it reads instead (its
    keys, objective, sampler, pruner, constraints, space), then compose and plan the trial
    configs at the bounds of every parameter."""
    cfg = compose([f"hparams_search={option}"], return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    search = OptunaSearch(**{k: v for k, v in sweeper.items() if not k.startswith("_")})
    search.config = cfg
    assert len(search.objectives()) == len(search.directions)
    for part in ("sampler", "pruner"):
        if sweeper.get(part):
            instantiate(sweeper[part])
    parse_constraints(sweeper.get("constraints"))
    space = parse_space(sweeper["params"])
    assert space.distributions, option
    for end in (0, -1):
        values = {name: (d.choices[end] if hasattr(d, "choices") else (d.low, d.high)[end])
                  for name, d in space.distributions.items()}
        trial = compose_filled([f"hparams_search={option}", *space.fixed,
                                *space.overrides(values)], required_values)
        instantiate_steps(trial)
        load_recipe(OmegaConf.to_container(trial.recipe, resolve=True), trial.text_key).build()


def test_default_pipeline_order_and_wiring():
    cfg = compose()
    names = [s.name for s in plan(cfg)]
    assert names == ["load", "probe", "refine", "process", "train", "evaluate_data", "evaluate_model"]
    raw = OmegaConf.to_container(cfg.pipeline.steps, resolve=False)
    assert raw["process"]["inputs"]["recipe"] == "${ctx:refine.recipe}"


def test_group_settings_reach_their_steps():
    """`process.*` and `data_evaluator.*` on the command line configure the pipeline's steps."""
    cfg = compose(["process.export_path=kept.jsonl", "process.batch_size=64",
                   "data_evaluator.text_key=content"])
    steps = cfg.pipeline.steps
    assert steps.process.component.export_path == "kept.jsonl"
    assert steps.process.component.batch_size == 64
    assert steps.evaluate_data.component.text_key == "content"


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


def test_missing_required_value_named():
    cfg = compose(["data_pool=jsonl"])
    with pytest.raises(ConfigError, match=r"data_pool.path is required"):
        plan(cfg)


def test_bad_target_named():
    cfg = compose(["probe._target_=sandbox.steps.data.probe.NoSuchProbe"])
    with pytest.raises(ConfigError, match=r"probe._target_=sandbox.steps.data.probe.NoSuchProbe cannot be imported"):
        plan(cfg)


def test_inputs_must_fit_run_signature():
    cfg = compose(["+pipeline.steps.train.inputs.bogus=1"])
    with pytest.raises(ConfigError, match=r"pipeline.steps.train.inputs do not fit"):
        plan(cfg)
