"""Recipe loading: the config form, Data-Juicer files, and validation errors."""
from __future__ import annotations

import pytest

from sandbox.errors import RecipeError
from sandbox.recipe import load_dj_file, load_recipe


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
