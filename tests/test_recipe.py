"""Recipe loading: the config form, Data-Juicer files, and validation errors; the ``Recipe``
object a run parses once and passes on."""
from __future__ import annotations

import dataclasses
import functools

import pytest

from sandbox.errors import RecipeError
from sandbox.recipe import Recipe, RecipeBook, load_dj_file, load_recipe


def test_config_form_keeps_order_aliases_and_switches():
    rec = load_recipe({"ops": {
        "clean_html_mapper": {},
        "short_docs": {"_op": "text_length_filter", "min_len": 5},
        "text_length_filter": {"max_len": 100},
        "word_repetition_filter": {"_enabled": False},
    }})
    assert [(s.key, s.name) for s in rec.ops] == [
        ("clean_html_mapper", "clean_html_mapper"), ("short_docs", "text_length_filter"),
        ("text_length_filter", "text_length_filter")]
    assert rec.ops[1].args == {"min_len": 5}
    assert rec.to_config()["ops"]["short_docs"] == {"min_len": 5, "_op": "text_length_filter"}


def test_dj_file_unchanged(tmp_path):
    f = tmp_path / "dj.yaml"
    f.write_text(
        "project_name: demo\ndataset_path: in.jsonl\nexport_path: out.jsonl\nnp: 4\n"
        "text_keys: content\nprocess:\n"
        "  - clean_email_mapper:\n"
        "  - text_length_filter:\n      min_len: 10\n      max_len: 1000\n"
        "  - text_length_filter:\n      min_len: 20\n"
        "  - document_deduplicator:\n      lowercase: true\n")
    rec = load_dj_file(f)
    assert rec.text_key == "content"
    assert [s.key for s in rec.ops] == ["clean_email_mapper", "text_length_filter",
                                        "text_length_filter_2", "document_deduplicator"]
    assert rec.ops[1].args == {"min_len": 10, "max_len": 1000}
    # config overrides reach the file's OPs by key; `_enabled: false` removes one
    rec2 = load_recipe({"path": str(f), "ops": {"text_length_filter": {"min_len": 50},
                                                 "clean_email_mapper": {"_enabled": False}}})
    assert [s.key for s in rec2.ops][0] == "text_length_filter"
    assert rec2.ops[0].args == {"min_len": 50, "max_len": 1000}
    assert rec2.to_dj()["process"][0] == {"text_length_filter": {"min_len": 50, "max_len": 1000}}


def test_unknown_op_suggests_closest_and_names_the_file(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("process:\n  - text_lenght_filter:\n      min_len: 10\n")
    with pytest.raises(RecipeError) as e:
        load_recipe({"path": str(f)})
    msg = str(e.value)
    assert str(f) in msg and "text_lenght_filter" in msg and "'text_length_filter'" in msg
    assert "python -m sandbox.ops" in msg


def test_wrong_parameter_name_and_type():
    with pytest.raises(RecipeError, match=r"unknown parameter `min_length`.*Did you mean min_len"):
        load_recipe({"ops": {"text_length_filter": {"min_length": 5}}})
    with pytest.raises(RecipeError, match=r"parameter `min_len` must be int, got 'ten'"):
        load_recipe({"ops": {"text_length_filter": {"min_len": "ten"}}})
    with pytest.raises(RecipeError, match=r"min_ratio=0.9 is greater than max_ratio=0.1"):
        load_recipe({"ops": {"alphanumeric_filter": {"min_ratio": 0.9, "max_ratio": 0.1}}})


def test_bad_dj_files(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_dj_file(tmp_path / "missing.yaml")
    f = tmp_path / "noproc.yaml"
    f.write_text("np: 2\n")
    with pytest.raises(RecipeError, match="has no `process:` list"):
        load_dj_file(f)
    f.write_text("process: [\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_dj_file(f)
    f.write_text("process:\n  - text_length_filter: 5\n")
    with pytest.raises(RecipeError, match=r"process\[0\] \(text_length_filter\): arguments must be a mapping"):
        load_dj_file(f)


def test_override_of_op_missing_from_file(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("process:\n  - text_length_filter:\n")
    with pytest.raises(RecipeError, match="recipe.ops.words_num_filter overrides an OP"):
        load_recipe({"path": str(f), "ops": {"words_num_filter": {"min_num": 3}}})


# ----------------------------------------------------------------------------- the Recipe object
def test_recipe_is_immutable_and_with_args_gives_a_validated_copy():
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 10},
                               "words_num_filter": {"min_num": "5"}}})
    assert isinstance(rec.ops, tuple) and rec.keys == ["text_length_filter", "words_num_filter"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.text_key = "content"
    moved = rec.with_args({"text_length_filter": {"min_len": 20.0, "max_len": 900}})
    assert moved.op("text_length_filter").args == {"min_len": 20, "max_len": 900}  # coerced
    assert rec.op("text_length_filter").args == {"min_len": 10}  # the original is untouched
    assert moved.fingerprint != rec.fingerprint
    assert load_recipe(moved.to_config()).fingerprint == moved.fingerprint  # round trip
    with pytest.raises(RecipeError, match="min_len=950 is greater than max_len=900"):
        moved.with_args({"text_length_filter": {"min_len": 950}})
    with pytest.raises(KeyError, match="no OP"):
        rec.op("nope")


def test_coerce_takes_a_recipe_its_config_form_or_a_recipe_file(tmp_path):
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 10}}})
    assert Recipe.coerce(rec) is rec
    assert Recipe.coerce(rec.to_config()) == rec
    f = tmp_path / "r.yaml"
    f.write_text(rec.to_dj_yaml())
    assert Recipe.coerce(str(f)).ops == rec.ops
    with pytest.raises(RecipeError, match="a recipe must be a mapping"):
        Recipe.coerce(42)


def test_a_recipe_book_parses_each_recipe_once_and_records_recipes_as_config(monkeypatch):
    import sandbox.recipe

    calls = []
    real = sandbox.recipe.load_recipe
    monkeypatch.setattr(sandbox.recipe, "load_recipe", lambda *a: calls.append(a) or real(*a))
    book = RecipeBook()
    config = {"path": None, "ops": {"text_length_filter": {"min_len": 10}}}
    first = book.get(config, "text")
    assert book.get(dict(config), "text") is first and len(calls) == 1
    assert book.get(config, "content").text_key == "content" and len(calls) == 2
    made = first.with_args({"text_length_filter": {"min_len": 30}})
    out = book.record({"recipe": made, "n": 1})
    assert out == {"recipe": made.to_config(), "n": 1}  # what the run's context saves
    assert book.get(out["recipe"], "text") is made and len(calls) == 2


def _counting(fn, calls: list):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        calls.append(fn.__name__)
        return fn(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize("iterations", [1, 2])
def test_a_run_parses_its_recipe_once_and_its_steps_get_recipes(docs_file, tmp_path,
                                                                monkeypatch, iterations):
    """The configured recipe is parsed once, at planning: probe and refine get that Recipe,
    process gets the one refine returned; with the refined recipe carried into a second
    iteration, that iteration's steps get the Recipe objects too, still without a parse."""
    import sandbox.recipe
    from sandbox.runner import run
    from sandbox.steps.data.probe import Probe
    from sandbox.steps.data.process import Process
    from sandbox.steps.data.refine import KSigmaRefiner
    from tests.conftest import compose

    calls: list[str] = []
    for name in ("load_recipe", "load_dj_file"):
        monkeypatch.setattr(sandbox.recipe, name, _counting(getattr(sandbox.recipe, name), calls))
    got: dict[str, list] = {"probe": [], "refine": [], "refined": [], "process": []}

    def recording(cls, name):
        real = cls.run

        @functools.wraps(real)
        def run_step(self, env, **inputs):
            got[name].append(inputs["recipe"])
            out = real(self, env, **inputs)
            if name == "refine":
                got["refined"].append(out["recipe"])
            return out
        monkeypatch.setattr(cls, "run", run_step)

    for cls, name in ((Probe, "probe"), (KSigmaRefiner, "refine"), (Process, "process")):
        recording(cls, name)
    more = [f"+pipeline.max_iter={iterations}", "+pipeline.carry.recipe=refine.recipe"] \
        if iterations > 1 else []
    cfg = compose(["pipeline=data_only", "data_pool=jsonl", f"data_pool.path={docs_file}",
                   "tracking=none", "progress=false", "data_evaluator._target_=null", *more])
    run(cfg, run_dir=tmp_path / "run")
    assert calls == ["load_recipe"]  # planning's; the tracker, engine and steps parse nothing
    for name in ("probe", "refine", "refined", "process"):
        assert len(got[name]) == iterations
        assert all(isinstance(r, Recipe) for r in got[name]), name
    assert got["probe"][0] is got["refine"][0]  # the planned recipe itself
    assert got["process"] == got["refined"] and \
        all(a is b for a, b in zip(got["process"], got["refined"]))
    if iterations > 1:  # the carried recipe is the object refine returned
        assert got["probe"][1] is got["refined"][0]


def test_thresholds_are_those_of_the_ops_as_the_recipe_builds_them():
    rec = load_recipe({"ops": {"text_length_filter": {"min_len": 10},
                               "specified_numeric_field_filter": {"field_key": "meta.score"},
                               "clean_html_mapper": {}}})
    ths = rec.thresholds()
    assert {a: t.stat for a, t in ths["text_length_filter"].items()} == \
        {"min_len": "text_len", "max_len": "text_len"}
    # this filter bounds a stat named after its field, not its class's placeholder
    assert {t.stat for t in ths["specified_numeric_field_filter"].values()} == {"meta.score"}
    assert ths["clean_html_mapper"] == {}


def test_planning_parses_the_configured_recipe_and_marks_the_inputs_that_take_one():
    from sandbox.runner import plan_run
    from tests.conftest import compose

    planned = plan_run(compose([]))
    assert isinstance(planned.recipe, Recipe) and planned.recipe.keys[0] == "clean_html_mapper"
    assert {s.key: s.recipe_inputs for s in planned.pipelines[0].steps if s.recipe_inputs} == \
        {"probe": ("recipe",), "refine": ("recipe",), "process": ("recipe",)}
    with pytest.raises(RecipeError, match="nope_filter"):  # read by a step: checked now
        plan_run(compose(["+recipe.ops.nope_filter={}"]))
    # no step runs the recipe: one that does not parse is no error, and no Recipe
    assert plan_run(compose(["pipeline=infer", "+recipe.ops.nope_filter={}"])).recipe is None
