"""Training throughput: sandbox.steps.model.train.CausalLMTrainer vs a bare PyTorch loop over the same
GPT-2 shape, batch, optimizer and thread count. Prints one figure per line (medians)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bare_loop(vocab: int, steps: int, B: int, L: int, threads: int, n_layer=2, n_embd=128,
              n_head=4) -> float:
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=L, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), foreach=True)
    data = torch.randint(0, vocab, (steps, B, L))
    t0 = time.perf_counter()
    for s in range(steps):
        x = data[s]
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
    return steps * B * L / (time.perf_counter() - t0)


def trainer_run(pool: str, budget: int, threads: int, work: Path) -> tuple[float, int]:
    from sandbox.steps.base import StepEnv
    from sandbox.steps.model.train import CausalLMTrainer

    tr = CausalLMTrainer(token_budget=budget, num_threads=threads, log_every=1000)
    env = StepEnv(name="train", workdir=work, run_dir=work, cache_dir=work / "cache",
                  show_progress=False)
    work.mkdir(parents=True, exist_ok=True)
    out = tr.run(env, dataset=pool)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(out["model_dir"]).vocab_size
    return out["metrics"]["train_tokens_per_s"], vocab


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--docs", type=int, default=5000)
    p.add_argument("--budget", type=int, default=16 * 128 * 60)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.data.corpus import default_corpus

    texts = [json.loads(l)["text"] for l in open(default_corpus().pool, encoding="utf-8")][:a.docs]
    with tempfile.TemporaryDirectory() as d:
        pool = Path(d) / "pool.parquet"
        pq.write_table(pa.table({"text": texts}), pool)
        ours, bare = [], []
        for r in range(a.repeats):
            tps, vocab = trainer_run(str(pool), a.budget, a.threads, Path(d) / f"t{r}")
            ours.append(tps)
            bare.append(bare_loop(vocab, a.budget // (16 * 128), 16, 128, a.threads))
            print(f"# train run {r + 1}: trainer {ours[-1]:.0f} tok/s, bare {bare[-1]:.0f} tok/s",
                  file=sys.stderr, flush=True)
    m_o, m_b = statistics.median(ours), statistics.median(bare)
    print(f"train_trainer_tokens_per_s {m_o:.4g}")
    print(f"train_bare_loop_tokens_per_s {m_b:.4g}")
    print(f"train_trainer_vs_bare_ratio {m_o / m_b:.4g} x")


if __name__ == "__main__":
    main()
