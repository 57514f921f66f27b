"""Token budget as a fidelity: a warmup-stable-decay run continued from its checkpoint ends with
the weights of a run trained straight through, and a sweep's rungs promote the right trials."""
from __future__ import annotations

import pytest

from sandbox.errors import ConfigError
from sandbox.steps.model.train import CausalLMTrainer
from tests.test_sweeper_compat import plain_app  # noqa: F401  (a fixture)
from tests.test_train import make_corpus, make_env, write_parquet

WSD = dict(seq_len=32, batch_size=8, n_layer=1, n_embd=32, n_head=2, vocab_size=300, lr=1e-2,
           log_every=5, num_threads=1, schedule="wsd", decay_frac=0.25, warmup_tokens=512)


def weights(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict()


@pytest.mark.slow
def test_a_promoted_run_resumes_to_the_weights_of_one_trained_straight_through(tmp_path):
    import torch

    pool = write_parquet(tmp_path / "pool.parquet", make_corpus(80))
    small, large = 256 * 8, 256 * 16  # rungs of 8 and 16 steps
    rung = CausalLMTrainer(**WSD, token_budget=small).run(make_env(tmp_path / "r0"), dataset=pool)
    assert rung["checkpoint"] and torch.load(rung["checkpoint"], weights_only=False)["step"] == 6
    resumed = CausalLMTrainer(**WSD, token_budget=large, resume_from=rung["checkpoint"]).run(
        make_env(tmp_path / "r1"), dataset=pool)
    straight = CausalLMTrainer(**WSD, token_budget=large).run(make_env(tmp_path / "s"),
                                                              dataset=pool)
    a, b = weights(resumed["model_dir"]), weights(straight["model_dir"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == straight["final_loss"]
    assert resumed["tokens_seen"] == straight["tokens_seen"] == large
    # the rung's own model decayed: it is not the checkpoint's
    assert not all(torch.equal(x, y) for x, y in zip(weights(rung["model_dir"]).values(),
                                                     a.values()))

    # a checkpoint that does not continue into the run is refused, saying why
    with pytest.raises(ConfigError, match="warmup"):
        CausalLMTrainer(**{**WSD, "warmup_tokens": 256 * 5}, token_budget=large,
                        resume_from=rung["checkpoint"]).run(make_env(tmp_path / "x"), dataset=pool)
    with pytest.raises(ConfigError, match="budget"):
        CausalLMTrainer(**WSD, token_budget=256 * 6, resume_from=rung["checkpoint"]).run(
            make_env(tmp_path / "y"), dataset=pool)


def test_wsd_schedule_and_cosine_default():
    t = CausalLMTrainer(**{**WSD, "warmup_tokens": 256 * 2}, token_budget=256 * 20)
    lrs = [t._lr_at(s, 20) for s in range(20)]
    assert lrs[:2] == [5e-3, 1e-2] and set(lrs[2:15]) == {1e-2}  # warmup, then stable
    assert lrs[15] < 1e-2 and lrs[-1] == pytest.approx(1e-3)  # decay to min_lr_frac * lr
    # the default is the cosine schedule, as it was
    c = CausalLMTrainer(**{k: v for k, v in WSD.items() if k not in ("schedule", "decay_frac",
                                                                     "warmup_tokens")})
    assert c.schedule == "cosine" and c._warmup_steps(100) == 5
    with pytest.raises(ConfigError, match="schedule=wsd"):
        CausalLMTrainer(resume_from="x.pt")
    with pytest.raises(ConfigError, match="cosine"):
        CausalLMTrainer(schedule="linear")


# ============================================================================ the sweep's rungs
def known(x: float, budget: float) -> float:
    """The objective of the test app: the distance to x = 0.3, plus what a small budget costs."""
    return (x - 0.3) ** 2 + 1.0 / budget


def test_successive_halving_over_rungs_keeps_the_right_trials(plain_app, tmp_path):
    from optuna.trial import TrialState

    from tests.test_sweeper_compat import load_study, search_for

    calls = []

    def app(x, y, budget, **_):
        calls.append((x, budget))
        return known(x, budget)

    search = search_for(plain_app, tmp_path, [
        "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=9",
        "hydra.sweeper.params.x='choice(-0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.9, 1.2, 1.5)'",
        "hydra.sweeper.params.y=0",
        "++hydra.sweeper.fidelity={key: budget, rungs: [1, 3, 9]}"], app)
    assert search.pruner_cfg["_target_"] == "optuna.pruners.SuccessiveHalvingPruner"
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(complete) + len(pruned) == 9 and pruned
    # a completed trial ran every rung and reports the last one's value
    for t in complete:
        assert t.value == pytest.approx(known(t.params["x"], 9))
        assert sorted(t.intermediate_values) == [1, 3, 9]
    # the best x is never pruned, and each pruned trial was worse at its last rung than the best
    # value reported at that rung before it
    assert study.best_trial.params["x"] == 0.3
    for t in pruned:
        step = max(t.intermediate_values)
        earlier = [o.intermediate_values[step] for o in study.trials
                   if o.number < t.number and step in o.intermediate_values]
        assert earlier and t.intermediate_values[step] > min(earlier)
    # pruning saved budget: fewer than 9 trials x (1 + 3 + 9)
    assert sum(b for _, b in calls) < 9 * 13


def test_fidelity_settings_are_checked():
    from sandbox.search.fidelity import Fidelity, checkpoint_of

    f = Fidelity.parse({"key": "trainer.token_budget", "rungs": [1000, 3000]})
    assert f.overrides(1, "/a/checkpoint.pt") == ["trainer.token_budget=3000",
                                                  '++trainer.resume_from="/a/checkpoint.pt"']
    assert f.default_pruner()["reduction_factor"] == 3
    for bad in ({"key": "k", "rungs": [3, 1]}, {"key": "k", "rungs": [5]}, {"rungs": [1, 2]},
                {"key": "k", "rungs": [1, 2], "eta": 3}):
        with pytest.raises(ConfigError, match="hydra.sweeper.fidelity"):
            Fidelity.parse(bad)
    assert Fidelity.parse(None) is None and checkpoint_of(None) is None


@pytest.mark.slow
def test_a_sandbox_sweep_promotes_trials_from_their_rung_checkpoints(tmp_path, docs_file,
                                                                      eval_files, mlflow_db):
    import csv
    import json

    import torch
    import yaml
    from optuna.trial import TrialState

    from tests.conftest import TINY_TRAINER, write_quality_reference
    from tests.test_search import load, sweep

    sweep(tmp_path, [
        "hparams_search=trainer", "data_pool=jsonl", f"data_pool.path={docs_file}",
        f"cache_dir={tmp_path / 'cache'}", "progress=false", "num_proc=1", *eval_files,
        *write_quality_reference(tmp_path), *TINY_TRAINER, "trainer.num_threads=1",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'optuna.db'}", f"tracking.uri={mlflow_db}",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0",
        "++trainer.schedule=wsd", "++trainer.warmup_tokens=512",
        "++hydra.sweeper.fidelity={key: trainer.token_budget, rungs: [2048, 6144]}"])
    study = load(tmp_path, "trainer")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and all(sorted(t.intermediate_values) == [2048, 6144] for t in complete)
    sweep_dir = tmp_path / "multirun" / "0"
    for t in complete:
        first, second = (sweep_dir / f"{t.number}_rung{i}" for i in (0, 1))
        checkpoint = first / "train" / "checkpoint.pt"
        config = yaml.safe_load((second / "config.yaml").read_text())
        assert config["trainer"]["token_budget"] == 6144
        assert config["trainer"]["resume_from"] == str(checkpoint)
        # the promoted rung trained only from the checkpoint on
        step = torch.load(checkpoint, weights_only=False)["step"]
        rows = list(csv.DictReader(open(second / "train" / "loss_curve.csv")))
        assert int(rows[0]["step"]) > step and int(rows[-1]["step"]) == 6144 // 256
        # the trial's ledger adds up its rungs
        m = t.user_attrs["metrics"]
        steps = [k for k in m if k.startswith("compute/") and k.endswith("_cpu_s")
                 and not k.startswith(("compute/total", "compute/reused"))]
        assert m["compute/total_cpu_s"] == pytest.approx(sum(m[k] for k in steps))
    summary = json.loads((sweep_dir / "study_summary.json").read_text())
    assert summary["compute"]["total_cpu_s"] == pytest.approx(
        sum(t.user_attrs["metrics"]["compute/total_cpu_s"] for t in study.trials))


# ============================================================ paired decisions at a rung
def doc_arrays(rng, n=400):
    """Per-document evaluation arrays of one model: documents of very different difficulty (so
    a comparison over summary values is noisy), as the evaluator's doc_scores.npz holds them."""
    import numpy as np

    nbytes = rng.integers(200, 2000, n).astype(float)
    return {"lm_nll": nbytes * rng.uniform(1.0, 4.0, n), "lm_words": np.round(nbytes / 6),
            "lm_tokens": np.round(nbytes / 3), "lm_bytes": nbytes}


def variant(base, rng, shift, noise):
    """``base`` with every document's NLL scaled by 1 + shift, plus per-document noise that sums
    to zero (so the mean is exactly ``shift`` worse)."""
    nll = base["lm_nll"]
    jitter = noise * nll * rng.standard_normal(len(nll))
    return dict(base, lm_nll=nll * (1 + shift) + jitter - jitter.mean())


def bpb(arrays):
    from sandbox.steps.evaluate.lm import LM_METRICS

    return LM_METRICS["bits_per_byte"](arrays["lm_nll"], arrays["lm_words"],
                                       arrays["lm_tokens"], arrays["lm_bytes"])


def test_paired_rung_decision_prunes_only_what_the_documents_decide():
    import numpy as np

    from sandbox.search.fidelity import paired_rung_decision

    rng = np.random.default_rng(0)
    good = doc_arrays(rng)
    decisive = variant(good, rng, 0.003, 0.0)   # 0.3% worse on every document
    noisy = variant(good, rng, 0.003, 0.05)     # 0.3% worse on average, +-5% per document
    assert abs(bpb(decisive) - bpb(good)) / bpb(good) < 0.005  # the means are close
    peers = [(0, bpb(good), {0: good})]
    # successive halving with eta=2 promotes one of two: the good trial is the cutoff
    d = paired_rung_decision(bpb(decisive), {0: decisive}, peers, "bits_per_byte", 2, False)
    assert d.prune and "worse than trial 0" in d.why
    d = paired_rung_decision(bpb(noisy), {0: noisy}, peers, "bits_per_byte", 2, False)
    assert not d.prune and "within noise of trial 0" in d.why
    # the better trial is promoted whichever reported first
    d = paired_rung_decision(bpb(good), {0: good}, [(1, bpb(decisive), {0: decisive})],
                             "bits_per_byte", 2, False)
    assert not d.prune
    # no per-document scores (for either side), or none of this metric: the pruner decides
    assert paired_rung_decision(bpb(decisive), {}, peers, "bits_per_byte", 2, False) is None
    assert paired_rung_decision(bpb(decisive), {0: decisive}, [(0, bpb(good), {})],
                                "bits_per_byte", 2, False) is None
    assert paired_rung_decision(bpb(decisive), {0: decisive}, peers, "retention", 2,
                                False) is None


class RunDirLauncher:
    """Hydra's launcher as the sweeper calls it, giving each job a run dir (the sweep dir's
    ``hydra.sweep.subdir``) that ``fn(x, budget, run_dir)`` may write per-document scores to."""

    def __init__(self, fn, sweep_dir):
        self.fn, self.sweep_dir = fn, sweep_dir

    def launch(self, job_overrides, initial_job_idx):
        import yaml
        from hydra.core.utils import JobReturn, JobStatus
        from omegaconf import OmegaConf

        values = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in job_overrides[0])}
        run_dir = self.sweep_dir / str(values["hydra.sweep.subdir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        ret = JobReturn()
        ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(run_dir)}}})
        ret._return_value = self.fn(values["x"], values["budget"], run_dir)
        ret.status = JobStatus.COMPLETED
        return [ret]


@pytest.mark.parametrize("shift, noise, scores, promoted", [
    (0.003, 0.0, True, False),   # close means, decisive documents: pruned
    (0.003, 0.05, True, True),   # close means, undecided documents: promoted (within noise)
    (0.003, 0.05, False, False),  # no per-document scores: the pruner's ranking prunes it
])
def test_a_sweep_decides_rungs_on_paired_documents(plain_app, tmp_path, shift, noise, scores,
                                                   promoted):
    import numpy as np
    from optuna.trial import TrialState

    from sandbox.steps.evaluate.lm import save_doc_scores
    from tests.test_sweeper_compat import load_study, search_for

    rng = np.random.default_rng(0)
    good = doc_arrays(rng)
    close = variant(good, rng, shift, noise)
    role: dict[float, dict] = {}

    def app(x, budget, run_dir):
        # the first trial to run is the better one, so the close one meets it at the rung
        arrays = role.setdefault(x, good if not role else close)
        if scores:
            save_doc_scores(run_dir / "doc_scores" / "seed0.npz", arrays)
        return {"bits_per_byte": bpb(arrays)}

    search = search_for(plain_app, tmp_path, [
        "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params.x='choice(0.0, 1.0)'", "hydra.sweeper.params.y=0",
        "+objective=bits_per_byte", "++hydra.sweeper.fidelity={key: budget, rungs: [1, 2]}"],
        None)
    search.launcher = RunDirLauncher(app, search.sweep_dir)
    search.sweep([])
    study = load_study(tmp_path / "optuna.db", "plain")
    first, second = sorted(study.trials, key=lambda t: t.datetime_start)
    assert first.state == TrialState.COMPLETE
    assert second.state == (TrialState.COMPLETE if promoted else TrialState.PRUNED)
    assert ("doc_scores_rung0" in second.user_attrs) == scores
