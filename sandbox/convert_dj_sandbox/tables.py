"""The importer's tables: Data-Juicer's sandbox config keys, and its hooks' types, models and
metric names mapped to this sandbox's config groups, components and names."""
from __future__ import annotations

from pathlib import Path

# the config repository whose groups an imported job names (trainer=..., convert.<step>)
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PHASES = ("probe_job_configs", "refine_recipe_job_configs", "execution_job_configs",
          "evaluation_job_configs")
JOB_KEYS = ("hook", "meta_name", "dj_configs", "extra_configs", "input", "output", "local")
GLOBAL_KEYS = ("project_name", "experiment_name", "work_dir", "hpo_config", "resume",
               "max_iter_num", "max_iter", "iter_targets", "iter_targets_mode", "iter_updater",
               "stop_condition", "pipelines", *PHASES)
POOL_TYPES = {
    "data_pool_construction": "PoolConstruction", "data_pool_combination": "PoolCombination",
    "data_pool_duplication": "PoolDuplication", "data_pool_downsampling": "PoolDownsampling",
    "data_pool_merging": "PoolMerging", "data_pool_cartesian_join": "PoolCartesianJoin",
}
CONVERSIONS = {
    "dj_to_easyanimate_video_dataset_conversion": "dj_to_easyanimate",
    "coco_caption_to_dj_conversion": "coco_caption_to_dj",
    "coco_caption_meta_generation": "coco_caption_meta",
}
TRAINERS = {"easyanimate": "easyanimate", "internvl_coco_caption": "internvl_coco_caption",
            "modelscope": "modelscope", "trinity-rft": "trinity_rft", "trinity_rft": "trinity_rft"}
INFERS = {"easyanimate": "easyanimate", "huggingface": "hf", "vllm": "vllm", "api": "api"}
EVALUATORS = {"vbench_video_evaluator": ("evaluator", "vbench"),
              "internvl_coco_caption": ("evaluator", "internvl_coco_caption"),
              "coco_caption": ("evaluator", "coco_caption"),
              "dj_text_quality_classifier": ("data_evaluator", "default"),
              "accuracy": ("evaluator", "accuracy"), "mse": ("evaluator", "mse"),
              # a data evaluator in Data-Juicer (DataEvaluatorFactory): media, no model
              "video_inception_evaluator": ("data_evaluator", "inception")}
# video_inception_evaluator's keys -> data_evaluator=inception's (metric and detector_path are
# handled apart: one metric name becomes a list, the detector the path of that metric's network)
INCEPTION_KEYS = {"fake_data_path": "generated_path", "real_data_path": "reference_path",
                  "fake_mm_dir": "generated_media_dir", "real_mm_dir": "reference_media_dir"}
# Data-Juicer's metric names -> the names here (for ranking keys)
METRIC_NAMES = {"avg_score": "caption/avg_score", "format_error": "format_errors"}
# Data-Juicer's LLM inference keys -> conf/infer keys
INFER_KEYS = {"max_retry_num": "max_retries"}
# the input each model component's run reads its data from
TRAINER_INPUT = {"internvl_coco_caption": "meta"}
# InternVL model scale -> conversation template (Data-Juicer's table)
CONV_STYLE = {"1B": "Hermes-2", "40B": "Hermes-2", "2B": "internlm2-chat", "8B": "internlm2-chat",
              "26B": "internlm2-chat", "76B": "internlm2-chat", "4B": "phi3-chat"}
