#!/usr/bin/env bash
# Stand-in for EasyAnimate's patched train_lora.sh (see tests/standins/README.md).
set -euo pipefail
if [ "$#" -ne 14 ]; then echo "train_lora.sh: expected 14 arguments, got $#" >&2; exit 2; fi
meta="$4"; epochs="$9"; seed="${11}"; out="${12}"
if [ ! -f "$meta" ]; then echo "FileNotFoundError: $meta" >&2; exit 1; fi
python3 - "$@" <<'PY'
import json, sys, time
args = sys.argv[1:]
import os
video_folder, meta, epochs, out = args[2], args[3], int(args[8]), args[11]
# the patched VideoDataset (easyanimate/data/dataset_video.py): jsonl, or a JSON array
if meta.lower().endswith("jsonl"):
    records = [json.loads(line.strip()) for line in open(meta)]
else:
    records = json.load(open(meta))
assert isinstance(records, list) and records, "empty dataset"
for r in records:  # get_batch: `videos` (its first entry) and `text`; `file_path` is not read
    video_id, name = r["videos"], r["text"]
    if isinstance(video_id, list):
        video_id = video_id[0]
    video_dir = video_id
    if not os.path.exists(video_id):
        if video_folder:
            video_dir = os.path.join(video_folder, video_id)
        else:
            raise ValueError(f"{video_id} does not exist, please change it to absolute path or ser video_folder")
    if not os.path.isfile(video_dir):  # decord's VideoReader
        raise RuntimeError(f"Error opening {video_dir}: No such file or directory")
os.makedirs(out, exist_ok=True)
json.dump({"argv": args, "records": len(records)}, open(os.path.join(out, "standin_args.json"), "w"))
steps = epochs * len(records)
for step in range(1, steps + 1):
    loss = 0.5 / step
    pct = int(100 * step / steps)
    bar = "#" * (pct // 10)
    # tqdm: postfix keys sorted, numbers formatted with .3g, redrawn with \r on stderr
    sys.stderr.write(f"\rSteps: {pct:3d}%|{bar:<10}| {step}/{steps} [00:0{step}<00:00, 1.00s/it, "
                     f"lr=2e-05, step_loss={loss:.3g}]")
    sys.stderr.flush()
    time.sleep(0.15)
    if step % 2 == 0 or step == steps:
        path = os.path.join(out, f"checkpoint-{step}.safetensors")
        open(path, "wb").write(b"\0" * 16)
        print(f"saving checkpoint: {path}", flush=True)
sys.stderr.write("\n")
PY
