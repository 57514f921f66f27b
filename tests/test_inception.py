"""evaluator=inception: its statistics against clean-fid's and torch-fidelity's own functions,
its networks on random weights, frame sampling, the weights as assets, and the step end to end
with stand-in networks."""
from __future__ import annotations

import ast
import math
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sandbox import env_vars
from sandbox.assets import networks as NW
from sandbox.assets import sources
from sandbox.assets.resolve import AssetMissing
from sandbox.cache import cache_root
from sandbox.data.wheels import Wheel, WheelFetchError, fetch_wheel
from sandbox.errors import ConfigError, DataError
from sandbox.steps.base import StepEnv
from sandbox.steps.evaluate import inception_math as M
from sandbox.steps.evaluate import inception_nets as N
from sandbox.steps.evaluate.inception import METRICS, InceptionEvaluator

# The reference implementations, read from their published wheels: both packages import
# torchvision at import time (cleanfid.utils, torch_fidelity.utils), which this CPU torch cannot
# have beside it, so their pure functions are taken from the source and run alone.
CLEAN_FID = Wheel(name="clean-fid", version="0.1.35", filename="clean_fid-0.1.35-py3-none-any.whl",
                  sha256="757cf49d75debe9b07ab14955fe59c845a296deaf0616153b40c5e75b3cf87fb",
                  license="MIT")
TORCH_FIDELITY = Wheel(name="torch-fidelity", version="0.4.0",
                       filename="torch_fidelity-0.4.0-py3-none-any.whl",
                       sha256="99f4c610ea16972628eceb26afb0008e528da2d44123db947b408750efbd35d4",
                       license="Apache-2.0")


def reference_functions(wheel: Wheel, member: str, names: tuple[str, ...]) -> dict:
    """The functions ``names`` of module file ``member`` of ``wheel``, defined from its source
    with numpy, scipy.linalg and torch in scope (nothing else of the package is imported)."""
    try:
        path = fetch_wheel(wheel)
    except WheelFetchError as e:
        pytest.skip(f"reference wheel not available offline: {e}")
    with zipfile.ZipFile(path) as z:
        tree = ast.parse(z.read(member).decode("utf-8"))
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {d.name for d in defs} == set(names), f"{member} has no {names}"
    import torch
    from scipy import linalg

    scope = {"np": np, "linalg": linalg, "torch": torch}
    exec(compile(ast.Module(body=defs, type_ignores=[]), member, "exec"), scope)
    return {n: scope[n] for n in names}


@pytest.fixture(scope="module")
def cleanfid():
    return reference_functions(CLEAN_FID, "cleanfid/fid.py", ("frechet_distance",
                                                                "kernel_distance"))


@pytest.fixture(scope="module")
def fidelity():
    isc = reference_functions(TORCH_FIDELITY, "torch_fidelity/metric_isc.py",
                              ("isc_features_to_metric",))
    prc = reference_functions(TORCH_FIDELITY, "torch_fidelity/metric_prc.py",
                              ("calc_cdist_part", "calculate_precision_recall_part"))
    # calculate_precision_recall_part looks calc_cdist_part up in its own globals
    prc["calculate_precision_recall_part"].__globals__["calc_cdist_part"] = prc["calc_cdist_part"]
    isc["isc_features_to_metric"].__globals__.update(KEY_METRIC_ISC_MEAN="mean",
                                                     KEY_METRIC_ISC_STD="std")
    return {**isc, **prc}


def features(seed: int, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, size=(n, d)) @ rng.normal(0, 0.3, size=(d, d)) + shift


# ----------------------------------------------------------------------------- the maths
@pytest.mark.parametrize("n,d", [(300, 16), (40, 64)])  # 40 < 64: the singular, offset path
def test_frechet_distance_matches_clean_fid(cleanfid, n, d):
    a, b = features(1, n, d), features(2, n + 7, d, shift=0.4)
    mu1, s1 = M.mean_cov(a)
    mu2, s2 = M.mean_cov(b)
    ours = M.frechet_distance(mu1, s1, mu2, s2)
    ref = cleanfid["frechet_distance"](mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, abs=1e-6, rel=1e-9)
    assert ours > 0
    # a set against itself: 0 up to the square root's precision (worse when singular)
    assert abs(M.frechet_distance(mu1, s1, mu1, s1)) < 1e-4


def test_mean_cov_is_stylegans_weighted_statistics():
    x = features(3, 50, 5)
    w = np.random.default_rng(0).uniform(0.1, 1.0, 50)
    mu, cov = M.mean_cov(x, w)
    # StyleGAN's FeatureStats: raw sums of w*x and x^T (w*x), divided by the total weight
    raw_mean, raw_cov = (x * w[:, None]).sum(0), x.T @ (x * w[:, None])
    assert np.allclose(mu, raw_mean / w.sum())
    assert np.allclose(cov, raw_cov / w.sum() - np.outer(mu, mu))
    mu1, cov1 = M.mean_cov(x)
    assert np.allclose(cov1, np.cov(x, rowvar=False, bias=True))


@pytest.mark.parametrize("num_subsets,max_subset", [(10, 1000), (7, 30)])
def test_kernel_distance_matches_clean_fid(cleanfid, num_subsets, max_subset):
    a, b = features(4, 120, 32), features(5, 90, 32, shift=0.3)
    np.random.seed(123)  # clean-fid draws its subsets from numpy's global generator
    ref = cleanfid["kernel_distance"](a, b, num_subsets=num_subsets, max_subset_size=max_subset)
    ours, per_subset = M.kernel_distance(a, b, num_subsets, max_subset, seed=123,
                                         return_subsets=True)
    assert ours == pytest.approx(ref, abs=1e-6, rel=1e-9)
    assert len(per_subset) == num_subsets and per_subset.mean() == pytest.approx(ours)
    assert ours > M.kernel_distance(a, features(6, 120, 32), num_subsets, max_subset, seed=1)


@pytest.mark.parametrize("splits", [10, 3])
def test_inception_score_matches_torch_fidelity(fidelity, splits):
    import torch

    logits = np.random.default_rng(7).normal(0, 3, size=(200, 50))
    ref = fidelity["isc_features_to_metric"](torch.as_tensor(logits), splits=splits,
                                             shuffle=False)
    mean, std = M.inception_score(M.softmax(logits), splits)
    assert mean == pytest.approx(ref["mean"], abs=1e-6)
    assert std == pytest.approx(ref["std"], abs=1e-6)
    # shuffled with a seed: torch-fidelity's RandomState permutation, as StyleGAN-V's video IS
    ref = fidelity["isc_features_to_metric"](torch.as_tensor(logits), splits=splits,
                                             shuffle=True, rng_seed=42)
    assert M.inception_score(M.softmax(logits), splits, shuffle_seed=42)[0] == \
        pytest.approx(ref["mean"], abs=1e-6)
    # one class everywhere: IS 1; uniform over k distinct classes: IS k
    assert M.inception_score(np.eye(50)[np.zeros(100, int)], 2)[0] == pytest.approx(1.0)
    assert M.inception_score(np.eye(50)[np.arange(100) % 5], 2)[0] == pytest.approx(5.0)


def test_precision_recall_matches_torch_fidelity(fidelity):
    import torch

    real, gen = features(8, 150, 8), features(9, 120, 8, shift=0.8)
    p_ref, r_ref = fidelity["calculate_precision_recall_part"](
        torch.as_tensor(gen, dtype=torch.float32), torch.as_tensor(real, dtype=torch.float32),
        neighborhood=3, batch_size=64)
    p_hits, r_hits = M.precision_recall(real, gen, nhood_size=3, batch=50)
    assert (len(p_hits), len(r_hits)) == (120, 150)
    assert p_hits.mean() == pytest.approx(p_ref, abs=1e-6)
    assert r_hits.mean() == pytest.approx(r_ref, abs=1e-6)
    same_p, same_r = M.precision_recall(real, real)
    assert same_p.mean() == 1.0 and same_r.mean() == 1.0


# ----------------------------------------------------------------------------- the networks
@pytest.fixture(scope="module")
def inception_net():
    import torch

    torch.manual_seed(0)
    return N.fid_inception(None)


def test_fid_inception_has_the_real_architecture(inception_net, tmp_path):
    import torch

    # torchvision's inception_v3(aux_logits=False) with the FID graph's 1008 classes
    assert sum(p.numel() for p in inception_net.parameters()) == 23_850_960
    assert tuple(inception_net.fc.weight.shape) == (1008, 2048)
    x = torch.randint(0, 256, (1, 3, 60, 80), dtype=torch.uint8)
    with torch.no_grad():
        pool, logits = inception_net(x)
    assert pool.shape == (1, 2048) and logits.shape == (1, 1008)
    # the IS logits leave the classifier's bias out (StyleGAN's no_output_bias)
    assert torch.allclose(logits, pool @ inception_net.fc.weight.T)
    # 0..255 in, 299 x 299 bilinear (align_corners=False), [-1, 1] out, as pytorch-fid
    pre = inception_net.preprocess(x)
    ref = torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear",
                                          align_corners=False) * 2 - 1
    assert pre.shape == (1, 3, 299, 299) and torch.allclose(pre, ref)
    # pytorch-fid's state dict (torchvision's names, no num_batches_tracked) loads as is
    state = {k: v for k, v in inception_net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pth")
    again = N.fid_inception(tmp_path / "w.pth").state_dict()
    assert all(torch.equal(again[k], v) for k, v in state.items())
    torch.save({"fc.weight": state["fc.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="missing"):
        N.fid_inception(tmp_path / "bad.pth")


def write_counting_video(path: Path, frames: int, w: int = 64, h: int = 48) -> str:
    """A video whose frame k is a flat grey of level 2k (so a frame's index can be read back;
    the lossless H.264 round trip through YUV loses at most 1 level)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "0"}
        for k in range(frames):
            arr = np.full((h, w, 3), 2 * k, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def frame_index(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) + 0.5) / 2))


def test_frames_are_decoded_and_resized_as_data_juicer_does(tmp_path):
    import cv2

    video = write_counting_video(tmp_path / "v.mp4", 30)
    assert N.video_frame_count(video) == 30
    got = N.read_video_frames(video, [3, 17, 29], 24, 40)
    assert sorted(got) == [3, 17, 29]
    assert all(f.shape == (24, 40, 3) and f.dtype == np.uint8 for f in got.values())
    assert [frame_index(got[i]) for i in (3, 17, 29)] == [3, 17, 29]
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(N.resize_frame(rgb, 24, 40), cv2.resize(rgb, (40, 24)))
    with pytest.raises(DataError, match="file not found"):
        N.read_video_frames(str(tmp_path / "none.mp4"), None, 24, 40)


def test_clip_sampling_follows_stylegan_v():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="fewer than 121 frames"):
        N.clip_starts([40, 130, 200], 10, 16, 8, rng)  # 16 frames 8 apart span 121
    starts = N.clip_starts([121, 130, 200], 10, 16, 8, rng)
    assert len(starts) == 10
    # every pass over the videos visits each once, in a fresh order
    assert sorted(v for v, _ in starts[:3]) == [0, 1, 2]
    assert all(0 <= s <= [121, 130, 200][v] - 121 for v, s in starts)
    starts = N.clip_starts([130, 200], 50, 16, 8, rng)
    assert all(0 <= s <= [130, 200][v] - 121 for v, s in starts)
    assert len({s for _, s in starts}) > 5  # random starts
    starts = N.clip_starts([16], 3, 16, 1, rng)
    assert starts == [(0, 0)] * 3  # a video exactly as long as a clip: one start


def test_metric_table_is_data_juicers():
    assert set(METRICS) == {"fvd2048_16f", "fvd2048_128f", "fvd2048_128f_subsample8f",
                            "kvd2048_16f", "isv2048_ucf", "prv2048_3n_16f", "fid50k", "kid50k",
                            "is50k", "pr50k_3n"}
    assert (METRICS["fvd2048_128f_subsample8f"].num_frames,
            METRICS["fvd2048_128f_subsample8f"].spacing) == (16, 8)
    assert METRICS["fvd2048_128f"].num_frames == 128
    assert {m for m, s in METRICS.items() if s.network == "i3d"} == \
        {"fvd2048_16f", "fvd2048_128f", "fvd2048_128f_subsample8f", "kvd2048_16f",
         "prv2048_3n_16f"}
    for key, net in NW.NETWORKS.items():
        assert set(net.metrics) == {m for m, s in METRICS.items() if s.network == key}


# ----------------------------------------------------------------------------- the weights
@pytest.fixture
def no_networks(tmp_path, monkeypatch):
    """No feature network anywhere: Data-Juicer's, torch hub's and the sandbox's caches empty."""
    for var in (sources.DJ_MODELS_CACHE, sources.DJ_CACHE_HOME, sources.DJ_EXTERNAL_MODELS_HOME,
                env_vars.OFFLINE, "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(sources.CACHE_HOME, str(tmp_path / "home"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(env_vars.CACHE, str(tmp_path / "own"))
    return tmp_path


def step_env(tmp_path: Path) -> StepEnv:
    (tmp_path / "eval").mkdir(exist_ok=True)
    return StepEnv(name="evaluate", workdir=tmp_path / "eval", run_dir=tmp_path,
                   cache_dir=cache_root(), show_progress=False)


def test_offline_refuses_before_any_work_naming_the_files(no_networks, monkeypatch):
    monkeypatch.setenv(env_vars.OFFLINE, "1")
    step = InceptionEvaluator(generated_path=str(no_networks / "not-read"),
                              reference_path=str(no_networks / "not-read-either"),
                              metrics=["fid50k", "fvd2048_16f", "kvd2048_16f"])
    with pytest.raises(AssetMissing) as info:  # not a DataError: the media were never looked at
        step.run(step_env(no_networks))
    msg = str(info.value)
    assert "\n" not in msg
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and "i3d_torchscript.pt" in msg
    assert "SANDBOX_OFFLINE=1" in msg and "Nothing was computed" in msg
    assert "python -m sandbox.assets fetch --network inception --network i3d" in msg
    assert "evaluator.i3d_path=PATH" in msg and "c3d_ucf101" not in msg
    assert not (no_networks / "eval" / "inception_report.json").exists()


def test_networks_are_found_in_data_juicers_caches_first(no_networks, monkeypatch):
    import hashlib

    monkeypatch.setenv(env_vars.OFFLINE, "1")
    i3d = NW.NETWORKS["i3d"]
    md5 = hashlib.md5(i3d.url.encode()).hexdigest()
    dj = no_networks / "dnnlib" / "downloads" / f"{md5}_i3d_torchscript.pt"
    dj.parent.mkdir(parents=True)
    dj.write_bytes(b"x")
    got = NW.resolve_network("i3d")
    assert (got.path, got.origin) == (dj, "Data-Juicer's metrics cache (dnnlib)")
    hub = no_networks / "torch" / "hub" / "checkpoints" / NW.NETWORKS["inception"].filename
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert NW.resolve_network("inception").origin == "torch hub cache"
    models = no_networks / "home" / "data_juicer" / "models" / "vgg16.pt"
    models.parent.mkdir(parents=True)
    models.write_bytes(b"x")
    assert NW.resolve_network("vgg16").path == models
    with pytest.raises(AssetMissing, match=r"evaluator.c3d_ucf101_path=/nowhere.pt does not"):
        NW.resolve_network("c3d_ucf101", explicit="/nowhere.pt")


def test_a_download_is_checked_against_the_hash_in_its_name(no_networks, monkeypatch):
    import hashlib

    payload = b"not really inception weights"
    digest = hashlib.sha256(payload).hexdigest()

    def fake_download(url, dest, sha256=None, progress=True):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(payload)
        return digest

    monkeypatch.setattr(NW, "download", fake_download)
    with pytest.raises(AssetMissing, match="does not start with 6726825d"):
        NW.resolve_network("inception", progress=False)
    own = no_networks / "own" / "models" / NW.NETWORKS["inception"].filename
    assert not own.exists()  # the mismatching file was deleted
    monkeypatch.setitem(NW.NETWORKS, "inception",
                        replace(NW.NETWORKS["inception"], sha256_prefix=digest[:8]))
    got = NW.resolve_network("inception", progress=False)
    assert (got.path, got.origin) == (own, "download")
    manifest = json.loads((no_networks / "own" / "assets-manifest.json").read_text())
    assert manifest[str(own)]["sha256"] == digest


def test_fetch_command_lists_the_networks(no_networks, monkeypatch, capsys):
    from sandbox.cli.assets import main

    monkeypatch.setenv(env_vars.OFFLINE, "1")
    assert main(["fetch", "--network", "i3d"]) == 2
    assert "i3d_torchscript.pt" in capsys.readouterr().err
    own = no_networks / "own" / "models"
    own.mkdir(parents=True)
    (own / "i3d_torchscript.pt").write_bytes(b"x")
    assert main(["fetch", "--network", "i3d"]) == 0
    assert "sandbox cache" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "i3d_torchscript.pt" in out and "pt_inception-2015-12-05-6726825d.pth" in out
    assert "--network inception" in out  # the missing ones say how to fetch them


# ----------------------------------------------------------------------------- the step
def stand_in_i3d(path: Path) -> str:
    """A TorchScript file with I3D's signature whose 'features' are the clip's frame indices
    (mean grey / 2 per frame), its height and width, and 1 when it was given uint8."""
    import torch

    class StandIn(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            n = x.shape[0]
            idx = (x.float().mean(dim=(1, 3, 4)) + 0.5) / 2.0
            info = torch.tensor([float(x.shape[3]), float(x.shape[4]),
                                 float(x.dtype == torch.uint8),
                                 float(rescale and resize and return_features)])
            return torch.cat([idx, info.repeat(n, 1)], dim=1)

    torch.jit.script(StandIn()).save(str(path))
    return str(path)


class SmallInception:
    """In place of the 24M-parameter Inception: 'pool' features are a frame's channel means and
    spread, 'logits' a fixed projection of them (same interface: uint8 [N, 3, H, W] in)."""

    def __init__(self):
        self.seen: list[tuple] = []
        self.proj = np.random.default_rng(0).normal(size=(6, 7))

    def __call__(self, x):
        import torch

        self.seen.append((tuple(x.shape), x.dtype))
        f = x.float() / 255
        pool = torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3))], dim=1).double()
        return pool, pool @ torch.as_tensor(self.proj)


@pytest.fixture
def media(tmp_path):
    """Generated: two videos of 127 and 125 frames and two images; reference: a pool of two
    videos (paths relative to the pool's folder) and the folder holding them."""
    from PIL import Image

    gen = tmp_path / "gen"
    write_counting_video(gen / "a.mp4", 127)
    write_counting_video(gen / "b.mp4", 125, w=80, h=60)
    for k in range(2):
        Image.fromarray(np.full((30, 50, 3), 60 * k, np.uint8)).save(gen / f"img{k}.png")
    ref = tmp_path / "ref"
    write_counting_video(ref / "videos" / "c.mp4", 127)
    write_counting_video(ref / "videos" / "d.mp4", 123)
    pool = ref / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": "x", "videos": [f"videos/{v}"]}) + "\n"
                            for v in ("c.mp4", "d.mp4")))
    return {"gen": str(gen), "ref_pool": str(pool), "ref_dir": str(ref / "videos"),
            "i3d": stand_in_i3d(tmp_path / "i3d.pt"), "tmp": tmp_path}


@pytest.fixture
def small_inception(monkeypatch, media):
    net = SmallInception()
    monkeypatch.setattr(N, "fid_inception", lambda path, device="cpu": net)
    weights = media["tmp"] / "pt_inception.pth"
    weights.write_bytes(b"explicit")  # found by path; loaded by the stand-in above
    return net, str(weights)


def test_the_step_computes_data_juicers_metrics(media, small_inception):
    net, weights = small_inception
    names = ["fid50k", "kid50k", "is50k", "fvd2048_16f", "kvd2048_16f", "prv2048_3n_16f",
             "fvd2048_128f_subsample8f"]
    step = InceptionEvaluator(generated_path=media["gen"], reference_path=media["ref_pool"],
                              metrics=names, height=24, width=32, max_frames=60, num_clips=12,
                              inception_path=weights, i3d_path=media["i3d"], batch_size=16,
                              device="cpu", bootstrap=50)
    out = step.run(step_env(media["tmp"]))
    m = out["metrics"]
    for key in ("fid50k", "kid50k", "kid50k_std", "is50k_mean", "is50k_std", "fvd2048_16f",
                "kvd2048_16f", "prv2048_3n_16f_precision", "prv2048_3n_16f_recall",
                "prv2048_3n_16f_precision_ci_low", "fvd2048_128f_subsample8f"):
        assert key in m and math.isfinite(m[key]), key
    assert m["inception_generated_media"] == 4 and m["inception_reference_media"] == 2
    assert m["fid50k"] > 0 and 1.0 <= m["is50k_mean"] <= 7
    # frames were resized to height x width and given as uint8, in batches of at most 16
    assert {s for s, _ in net.seen} <= {(16, 3, 24, 32), (12, 3, 24, 32)}
    assert all(str(d) == "torch.uint8" for _, d in net.seen)
    assert sum(s[0] for s, _ in net.seen) == 60 + 60  # max_frames per side
    report = json.loads(Path(out["report"]).read_text())
    assert report["networks"]["i3d"]["origin"] == "explicit path (evaluator.i3d_path)"
    assert set(report["feature_seconds"]) == {
        "generated/inception/frames", "reference/inception/frames",
        "generated/i3d/clips/16x1", "reference/i3d/clips/16x1",
        "generated/i3d/clips/16x8", "reference/i3d/clips/16x8"}


def test_clips_are_consecutive_or_subsampled_frames(media):
    import torch

    step = InceptionEvaluator(height=24, width=32, num_clips=9, clip_batch_size=4)
    side = step.media_set("generated", media["gen"])
    net = torch.jit.load(media["i3d"])
    for name, gap in (("fvd2048_16f", 1), ("fvd2048_128f_subsample8f", 8)):
        f = step._clip_features(side, METRICS[name], name, net, "cpu", seed=3).features
        assert f.shape == (9, 16 + 4)
        idx = np.rint(f[:, :16])
        assert (np.diff(idx, axis=1) == gap).all()  # frame indices read back from the pixels
        assert (f[:, 16:] == [24, 32, 1, 1]).all()  # height x width, uint8, I3D's flags
        assert idx.min() >= 0 and idx.max() <= 126
    with pytest.raises(DataError, match="fewer than 128 frames"):
        step._clip_features(side, METRICS["fvd2048_128f"], "fvd2048_128f", net, "cpu", 0)
    img_only = step.media_set("generated", str(Path(media["gen"]) / "img0.png"))
    with pytest.raises(DataError, match="needs videos"):
        step._clip_features(img_only, METRICS["fvd2048_16f"], "fvd2048_16f", net, "cpu", 0)


def test_as_data_evaluator_it_compares_the_processed_pool_with_its_source(media,
                                                                          small_inception):
    _, weights = small_inception
    step = InceptionEvaluator(metrics="auto", height=24, width=32, max_frames=20, num_clips=6,
                              inception_path=weights, i3d_path=media["i3d"], bootstrap=0,
                              num_runs=2)
    out = step.run(step_env(media["tmp"]), dataset=media["gen"], source_dataset=media["ref_dir"])
    m = out["metrics"]
    # auto: the image metrics, and the video ones since both sides hold videos; two runs
    for key in ("fid50k_mean", "fid50k_std", "fid50k_run01", "fid50k_run02", "kid50k_mean",
                "is50k_mean_mean", "fvd2048_16f_mean", "kvd2048_16f_run02"):
        assert key in m, key
    assert m["fid50k_run01"] != m["fid50k_run02"]  # another seed, other frames


def test_inputs_and_settings_are_checked(media, tmp_path):
    with pytest.raises(ConfigError, match="fvd2048_16g unknown"):
        InceptionEvaluator(metrics=["fvd2048_16g"])
    with pytest.raises(ConfigError, match="model's folder is not media"):
        InceptionEvaluator().run(step_env(tmp_path), model_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="set evaluator.reference_path"):
        InceptionEvaluator(metrics=["fid50k"], generated_path=media["gen"]).run(
            step_env(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        InceptionEvaluator().media_set("reference", str(tmp_path / "nothing"))
    bad_pool = tmp_path / "bad.jsonl"
    bad_pool.write_text(json.dumps({"videos": ["missing.mp4"]}) + "\n")
    with pytest.raises(DataError, match="1 reference media file"):
        InceptionEvaluator().media_set("reference", str(bad_pool))
    with pytest.raises(ConfigError, match="evaluator.device='tpu'"):
        N.pick_device("tpu")


def test_features_are_cached_and_results_appended(media, small_inception, tmp_path):
    net, weights = small_inception
    result = tmp_path / "out" / "inception_eval_results.jsonl"
    kw = dict(generated_path=media["gen"], reference_path=media["ref_dir"], metrics=["fid50k"],
              height=24, width=32, max_frames=10, inception_path=weights, bootstrap=0,
              result_path=str(result))
    first = InceptionEvaluator(**kw).run(step_env(tmp_path))["metrics"]
    calls = len(net.seen)
    again = InceptionEvaluator(**kw).run(step_env(tmp_path))["metrics"]
    assert len(net.seen) == calls  # both sides' features came from <cache>/inception
    assert again["fid50k"] == first["fid50k"]
    InceptionEvaluator(**kw, replace_cache=True).run(step_env(tmp_path))
    assert len(net.seen) == 2 * calls
    InceptionEvaluator(**{**kw, "height": 20}).run(step_env(tmp_path))  # another size: computed
    assert len(net.seen) == 3 * calls
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["results"]["fid50k"] == first["fid50k"]
    assert lines[0]["metric"] == ["fid50k"]


def test_frechet_bootstrap_interval_brackets_the_distance():
    from sandbox.steps.evaluate.inception import Features

    g = Features(features(10, 80, 4, shift=0.5), None, None)
    r = Features(features(11, 90, 4), None, np.random.default_rng(0).uniform(0.5, 1, 90))
    step = InceptionEvaluator(frechet_bootstrap=60)
    ci = step._frechet_interval("fvd2048_16f", g, r, seed=0)
    value = M.frechet_distance(*M.mean_cov(g.features), *M.mean_cov(r.features, r.weights))
    assert ci["fvd2048_16f_ci_low"] < value < ci["fvd2048_16f_ci_high"]
    assert InceptionEvaluator()._frechet_interval("fvd2048_16f", g, r, seed=0) == {}


@pytest.mark.slow
def test_the_real_inception_network_through_the_step(media, tmp_path):
    """fid50k, kid50k and is50k with the 24M-parameter FID Inception (random weights, saved as
    pytorch-fid's state dict) on a few frames: the weights file loads and the numbers are
    finite."""
    import torch

    torch.manual_seed(0)
    weights = tmp_path / NW.NETWORKS["inception"].filename
    torch.save({k: v for k, v in N.fid_inception(None).state_dict().items()
                if not k.endswith("num_batches_tracked")}, weights)
    out = InceptionEvaluator(generated_path=media["gen"], reference_path=media["ref_dir"],
                             metrics=["fid50k", "kid50k", "is50k"], max_frames=12, height=48,
                             width=64, inception_path=str(weights), cache=False,
                             batch_size=12).run(step_env(tmp_path))
    m = out["metrics"]
    assert all(math.isfinite(m[k]) for k in ("fid50k", "kid50k", "is50k_mean", "is50k_std"))
    report = json.loads(Path(out["report"]).read_text())
    assert report["feature_items"] == {"generated/inception/frames": 12,
                                       "reference/inception/frames": 12}


def test_frames_come_in_a_seeded_random_order_with_weights(media, small_inception):
    net, _ = small_inception
    step = InceptionEvaluator(height=24, width=32, max_frames=50)
    side = step.media_set("generated", str(Path(media["gen"]) / "a.mp4"))  # 127 frames
    got = step._frame_features(side, METRICS["fid50k"], net, "cpu", seed=5)
    # the stand-in's first feature is the red mean in 0..1: the frame's grey 2k / 255
    idx = np.rint((got.features[:, 0] * 255 + 0.5) / 2).astype(int)
    assert idx.tolist() == np.random.default_rng([5, 1]).permutation(127)[:50].tolist()
    assert np.allclose(got.weights, 1 / 127) and got.probs.shape == (50, 7)


def test_verdicts_know_which_way_is_better():
    from sandbox.verdict import direction

    for name in ("fid50k", "kid50k", "fvd2048_16f", "fvd2048_128f_subsample8f", "kvd2048_16f"):
        assert direction(name) == -1, name
    for name in ("is50k_mean", "isv2048_ucf_mean", "pr50k_3n_recall", "prv2048_3n_16f_precision"):
        assert direction(name) == 1, name
    assert direction("is50k_std") == direction("kid50k_std") == 0
