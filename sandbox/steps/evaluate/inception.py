"""``evaluator=inception`` (and ``data_evaluator=inception``): FID, KID, IS and precision/recall
of images, FVD, KVD, IS and precision/recall of videos, under Data-Juicer's metric names, between
generated media and reference media.

It does what Data-Juicer's ``video_inception_evaluator`` (``tools/mm_eval/inception_metrics``,
StyleGAN-V's metric code) does, metric by metric:

========================  ==========  ==============================================  ==========
metric                    network     items                                           reported
========================  ==========  ==============================================  ==========
fid50k                    inception   frames/images, at most 50000 per set; a video's fid50k
                                      frames weigh 1/its frame count
kid50k                    inception   as fid50k, unweighted; 100 subsets of <= 1000   kid50k
                                      (x 1000, as Data-Juicer reports it)             (_std)
is50k                     inception   generated frames/images; 10 splits              _mean, _std
pr50k_3n                  vgg16       frames/images; 3rd nearest neighbour            _precision,
                                                                                      _recall
fvd2048_16f               i3d         2048 clips of 16 consecutive frames per set     fvd2048_16f
fvd2048_128f              i3d         2048 clips of 128 consecutive frames            fvd2048_128f
fvd2048_128f_subsample8f  i3d         2048 clips of 16 frames 8 apart (128 frames)    (same name)
kvd2048_16f               i3d         as fvd2048_16f; 100 subsets of <= 1000          kvd2048_16f
isv2048_ucf               c3d_ucf101  2048 generated clips of 16 frames; 10 splits    _mean, _std
prv2048_3n_16f            i3d         as fvd2048_16f; 3rd nearest neighbour           _precision,
                                                                                      _recall
========================  ==========  ==============================================  ==========

The statistics are in ``inception_math``, the networks and the frame sampling in
``inception_nets`` (which says what each network is fed); the weights are assets
(``sandbox.assets.networks``), resolved before any media is read: offline and missing, the step
refuses at once, naming the files. Data-Juicer's ``num_runs`` repeats every metric with the next
seeds and adds ``_runNN``, ``_mean`` and ``_std`` as it does.

Differences from Data-Juicer, on purpose: fid50k uses all 2048 pool features (Data-Juicer's copy
folds them into 512 columns before the covariance, so its values are not the FID published
elsewhere); images (not only video frames) are accepted; the draws of frames and clips come from
the run's seed (one stream per side), not torch's global generator.

Intervals: precision and recall carry 95% bootstrap intervals over the probed samples
(``NAME_ci_low``/``_ci_high``, ``bootstrap`` resamples); KID/KVD carry the standard deviation over
their subsets (``_std``) and IS its standard deviation over splits, as published implementations
report them. FID/FVD get a bootstrap interval when ``frechet_bootstrap`` > 0 (both sets resampled;
each resample costs a matrix square root).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.assets.networks import check_networks
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.evaluate import inception_math as M
from sandbox.steps.evaluate import inception_nets as N
from sandbox.steps.evaluate.common import as_list, ci_metrics, read_rows
from sandbox.threads import parse_threads, torch_threads
from sandbox.console import console
from sandbox.utils import atomic_path, atomic_write_json, atomic_write_text

POOL_EXTS = (".jsonl", ".json", ".parquet", ".csv")
FEATURES_VERSION = 1  # part of the feature cache's key: bump when features change meaning


@dataclass(frozen=True)
class MetricSpec:
    network: str
    items: str  # "frames" (images and every video frame) | "clips"
    stat: str  # fid | kid | is | pr
    max_items: int
    num_frames: int = 1
    spacing: int = 1
    needs_reference: bool = True
    kid_scale: float = 1.0


# Data-Juicer's metric_main.py, one entry per registered metric
METRICS: dict[str, MetricSpec] = {
    "fid50k": MetricSpec("inception", "frames", "fid", 50000),
    "kid50k": MetricSpec("inception", "frames", "kid", 50000, kid_scale=1000.0),
    "is50k": MetricSpec("inception", "frames", "is", 50000, needs_reference=False),
    "pr50k_3n": MetricSpec("vgg16", "frames", "pr", 50000),
    "fvd2048_16f": MetricSpec("i3d", "clips", "fid", 2048, num_frames=16),
    "fvd2048_128f": MetricSpec("i3d", "clips", "fid", 2048, num_frames=128),
    "fvd2048_128f_subsample8f": MetricSpec("i3d", "clips", "fid", 2048, num_frames=16,
                                           spacing=8),
    "kvd2048_16f": MetricSpec("i3d", "clips", "kid", 2048, num_frames=16),
    "isv2048_ucf": MetricSpec("c3d_ucf101", "clips", "is", 2048, num_frames=16,
                              needs_reference=False),
    "prv2048_3n_16f": MetricSpec("i3d", "clips", "pr", 2048, num_frames=16),
}
IMAGE_METRICS = ("fid50k", "kid50k", "is50k")
VIDEO_METRICS = ("fvd2048_16f", "kvd2048_16f")
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS, PR_NHOOD = 100, 1000, 10, 3


@dataclass
class MediaSet:
    """One side's media: image paths and video paths (absolute), and where they came from."""
    name: str
    images: list[str]
    videos: list[str]
    sources: list[str]

    @property
    def count(self) -> int:
        return len(self.images) + len(self.videos)


class InceptionEvaluator(Step):
    """Generated media against reference media with Data-Juicer's inception metrics.

    * ``generated_path`` / ``reference_path``: a folder of images/videos, a media file, a pool
      (jsonl/json/parquet/csv whose ``image_key``/``video_key`` columns list paths) or a list of
      those. Wired inputs take their place when these are null: ``videos`` (a generation step's
      output folder) or ``dataset`` for the generated side, ``source_dataset`` for the
      reference side (``data_evaluator=inception``: the processed pool against its source).
    * ``generated_media_dir`` / ``reference_media_dir``: what relative paths in a pool are
      relative to (Data-Juicer's ``fake_mm_dir``/``real_mm_dir``); null: the pool's folder.
    * ``metrics``: names from ``METRICS``, or ``auto`` (fid50k, kid50k, is50k, and fvd2048_16f,
      kvd2048_16f when both sides hold videos).
    * ``height``, ``width``: frames are resized to this first (Data-Juicer: 240 x 320).
    * ``max_frames``, ``num_clips``: override the 50000 frames / 2048 clips per set of the
      metric names (null: the names' own numbers).
    * ``<network>_path``: an explicit weights file per network (``inception_path``,
      ``i3d_path``, ``c3d_ucf101_path``, ``vgg16_path``); null: found or fetched as assets.
    * ``device``: auto | cpu | cuda; ``batch_size``: frames per forward pass; ``clip_batch_size``:
      clips per pass (null: 64 // frames per clip, as Data-Juicer); ``num_threads``.
    * ``num_runs``, ``seed``: repeats with seeds ``seed``, ``seed + 1``, ... (Data-Juicer's).
    * ``bootstrap``: resamples for precision/recall intervals; ``frechet_bootstrap``: for
      FID/FVD (0: none).
    * ``cache``: keep each side's features in ``<cache>/inception`` (keyed by the media files'
      paths, sizes and times, the network file and every setting that changes them), so that a
      reference set is featurised once across runs; ``replace_cache``: compute them again.
    * ``result_path``: also append the metrics as one JSON line to this file (Data-Juicer's
      ``result_path``); ``verbose``: say on the console how long each feature set took.
    """

    outputs = ("metrics", "report")
    reads = ("generated_path", "reference_path", "inception_path", "i3d_path",
             "c3d_ucf101_path", "vgg16_path")

    def __init__(self, generated_path: Any = None, reference_path: Any = None,
                 generated_media_dir: str | None = None, reference_media_dir: str | None = None,
                 metrics: Any = "auto", image_key: str = "images", video_key: str = "videos",
                 height: int = 240, width: int = 320, max_frames: int | None = None,
                 num_clips: int | None = None, inception_path: str | None = None,
                 i3d_path: str | None = None, c3d_ucf101_path: str | None = None,
                 vgg16_path: str | None = None, device: str = "auto", batch_size: int = 32,
                 clip_batch_size: int | None = None, num_threads: int | str = "auto",
                 num_runs: int = 1, seed: int = 42, bootstrap: int = 1000,
                 frechet_bootstrap: int = 0, cache: bool = True, replace_cache: bool = False,
                 result_path: str | None = None, verbose: bool = False):
        self.generated_path, self.reference_path = generated_path, reference_path
        self.media_dirs = {"generated": generated_media_dir, "reference": reference_media_dir}
        self.metrics = self._parse_metrics(metrics)
        self.image_key, self.video_key = image_key, video_key
        self.height, self.width = int(height), int(width)
        for key, v in (("height", self.height), ("width", self.width),
                       ("batch_size", int(batch_size)), ("num_runs", int(num_runs))):
            if v < 1:
                raise ConfigError(f"evaluator.{key}={v}: must be at least 1.")
        self.max_frames = None if max_frames is None else int(max_frames)
        self.num_clips = None if num_clips is None else int(num_clips)
        self.paths = {"inception": inception_path, "i3d": i3d_path,
                      "c3d_ucf101": c3d_ucf101_path, "vgg16": vgg16_path}
        self.device, self.batch_size = device, int(batch_size)
        self.clip_batch_size = None if clip_batch_size is None else int(clip_batch_size)
        self.num_threads = parse_threads(num_threads, "evaluator.num_threads")
        self.num_runs, self.seed = int(num_runs), int(seed)
        self.bootstrap, self.frechet_bootstrap = int(bootstrap), int(frechet_bootstrap)
        self.cache, self.replace_cache = bool(cache), bool(replace_cache)
        self.result_path, self.verbose = result_path, bool(verbose)

    @staticmethod
    def _parse_metrics(metrics) -> list[str] | None:
        if isinstance(metrics, str) and metrics.strip().lower() == "auto":
            return None
        names = [metrics] if isinstance(metrics, str) else list(metrics or [])
        unknown = [m for m in names if m not in METRICS]
        if unknown or not names:
            raise ConfigError(f"evaluator.metrics={metrics!r}: {', '.join(unknown) or 'empty'} "
                              f"unknown; use auto or a list of Data-Juicer's names: "
                              f"{', '.join(METRICS)}.")
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------------- inputs
    def run(self, env: StepEnv, videos: Any = None, dataset: Any = None,
            source_dataset: Any = None, model_dir: Any = None, info: Any = None,
            **unknown) -> dict[str, Any]:
        if unknown:
            raise ConfigError(f"evaluator=inception takes the inputs videos, dataset and "
                              f"source_dataset, not {', '.join(sorted(unknown))}.")
        generated = self.generated_path if self.generated_path is not None else \
            (videos if videos is not None else dataset)
        reference = self.reference_path if self.reference_path is not None else source_dataset
        if generated is None:
            hint = (" A trained model's folder is not media: wire a generation step's output "
                    "(inputs: {videos: ...}) or set evaluator.generated_path."
                    if model_dir is not None else "")
            raise ConfigError(f"evaluator=inception: no generated media; set "
                              f"evaluator.generated_path (a folder, media files or a pool)."
                              f"{hint}")
        with torch_threads(self.num_threads, "evaluator.num_threads"):
            return self._run(env, generated, reference)

    def _run(self, env: StepEnv, generated: Any, reference: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        device = N.pick_device(self.device)
        metrics = self.metrics
        if metrics is not None:  # the weights first: an offline machine refuses before any work
            self._check_reference(metrics, reference)
            nets = check_networks({n: self.paths[n] for n in self._networks(metrics)})
        gen = self.media_set("generated", generated)
        ref = self.media_set("reference", reference) if reference is not None else None
        if metrics is None:
            both_videos = gen.videos and ref is not None and ref.videos
            metrics = [m for m in IMAGE_METRICS if ref is not None or
                       not METRICS[m].needs_reference] + (list(VIDEO_METRICS) if both_videos
                                                          else [])
            nets = check_networks({n: self.paths[n] for n in self._networks(metrics)})
        loaded = {key: (N.fid_inception(r.path, device) if key == "inception" else
                        N.torchscript_network(r.path, device)) for key, r in nets.items()}
        results: list[dict[str, float]] = []
        timings: dict[str, float] = {}
        counts: dict[str, int] = {}  # items featurised per side and kind (frames, clips)
        self._disk = (Path(env.cache_dir) / "inception") if self.cache else None
        self._fingerprints = {k: r.fingerprint() for k, r in nets.items()}
        for run_i in range(self.num_runs):
            cache: dict = {}
            out: dict[str, float] = {}
            for name in metrics:
                out.update(self._metric(name, gen, ref, loaded, device, self.seed + run_i,
                                        cache, timings, counts))
            results.append(out)
        final = results[0] if self.num_runs == 1 else _runs(results)
        final["inception_generated_media"] = float(gen.count)
        if ref is not None:
            final["inception_reference_media"] = float(ref.count)
        final["eval_seconds"] = time.perf_counter() - t0
        report = {"metrics": final, "metric_names": metrics, "device": device,
                  "networks": {k: {"path": str(r.path), "origin": r.origin}
                               for k, r in nets.items()},
                  "generated": gen.sources, "reference": ref.sources if ref else None,
                  "feature_seconds": timings, "feature_items": counts,
                  "params": {"height": self.height, "width": self.width, "seed": self.seed,
                             "num_runs": self.num_runs, "max_frames": self.max_frames,
                             "num_clips": self.num_clips}}
        path = atomic_write_json(Path(env.workdir) / "inception_report.json", report)
        if self.result_path:
            _append_line(Path(self.result_path), {"results": final, "metric": metrics,
                                                  "num_runs": self.num_runs,
                                                  "real_data_path": ref.sources if ref else None,
                                                  "fake_data_path": gen.sources})
        return {"metrics": final, "report": str(path)}

    def _check_reference(self, metrics: list[str], reference: Any) -> None:
        need = [m for m in metrics if METRICS[m].needs_reference]
        if need and reference is None:
            raise ConfigError(f"evaluator=inception: {', '.join(need)} compare with reference "
                              f"media; set evaluator.reference_path (Data-Juicer's "
                              f"real_data_path), or ask only for is50k / isv2048_ucf.")

    @staticmethod
    def _networks(metrics: list[str]) -> list[str]:
        return list(dict.fromkeys(METRICS[m].network for m in metrics))

    def media_set(self, name: str, value: Any) -> MediaSet:
        images, videos, sources = [], [], []
        for entry in as_list(value):
            p = Path(entry).expanduser()
            sources.append(str(p))
            if p.is_dir():
                for f in sorted(x for x in p.rglob("*") if x.is_file()):
                    ext = f.suffix.lower()
                    if ext in N.IMAGE_EXTS:
                        images.append(str(f))
                    elif ext in N.VIDEO_EXTS:
                        videos.append(str(f))
            elif not p.is_file():
                raise DataError(f"evaluator=inception: {name} media {p} does not exist; check "
                                f"evaluator.{name}_path.")
            elif p.suffix.lower() in POOL_EXTS:
                self._pool_media(name, p, images, videos)
            elif N.media_kind(str(p)) == "image":
                images.append(str(p))
            else:
                videos.append(str(p))
        if not images and not videos:
            raise DataError(f"evaluator=inception: no images or videos in the {name} media "
                            f"({', '.join(sources)}); folders are searched for "
                            f"{', '.join(N.IMAGE_EXTS + N.VIDEO_EXTS)}, pools read their "
                            f"`{self.image_key}` and `{self.video_key}` columns.")
        missing = [f for f in images + videos if not os.path.isfile(f)]
        if missing:
            raise DataError(f"evaluator=inception: {len(missing)} {name} media file(s) do not "
                            f"exist, e.g. {missing[0]}; relative paths in a pool are relative "
                            f"to evaluator.{name}_media_dir, else to the pool's folder.")
        return MediaSet(name, images, videos, sources)

    def _pool_media(self, name: str, pool: Path, images: list, videos: list) -> None:
        base = self.media_dirs[name] or str(pool.parent)
        for row in read_rows(str(pool)):
            for key, into in ((self.image_key, images), (self.video_key, videos)):
                value = row.get(key)
                for p in ([value] if isinstance(value, str) else list(value or [])):
                    if p:
                        into.append(p if os.path.isabs(p) else os.path.join(base, p))

    # ------------------------------------------------------------------------- features
    def _metric(self, name: str, gen: MediaSet, ref: MediaSet | None, nets: dict, device: str,
                seed: int, cache: dict, timings: dict, counts: dict) -> dict[str, float]:
        spec = METRICS[name]

        def feats(side: MediaSet):
            key = (side.name, spec.network, spec.items, spec.num_frames, spec.spacing)
            if key not in cache:
                t = time.perf_counter()
                stored = self._stored(side, spec, seed)
                if stored is not None and not self.replace_cache and stored.is_file():
                    cache[key] = Features.load(stored)
                else:
                    if spec.items == "frames":
                        cache[key] = self._frame_features(side, spec, nets[spec.network],
                                                          device, seed)
                    else:
                        cache[key] = self._clip_features(side, spec, name, nets[spec.network],
                                                         device, seed)
                    if stored is not None:
                        cache[key].save(stored)
                label = f"{side.name}/{spec.network}/{spec.items}" + (
                    f"/{spec.num_frames}x{spec.spacing}" if spec.items == "clips" else "")
                timings[label] = time.perf_counter() - t
                counts[label] = len(cache[key].features)
                if self.verbose:
                    console.print(f"inception: {label}: {len(cache[key].features)} items in "
                                  f"{timings[label]:.1f} s", soft_wrap=True)
            return cache[key]

        g = feats(gen)
        if spec.stat == "is":
            probs = g.probs if spec.network == "inception" else g.features
            # StyleGAN-V shuffles video class probabilities before splitting; images are
            # already in a random order
            mean, std = M.inception_score(probs, IS_SPLITS,
                                          shuffle_seed=42 if spec.items == "clips" else None)
            return {f"{name}_mean": mean, f"{name}_std": std}
        r = feats(ref)
        if spec.stat == "fid":
            out = {name: M.frechet_distance(*M.mean_cov(g.features, g.weights),
                                            *M.mean_cov(r.features, r.weights))}
            out.update(self._frechet_interval(name, g, r, seed))
            return out
        if spec.stat == "kid":
            kid, subsets = M.kernel_distance(r.features, g.features, KID_SUBSETS,
                                             KID_SUBSET_SIZE, seed=seed, return_subsets=True)
            return {name: kid * spec.kid_scale, f"{name}_std": float(subsets.std()) *
                    spec.kid_scale}
        p_hits, r_hits = M.precision_recall(r.features, g.features, PR_NHOOD)
        out = {f"{name}_precision": float(p_hits.mean()), f"{name}_recall": float(r_hits.mean())}
        out.update(ci_metrics(f"{name}_precision", np.mean, (p_hits,), self.bootstrap, seed))
        out.update(ci_metrics(f"{name}_recall", np.mean, (r_hits,), self.bootstrap, seed))
        return out

    def _stored(self, side: MediaSet, spec: MetricSpec, seed: int) -> Path | None:
        """The feature file of ``side`` under these settings in the disk cache (None: off)."""
        if self._disk is None:
            return None
        files = []
        for f in side.images + side.videos:
            st = os.stat(f)
            files.append((f, st.st_size, st.st_mtime_ns))
        limit = (self.max_frames if spec.items == "frames" else self.num_clips) or spec.max_items
        key = json.dumps([FEATURES_VERSION, side.name, files, self._fingerprints[spec.network],
                          spec.network, spec.items, spec.num_frames, spec.spacing, limit,
                          self.height, self.width, seed])
        return self._disk / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"

    def _frechet_interval(self, name: str, g, r, seed: int) -> dict[str, float]:
        if self.frechet_bootstrap <= 0:
            return {}
        rng = np.random.default_rng(seed)
        values = []
        for _ in range(self.frechet_bootstrap):
            gi = rng.integers(0, len(g.features), len(g.features))
            ri = rng.integers(0, len(r.features), len(r.features))
            values.append(M.frechet_distance(
                *M.mean_cov(g.features[gi], None if g.weights is None else g.weights[gi]),
                *M.mean_cov(r.features[ri], None if r.weights is None else r.weights[ri])))
        lo, hi = np.quantile(values, [0.025, 0.975])
        return {f"{name}_ci_low": float(lo), f"{name}_ci_high": float(hi)}

    def _frame_features(self, side: MediaSet, spec: MetricSpec, net, device: str,
                        seed: int) -> "Features":
        """Every image and every video frame (at most ``max_items``, a seeded random choice, in
        random order as Data-Juicer's ``randperm``), a video's frames weighing 1 / its frame
        count."""
        items: list[tuple[str, int | None]] = [(p, None) for p in side.images]
        weights: list[float] = [1.0] * len(side.images)
        for v in side.videos:
            n = N.video_frame_count(v)
            items += [(v, i) for i in range(n)]
            weights += [1.0 / n] * n
        limit = self.max_frames or spec.max_items
        order = side_rng(seed, side).permutation(len(items))[:limit]
        chosen = sorted(order.tolist())  # decode each video once, in frame order
        by_video: dict[str, list[int]] = {}
        for k in chosen:
            path, idx = items[k]
            if idx is not None:
                by_video.setdefault(path, []).append(idx)

        def frames():
            decoded: dict[str, dict[int, np.ndarray]] = {}
            for k in chosen:
                path, idx = items[k]
                if idx is None:
                    yield N.resize_frame(N.read_image(path), self.height, self.width)
                    continue
                if path not in decoded:
                    decoded.clear()  # one video's frames in memory at a time
                    decoded[path] = N.read_video_frames(path, by_video[path], self.height,
                                                        self.width)
                if idx not in decoded[path]:
                    raise DataError(f"evaluator=inception: {path}: frame {idx} could not be "
                                    f"decoded (the header counts more frames than the stream "
                                    f"holds).")
                yield decoded[path][idx]

        feats, probs = self._run_frames(frames(), len(chosen), spec.network, net, device)
        # back to the random order: IS splits consecutive rows, which must not be one video's
        row = {k: i for i, k in enumerate(chosen)}
        back = np.asarray([row[k] for k in order.tolist()], dtype=np.int64)
        w = np.asarray([weights[k] for k in order.tolist()], dtype=np.float64)
        return Features(feats[back], None if probs is None else probs[back], w)

    def _run_frames(self, frames, total: int, network: str, net, device: str):
        import torch

        outs, logits = [], []
        batch: list[np.ndarray] = []

        def flush():
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous().to(device)
            with torch.no_grad():
                if network == "inception":
                    pool, logit = net(x)
                    logits.append(logit.double().cpu().numpy())
                else:
                    pool = net(x, return_features=True)
            outs.append(pool.double().cpu().numpy())
            batch.clear()

        for frame in frames:
            batch.append(frame)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        feats = np.concatenate(outs)
        probs = M.softmax(np.concatenate(logits)) if logits else None
        return feats, probs

    def _clip_features(self, side: MediaSet, spec: MetricSpec, name: str, net, device: str,
                       seed: int) -> "Features":
        import torch

        if not side.videos:
            raise DataError(f"evaluator=inception: {name} needs videos, and the {side.name} "
                            f"media ({', '.join(side.sources)}) hold none.")
        counts = [N.video_frame_count(v) for v in side.videos]
        try:
            starts = N.clip_starts(counts, self.num_clips or spec.max_items, spec.num_frames,
                                   spec.spacing, side_rng(seed, side))
        except DataError as e:
            raise DataError(f"evaluator=inception: {name} on the {side.name} media: {e}.") \
                from None
        span = range(0, (spec.num_frames - 1) * spec.spacing + 1, spec.spacing)
        per_video: dict[int, list[int]] = {}
        for k, (v, s) in enumerate(starts):
            per_video.setdefault(v, []).append(k)
        size = self.clip_batch_size or max(1, 64 // spec.num_frames)
        kwargs = ({"rescale": True, "resize": True, "return_features": True}
                  if spec.network == "i3d" else {})
        rows: dict[int, np.ndarray] = {}
        batch: list[tuple[int, np.ndarray]] = []

        def flush():
            x = torch.from_numpy(np.stack([c for _, c in batch])).to(device)
            with torch.no_grad():
                out = net(x, **kwargs).double().cpu().numpy().reshape(len(batch), -1)
            for (k, _), row in zip(batch, out):
                rows[k] = row
            batch.clear()

        for v, ks in per_video.items():
            wanted = {starts[k][1] + o for k in ks for o in span}
            frames = N.read_video_frames(side.videos[v], wanted, self.height, self.width)
            for k in ks:
                s = starts[k][1]
                try:
                    clip = np.stack([frames[s + o] for o in span])  # T, H, W, C
                except KeyError:
                    raise DataError(f"evaluator=inception: {side.videos[v]}: fewer frames "
                                    f"decoded than its header counts ({counts[v]}).") from None
                batch.append((k, np.ascontiguousarray(clip.transpose(3, 0, 1, 2))))
                if len(batch) == size:
                    flush()
        if batch:
            flush()
        feats = np.stack([rows[k] for k in range(len(starts))])
        return Features(feats, None, None)


def side_rng(seed: int, side: MediaSet) -> np.random.Generator:
    """The draws of one side: its own stream of the run's seed, so that the two sides never
    take the same frames or clips in lockstep (Data-Juicer draws both from one stream)."""
    return np.random.default_rng([seed, 0 if side.name == "reference" else 1])


@dataclass
class Features:
    features: np.ndarray
    probs: np.ndarray | None
    weights: np.ndarray | None

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in (("features", self.features), ("probs", self.probs),
                                    ("weights", self.weights)) if v is not None}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> "Features":
        with np.load(path) as z:
            return cls(z["features"], z["probs"] if "probs" in z else None,
                       z["weights"] if "weights" in z else None)


def _append_line(path: Path, record: dict) -> None:
    """Data-Juicer's result file: one JSON line per evaluation, appended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(record) + "\n")


def _runs(results: list[dict[str, float]]) -> dict[str, float]:
    """Data-Juicer's ``num_runs`` > 1: every value per run (``NAME_runNN``) and their mean and
    standard deviation (``NAME_mean``, ``NAME_std``)."""
    out: dict[str, float] = {}
    for i, r in enumerate(results):
        out.update({f"{k}_run{i + 1:02d}": v for k, v in r.items()})
    for k in results[0]:
        values = [r[k] for r in results if k in r and not math.isnan(r[k])]
        out[f"{k}_mean"] = float(np.mean(values))
        out[f"{k}_std"] = float(np.std(values))
    return out
