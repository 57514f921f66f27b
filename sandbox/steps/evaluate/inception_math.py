"""The statistics of ``evaluator=inception``, on feature arrays (no network here).

They follow StyleGAN-V's metric code, which Data-Juicer's ``video_inception_evaluator`` runs
(``tools/mm_eval/inception_metrics/video_metrics``):

* ``mean_cov``: mean and covariance of features, optionally weighted per row (Data-Juicer weights
  each video frame by 1 / frames of its video for fid50k); the covariance divides by the total
  weight (by N unweighted), as StyleGAN's ``FeatureStats.get_mean_cov`` does;
* ``frechet_distance``: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))``, with the offset on the
  diagonal and the check of the imaginary part that clean-fid and pytorch-fid add when the
  product is nearly singular (FID and FVD);
* ``kernel_distance``: the unbiased MMD with the cubic polynomial kernel
  ``(x.y / d + 1)^3`` over ``num_subsets`` random subsets of ``min(n1, n2, max_subset_size)``
  rows each (KID and KVD; the subsets are drawn from a seeded ``RandomState`` in the order
  clean-fid and StyleGAN draw them from numpy's global one);
* ``inception_score``: ``exp(E[KL(p(y|x) || p(y))])`` per split, mean and std over ``splits``;
* ``precision_recall``: improved precision and recall (Kynkäänniemi et al. 2019): a sample is
  inside the other set's manifold when it is within the distance of some manifold point to that
  point's ``nhood_size``-th nearest neighbour (itself excluded).

``tests/test_inception.py`` checks them against clean-fid's and torch-fidelity's own functions.
"""
from __future__ import annotations

import numpy as np


def mean_cov(features: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """``(mean, covariance)`` of the rows of ``features``; ``weights``: one per row."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features must be a non-empty 2-d array, got shape {x.shape}")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = w.sum()
    mu = (x * w[:, None]).sum(axis=0) / total
    cov = (x.T @ (x * w[:, None])) / total - np.outer(mu, mu)
    return mu, cov


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """The Fréchet distance between two Gaussians given by mean and covariance."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        # a nearly singular product (fewer samples than dimensions): regularise both
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: the matrix square root has an imaginary part "
                             f"of {np.max(np.abs(covmean.imag)):.3g}; too few samples for the "
                             f"feature size")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_distance(feats1: np.ndarray, feats2: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int | np.random.RandomState = 0,
                    return_subsets: bool = False):
    """KID/KVD of ``feats1`` (reference) and ``feats2`` (generated): the mean over subsets of
    the unbiased polynomial-kernel MMD². ``return_subsets``: also the per-subset values."""
    rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    f1, f2 = np.asarray(feats1, dtype=np.float64), np.asarray(feats2, dtype=np.float64)
    n = f1.shape[1]
    m = min(f1.shape[0], f2.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"kernel distance needs at least 2 rows on each side, got "
                         f"{f1.shape[0]} and {f2.shape[0]}")
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = f2[rng.choice(f2.shape[0], m, replace=False)]
        y = f1[rng.choice(f1.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        values[i] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    kid = float(values.mean())
    return (kid, values) if return_subsets else kid


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(probs: np.ndarray, splits: int = 10,
                    shuffle_seed: int | None = None) -> tuple[float, float]:
    """``(mean, std)`` over ``splits`` of the Inception Score of class probabilities ``probs``
    (rows sum to 1). ``shuffle_seed``: permute the rows first (StyleGAN-V's video IS shuffles
    with ``RandomState(42)``; its image IS does not)."""
    p = np.asarray(probs, dtype=np.float64)
    if shuffle_seed is not None:
        p = p[np.random.RandomState(shuffle_seed).permutation(len(p))]
    n = len(p)
    if n < splits:
        raise ValueError(f"inception score: {n} samples for {splits} splits")
    scores = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(splits):
            part = p[i * n // splits:(i + 1) * n // splits]
            # 0 * log 0 counts as 0 (a class the network rules out)
            kl = np.where(part > 0, part * (np.log(part) - np.log(part.mean(axis=0,
                                                                            keepdims=True))), 0)
            scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_distances(manifold, nhood_size: int, batch: int):
    import torch

    out = []
    for rows in manifold.split(batch):
        d = torch.cdist(rows.unsqueeze(0), manifold.unsqueeze(0))[0]
        out.append(d.kthvalue(nhood_size + 1, dim=1).values)
    return torch.cat(out)


def _inside(probes, manifold, radii, batch: int):
    import torch

    hits = []
    for rows in probes.split(batch):
        d = torch.cdist(rows.unsqueeze(0), manifold.unsqueeze(0))[0]
        hits.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: np.ndarray, gen: np.ndarray, nhood_size: int = 3,
                     batch: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample hits ``(precision_hits, recall_hits)`` (0/1 arrays): each generated sample
    inside the real manifold, each real sample inside the generated one. Their means are
    precision and recall."""
    import torch

    r = torch.as_tensor(np.asarray(real, dtype=np.float32))
    g = torch.as_tensor(np.asarray(gen, dtype=np.float32))
    if min(len(r), len(g)) <= nhood_size:
        raise ValueError(f"precision/recall with nhood_size={nhood_size} needs more than "
                         f"{nhood_size} samples on each side, got {len(r)} and {len(g)}")
    precision = _inside(g, r, _kth_distances(r, nhood_size, batch), batch)
    recall = _inside(r, g, _kth_distances(g, nhood_size, batch), batch)
    return precision.double().numpy(), recall.double().numpy()
