"""The feature networks of ``evaluator=inception`` and the frames and clips fed to them.

Inception-v3 (fid50k, kid50k, is50k) is written here in plain torch: the variant TensorFlow's FID
graph uses (``inception-2015-12-05``), as pytorch-fid ports it: torchvision's Inception-v3 with a
1008-way classifier, no auxiliary head, and patched blocks (``FIDInceptionA``/``C``/``E_1``
average-pool without counting the padding, ``E_2`` max-pools). Images go in as RGB 0..255,
are resized to 299x299 bilinearly (``align_corners=False``) and scaled to [-1, 1]. It returns
the 2048-d pool features (FID, KID) and the 1008 logits without the classifier's bias, whose
softmax is the Inception Score's p(y|x) (StyleGAN's ``no_output_bias=True``, torch-fidelity's
``logits_unbiased``). Its weights are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(a state dict, loaded with ``weights_only=True``).

The video networks are TorchScript files, called exactly as Data-Juicer's metrics code (StyleGAN-V)
calls them, on uint8 RGB clips ``[N, 3, T, H, W]``:

* I3D (``i3d_torchscript.pt``, Kinetics-400): ``rescale=True`` maps 0..255 to [-1, 1],
  ``resize=True`` resizes every frame to 224x224, ``return_features=True`` returns the 400
  pre-softmax logits. FVD, KVD and video precision/recall use these 400-d vectors, as the
  original TensorFlow FVD uses the hub module's 400-d output (not the 1024-d pool);
* C3D UCF-101 (``c3d_ucf101.pt``): its output is the 101 class probabilities (isv2048_ucf);
* VGG16 (``vgg16.pt``, StyleGAN2-ADA's) on frames ``[N, 3, H, W]``, ``return_features=True``:
  4096-d features (pr50k_3n).

Frames: every video frame is decoded with PyAV, converted to RGB and resized to ``height`` x
``width`` (240 x 320 by default) with OpenCV's bilinear ``cv2.resize``, as Data-Juicer's
``VideoDataset`` does; images are used at their own size (Inception resizes them). Clips
(``clip_starts``): ``num_frames`` frames ``spacing`` apart from a uniformly random start, the
video itself drawn from a reshuffled pass over all videos, as StyleGAN-V's infinite loader does.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from sandbox.data.decode import load_image, media_failure, open_video, video_info
from sandbox.errors import ConfigError, DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv", ".m4v", ".mpg", ".mpeg")
INCEPTION_SIZE = 299
I3D_SIZE = 224  # what the I3D TorchScript resizes to (resize=True)


def pick_device(device: str, key: str = "evaluator.device") -> str:
    """``auto`` (CUDA when torch sees one), ``cpu`` or ``cuda``; a ConfigError otherwise."""
    import torch

    d = str(device).strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d == "cpu" or d.startswith("cuda"):
        if d.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{key}={device}: torch sees no CUDA device here (torch "
                              f"{torch.__version__}); use {key}=auto or cpu.")
        return d
    raise ConfigError(f"{key}={device!r}: use auto, cpu or cuda.")


# ----------------------------------------------------------------------------- Inception-v3
@functools.lru_cache(maxsize=1)
def _inception_classes():
    """The network's classes, defined when first needed (torch is imported lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)), inplace=True)

    def _pool_avg(x):  # TensorFlow's average pool leaves the padding out of the mean
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(nn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_pool_avg(x))], 1)

    class InceptionB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)],
                             1)

    class FIDInceptionC(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_pool_avg(x))], 1)

    class InceptionD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = x
            for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                          self.branch7x7x3_4):
                b7 = layer(b7)
            return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    class FIDInceptionE(nn.Module):
        """``max_pool``: the second E block (``Mixed_7c``) max-pools its pool branch in the FID
        graph; the first average-pools without the padding."""

        def __init__(self, cin, max_pool: bool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            pool = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool
                    else _pool_avg(x))
            return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)

    class FIDInceptionV3(nn.Module):
        """``forward(images)``: uint8 or float RGB 0..255 ``[N, 3, H, W]`` -> ``(pool [N, 2048],
        logits without bias [N, 1008])``. Module names follow torchvision's, so pytorch-fid's
        state dict loads as is."""

        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b = FIDInceptionA(192, pool_features=32)
            self.Mixed_5c = FIDInceptionA(256, pool_features=64)
            self.Mixed_5d = FIDInceptionA(288, pool_features=64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = FIDInceptionC(768, c7=128)
            self.Mixed_6c = FIDInceptionC(768, c7=160)
            self.Mixed_6d = FIDInceptionC(768, c7=160)
            self.Mixed_6e = FIDInceptionC(768, c7=192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
            self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
            self.fc = nn.Linear(2048, 1008)

        @staticmethod
        def preprocess(images):
            x = images.float() / 255.0
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                              align_corners=False)
            return 2 * x - 1

        def forward(self, images):
            x = self.preprocess(images)
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                          self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                          self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
                x = block(x)
            pool = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
            return pool, pool @ self.fc.weight.T

    return FIDInceptionV3


def fid_inception(weights: str | Path | None, device: str = "cpu"):
    """The FID Inception-v3 in eval mode on ``device``: pytorch-fid's weights from ``weights``,
    or random ones (``None``: for tests and timing only)."""
    import torch

    net = _inception_classes()()
    if weights is not None:
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except Exception as e:
            raise DataError(f"evaluator=inception: {weights} is not a readable state dict "
                            f"({type(e).__name__}: {e}); it should be pytorch-fid's "
                            f"pt_inception-2015-12-05-6726825d.pth.") from None
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise DataError(f"evaluator=inception: {weights} does not hold the FID Inception's "
                            f"weights (missing {missing[:3]}, unexpected {unexpected[:3]}); it "
                            f"should be pytorch-fid's pt_inception-2015-12-05-6726825d.pth.")
    return net.eval().requires_grad_(False).to(device)


def torchscript_network(path: str | Path, device: str = "cpu"):
    """A TorchScript feature network (I3D, C3D, VGG16) in eval mode on ``device``."""
    import torch

    try:
        with warnings.catch_warnings():  # deprecated in torch 2.13, but these files are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        raise DataError(f"evaluator=inception: {path} is not a TorchScript file "
                        f"({type(e).__name__}: {e}).") from None
    return net.eval()


# ----------------------------------------------------------------------------- media
def media_kind(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    raise DataError(f"evaluator=inception: {path} is neither an image ({', '.join(IMAGE_EXTS)}) "
                    f"nor a video ({', '.join(VIDEO_EXTS)}).")


def resize_frame(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's default (bilinear) resize to ``height`` x ``width``, as Data-Juicer's dataset."""
    import cv2

    if rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height))


def video_frame_count(path: str) -> int:
    try:
        return video_info(path).frames
    except Exception as e:
        raise DataError(f"evaluator=inception: {media_failure(path, e)}") from None


def read_video_frames(path: str, indices, height: int, width: int) -> dict[int, np.ndarray]:
    """``{index: uint8 RGB frame resized to height x width}`` for the wanted frame indices
    (None: every frame), decoding the video once from the start."""
    wanted = None if indices is None else set(int(i) for i in indices)
    out: dict[int, np.ndarray] = {}
    try:
        container = open_video(path)
        try:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    out[i] = resize_frame(frame.to_ndarray(format="rgb24"), height, width)
                if wanted is not None and len(out) == len(wanted):
                    break
        finally:
            container.close()
    except Exception as e:
        raise DataError(f"evaluator=inception: {media_failure(path, e)}") from None
    return out


def read_image(path: str) -> np.ndarray:
    try:
        return np.asarray(load_image(path), dtype=np.uint8)
    except Exception as e:
        raise DataError(f"evaluator=inception: {media_failure(path, e)}") from None


def clip_starts(frame_counts: list[int], num_clips: int, num_frames: int, spacing: int,
                rng: np.random.Generator) -> list[tuple[int, int]]:
    """``num_clips`` ``(video index, first frame)`` pairs: passes over the videos in a fresh
    random order each, a uniformly random start per clip, frames ``spacing`` apart."""
    span = (num_frames - 1) * spacing + 1
    short = [i for i, n in enumerate(frame_counts) if n < span]
    if short:
        raise DataError(f"{len(short)} of {len(frame_counts)} video(s) have fewer than {span} "
                        f"frames ({num_frames} frames {spacing} apart); the first has "
                        f"{frame_counts[short[0]]}")
    out: list[tuple[int, int]] = []
    while len(out) < num_clips:
        for v in rng.permutation(len(frame_counts)):
            if len(out) == num_clips:
                break
            out.append((int(v), int(rng.integers(0, frame_counts[v] - span + 1))))
    return out


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
