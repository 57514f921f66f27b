#!/usr/bin/env bash
# Stand-in for EasyAnimate's patched infer_lora.sh (see tests/standins/README.md).
set -euo pipefail
if [ "$#" -ne 11 ]; then echo "infer_lora.sh: expected 11 arguments, got $#" >&2; exit 2; fi
lora="$3"; info="$5"; n="$9"; save="${11}"
if [ ! -f "$lora" ]; then echo "FileNotFoundError: LoRA $lora" >&2; exit 1; fi
python3 - "$info" "$n" "$save" <<'PY'
import json, os, sys
info, n, save = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(save, exist_ok=True)
for record in json.load(open(info)):
    for i in range(n):
        open(os.path.join(save, f"{record['prompt_en']}-{i}.mp4"), "wb").write(b"standin video")
print(f"saved videos to {save}", flush=True)
PY
