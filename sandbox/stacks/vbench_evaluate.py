"""Score one VBench dimension through VBench's Python API, on CUDA when there is one, else CPU.

VBench's own `vbench evaluate` re-launches itself under torch.distributed with NCCL (so it
cannot run without a GPU) and exits 0 even when it failed; this driver runs the same evaluation
in-process and exits non-zero on any error. VBench writes ``<output>/<name>_eval_results.json``
(``{dimension: [mean, [per-video results]]}``), which the evaluator step reads.

    python vbench_evaluate.py --videos DIR --info INFO.json --output DIR --dimension D [--local]
"""
import argparse
import json
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", required=True, help="folder of <prompt>-<i>.mp4 videos")
    p.add_argument("--info", required=True, help="VBench info JSON (prompt_en, dimension)")
    p.add_argument("--output", required=True, help="folder for VBench's result files")
    p.add_argument("--dimension", required=True)
    p.add_argument("--name", default=None, help="result file prefix (default: the dimension)")
    p.add_argument("--mode", default="vbench_standard",
                   choices=["vbench_standard", "custom_input"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--local", action="store_true",
                   help="VBench's local mode: weights from $VBENCH_CACHE_DIR, fetched there first when missing")
    args = p.parse_args(argv)
    if not os.path.isdir(args.videos) or not any(
            f.lower().endswith((".mp4", ".gif")) for f in os.listdir(args.videos)):
        print(f"error: no videos in {args.videos}", file=sys.stderr)
        return 2
    import torch
    from vbench import VBench

    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    print(f"vbench: dimension {args.dimension} on {device}", flush=True)
    bench = VBench(torch.device(device), args.info, args.output)
    name = args.name or args.dimension
    bench.evaluate(videos_path=args.videos, name=name, dimension_list=[args.dimension],
                   local=args.local, mode=args.mode)
    path = os.path.join(args.output, f"{name}_eval_results.json")
    with open(path) as f:
        score = json.load(f)[args.dimension][0]
    print(f"vbench: {args.dimension} = {score}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
