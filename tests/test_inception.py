"""evaluator=inception: its statistics against clean-fid's and torch-fidelity's own functions,
its networks on random weights, frame sampling, the weights as assets, and the step end to end
with stand-in networks."""
from __future__ import annotations

import ast
import zipfile

import numpy as np
import pytest

from sandbox.data.wheels import Wheel, WheelFetchError, fetch_wheel
from sandbox.steps.evaluate import inception_math as M

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
