"""Stand-in for InternVL's fine-tuning script, run by tests/standins/bin/torchrun: checks the meta
file as InternVL reads it, prints transformers' Trainer lines, writes the LoRA adapter."""
import json
import os
import sys

args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
meta = json.load(open(opts["--meta_path"]))
for name, entry in meta.items():  # InternVL asserts the annotation is jsonl
    assert entry["annotation"].endswith(".jsonl"), entry
gpus = int(os.environ["WORLD_SIZE"])
assert 512 % (gpus * int(opts["--per_device_train_batch_size"])) == 0, "global batch 512"
out = opts["--output_dir"]
os.makedirs(out, exist_ok=True)
print(f"run_name={out},", flush=True)
for step in range(1, 4):
    print({"loss": round(2.0 / step, 4), "grad_norm": 1.5, "learning_rate": 4e-05 * step / 3,
           "epoch": round(step / 3, 2)}, flush=True)
json.dump({**opts, "WORLD_SIZE": str(gpus)}, open(os.path.join(out, "standin_args.json"), "w"))
open(os.path.join(out, "adapter_model.safetensors"), "wb").write(b"\0")
