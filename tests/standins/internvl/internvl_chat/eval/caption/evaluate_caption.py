"""Stand-in for InternVL's eval/caption/evaluate_caption.py (run by tests/standins/bin/torchrun):
loads the checkpoint folder it is given (a path that does not exist fails as from_pretrained
does), writes `<out-dir>/coco_<time>.json` and `<out-dir>/<last two path parts>.txt`, and prints
pycocoevalcap's `"%s: %0.3f"` lines."""
import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", type=str, default="")
parser.add_argument("--datasets", type=str, default="coco,flickr30k,nocaps")
parser.add_argument("--out-dir", type=str, default="results")
parser.add_argument("--dynamic", action="store_true")
args = parser.parse_args()
os.makedirs(args.out_dir, exist_ok=True)
print("datasets:", args.datasets.split(","))
if not os.path.isdir(args.checkpoint):
    raise OSError(f"Incorrect path_or_model_id: '{args.checkpoint}'. Please provide either the "
                  f"path to a local folder or the repo_id of a model on the Hub.")
scores = {"Bleu_1": 0.812, "Bleu_2": 0.655, "Bleu_3": 0.512, "Bleu_4": 0.392, "METEOR": 0.301,
          "ROUGE_L": 0.598, "CIDEr": 1.312}
print("Evaluating coco ...")
results_file = os.path.join(args.out_dir, f"coco_{time.strftime('%y%m%d%H%M%S')}.json")
json.dump([{"image_id": 1, "caption": "a cat"}], open(results_file, "w"))
for method, score in scores.items():
    print("%s: %0.3f" % (method, score))
summary = [args.checkpoint, "coco", 2.0, scores.items()]
out_path = "_".join(args.checkpoint.split("/")[-2:])
with open(os.path.join(args.out_dir, f"{out_path}.txt"), "a") as writer:
    writer.write(f"{summary}\n")
