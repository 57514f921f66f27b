"""python -m sandbox.convert_dj_sandbox on Data-Juicer's own sandbox configs (tests/fixtures/
dj_sandbox, copied unmodified) and on written ones: the experiment file composes with Hydra, its
plan passes every check up to the outside stacks' environments (which are not set up here: the
plan then stops on exactly that, `EnvNotReadyError`), and what has no counterpart is listed in
the file and on stdout."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from sandbox.context import register_resolvers
from sandbox.convert_dj_sandbox import convert_file, main
from sandbox.env.manager import EnvNotReadyError
from sandbox.runner.plan import plan_pipelines
from tests.conftest import CONF_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "dj_sandbox"
T2V = FIXTURES / "easyanimate_text_to_video"


@pytest.fixture(scope="module")
def conf_copy(tmp_path_factory) -> Path:
    """A copy of conf/ to write imported experiment files into."""
    target = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(CONF_DIR, target)
    return target


def compose_experiment(conf: Path, name: str, text: str, overrides=()):
    (conf / "experiment" / f"{name}.yaml").write_text(text, encoding="utf-8")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[f"experiment={name}", *overrides])


def plans_up_to_environments(cfg) -> list[str]:
    """Plan the config; every check must pass but the environments' (returns their messages)."""
    register_resolvers()
    try:
        plan_pipelines(cfg)
    except EnvNotReadyError as e:
        return [p for p in str(e).split("\n\n") if p]
    return []


def body(text: str) -> dict:
    return yaml.safe_load(text)


def test_text_to_video_single_op_pipeline(conf_copy):
    text, report = convert_file(T2V / "1_single_op_pipeline.yaml")
    assert text.startswith("# @package _global_\n")
    doc = body(text)
    assert {"override /trainer": "easyanimate"} in doc["defaults"]
    assert {"override /infer": "easyanimate"} in doc["defaults"]
    assert {"override /evaluator": "vbench"} in doc["defaults"]
    assert {"/convert@convert.convert_to_ea_fmt": "dj_to_easyanimate"} in doc["defaults"]
    steps = doc["pipeline"]["steps"]
    assert list(steps) == ["load", "analysis_ori_data", "process", "process_2",
                           "convert_to_ea_fmt", "train", "infer", "vbench_eval"]
    # Data-Juicer chains these jobs through files (export_path -> dataset_path): here, outputs
    assert steps["analysis_ori_data"]["inputs"]["recipe"] == {
        "ops": {"language_id_score_filter": {"lang": "zh", "min_score": 0.8}}}
    assert steps["analysis_ori_data"]["overrides"] == {"quantiles": [0.333, 0.667]}
    assert steps["process"]["inputs"]["dataset"] == "${ctx:load.dataset}"
    assert steps["process_2"]["inputs"]["dataset"] == "${ctx:process.dataset}"
    assert steps["convert_to_ea_fmt"]["inputs"]["dataset"] == "${ctx:process_2.dataset}"
    assert steps["train"]["inputs"] == {"dataset": "${ctx:convert_to_ea_fmt.dataset}"}
    options = steps["train"]["overrides"]["options"]  # model_train.yaml, found beside it
    assert options["num_train_epochs"] == 1 and options["batch_size_per_gpu"] == 8
    assert options["pretrained_model"] == "PixArt-alpha/PixArt-XL-2-512x512"
    assert steps["infer"]["inputs"]["model_dir"] == "${ctx:train.model_dir}"
    assert steps["vbench_eval"]["inputs"]["videos"] == "${ctx:infer.output_dir}"
    assert steps["vbench_eval"]["overrides"] == {
        "each": {"dimension": ["subject_consistency", "dynamic_degree"]}}
    # what has no counterpart is said, in the file and in the report
    assert any("range_specified_field_selector" in u for u in report.unmapped)
    assert "# Not carried over" in text and "eval_name='mini_test'" in text

    cfg = compose_experiment(conf_copy, "t2v_single_op", text)
    missing = plans_up_to_environments(cfg)
    assert all("python -m sandbox.env setup" in m for m in missing)
    assert {m.split("`")[1] for m in missing} <= {"trainer", "infer", "evaluator"}


def test_local_settings_and_a_second_training_config(conf_copy):
    text, report = convert_file(T2V / "3_duplicate_pipeline.yaml")
    steps = body(text)["pipeline"]["steps"]
    assert steps["train"]["overrides"]["options"]["num_train_epochs"] == 2
    # `local:` set the LoRA path; the training step's output takes its place, and it is said
    assert steps["infer"]["inputs"]["model_dir"] == "${ctx:train.model_dir}"
    assert any("lora_path='../../../outputs/demo-bench/models/checkpoint-2.safetensors'" in u
               for u in report.unmapped)
    plans_up_to_environments(compose_experiment(conf_copy, "t2v_duplicate", text))


def test_internvl_coco_caption_workflow_with_four_pipelines(conf_copy):
    text, report = convert_file(FIXTURES / "internvl_coco_caption" /
                                "sandbox_internvl_coco_caption.yaml")
    doc = body(text)
    pipes = doc["pipelines"]
    assert list(pipes) == ["baseline_preparation", "single_op_exps", "multiple_op_exps",
                           "scaling_exps"]
    single = pipes["single_op_exps"]["steps"]
    assert single["construct_single_op_data_pools"]["component"]["split_ratios"] == \
        pytest.approx([1 / 3, 2 / 3])
    train = single["single_op_exps_train"]
    assert train["for_each"] == "${ctx:coco_caption_meta.pools}"
    assert train["inputs"] == {"meta": "${item:dataset}"}
    assert single["single_op_exps_eval"]["for_each"] == "${ctx:single_op_exps_train.results}"
    multi = pipes["multiple_op_exps"]["steps"]
    rank = multi["rank_single_op_data_pools"]
    assert rank["component"]["keys"] == ["caption/avg_score"]  # Data-Juicer's avg_score
    assert rank["inputs"]["results"] == "${ctx:single_op_exps.single_op_exps_eval.results}"
    assert multi["rank_single_op_data_pools_top"]["component"]["top_k"] == 3
    scaling = pipes["scaling_exps"]["steps"]
    assert scaling["scaling_op_exps_train_4B"]["overrides"]["options"]["conv_style"] == "phi3-chat"
    assert scaling["scaling_op_exps_train_2B"]["overrides"]["options"]["conv_style"] == \
        "internlm2-chat"
    assert {"override /evaluator": "internvl_coco_caption"} in doc["defaults"]
    # images relative to the folder Data-Juicer exported the pool to; Parquet pools become
    # InternVL's jsonl before their meta files
    assert doc["convert"]["convert_to_coco_caption"] == {
        "image_root": "<internvl_home>/internvl_chat/data/coco/"}
    assert single["coco_caption_meta"]["inputs"] == {
        "dataset": "${ctx:coco_caption_meta_to_coco.pools}"}
    assert single["coco_caption_meta_to_coco"]["inputs"] == {
        "dataset": "${ctx:construct_single_op_data_pools.pools}"}
    assert single["single_op_exps_eval"]["overrides"]["options"]["num_gpus"] == 8

    cfg = compose_experiment(conf_copy, "internvl", text)
    missing = plans_up_to_environments(cfg)
    assert missing and all("internvl" in m for m in missing)


def test_unconvertible_jobs_and_iteration_are_kept_as_comments(conf_copy, capsys, tmp_path):
    src = FIXTURES / "auto_prompt_optimization" / "sandbox_auto_prompt_optimization.yaml"
    out = tmp_path / "experiment" / "prompt_opt.yaml"
    assert main([str(src), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "no counterpart here" in stdout and "experiment=prompt_opt" in stdout
    assert "construction by count (split_num/ignore_stats)" in stdout
    assert "iteration (max_iter_num=5" in stdout
    text = out.read_text()
    assert "# Jobs not converted, as they were written:" in text
    assert "# --- grader_model_prompt_optimization.execution_job_configs[" \
        "construct_single_prompt_data_pools]" in text and "#   split_num: 1" in text
    doc = body(text)
    assert {"override /infer": "api"} in doc["defaults"]
    steps = doc["pipelines"]["grader_model_prompt_optimization"]["steps"]
    assert steps["join_prompts_and_datasets_to_infer"]["inputs"]["left"] == [
        {"name": "generate_new_prompts", "dataset": "${ctx:generate_new_prompts.dataset}"}]
    infer = steps["grader_model_inference"]
    assert infer["for_each"] == "${ctx:join_prompts_and_datasets_to_infer.pools}"
    assert infer["overrides"]["max_retries"] == 5  # Data-Juicer's max_retry_num
    assert infer["overrides"]["build_messages_func"] == "build_messages_for_math_qa"
    grades = steps["grades_evaluation"]
    assert grades["inputs"] == {"predicted_dataset_path": "${item:dataset}"}
    assert grades["overrides"] == {"predicted_value_key": "grades",
                                   "ground_truth_value_key": "truth"}
    rank = doc["pipelines"]["select_and_merge_data_pools"]["steps"][
        "rank_single_prompt_data_pools"]
    assert rank["component"]["keys"] == ["mse", "format_errors"]
    cfg = compose_experiment(conf_copy, "prompt_opt", text)
    assert plans_up_to_environments(cfg) == []


def test_a_written_single_pipeline_with_iteration(conf_copy, tmp_path):
    """A config as a user writes one: recipe inline, the k-sigma refinement, processing with the
    refined recipe, a data evaluation and an iteration target on it."""
    src = tmp_path / "sandbox.yaml"
    src.write_text(yaml.safe_dump({
        "project_name": "p", "experiment_name": "e", "work_dir": "./outputs/p",
        "hpo_config": "hpo.yaml", "max_iter_num": 3,
        "iter_targets": ["anonymous.eval_data.quality_score >= 0.6"],
        "probe_job_configs": [{
            "hook": "ProbeViaAnalyzerHook", "meta_name": "analysis",
            "dj_configs": {"dataset_path": "data/pool.jsonl",
                           "process": [{"text_length_filter": {"min_len": 10}},
                                       {"text_length_filter": {"max_len": 500}}]}}],
        "refine_recipe_job_configs": [{"hook": "RefineRecipeViaKSigmaHook", "meta_name": "analysis",
                                       "output": "refined_recipe_path",
                                       "dj_configs": {"process": [{"text_length_filter": {
                                           "min_len": 10}}]}}],
        "execution_job_configs": [
            {"hook": "ProcessDataHook", "meta_name": "process_refined", "output": "processed",
             "input": {"dj_configs": "-1.refined_recipe_path"}, "dj_configs": "<auto>"},
            {"hook": "TrainModelHook", "extra_configs": {"type": "llama_factory"}}],
        "evaluation_job_configs": [
            {"hook": "EvaluateDataHook", "meta_name": "eval_data",
             "input": {"extra_configs.dataset_path": "anonymous.process_refined.processed"},
             "extra_configs": {"type": "dj_text_quality_classifier"}}],
    }))
    text, report = convert_file(src)
    doc = body(text)
    steps = doc["pipeline"]["steps"]
    assert list(steps) == ["load", "analysis", "refine", "process_refined", "eval_data"]
    assert steps["analysis"]["inputs"]["recipe"]["ops"] == {
        "text_length_filter": {"min_len": 10},
        "text_length_filter_2": {"max_len": 500, "_op": "text_length_filter"}}
    assert steps["refine"]["inputs"]["summary"] == "${ctx:analysis.summary}"
    assert steps["process_refined"]["inputs"] == {"dataset": "${ctx:load.dataset}",
                                                  "recipe": "${ctx:refine.recipe}"}
    assert steps["eval_data"]["inputs"] == {"dataset": "${ctx:process_refined.dataset}",
                                            "source_dataset": "${ctx:load.dataset}"}
    assert doc["pipeline"]["max_iter"] == 3
    assert doc["pipeline"]["stop_when"] == "eval_data.metrics.quality_score >= 0.6"
    assert any("llama_factory" in u for u in report.unmapped)
    assert any("hpo_config" in u for u in report.unmapped)
    cfg = compose_experiment(conf_copy, "written", text)
    assert plans_up_to_environments(cfg) == []


def test_not_a_sandbox_config_is_refused(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("process:\n  - text_length_filter: {min_len: 10}\n")
    assert main([str(recipe)]) == 2
    assert "recipe=dj recipe.path=" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.yaml")]) == 2


def test_the_inception_evaluator_demo_converts_with_every_setting(conf_copy, tmp_path, capsys):
    """Data-Juicer's configs/demo/sandbox/inception_eval_config.yaml, an evaluator's config on
    its own: one data_evaluator=inception step with all its settings, nothing left out."""
    demo = FIXTURES / "inception" / "inception_eval_config.yaml"
    out = tmp_path / "experiment" / "inception_demo.yaml"
    assert main([str(demo), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "converted 1 job(s)" in stdout and "no counterpart" not in stdout
    text = out.read_text()
    assert "Not carried over" not in text
    doc = body(text)
    assert {"override /data_evaluator": "inception"} in doc["defaults"]
    step = doc["pipeline"]["steps"]["inception_eval_config"]
    assert step["component"] == "${data_evaluator}"
    assert step["overrides"] == {
        "generated_path": "/path/to/the/generated/dj_format_dataset",
        "reference_path": "/path/to/the/groundtruth/dj_format_dataset",
        "generated_media_dir": None, "reference_media_dir": None,
        "result_path": "./outputs/demo-sandbox/inception_eval_results.jsonl",
        "num_runs": 1, "height": 240, "width": 320, "replace_cache": False, "verbose": False,
        "seed": 42, "metrics": ["fvd2048_16f"]}
    cfg = compose_experiment(conf_copy, "inception_demo", text)
    assert plans_up_to_environments(cfg) == []


def test_inception_evaluation_after_generation_reads_the_videos(tmp_path):
    """The text-to-video demo with an FVD evaluation beside VBench: the generated side is the
    inference step's videos, the detector the metric's network."""
    here = tmp_path / "configs" / "data_juicer_recipes" / "sandbox" / "easyanimate_text_to_video"
    shutil.copytree(T2V, here)
    doc = yaml.safe_load((T2V / "1_single_op_pipeline.yaml").read_text())
    doc["evaluation_job_configs"].append({
        "hook": "EvaluateDataHook", "meta_name": "fvd",
        "extra_configs": {"type": "video_inception_evaluator",
                          "fake_data_path": "<updated_by_the_input_mapping>",
                          "real_data_path": "real.jsonl", "metric": "kvd2048_16f",
                          "detector_path": "/models/i3d_torchscript.pt"}})
    src = tmp_path / "t2v_fvd.yaml"
    src.write_text(yaml.safe_dump(doc))
    text, report = convert_file(src)
    steps = body(text)["pipeline"]["steps"]
    assert steps["fvd"]["component"] == "${data_evaluator}"
    assert steps["fvd"]["inputs"] == {"videos": "${ctx:infer.output_dir}"}
    assert steps["fvd"]["overrides"] == {"reference_path": "real.jsonl",
                                         "metrics": ["kvd2048_16f"],
                                         "i3d_path": "/models/i3d_torchscript.pt"}
    assert not any("fvd" in u for u in report.unmapped)
