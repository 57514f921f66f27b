#!/usr/bin/env bash
# What must run on a GPU machine, in one go, offline, in under 10 minutes (one GPU, 16 cores):
#   bash bench/gpu_check.sh          run each check; one line each: ok|failed|skipped NAME SECONDS
#   bash bench/gpu_check.sh --cfg    only compose each command (`--cfg job`), e.g. on a CPU machine
# Exits 1 when a check failed. Needs the sandbox installed with a CUDA torch; nothing is
# downloaded (the trainers start from scratch, infer=hf uses the embedded default model).
# `trainer.device` (gpt2, clip) and `evaluator.device` (lm, retrieval) are the built-in models'
# device options. VBench runs where its environment has been set
# up (`python -m sandbox.env setup vbench` needs the network, and the environment is far too
# large to carry over), else that line says skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
WORK=${GPU_CHECK_WORK:-bench/.work/gpu_check}  # emptied first
COMPOSE_ONLY=0
[ "${1:-}" = "--cfg" ] && COMPOSE_ONLY=1
rm -rf "$WORK" && mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
failed=0

# check NAME LIMIT COMMAND...: run it for at most LIMIT seconds (output in $WORK/NAME.log), print
# one line, count failures. The limits add up to 9.5 minutes.
check() {
    local name=$1 limit=$2 start ms rc
    shift 2
    start=$(date +%s%N)
    timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [ $rc -eq 0 ]; then
        printf 'ok      %-28s %4d.%d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
    else
        [ $rc -eq 124 ] && echo "(stopped after $limit s)" >>"$WORK/$name.log"
        printf 'failed  %-28s %4d.%d s  (exit %d; %s: %s)\n' "$name" $((ms / 1000)) \
            $((ms % 1000 / 100)) $rc "$WORK/$name.log" "$(reason "$WORK/$name.log")"
        failed=1
    fi
}

# the first line of a log that says what went wrong, else its last line
reason() {
    { grep -m1 -iE "error|could not|exception|not in struct|stopped after" "$1" || tail -n 1 "$1"; } \
        | cut -c1-160
}

# sandbox NAME LIMIT OVERRIDES...: `python -m sandbox` in its own run folder, no MLflow
sandbox() {
    local name=$1 limit=$2
    shift 2
    if [ $COMPOSE_ONLY -eq 1 ]; then
        check "$name" 60 "$PY" -m sandbox "$@" tracking=none --cfg job
    else
        check "$name" "$limit" "$PY" -m sandbox "$@" tracking=none "hydra.run.dir=$WORK/$name"
    fi
}

[ $COMPOSE_ONLY -eq 1 ] || check cuda 30 "$PY" -c "import torch
assert torch.cuda.is_available(), 'no CUDA device visible to torch ' + torch.__version__
print(torch.cuda.get_device_name(0), torch.version.cuda)"

# the default experiment (probe, refine, process, the small causal LM, its evaluation)
sandbox text_trainer 180 trainer.device=cuda evaluator.device=cuda
sandbox clip_trainer 150 experiment=clip trainer.device=cuda evaluator.device=cuda

printf '%s\n' '{"text": "What is the capital of France?"}' '{"text": "Name a prime number."}' \
    '{"text": "Translate to German: good morning"}' '{"text": "What is 12 times 12?"}' \
    >"$WORK/questions.jsonl"
sandbox infer_hf 120 pipeline=infer infer=hf infer.device=cuda infer.max_new_tokens=32 \
    data_pool=jsonl "data_pool.path=$WORK/questions.jsonl"

# VBench's temporal_flickering through the evaluator and its driver (sandbox/stacks), on two
# pairs of made-up videos: still ones score near 1, noise lower
VBENCH='
import json, sys
from pathlib import Path
from omegaconf import OmegaConf
from sandbox.components import build_component
from sandbox.env import load_spec, manager
from sandbox.steps.base import StepEnv
from hydra import compose, initialize_config_dir
from sandbox.context import register_resolvers
work = Path(sys.argv[1]).resolve()
videos = work / "videos"
videos.mkdir(parents=True)
make = """import sys, cv2, numpy as np
rng = np.random.default_rng(0)
for name, moving in (("a still lake", False), ("static noise", True)):
    for i in range(2):
        w = cv2.VideoWriter(f"{sys.argv[1]}/{name}-{i}.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 48))
        base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        for f in range(16):
            w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) if moving else base)
        w.release()
"""
manager.run(load_spec("vbench"), ["python", "-c", make, str(videos)], log_path=work / "make.log")
info = work / "info.json"
info.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering"]}
                            for p in ("a still lake", "static noise")]))
register_resolvers()
with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base="1.3"):
    cfg = compose("config", overrides=["evaluator=vbench",
                                       "evaluator.each.dimension=[temporal_flickering]"])
node = OmegaConf.to_container(cfg.evaluator, resolve=True)
(work / "step").mkdir()
env = StepEnv(name="vbench", workdir=work / "step", run_dir=work, cache_dir=work / "cache", seed=42)
out = build_component(node, "evaluator", "vbench").run(env, videos=str(videos), info=str(info))
print(out["metrics"])
'
if [ $COMPOSE_ONLY -eq 1 ]; then
    sandbox vbench_temporal_flickering 0 evaluator=vbench \
        "evaluator.each.dimension=[temporal_flickering]"
elif "$PY" -m sandbox.env check vbench >/dev/null 2>&1; then
    check vbench_temporal_flickering 90 "$PY" -c "$VBENCH" "$WORK/vbench"
else
    printf 'skipped %-28s %6s    (%s)\n' vbench_temporal_flickering - \
        "$("$PY" -m sandbox.env check vbench 2>&1 | head -c 160)"
fi

exit $failed
