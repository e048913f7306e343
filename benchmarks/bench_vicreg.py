"""Images/s of one full VICReg training step (augment both views, forward, backward, optimiser step: the same
`train_step` the notebooks train with), for every execution variant side by side in one run, with the speed-up over
the step the workbook used before (fp32, NCHW layout, width 32 / stride 2, batch 256).

Variants: NCHW fp32 (`deterministic=True`), channels-last fp32 (the fast path where bf16 is not native),
channels-last + bf16 autocast (only where the CPU or GPU runs bf16 natively: emulated bf16 is ~300x slower), and
`torch.compile` of the model on top of the fast path, for each encoder we compared (batch 256); last, the shipped
recipe's own step (its encoder and batch size) on the fast path.

Run: .venv/bin/python benchmarks/bench_vicreg.py [steps]   (default 4 timed steps per variant, after 2 warm-up steps)
"""
import sys
import time

import numpy as np
import torch

from helpers import vicreg_training as VT
from helpers.setup import SETTINGS, bf16_fast, cpu_name, pick_device
from helpers.vicreg import EncoderConfig, VICReg, to_float

ENCODERS = [(32, 2), (16, 1), (24, 1), (64, 1)]  # (width, first-convolution stride); (64, 1) is the course's


def images_per_second(width: int, stride: int, images, steps: int, device, deterministic: bool, bf16: bool,
                      compile: bool = False, batch: int = 256,
                      proj_dim: int = EncoderConfig.proj_dim) -> tuple[float, float]:
    """Mean images/s over `steps` timed steps and the share of the step spent on augmentation."""
    cfg = VT.VICRegConfig(encoder=EncoderConfig(width=width, stem_stride=stride, proj_dim=proj_dim),
                          batch_size=batch, lr=1e-3)
    fmt = VT.memory_format(deterministic, width)
    torch.manual_seed(0)
    model = VICReg(cfg.encoder).to(device, memory_format=fmt)
    opt = VT.make_optimizer(model, cfg)
    step_model = torch.compile(model) if compile else model
    g = torch.Generator().manual_seed(0)
    total, aug, warmup = [], [], 3 if compile else 2
    for i in range(steps + warmup):
        x = to_float(images[i * batch % len(images):][:batch], device, fmt)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        v1, v2 = VT.generated_views(x, g, cfg)
        t1 = time.perf_counter()
        VT.train_step(step_model, opt, v1, v2, cfg, bf16)   # .item() inside synchronises
        t2 = time.perf_counter()
        if i >= warmup:
            total.append(t2 - t0)
            aug.append(t1 - t0)
    return batch / np.mean(total), np.sum(aug) / np.sum(total)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    device = pick_device()
    images = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    native = bf16_fast(device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    print(f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}")
    variants = [("NCHW fp32 (deterministic)", dict(deterministic=True, bf16=False)),
                ("channels-last fp32", dict(deterministic=False, bf16=False))]
    if native:
        variants.append(("channels-last bf16", dict(deterministic=False, bf16=True)))
    else:
        print("bf16 autocast not measured: no native bf16 here (AVX-512 BF16, AMX or a GPU)")
    fast = variants[-1][1]
    variants.append((f"{variants[-1][0]} + torch.compile", dict(fast, compile=True)))
    rows = [(width, stride, 256, label, kw) for width, stride in ENCODERS for label, kw in variants
            if not (width == 64 and device.type == "cpu" and "compile" in label)]  # minutes of compilation
    d = SETTINGS["03_vicreg"]["default"]  # the shipped recipe's own step, at its batch size, on the fast path
    rows.append((d["width"], d["stem_stride"], d["batch_size"], f"{variants[-2][0]}, default recipe",
                 dict(variants[-2][1], proj_dim=d["proj_dim"])))
    baseline = None
    print(f"{'encoder':>8} {'batch':>5} {'variant':44s} {'img/s':>7} {'min/epoch':>9} {'speed-up':>8} {'augment':>7}")
    for width, stride, batch, label, kw in rows:
        ips, share = images_per_second(width, stride, images, steps if width < 64 else 2, device, batch=batch, **kw)
        baseline = baseline or ips  # the first row: the step the workbook used before
        print(f"{width:>4d}/{stride:<3d} {batch:5d} {label:44s} {ips:7.0f} {50000 / ips / 60:9.1f} "
              f"{ips / baseline:7.2f}x {share:7.1%}", flush=True)


if __name__ == "__main__":
    main()
