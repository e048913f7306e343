"""Training throughput of the GPT, plain path against fast path, side by side in one run.

plain: fp32, explicit softmax(QKᵀ/√d)V attention (the way minGPT computes it);
fast:  scaled_dot_product_attention, plus bf16 autocast where the CPU/GPU runs bf16 natively.
Both train the `default` profile's model from the same seed on the same batches for the same number of steps;
the script prints tokens/s, the ratio, and the validation loss of each after those steps.

Run: .venv/bin/python benchmarks/bench_gpt.py [steps]   (default 60 steps; ~5 min on 2 cores)
"""
import sys
import time

import torch

from helpers import data
from helpers import gpt_training as T
from helpers.gpt import GPT, preset
from helpers.setup import bf16_fast, settings


def run(name, model_overrides, bf16, train_tokens, val_tokens, steps, batch_size):
    torch.manual_seed(0)
    model = GPT(preset(settings("02_gpt_alice", "default").model, **model_overrides))
    cfg = T.TrainConfig(max_steps=steps, batch_size=batch_size, warmup=max(1, steps // 10), eval_every=10 ** 9,
                        eval_batches=1, bf16=bf16)
    opt = T.make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(0)
    model.train()
    times = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = T.lr_at(step, cfg)
        x, y = T.get_batch(train_tokens, batch_size, model.config.block_size, g)
        start = time.perf_counter()
        T.train_step(model, opt, x, y, cfg, bf16)      # the step the notebook trains with
        times.append(time.perf_counter() - start)
    steady = sorted(times[2:])[: max(1, len(times[2:]) // 2)]  # the faster half of the steps after warm-up
    tokens_per_s = batch_size * model.config.block_size / (sum(steady) / len(steady))
    val = T.evaluate(model, val_tokens, None, batch_size, bf16)
    print(f"{name:>6}: {tokens_per_s:7.0f} tokens/s (median-ish of {len(times)} steps), "
          f"validation loss after {steps} steps {val:.4f}")
    return tokens_per_s, val


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    batch_size = settings("02_gpt_alice", "default").batch_size
    enc = data.gpt2_encoding()
    train_tokens, val_tokens = T.split_tokens(T.encode_text(data.load_alice(), enc))
    bf16 = bf16_fast(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16}")
    plain = run("plain", dict(fast_attention=False), False, train_tokens, val_tokens, steps, batch_size)
    fast = run("fast", {}, bf16, train_tokens, val_tokens, steps, batch_size)
    print(f"speed-up fast/plain: {fast[0] / plain[0]:.2f}x (target >= 3x); validation loss difference "
          f"{abs(fast[1] - plain[1]):.4f} nats (target <= 0.05)")
    if not bf16:
        a, b = torch.randn(1024, 512), torch.randn(512, 4096)
        timing = {}
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            x @ y
            start = time.perf_counter()
            x @ y
            timing[dtype] = time.perf_counter() - start
        print(f"this CPU has no native bf16: a 1024x512x4096 matmul takes {timing[torch.float32] * 1e3:.0f} ms in fp32 "
              f"and {timing[torch.bfloat16] * 1e3:.0f} ms in bf16, so the fast path stays in fp32")


if __name__ == "__main__":
    main()
