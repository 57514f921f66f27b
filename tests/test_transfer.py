"""The transfer experiment's statistics (decision accuracy, decided pairs, paired per-document
comparisons, the smallest detectable difference) and the built-in proxy's device and size."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sandbox.verdict import (decided_pairs, decision_accuracy, detectable_difference, holm,
                             paired_documents, seeds_needed)


def test_known_ladder_order_is_recovered_and_a_shuffled_one_is_at_chance():
    """A ladder whose large-scale order is known: a small scale that is the large one plus a
    little noise gets (nearly) every pair right; one with no relation gets about half."""
    rng = np.random.default_rng(0)
    names = [f"r{i}" for i in range(12)]
    large = {n: float(i) for i, n in enumerate(names)}
    small = {n: v * 0.1 + rng.normal(0, 0.01) for n, v in large.items()}
    out = decision_accuracy(small, large)
    assert out["decision_pairs"] == 66 and out["decision_accuracy"] == 1.0
    assert out["spearman"] == pytest.approx(1.0)
    accs = []
    for seed in range(60):
        perm = np.random.default_rng(seed).permutation(len(names))
        shuffled = {n: large[names[j]] for n, j in zip(names, perm)}
        accs.append(decision_accuracy(shuffled, large, n_boot=0)["decision_accuracy"])
    assert abs(np.mean(accs) - 0.5) < 0.05
    r = decision_accuracy({n: float(-i) for i, n in enumerate(names)}, large, n_boot=200)
    assert r["decision_accuracy"] == 0.0 and r["decision_accuracy_ci_high"] <= 0.1


def test_decision_accuracy_interval_resamples_recipes():
    rng = np.random.default_rng(1)
    large = {f"r{i}": float(i) for i in range(10)}
    small = {k: v + rng.normal(0, 3) for k, v in large.items()}
    out = decision_accuracy(small, large, n_boot=500)
    lo, acc, hi = (out["decision_accuracy_ci_low"], out["decision_accuracy"],
                   out["decision_accuracy_ci_high"])
    assert 0 <= lo < acc < hi <= 1
    assert hi - lo > 0.15  # recipes, not pairs, are the sample: a wide interval for 10 recipes


def test_pairs_within_the_large_scale_noise_are_counted_apart():
    """Two recipes the large scale cannot tell apart are not decided; the accuracy over decided
    pairs leaves them out."""
    per_seed = {"a": {1: 1.0, 2: 1.1, 3: 0.9}, "b": {1: 1.02, 2: 1.08, 3: 0.93},  # a ~ b
                "c": {1: 5.0, 2: 5.1, 3: 4.9}}
    decided = decided_pairs(per_seed)
    assert decided == {frozenset("ac"), frozenset("bc")}
    large = {k: float(np.mean(list(v.values()))) for k, v in per_seed.items()}
    small = {"a": 2.0, "b": 1.0, "c": 9.0}  # gets a vs b "wrong" (a coin flip at large scale)
    out = decision_accuracy(small, large, decided=decided, n_boot=0)
    assert out["decided_pairs"] == 2 and out["decision_accuracy_decided"] == 1.0
    assert out["decision_accuracy"] == pytest.approx(2 / 3)


def test_paired_bootstrap_matches_direct_computation():
    """One seed a side, a mean metric: the difference is the direct one, and the bootstrap's
    standard error is the paired t's sd(d)/sqrt(n); pairing removes the shared document
    difficulty that an unpaired comparison would count."""
    rng = np.random.default_rng(2)
    n = 400
    hard = rng.normal(0, 1.0, n)  # what both models find hard
    a = hard + 0.05 + rng.normal(0, 0.2, n)
    b = hard + rng.normal(0, 0.2, n)
    c, parts = paired_documents({0: (a,)}, {0: (b,)}, np.mean, True, n_boot=4000)
    d = a - b
    assert c.diff == pytest.approx(d.mean(), abs=1e-12)
    se = d.std(ddof=1) / math.sqrt(n)
    assert math.sqrt(parts["doc_var"]) == pytest.approx(se, rel=0.05)
    assert c.test == "paired bootstrap" and c.verdict == "better" and c.p < 0.01
    assert (c.high - c.low) / 2 == pytest.approx(1.96 * se, rel=0.06)
    # a ratio metric (bits per byte): the difference of the ratios of sums
    bytes_ = rng.integers(200, 400, n).astype(float)
    c2, _ = paired_documents({0: (a + 5, bytes_)}, {0: (b + 5, bytes_)},
                             lambda x, y: x.sum() / y.sum(), False, n_boot=200)
    assert c2.diff == pytest.approx((a + 5).sum() / bytes_.sum() - (b + 5).sum() / bytes_.sum())


def test_paired_over_seeds_adds_seed_and_document_variance():
    rng = np.random.default_rng(3)
    n = 300
    hard = rng.normal(0, 1.0, n)
    seeds = [1, 2, 3, 4]
    shift = {s: rng.normal(0, 0.05) for s in seeds}  # a seed's whole-model luck
    a = {s: (hard + 0.1 + shift[s] + rng.normal(0, 0.1, n),) for s in seeds}
    b = {s: (hard + rng.normal(0, 0.1, n),) for s in seeds}
    c, parts = paired_documents(a, b, np.mean, True, n_boot=1000)
    d = np.array([a[s][0].mean() - b[s][0].mean() for s in seeds])
    assert c.diff == pytest.approx(d.mean())
    assert parts["seed_var"] == pytest.approx(d.var(ddof=1))
    assert parts["n_seeds"] == 4 and c.test == "paired t + docs"
    se = math.sqrt(parts["seed_var"] / 4 + parts["doc_var"])
    assert c.high - c.diff == pytest.approx(
        __import__("scipy").stats.t.ppf(0.975, parts["df"]) * se)
    with pytest.raises(ValueError, match="different documents"):
        paired_documents({0: (np.ones(3),)}, {0: (np.ones(4),)}, np.mean, True)


def test_detectable_difference_has_its_power_in_simulation():
    """At the smallest detectable difference a paired t test over seeds finds the difference
    about 80% of the time (and the seeds needed for a difference give at least that power)."""
    from scipy import stats

    sigma, n = 1.0, 5
    mdd = detectable_difference(sigma ** 2, n, 0.0)
    rng = np.random.default_rng(4)
    hits = 0
    trials = 4000
    for _ in range(trials):
        d = rng.normal(mdd, sigma, n)
        p = 2 * stats.t.sf(abs(d.mean()) / (d.std(ddof=1) / math.sqrt(n)), n - 1)
        hits += p < 0.05
    assert 0.74 < hits / trials < 0.86
    need = seeds_needed(mdd, sigma ** 2, 0.0)
    assert need == n
    assert seeds_needed(0.01, 1.0, doc_var=1.0) is None  # the documents' noise alone is larger
    # one seed: the documents' part only, with the normal quantiles
    assert detectable_difference(math.nan, 1, 0.04) == pytest.approx(
        (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 0.2)


def test_holm_adjusts_step_down():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({}) == {}


def test_size_presets_set_shape_and_budget():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from sandbox.errors import ConfigError
    from sandbox.steps.model.train import SIZES, CausalLMTrainer, gpt2_params

    t = CausalLMTrainer(size="4m", tokens_per_param=100)
    assert (t.n_layer, t.n_embd, t.n_head) == SIZES["4m"]
    assert t.token_budget == round(100 * gpt2_params(8, 64, 4096, 128))
    model = GPT2LMHeadModel(GPT2Config(vocab_size=4096, n_positions=128, n_embd=64, n_layer=8,
                                       n_head=8, tie_word_embeddings=True))
    assert sum(p.numel() for p in model.parameters()) == gpt2_params(8, 64, 4096, 128)
    assert CausalLMTrainer(size="1m").token_budget == 20 * gpt2_params(2, 128, 4096, 128)
    with pytest.raises(ConfigError, match="trainer.size='huge'"):
        CausalLMTrainer(size="huge")
    del torch


def test_trainer_device_composes_and_refuses_without_cuda(tmp_path):
    import torch
    from hydra import compose, initialize_config_dir

    from sandbox.errors import ConfigError
    from sandbox.steps.model.train import CausalLMTrainer
    from sandbox.steps.model.train_clip import CLIPTrainer
    from tests.conftest import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=["trainer.device=cuda:1", "trainer.size=20m",
                                           "evaluator.device=cpu"])
    assert cfg.trainer.device == "cuda:1" and cfg.trainer.size == "20m"
    with pytest.raises(ConfigError, match="trainer.device='tpu'"):
        CausalLMTrainer(device="tpu")
    with pytest.raises(ConfigError, match="trainer.device"):
        CLIPTrainer(device="npu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from sandbox.device import resolve_device

    assert resolve_device("auto", "trainer.device") == "cpu"
    with pytest.raises(ConfigError, match=r"trainer.device=cuda: CUDA is not available here.*"
                                          r"trainer.device=cpu"):
        resolve_device("cuda", "trainer.device")


def test_cell_claims_split_the_grid_between_processes(tmp_path):
    """A cell another live process holds is left (or waited for); one whose process is gone is
    taken over; the marker goes when the cell is done."""
    import os
    import socket
    import subprocess
    import sys

    from sandbox.steps.transfer.study import cell_claim

    marker, done = tmp_path / "running", tmp_path / "result.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        marker.write_text(f"{socket.gethostname()}:{other.pid}")
        with cell_claim(marker, done, wait=False) as mine:
            assert mine is False  # held by a live process: left for the second pass
    finally:
        other.kill()
        other.wait()
    with cell_claim(marker, done, wait=False) as mine:  # its process is gone: stale
        assert mine is True and marker.read_text() == f"{socket.gethostname()}:{os.getpid()}"
    assert not marker.exists()
    marker.write_text(f"{socket.gethostname()}:{os.getpid()}")
    done.write_text("{}")
    with cell_claim(marker, done, wait=True) as mine:  # finished meanwhile: read it
        assert mine is True
