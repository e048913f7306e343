"""The GPT training step at the machine's speed: today's step, each change alone and all of them, side by side.

today:    the step as it was at commit 7cb0949: the full (B·T, 50,257) logits, F.cross_entropy on them, AdamW's
          per-tensor loop (torch's default on a CPU);
all:      `gpt_training.train_step` and `make_optimizer` as the notebook runs them now (chunked + fused);
chunked:  the head's loss by `gpt_loss.linear_cross_entropy` (token chunks, both gradients formed in the forward);
fused:    AdamW's fused kernel;  foreach: AdamW's multi-tensor kernel;
compiled: the four blocks under `torch.compile` (compile time from an empty cache; dropout from inductor's RNG);
all+bf16: `all` under bf16 autocast, as the notebook trains where the CPU runs bf16 natively (only on such a CPU).
Every variant trains the `default` profile's model from the same seed, on the same batches with the same dropout
masks (each keeps its own RNG state), one step of each in turn, so a busy machine slows them alike. Also printed:
the fp32 matmul rate on a 2048³ product and on the head's own shapes, the head alone for several chunk sizes, each
step's useful FLOP/s as a fraction of the 2048³ rate, whether torch.compile's compile time is won back over the
notebook's 600 steps, and today's and the new step's validation loss and parameters after the same steps.

Run: flock /tmp/bench.lock .venv/bin/python benchmarks/bench_gpt.py [steps]   (default 30; ~2 min on 2 cores)
"""
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from helpers import data, gpt_loss
from helpers import gpt_training as T
from helpers.gpt import GPT, preset
from helpers.setup import bf16_fast, cpu_name, settings


def best_ms(fn, reps=5):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def square_rate(dtype=torch.float32):
    """GFLOP/s of a 2048³ matmul in `dtype`, the fastest of ten."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    out = torch.empty(2048, 2048, dtype=dtype)
    return 2 * 2048 ** 3 / best_ms(lambda: torch.mm(a, b, out=out), 10) / 1e6


def matmul_rates(n_tokens, C, V, chunk):
    """GFLOP/s of a 2048³ fp32 matmul and of the head's three products, whole and per chunk of tokens (into reused
    outputs), and of today's logits product, which writes a fresh (B·T, V) tensor at every step."""
    big = square_rate()
    print(f"fp32 matmul 2048³: {big:.0f} GFLOP/s", end="")
    if bf16_fast(torch.device("cpu")):
        bf = square_rate(torch.bfloat16)
        print(f"; bf16 (native here) {bf:.0f} GFLOP/s, {bf / big:.1f}x fp32", end="")
    print()
    w, gw = torch.randn(V, C), torch.zeros(V, C)
    for n in (n_tokens, chunk):
        h, z, gh = torch.randn(n, C), torch.randn(n, V), torch.empty(n, C)
        flop = 2 * n * V * C / 1e6
        rates = [flop / best_ms(f, 3) for f in (lambda: torch.mm(h, w.T, out=z), lambda: torch.mm(z, w, out=gh),
                                                lambda: gw.addmm_(z.T, h))]
        print(f"  head, {n:4d} tokens: logits h·Wᵀ {rates[0]:.0f}, ∂h = G·W {rates[1]:.0f}, ∂W += Gᵀ·h {rates[2]:.0f} "
              f"GFLOP/s" + (f"; h·Wᵀ into a fresh tensor (today) {flop / best_ms(lambda: h @ w.T, 3):.0f}"
                            if n == n_tokens else ""))
    return big


def head_sweep(n_tokens, C, V, chunks):
    """Forward and backward of the head's loss alone: full logits + F.cross_entropy, then chunked per chunk size."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n_tokens, C, generator=g).requires_grad_()
    w = (0.02 * torch.randn(V, C, generator=g)).requires_grad_()
    y = torch.randint(0, V, (n_tokens,), generator=g)
    full = best_ms(lambda: F.cross_entropy(h @ w.T, y).backward(), 3)
    line = [f"full logits {full:.0f} ms"]
    for chunk in chunks:
        ms = best_ms(lambda: gpt_loss.linear_cross_entropy(h, w, y, chunk=chunk).backward(), 3)
        line.append(f"chunk {chunk}: {ms:.0f} ms ({full / ms:.2f}x)")
    print(f"head loss fwd+bwd, {n_tokens} tokens: " + ", ".join(line))


def full_logits_loss(model, x, y):
    """Today's loss: every logit, then F.cross_entropy (the code at commit 7cb0949)."""
    logits = model.lm_head(model.ln_f(model.trunk(model.wte(x))))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def groups(model, cfg):
    return [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]


class Variant:
    """One way of taking a training step, with its own model, optimiser and RNG state."""

    def __init__(self, name, cfg, chunked=False, optimizer="loop", compiled=False, shipped=False):
        torch.manual_seed(0)
        self.name, self.cfg, self.chunked, self.shipped = name, cfg, chunked, shipped
        self.model = GPT(preset(settings("02_gpt_alice", "default").model)).train()
        if compiled:
            for block in self.model.h:
                block.compile()
        if shipped:
            self.opt = T.make_optimizer(self.model, cfg)
        else:
            kind = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[optimizer]
            self.opt = torch.optim.AdamW(groups(self.model, cfg), lr=cfg.lr, betas=(0.9, 0.95), **kind)
        self.rng, self.times = torch.get_rng_state(), []

    def step(self, x, y, lr):
        torch.set_rng_state(self.rng)                      # its own dropout masks: the same for every variant
        for group in self.opt.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        if self.shipped:
            T.train_step(self.model, self.opt, x, y, self.cfg, bool(self.cfg.bf16))
        else:
            self.opt.zero_grad(set_to_none=True)
            loss = self.model(x, y)[1] if self.chunked else full_logits_loss(self.model, x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
        self.times.append(time.perf_counter() - start)
        self.rng = torch.get_rng_state()

    def step_ms(self):
        return 1e3 * statistics.median(self.times[2:])     # the first steps warm up (and compile)


def step_flop(config, batch, block):
    """Useful FLOP of a training step (3 × forward): the matmuls of the blocks and the head, and attention."""
    N, C, L = batch * block, config.n_embd, config.n_layer
    forward = 2 * N * (12 * L * C * C + config.vocab_size * C) + 4 * L * batch * block * block * C
    return 3 * forward


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp()   # compile from scratch, as a fresh clone does
    s = settings("02_gpt_alice", "default")
    config = preset(s.model)
    n_tokens, chunk = s.batch_size * config.block_size, gpt_loss.default_chunk(torch.device("cpu"), config.vocab_size)
    print(f"{cpu_name()}; torch {torch.__version__}, {torch.get_num_threads()} threads; model '{s.model}', batch "
          f"{s.batch_size} × {config.block_size} tokens, chunk {chunk}")
    big = matmul_rates(n_tokens, config.n_embd, config.vocab_size, chunk)
    head_sweep(n_tokens, config.n_embd, config.vocab_size, (64, 128, 256, 512))

    enc = data.gpt2_encoding()
    train_tokens, val_tokens = T.split_tokens(T.encode_text(data.load_alice(), enc))
    cfg = T.TrainConfig(max_steps=steps, batch_size=s.batch_size, warmup=max(1, steps // 4), lr=s.lr, bf16=False)
    variants = [Variant("today", cfg), Variant("all", cfg, shipped=True), Variant("chunked", cfg, chunked=True),
                Variant("fused", cfg, optimizer="fused"), Variant("foreach", cfg, optimizer="foreach"),
                Variant("compiled", cfg, compiled=True)]
    if bf16_fast(torch.device("cpu")):                      # what the notebook runs on a CPU with AVX-512 BF16 / AMX
        variants.insert(2, Variant("all+bf16", dataclasses.replace(cfg, bf16=True), shipped=True))
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        x, y = T.get_batch(train_tokens, s.batch_size, config.block_size, g)
        for v in variants:
            v.step(x, y, T.lr_at(step, cfg))
    big = max(big, square_rate())                           # measured again after the steps: the better of two
    report(variants, step_flop(config, s.batch_size, config.block_size), big)
    compile_verdict(variants[0], variants[-1], val_tokens, s)
    today, shipped = variants[0], variants[1]
    losses = [T.evaluate(v.model, val_tokens, None, s.batch_size) for v in (today, shipped)]
    apart = max((a - b).abs().max().item() for a, b in zip(today.model.parameters(), shipped.model.parameters()))
    print(f"after {steps} steps, today vs all: validation loss {losses[0]:.6f} vs {losses[1]:.6f} (difference "
          f"{abs(losses[0] - losses[1]):.1e} nats), parameters at most {apart:.1e} apart")


def report(variants, flop, big):
    """Each variant's step time (median; fastest in brackets), speed-up over today and share of the 2048³ rate."""
    print(f"fp32 matmul 2048³, the better of before and after the steps: {big:.0f} GFLOP/s")
    today = variants[0].step_ms()
    print(f"training step, median of steps 3..{len(variants[0].times)} [fastest] ({flop / 1e9:.1f} GFLOP of useful "
          f"work each):")
    for v in variants:
        ms, fastest = v.step_ms(), 1e3 * min(v.times[2:])
        rate = flop / ms / 1e6
        print(f"  {v.name:>8}: {ms:6.0f} ms [{fastest:4.0f}]  {today / ms:5.2f}x today  {rate:4.0f} GFLOP/s = "
              f"{100 * rate / big:3.0f}% of the 2048³ rate")
    ms = variants[1].step_ms()
    print(f"all: {today / ms:.2f}x today's step (issue #21: >= 3x, required >= 2x) at "
          f"{100 * flop / ms / 1e6 / big:.0f}% of the 2048³ rate (target >= 45%)")


def compile_verdict(today, compiled, val_tokens, s):
    """torch.compile pays off only if its compile time (training graph, then the evaluation graph) is won back over
    the notebook's steps."""
    start = time.perf_counter()
    T.evaluate(compiled.model, val_tokens, None, s.batch_size)
    first = time.perf_counter() - start
    start = time.perf_counter()
    T.evaluate(compiled.model, val_tokens, None, s.batch_size)
    cost = compiled.times[0] - compiled.step_ms() / 1e3 + first - (time.perf_counter() - start)
    gain = (today.step_ms() - compiled.step_ms()) / 1e3 * s.max_steps
    print(f"torch.compile of the blocks: {cost:.0f} s to compile (training and evaluation graphs), {gain:.0f} s won "
          f"back over {s.max_steps} steps: {'keep' if gain > cost else 'not worth it'} on this machine")


if __name__ == "__main__":
    main()
