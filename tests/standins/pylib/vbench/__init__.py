"""Stand-in for VBench 0.1.5's Python API (see tests/standins/README.md)."""
import json
import os


class VBench:
    def __init__(self, device, full_info_dir, output_path):
        self.device, self.full_info_dir, self.output_path = device, full_info_dir, output_path
        os.makedirs(output_path, exist_ok=True)

    def evaluate(self, videos_path, name, prompt_list=[], dimension_list=None, local=False,
                 read_frame=False, mode="vbench_standard", **kwargs):
        info = json.load(open(self.full_info_dir))
        videos = sorted(os.listdir(videos_path))
        suffix = os.path.splitext(videos[0])[1]
        results = {}
        for dim in dimension_list:
            per_video = []
            for record in info:
                if dim not in record["dimension"]:
                    continue
                for i in range(5):  # vbench_standard: <prompt>-<i><suffix>, i in 0..4
                    video = f"{record['prompt_en']}-{i}{suffix}"
                    if video in videos:
                        score = 0.9 + 0.01 * (len(per_video) % 5)
                        per_video.append({"video_path": os.path.join(videos_path, video),
                                          "video_results": score})
            mean = sum(v["video_results"] for v in per_video) / len(per_video)
            results[dim] = [mean, per_video]
        if os.environ.get("STANDIN_VBENCH_SILENT_FAIL"):
            print("ProcessGroupNCCL is only supported with GPUs, no GPUs found!")
            return
        path = os.path.join(self.output_path, name + "_eval_results.json")
        json.dump(results, open(path, "w"))
        print(f"Evaluation results saved to {path}")
