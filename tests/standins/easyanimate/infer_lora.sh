#!/usr/bin/env bash
# Stand-in for EasyAnimate's patched infer_lora.sh (see tests/standins/README.md). Like the real
# script, it starts one infer_lora.py per GPU in the background and ends in a bare `wait`, so it
# exits 0 even when a generation process crashed. STANDIN_EASYANIMATE_CRASH_AT=K makes each
# process die (CUDA out of memory) before writing its K-th video.
set -uo pipefail
if [ "$#" -ne 11 ]; then echo "infer_lora.sh: expected 11 arguments, got $#" >&2; exit 2; fi
lora="$3"; info="$5"; gpus="$6"; n="$9"; save="${11}"
if [ ! -f "$lora" ]; then echo "FileNotFoundError: LoRA $lora" >&2; exit 1; fi
for (( i = 0; i < gpus; i++ )); do
{
python3 - "$info" "$n" "$save" "$gpus" "$i" <<'PY'
import json, os, sys
info, n, save, chunks, chunk = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
crash_at = int(os.environ.get("STANDIN_EASYANIMATE_CRASH_AT", "-1"))
records = json.load(open(info))
size = (len(records) - 1) // chunks + 1  # infer_lora.py's get_chunk
prompts = [r["prompt_en"] for r in records[chunk * size:(chunk + 1) * size]]
os.makedirs(save, exist_ok=True)
written = 0
for i in range(n):  # infer_lora.py: every index of a batch of prompts, then the next index
    for prompt in prompts:
        if written == crash_at:
            sys.stderr.write("Traceback (most recent call last):\n  File \"infer_lora.py\", line 252, "
                             "in main\ntorch.OutOfMemoryError: CUDA out of memory.\n")
            sys.exit(1)
        open(os.path.join(save, f"{prompt}-{i}.mp4"), "wb").write(b"standin video")
        written += 1
PY
} &
done

wait
