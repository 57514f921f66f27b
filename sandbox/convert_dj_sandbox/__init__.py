"""Import a Data-Juicer sandbox config as an experiment file of this sandbox.

    python -m sandbox.convert_dj_sandbox SANDBOX.yaml [-o conf/experiment/NAME.yaml]
    python -m sandbox experiment=NAME

Data-Juicer's sandbox config lists *jobs* (``hook``, ``meta_name``, ``dj_configs``,
``extra_configs``, ``input``, ``output``, ``local``) in four phases (``probe_job_configs``,
``refine_recipe_job_configs``, ``execution_job_configs``, ``evaluation_job_configs``), either at
the top level (one pipeline) or per pipeline under ``pipelines:``, plus iteration keys
(``max_iter_num``, ``iter_targets``, ``iter_updater``). Each job becomes a step here, in the same
order, with this sandbox's component names:

=================================================  ==============================================
Data-Juicer hook (type)                            step here
=================================================  ==============================================
ProbeViaAnalyzerHook                               ``load`` (its dataset file) + ``${probe}``
RefineRecipeViaKSigmaHook                          ``${refine}`` (refine=ksigma) on the last probe
ProcessDataHook                                    ``${process}``
DataPoolManipulationHook (data_pool_construction,  ``sandbox.steps.pools.PoolConstruction``,
combination, duplication, downsampling, merging,   ``PoolCombination``, ``PoolDuplication``,
cartesian_join)                                    ``PoolDownsampling``, ``PoolMerging``,
                                                   ``PoolCartesianJoin``
GeneralProbeHook (data_pool_ranking)               ``PoolRanking`` (+ ``PoolSelection`` for top_n)
GeneralDataExecutorHook (dj_to_easyanimate_...,    ``convert.<step>`` from conf/convert/
coco_caption_to_dj_..., coco_caption_meta_...)
TrainModelHook (easyanimate, internvl_coco_        ``trainer=easyanimate``, ``internvl_coco_
caption, modelscope, trinity-rft)                  caption``, ``modelscope``, ``trinity_rft``
InferModelHook (easyanimate, api, huggingface,     ``infer=easyanimate``, ``api``, ``hf``,
vllm)                                              ``vllm``
EvaluateDataHook / EvaluateModelHook               ``evaluator=vbench``,
(vbench_video_evaluator, internvl_coco_caption,    ``evaluator=internvl_coco_caption``,
dj_text_quality_classifier, accuracy, mse,         ``data_evaluator=default``,
video_inception_evaluator)                         ``evaluator=accuracy``, ``evaluator=mse``,
                                                   ``data_evaluator=inception``
=================================================  ==============================================

An evaluator's config on its own (a file whose ``type`` is one of these evaluators, as
``configs/demo/sandbox/inception_eval_config.yaml``) converts as a pipeline of that one
evaluation job.

Wiring: a job's ``input`` (``-1.KEY``: the previous job's output; ``PIPELINE.META_NAME.KEY``)
becomes ``${ctx:...}`` references to the step that produced it, and so does a file one job
exports and a later one reads (Data-Juicer chains jobs through files); a job over a list of pools
fans out (``for_each``). Ranking keys are renamed to the metrics' names here (``avg_score`` ->
``caption/avg_score``, ``format_error`` -> ``format_errors``). Settings with a counterpart
(EasyAnimate's training options, VBench's dimensions, pool parameters, ...) are carried over.
Everything else (hooks and types with no counterpart, keys nothing reads here such as
``export_path``) is never dropped silently: it is listed in the output file as comments (the
job's original YAML for a job not converted) and in the summary printed on stdout. Paths are
kept as written: they are relative to where Data-Juicer ran.
"""
from sandbox.convert_dj_sandbox.importer import (Converter, Report, convert_file, main,
                                                 render_text, summary)

__all__ = ["convert_file", "render_text", "summary", "main", "Converter", "Report"]
