"""Outside programs as steps (sandbox.steps.external) and the stack components over them: live
metric parsing from a real child process, result files, picked outputs, the planning-time
check for stacks that are not set up, and each stack YAML run against a stand-in in
tests/standins that writes the real program's formats."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sandbox.components import build_component
from sandbox.env.manager import EnvNotReadyError
from sandbox.errors import ConfigError
from sandbox.programs import ProgramError
from sandbox.steps.base import StepEnv
from sandbox.steps.external import ExternalEvaluator, ExternalTrainer, LiveMetrics
from tests.conftest import compose

STANDINS = Path(__file__).parent / "standins"
ROOT = Path(__file__).resolve().parent.parent


class RecordingTracker:
    """Keeps every logged metric with the time it arrived."""

    def __init__(self):
        self.logged: list[tuple[float, str, float, int]] = []

    def log_metrics(self, metrics, step=None):
        for k, v in metrics.items():
            self.logged.append((time.monotonic(), k, v, step))


def step_env(tmp_path, tracker=None, seed=7) -> StepEnv:
    work = tmp_path / "step"
    work.mkdir(parents=True, exist_ok=True)
    env = StepEnv(name="train", workdir=work, run_dir=tmp_path, cache_dir=tmp_path / "cache",
                  seed=seed)
    if tracker is not None:
        env.tracker = tracker
    return env


PROGRESS = r"""
import sys, time, os
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for step in (1, 2, 3):
    sys.stderr.write(f"\rSteps: {33*step}%|###| {step}/3 [00:01<00:02, lr=1e-0{step}, step_loss={1.0/step:.3g}]")
    sys.stderr.flush()
    time.sleep(0.4)
for n in (50, 1000, 200):  # by name, 50 > 1000 > 200; by step number 1000 is the latest
    open(os.path.join(out, f"checkpoint-{n}.safetensors"), "w").write("x")
"""


def test_metrics_arrive_live_from_progress_bars_and_the_latest_checkpoint_is_picked(tmp_path):
    script = tmp_path / "progress.py"
    script.write_text(PROGRESS)
    tracker = RecordingTracker()
    step = ExternalTrainer(
        argv=["python", str(script), "${step:workdir}/out"],
        metrics={"train_loss": r"\|\s*(?P<step>\d+)/\d+ .*?step_loss=(?P<value>[-0-9.e]+)",
                 "lr": r"lr=([-0-9.e]+)"},
        outputs={"model_dir": {"path": "out/checkpoint-*.safetensors", "pick": "highest_number"}})
    started = time.monotonic()
    out = step.run(step_env(tmp_path, tracker))
    ended = time.monotonic()
    losses = [(v, s) for _, k, v, s in tracker.logged if k == "train_loss"]
    assert losses == [(1.0, 1), (0.5, 2), (0.333, 3)]
    assert [v for _, k, v, _ in tracker.logged if k == "lr"] == [0.1, 0.01, 0.001]
    first = min(t for t, k, _, _ in tracker.logged)
    assert first - started < (ended - started) - 0.6, "the first value came only at the end"
    assert out["metrics"] == {"train_loss": 0.333, "lr": 0.001}
    assert Path(out["model_dir"]).name == "checkpoint-1000.safetensors"
    log = Path(out["logs"]) / "run.log"
    assert "step_loss=0.5" in log.read_text()


def test_exit_0_without_its_result_file_is_a_failure(tmp_path):
    step = ExternalEvaluator(argv=["python", "-c", "print('all good (it is not)')"],
                             stack="Quiet", results=[{"path": "res/*.json", "metrics": {"a": "a"}}])
    with pytest.raises(ProgramError, match=r"(?s)exited with status 0 but wrote no result file.*"
                                           r"all good"):
        step.run(step_env(tmp_path))


def test_a_stale_result_file_is_never_read(tmp_path):
    env = step_env(tmp_path)
    stale = env.workdir / "res" / "old.json"
    stale.parent.mkdir()
    stale.write_text('{"a": 1}')
    old = time.time() - 3600
    os.utime(stale, (old, old))
    step = ExternalEvaluator(argv=["python", "-c", "pass"],
                             results=[{"path": "res/*.json", "metrics": {"a": "a"}}])
    with pytest.raises(ProgramError, match="wrote no result file"):
        step.run(env)


def test_a_failing_program_is_one_paragraph_with_its_last_lines(tmp_path):
    step = ExternalTrainer(argv=["python", "-c", "import sys; print('CUDA out of memory'); sys.exit(3)"])
    with pytest.raises(ProgramError) as e:
        step.run(step_env(tmp_path))
    assert "exited with status 3" in str(e.value) and "CUDA out of memory" in str(e.value)


def test_each_runs_once_per_value_and_checks_its_values(tmp_path):
    write = ("import json, sys; json.dump({sys.argv[1]: [len(sys.argv[1]) / 10, []]}, "
             "open(sys.argv[2], 'w'))")
    step = ExternalEvaluator(
        argv=["python", "-c", write, "${each:dim}", "${step:workdir}/r-${each:dim}.json"],
        each={"dim": ["ab", "abcd"]}, choices={"dim": ["ab", "abcd", "x"]},
        results=[{"path": "r-${each:dim}.json", "metrics": {"s/${each:dim}": "${each:dim}.0"}}],
        mean={"s/mean": "s/"})
    out = step.run(step_env(tmp_path))
    assert out["metrics"] == {"s/ab": 0.2, "s/abcd": 0.4, "s/mean": pytest.approx(0.3)}
    assert sorted(p.name for p in Path(out["logs"]).iterdir()) == ["ab.log", "abcd.log"]
    with pytest.raises(ConfigError, match=r"abcx \(did you mean abcd\?\)"):
        ExternalEvaluator(argv=["x"], each={"dim": ["abcx"]}, choices={"dim": ["ab", "abcd"]})


def test_metric_patterns_and_outputs_are_checked_when_built():
    with pytest.raises(ConfigError, match="must capture the number"):
        ExternalTrainer(argv=["x"], metrics={"loss": "loss=[0-9.]+"})
    with pytest.raises(ConfigError, match="outputs are model_dir"):
        ExternalTrainer(argv=["x"], outputs={"checkpoint": "out"})
    with pytest.raises(ConfigError, match="never one shell string"):
        ExternalTrainer(argv="bash train.sh")


@pytest.mark.parametrize("line,expected", [
    # modelscope 1.40.2 TextLoggerHook
    ("2026-01-01 10:00:00,000 - modelscope - INFO - epoch [1][10/50]\tlr: 4.825e-05, eta: 0:01:02,"
     " time: 0.310, data_load_time: 0.010, memory: 2519, loss: 5.6125", {"train_loss": 5.6125,
                                                                         "lr": 4.825e-05}),
    # transformers Trainer as InternVL prints it (later versions add grad_norm)
    ("{'loss': 1.2345, 'grad_norm': 3.2, 'learning_rate': 3.9e-05, 'epoch': 0.01}",
     {"train_loss": 1.2345, "lr": 3.9e-05}),
])
def test_stack_log_formats_parse(line, expected, tmp_path):
    option = "modelscope" if "modelscope" in line else "internvl_coco_caption"
    cfg = compose([f"trainer={option}"])
    patterns = {k: __import__("re").compile(v)
                for k, v in OmegaConf.to_container(cfg.trainer.metrics).items()}
    parser = LiveMetrics(patterns, step_env(tmp_path, RecordingTracker()))
    parser(line)
    assert parser.last == expected


def test_selecting_stacks_that_are_not_set_up_fails_before_anything_runs(tmp_path):
    from sandbox import run

    cfg = compose(["trainer=easyanimate", "evaluator=vbench", "tracking=none",
                   f"hydra.run.dir={tmp_path}"])
    with pytest.raises(EnvNotReadyError) as e:
        run(cfg, run_dir=tmp_path / "run")
    text = str(e.value)
    for name in ("easyanimate", "vbench"):
        assert f"python -m sandbox.env setup {name}" in text
    assert "NVIDIA GPU" in text
    assert not (tmp_path / "run" / "load").exists()  # nothing ran, not even the data load


def test_the_internvl_evaluator_that_is_not_set_up_names_java_among_its_needs(tmp_path):
    """InternVL's caption scoring is pycocoevalcap, whose PTB tokenizer and METEOR run `java`."""
    from sandbox.runner import plan

    cfg = compose(["evaluator=internvl_coco_caption", "tracking=none",
                   f"hydra.run.dir={tmp_path}"])
    with pytest.raises(EnvNotReadyError) as e:
        plan(cfg)
    assert "python -m sandbox.env setup internvl" in str(e.value)
    assert "Java" in str(e.value) and "NCCL" in str(e.value)


def test_a_stack_without_its_weights_fails_before_anything_runs(tmp_path, monkeypatch):
    from sandbox.env import load_spec, manager

    monkeypatch.setenv("SANDBOX_CACHE", str(tmp_path / "cache"))
    spec = load_spec("easyanimate")
    spec.folder().mkdir(parents=True)
    (spec.folder() / manager.MARKER).write_text("")
    cfg = OmegaConf.to_container(compose(["trainer=easyanimate"]).trainer)
    with pytest.raises(EnvNotReadyError) as e:
        ExternalTrainer.preflight(cfg, "trainer")
    text = str(e.value)
    models = manager.source_dir(spec) / "models"
    assert "`PixArt-XL-2-512x512` (" in text and f"in {models / 'Diffusion_Transformer'}/" in text
    assert "`easyanimate_mm_16x256x256_pretrain.safetensors` (" in text
    assert f"in {models / 'Motion_Module'}/" in text and "\n" not in text


def test_a_wrong_vbench_dimension_fails_before_anything_runs(tmp_path):
    from sandbox.runner import plan

    cfg = compose(["evaluator=vbench", "evaluator.env=null",
                   "evaluator.each.dimension=[temporal_flickering,subject_consistancy]"])
    with pytest.raises(ConfigError, match="did you mean subject_consistency"):
        plan(cfg)


def build(cfg, group: str):
    return build_component(OmegaConf.to_container(cfg[group], resolve=True), group, group)


def test_easyanimate_train_and_infer_against_stand_ins(tmp_path):
    """The real YAMLs' argument lists, log parsing and outputs, against EasyAnimate's scripts'
    stand-ins (14 and 11 positional arguments, its tqdm bar, its checkpoint names), on the
    dataset the `dj_to_easyanimate` conversion writes (its `videos`, relative to video_root)."""
    from sandbox.steps.external.formats import DjToEasyAnimate

    clips = tmp_path / "clips"
    clips.mkdir()
    pool = tmp_path / "pool.jsonl"
    with open(pool, "w") as fh:
        for i in range(3):
            (clips / f"{i}.mp4").write_bytes(b"\0")
            fh.write(json.dumps({"videos": [str(clips / f"{i}.mp4")],
                                 "text": f"<__dj__video> clip {i}"}) + "\n")
    dataset = DjToEasyAnimate(video_root=str(tmp_path)).run(
        step_env(tmp_path / "convert"), dataset=str(pool))["dataset"]
    cfg = compose(["trainer=easyanimate", "infer=easyanimate", "trainer.env=null",
                   "infer.env=null", f"trainer.cwd={STANDINS / 'easyanimate'}",
                   f"infer.cwd={STANDINS / 'easyanimate'}", "trainer.options.num_train_epochs=2",
                   f"trainer.options.video_root={tmp_path}"])
    tracker = RecordingTracker()
    env = step_env(tmp_path, tracker, seed=11)
    out = build(cfg, "trainer").run(env, dataset=str(dataset))
    args = json.loads((env.workdir / "out" / "standin_args.json").read_text())["argv"]
    assert args[3] == str(dataset) and args[8] == "2" and args[10] == "11"
    assert args[11] == str(env.workdir / "out") and args[0].endswith("PixArt-XL-2-512x512")
    assert Path(out["model_dir"]).name == "checkpoint-6.safetensors"
    losses = [(s, v) for _, k, v, s in tracker.logged if k == "train_loss"]
    assert [s for s, _ in losses] == [1, 2, 3, 4, 5, 6] and losses[0][1] == 0.5
    assert out["metrics"]["lr"] == 2e-05

    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"prompt_en": "a cat", "dimension": ["temporal_flickering"]},
                                {"prompt_en": "a dog", "dimension": ["temporal_flickering"]}]))
    infer_env = step_env(tmp_path / "infer", seed=11)
    videos = build(cfg, "infer").run(infer_env, model_dir=out["model_dir"], info=str(info))
    names = sorted(p.name for p in Path(videos["output_dir"]).iterdir())
    assert names == [f"a {a}-{i}.mp4" for a in ("cat", "dog") for i in range(5)]


def test_the_easyanimate_stand_in_reads_videos_as_the_patched_loader_does(tmp_path):
    """Data-Juicer's patched VideoDataset reads each record's `videos[0]`, never `file_path`: a
    dataset in upstream EasyAnimate's format fails, as it does in the real script."""
    (tmp_path / "a.mp4").write_bytes(b"\0")
    cfg = compose(["trainer=easyanimate", "trainer.env=null",
                   f"trainer.cwd={STANDINS / 'easyanimate'}"])
    upstream = tmp_path / "upstream.json"
    upstream.write_text(json.dumps([{"file_path": str(tmp_path / "a.mp4"), "text": "a"}]))
    with pytest.raises(ProgramError, match="KeyError: 'videos'"):
        build(cfg, "trainer").run(step_env(tmp_path / "u"), dataset=str(upstream))
    relative = tmp_path / "relative.jsonl"  # jsonl is read too; no video folder given
    relative.write_text(json.dumps({"videos": ["a.mp4"], "text": "a"}) + "\n")
    with pytest.raises(ProgramError, match="a.mp4 does not exist"):
        build(cfg, "trainer").run(step_env(tmp_path / "r"), dataset=str(relative))
    cfg = compose(["trainer=easyanimate", "trainer.env=null", "trainer.options.num_train_epochs=1",
                   f"trainer.cwd={STANDINS / 'easyanimate'}", f"trainer.options.video_root={tmp_path}"])
    out = build(cfg, "trainer").run(step_env(tmp_path / "ok"), dataset=str(relative))
    assert Path(out["model_dir"]).name == "checkpoint-1.safetensors"


def test_easyanimate_infer_fails_when_a_generation_process_crashed_silently(tmp_path):
    """infer_lora.sh ends in a bare `wait`, so it exits 0 although a process died: the step
    counts the videos against prompts x video_num_per_prompt and names the missing ones."""
    lora = tmp_path / "checkpoint-2.safetensors"
    lora.write_bytes(b"\0")
    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"prompt_en": p} for p in ("a cat", "a dog", "a cat")]))
    cfg = compose(["infer=easyanimate", "infer.env=null", f"infer.cwd={STANDINS / 'easyanimate'}",
                   "infer.options.gpu_num=2", "infer.options.video_num_per_prompt=3",
                   "+infer.env_vars.STANDIN_EASYANIMATE_CRASH_AT=1"])
    env = step_env(tmp_path)
    with pytest.raises(ProgramError) as e:
        build(cfg, "infer").run(env, model_dir=str(lora), info=str(info))
    text = str(e.value)
    assert "`bash` exited with status 0 but did not write" in text and "\n\n" not in text
    assert "(5 of the 6 files it should write)" in text  # "a cat" twice is one prompt
    for name in ("a dog-0.mp4", "a cat-1.mp4", "a cat-2.mp4", "a dog-1.mp4", "a dog-2.mp4"):
        assert str(env.workdir / "videos" / name) in text
    assert "a cat-0.mp4" not in text and "CUDA out of memory" in text
    # the same run without the crash writes every video and passes
    cfg = compose(["infer=easyanimate", "infer.env=null", f"infer.cwd={STANDINS / 'easyanimate'}",
                   "infer.options.gpu_num=2", "infer.options.video_num_per_prompt=3"])
    out = build(cfg, "infer").run(step_env(tmp_path / "ok"), model_dir=str(lora), info=str(info))
    assert len(list(Path(out["output_dir"]).iterdir())) == 6


def test_vbench_reads_each_dimensions_result_file(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for prompt in ("a cat", "a dog"):
        for i in range(2):
            (videos / f"{prompt}-{i}.mp4").write_bytes(b"v")
    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering",
                                                                "subject_consistency"]}
                                for p in ("a cat", "a dog")]))
    pythonpath = f"{STANDINS / 'pylib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    cfg = compose(["evaluator=vbench", "evaluator.env=null",
                   "evaluator.each.dimension=[temporal_flickering,subject_consistency]",
                   f"+evaluator.env_vars.PYTHONPATH={pythonpath}"])
    out = build(cfg, "evaluator").run(step_env(tmp_path), videos=str(videos), info=str(info))
    m = out["metrics"]
    assert m["vbench/temporal_flickering"] == pytest.approx((0.90 + 0.91 + 0.92 + 0.93) / 4)
    assert m["vbench/mean"] == pytest.approx(m["vbench/temporal_flickering"])
    assert set(m) == {"vbench/temporal_flickering", "vbench/subject_consistency", "vbench/mean"}
    # VBench's CLI fails on CPU yet exits 0: no result file means failure, never a stale number
    cfg = compose(["evaluator=vbench", "evaluator.env=null",
                   "evaluator.each.dimension=[temporal_flickering]",
                   f"+evaluator.env_vars.PYTHONPATH={pythonpath}",
                   "+evaluator.env_vars.STANDIN_VBENCH_SILENT_FAIL=1"])
    with pytest.raises(ProgramError, match="ProcessGroupNCCL"):
        build(cfg, "evaluator").run(step_env(tmp_path), videos=str(videos), info=str(info))


def test_trinity_rft_against_its_stand_in(tmp_path):
    path = f"{STANDINS / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
           f"{os.environ['PATH']}"
    cfg = compose(["trainer=trinity_rft", "trainer.env=null", f"+trainer.env_vars.PATH={path}"])
    tracker = RecordingTracker()
    env = step_env(tmp_path, tracker)
    out = build(cfg, "trainer").run(env, dataset=str(tmp_path / "pool.jsonl"))
    assert [(s, v) for _, k, v, s in tracker.logged if k == "pg_loss"] == \
        [(1, 0.1), (2, 0.05), (3, 0.0333333)]
    assert out["metrics"]["reward_mean"] == pytest.approx(0.6)
    assert out["model_dir"] == str(env.workdir / "checkpoints" / "sandbox" / "sandbox" / "rft")
    # datasets.load_dataset takes a folder, not a file: the pool is linked into one
    written = yaml.safe_load((env.workdir / "trinity.yaml").read_text())
    taskset = written["buffer"]["explorer_input"]["taskset"]
    assert taskset["path"] == str(env.workdir / "taskset")
    assert (env.workdir / "taskset" / "train.jsonl").resolve() == (tmp_path / "pool.jsonl").resolve()


# Field names of Trinity-RFT 0.6.0's dataclasses, read from the release's
# trinity/common/config.py (TasksetConfig, FormatConfig); its task formatter
# (trinity/buffer/schema/formatter.py) asserts `default_workflow_type` or `format.workflow_key`.
TRINITY_TASKSET_FIELDS = {
    "name", "storage_type", "path", "default_workflow_type", "default_reward_fn_type",
    "rollout_args", "workflow_args", "reward_fn_args", "task_selector", "data_selector", "split",
    "subset_name", "format", "max_retry_times", "max_retry_interval", "enable_progress_bar",
    "repeat_times", "index", "is_eval", "batch_size", "total_epochs", "total_steps",
    "ray_namespace"}
TRINITY_FORMAT_FIELDS = {
    "prompt_type", "prompt_key", "response_key", "system_prompt_key", "system_prompt",
    "messages_key", "tools_key", "image_key", "video_key", "reply_prefix", "workflow_key",
    "reward_fn_key", "chosen_key", "rejected_key", "enable_concatenated_multi_turn",
    "chat_template", "enable_thinking"}


def test_trinity_taskset_follows_the_0_6_0_schema():
    taskset = yaml.safe_load((ROOT / "conf" / "trainer" / "trinity_rft.yaml").read_text())[
        "options"]["config"]["buffer"]["explorer_input"]["taskset"]
    assert set(taskset) <= TRINITY_TASKSET_FIELDS, set(taskset) - TRINITY_TASKSET_FIELDS
    assert set(taskset["format"]) <= TRINITY_FORMAT_FIELDS
    assert taskset["storage_type"] == "file" and taskset["default_workflow_type"]
    assert not str(taskset["path"]).endswith((".jsonl", ".json"))  # a folder for load_dataset


# VBench for real, in an environment the environment manager builds: the sandbox's torch beneath
# VBench's own pins (numpy<2, ...), VBench itself --no-deps (its wheel pins the GUI OpenCV and
# omits torch). `temporal_flickering` needs no model weights, so it runs here on CPU.
VBENCH_CPU = {"name": "vbench_cpu", "kind": "venv", "inherit_packages": True,
              "requirements": ["numpy<2", "opencv-python-headless<4.12", "decord", "easydict",
                               "tqdm", "torchvision==0.28.0"],
              "no_deps": ["vbench==0.1.5"]}

MAKE_VIDEOS = r"""
import sys, cv2, numpy as np
rng = np.random.default_rng(0)
for name, moving in (("a still lake", False), ("static noise", True)):
    for i in range(2):
        w = cv2.VideoWriter(f"{sys.argv[1]}/{name}-{i}.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 48))
        base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        for f in range(16):
            w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) if moving else base)
        w.release()
"""


@pytest.mark.slow
def test_vbench_temporal_flickering_for_real_in_its_own_environment(tmp_path):
    from sandbox.env import EnvSpec, manager

    spec = EnvSpec.from_mapping(VBENCH_CPU, source="test")
    try:
        manager.ensure(spec)
    except ProgramError as e:  # no registry here: say so instead of failing on the network
        if "Could not find a version" in str(e) or "No matching distribution" in str(e):
            pytest.skip(f"the registry is unreachable: {e}")
        raise
    try:  # PyPI's torchvision wheels are CUDA builds: their ops need torch's CUDA libraries
        manager.run(spec, ["python", "-c", "import torchvision"], log_path=tmp_path / "tv.log")
    except ProgramError as e:
        if "torchvision::nms does not exist" in str(e):
            pytest.skip("VBench imports torchvision, and the registry's torchvision wheels are "
                        "CUDA builds that cannot load beside this CPU-only torch (no CPU "
                        "torchvision wheel is reachable here); the stand-in test covers the rest")
        raise
    videos = tmp_path / "videos"
    videos.mkdir()
    manager.run(spec, ["python", "-c", MAKE_VIDEOS, str(videos)], log_path=tmp_path / "make.log")
    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering"]}
                                for p in ("a still lake", "static noise")]))
    cfg = compose(["evaluator=vbench", "evaluator.each.dimension=[temporal_flickering]"])
    node = OmegaConf.to_container(cfg.evaluator, resolve=True)
    node["env"] = VBENCH_CPU
    evaluator = build_component(node, "evaluator", "vbench")
    out = evaluator.run(step_env(tmp_path), videos=str(videos), info=str(info))
    score = out["metrics"]["vbench/temporal_flickering"]
    result = next((tmp_path / "step" / "results").rglob("*_eval_results.json"))
    per_video = {Path(v["video_path"]).name: v["video_results"]
                 for v in json.loads(result.read_text())["temporal_flickering"][1]}
    assert score == pytest.approx(sum(per_video.values()) / len(per_video))
    assert per_video["a still lake-0.mp4"] > 0.99 > per_video["static noise-0.mp4"]


def test_modelscope_driver_against_its_stand_in(tmp_path):
    """sandbox/stacks/modelscope_train.py for real (local pool read with `datasets`, columns
    renamed, the config merged), against a stand-in of modelscope's build_trainer that logs as
    its TextLoggerHook does."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(8)))
    pythonpath = f"{STANDINS / 'pylib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    cfg = compose(["trainer=modelscope", "trainer.env=null", "trainer.options.train.max_epochs=2",
                   "trainer.options.train.dataloader.batch_size_per_gpu=4",
                   f"+trainer.env_vars.PYTHONPATH={pythonpath}"])
    tracker = RecordingTracker()
    env = step_env(tmp_path, tracker)
    out = build(cfg, "trainer").run(env, dataset=str(pool))
    losses = [v for _, k, v, _ in tracker.logged if k == "train_loss"]
    assert losses == [6.0, 3.0, 3.0, 1.5]  # 2 epochs x 2 iterations, as the log printed them
    assert out["metrics"]["lr"] == pytest.approx(2.5e-05)
    merged = json.loads((Path(out["model_dir"]) / "configuration.json").read_text())
    assert merged["train"]["max_epochs"] == 2 and merged["train"]["optimizer"]["lr"] == 5e-05


def test_the_sandbox_seed_reaches_the_modelscope_trainer(tmp_path):
    """EpochBasedTrainer.__init__ re-seeds with its own `seed` argument (default 42) before it
    builds the model, so the driver passes the sandbox's seed there: two seeds give other
    initial weights and another first batch; one seed gives the same."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(32)))
    pythonpath = f"{STANDINS / 'pylib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    cfg = compose(["trainer=modelscope", "trainer.env=null", "trainer.options.train.max_epochs=1",
                   f"+trainer.env_vars.PYTHONPATH={pythonpath}"])

    def start(seed, name):
        out = build(cfg, "trainer").run(step_env(tmp_path / name, seed=seed), dataset=str(pool))
        return json.loads((Path(out["model_dir"]) / "standin_init.json").read_text())

    a, b, again = start(1, "a"), start(2, "b"), start(1, "again")
    assert (a["seed"], b["seed"]) == (1, 2)
    assert a["initial_weights"] != b["initial_weights"] and a["first_batch"] != b["first_batch"]
    assert again == a


def test_internvl_fine_tuning_against_its_stand_in(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"coco": {"root": "data/coco/", "annotation": "ann.jsonl",
                                         "data_augment": False, "repeat_time": 1, "length": 4}}))
    path = f"{STANDINS / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
           f"{os.environ['PATH']}"
    cfg = compose(["trainer=internvl_coco_caption", "trainer.env=null",
                   f"trainer.cwd={STANDINS / 'internvl' / 'internvl_chat'}",
                   "trainer.options.num_gpus=2",
                   f"+trainer.env_vars.PATH={path}"])
    tracker = RecordingTracker()
    env = step_env(tmp_path, tracker, seed=5)
    out = build(cfg, "trainer").run(env, meta=str(meta))
    assert [v for _, k, v, _ in tracker.logged if k == "train_loss"] == [2.0, 1.0, 0.6667]
    args = json.loads((Path(out["model_dir"]) / "standin_args.json").read_text())
    assert args["--meta_path"] == str(meta) and args["--seed"] == "5"
    assert args["--conv_style"] == "internlm2-chat" and args["--use_llm_lora"] == "128"
    # Data-Juicer's GRADIENT_ACC: the global batch stays 512 on 2 GPUs
    assert args["--gradient_accumulation_steps"] == "64" and args["WORLD_SIZE"] == "2"
    assert 2 * int(args["--per_device_train_batch_size"]) * 64 == 512


@pytest.mark.parametrize("gpus,acc", [(8, "16"), (4, "32"), (16, "8")])
def test_internvl_gradient_accumulation_keeps_the_global_batch_of_512(gpus, acc):
    cfg = compose(["trainer=internvl_coco_caption", "trainer.env=null",
                   f"trainer.options.num_gpus={gpus}"])
    trainer = build(cfg, "trainer")
    argv = trainer.argv
    assert trainer.options["gradient_accumulation_steps"] == int(acc)
    assert argv[argv.index("--gradient_accumulation_steps") + 1] == \
        "${opt:gradient_accumulation_steps}"


def test_an_internvl_device_count_that_does_not_divide_512_fails_before_anything_runs():
    from sandbox.runner import plan

    cfg = compose(["trainer=internvl_coco_caption", "trainer.env=null",
                   "trainer.options.num_gpus=3"])
    with pytest.raises(ConfigError) as e:
        plan(cfg)
    text = str(e.value)
    assert "global batch of 512" in text and "3 x 4 = 12" in text and "\n" not in text
    for key in ("options.num_gpus", "options.batch_size_per_device",
                "options.gradient_accumulation_steps"):
        assert key in text
    with pytest.raises(ConfigError, match="is derived from the global batch"):
        build(compose(["trainer=internvl_coco_caption", "trainer.env=null",
                       "+trainer.options.gradient_accumulation_steps=16",
                       "trainer.options.num_gpus=2"]), "trainer")


def test_internvl_caption_evaluation_lines_become_metrics_and_their_mean(tmp_path):
    """pycocoevalcap's printed lines (as InternVL's evaluate.sh shows them) -> caption/* metrics,
    with SPICE left out of the mean."""
    printed = "\n".join(["loading annotations into memory...", "Bleu_1: 0.812", "Bleu_2: 0.655",
                         "Bleu_3: 0.512", "Bleu_4: 0.392", "METEOR: 0.301", "ROUGE_L: 0.598",
                         "CIDEr: 1.312", "SPICE: 0.233"])
    cfg = compose(["evaluator=internvl_coco_caption", "evaluator.env=null",
                   f"evaluator.cwd={tmp_path}"])
    node = OmegaConf.to_container(cfg.evaluator, resolve=True)
    node["argv"] = ["python", "-c", f"print({printed!r})"]
    out = build_component(node, "evaluator", "x").run(step_env(tmp_path), model_dir="ckpt")
    m = out["metrics"]
    assert m["caption/CIDEr"] == 1.312 and "caption/SPICE" not in m
    assert m["caption/avg_score"] == pytest.approx(
        (0.812 + 0.655 + 0.512 + 0.392 + 0.301 + 0.598 + 1.312) / 7)


def internvl_evaluator(tmp_path, *overrides):
    path = f"{STANDINS / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
           f"{os.environ['PATH']}"
    cfg = compose(["evaluator=internvl_coco_caption", "evaluator.env=null",
                   f"evaluator.cwd={STANDINS / 'internvl' / 'internvl_chat'}",
                   f"+evaluator.env_vars.PATH={path}", *overrides])
    return build(cfg, "evaluator")


def test_internvl_evaluation_gives_evaluate_sh_a_checkpoint_it_can_find(tmp_path):
    """evaluate.sh prefixes its checkpoint argument with $(pwd)/: a checkpoint anywhere (here an
    absolute path outside internvl_chat/) still reaches evaluate_caption.py as that folder."""
    ckpt = tmp_path / "train" / "out"
    ckpt.mkdir(parents=True)
    env = step_env(tmp_path)
    out = internvl_evaluator(tmp_path).run(env, model_dir=str(ckpt))
    assert out["metrics"]["caption/CIDEr"] == 1.312
    log = (Path(out["logs"]) / "run.log").read_text()
    given = next(line for line in log.splitlines() if line.startswith("CHECKPOINT: "))
    assert Path(given.split(": ", 1)[1]).resolve() == ckpt.resolve() and "//" not in given
    assert list((env.workdir / "results").glob("coco_*.json"))  # not the checkout's results/


def test_internvl_evaluation_that_exits_0_without_its_metrics_fails(tmp_path):
    """evaluate.sh exits 0 when torchrun fails (no `set -e`, a last `if`): the missing caption
    lines make the step fail in one paragraph with the script's last lines."""
    with pytest.raises(ProgramError) as e:
        internvl_evaluator(tmp_path).run(step_env(tmp_path), model_dir=str(tmp_path / "nothing"))
    text = str(e.value)
    assert "exited with status 0 but gave no value for caption/Bleu_1" in text
    assert "Incorrect path_or_model_id" in text and "\n\n" not in text


def test_expect_metrics_must_be_a_list():
    with pytest.raises(ConfigError, match="expect_metrics"):
        ExternalEvaluator(argv=["true"], expect_metrics="caption/CIDEr")


MAKE_POOL = """
import json, sys, av, numpy as np
root = sys.argv[1]
rng = np.random.default_rng(0)
rows = []
for i in range(12):
    name = f"clip{i}.mp4"
    with av.open(f"{root}/{name}", "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for f in range(8 * (1 + i % 4)):  # 1 to 4 seconds
            frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) if i % 2 else \\
                np.full((48, 64, 3), 20 * (i % 12), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    rows.append({"videos": [name], "text": f"<__dj__video> a clip number {i} <|__dj__eoc|>"})
open(f"{root}/pool.jsonl", "w").write("".join(json.dumps(r) + "\\n" for r in rows))
open(f"{root}/prompts.jsonl", "w").write(json.dumps({"text": "a cat"}) + "\\n"
                                         + json.dumps({"text": "a dog"}) + "\\n")
"""


@pytest.mark.slow
def test_t2v_bottom_up_runs_end_to_end_against_stand_ins(tmp_path):
    """experiment=t2v_bottom_up as a user runs it, the three stacks replaced by their stand-ins:
    real video pools probed and split, converted, trained, sampled, scored, ranked, combined and
    scaled."""
    pytest.importorskip("av")
    import subprocess

    from sandbox import run

    data = tmp_path / "data"
    data.mkdir()
    subprocess.run([sys.executable, "-c", MAKE_POOL, str(data)], check=True)
    pythonpath = f"{STANDINS / 'pylib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    ea = STANDINS / "easyanimate"
    cfg = compose(["experiment=t2v_bottom_up", f"data_pool.path={data / 'pool.jsonl'}",
                   f"t2v.prompts={data / 'prompts.jsonl'}", "tracking=none",
                   "t2v.stats=[video_duration_filter.video_duration]", "t2v.min_combined_size=1",
                   "trainer.env=null", f"trainer.cwd={ea}", "trainer.options.num_train_epochs=1",
                   "infer.env=null", f"infer.cwd={ea}", "infer.options.video_num_per_prompt=2",
                   "evaluator.env=null", "evaluator.each.dimension=[temporal_flickering]",
                   f"+evaluator.env_vars.PYTHONPATH={pythonpath}"])
    metrics = run(cfg, run_dir=tmp_path / "run")
    assert any(k.startswith("single_op/") and "vbench/mean" in k for k in metrics)
    # the stand-in scores every pool alike: no pair is decided at either scale, and it says so
    assert metrics["scale/decision_pairs"] == 0 and "scale/decision_accuracy" not in metrics
    assert metrics["scale/best/vbench/mean"] == pytest.approx((0.90 + 0.91 + 0.92 + 0.93) / 4)
    ctx = json.loads((tmp_path / "run" / "context.json").read_text())
    ranked = ctx["steps"]["single_op.rank"]["outputs"]["ranking"]
    assert {r["pool"] for r in ranked} >= {"random"}


def test_the_environment_spec_is_part_of_the_steps_identity(monkeypatch):
    """`env: NAME` names a file in conf/env: editing that file (another pin) changes the step's
    identity, so a resumed run re-runs the step instead of reusing a result of the old stack."""
    from sandbox.env import EnvSpec
    from sandbox.runner.identity import step_identity

    specs = {"demo": EnvSpec.from_mapping({"name": "demo", "requirements": ["six"]})}
    monkeypatch.setattr("sandbox.env.load_spec", lambda name: specs[name])
    cfg = {"argv": ["python", "-c", "pass"], "env": "demo"}
    before = step_identity(ExternalTrainer, cfg, {}, [])
    assert step_identity(ExternalTrainer, cfg, {}, []) == before
    specs["demo"] = EnvSpec.from_mapping({"name": "demo", "requirements": ["six==1.17.0"]})
    assert step_identity(ExternalTrainer, cfg, {}, []) != before
