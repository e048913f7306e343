"""Images/s of one full VICReg training step (augment both views, forward, backward, Adam) and the share of the
step spent in augmentation, for several encoder sizes, side by side in one run.

Run: .venv/bin/python benchmarks/bench_vicreg.py [steps]   (default 4 timed steps per configuration)
"""
import sys
import time

import numpy as np
import torch

from helpers import vicreg_training as VT
from helpers.setup import bf16_fast
from helpers.vicreg import EncoderConfig, augment, vicreg_loss

CONFIGS = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1)]  # (width, first-convolution stride); (64, 1) is the course's


def step_time(width, stride, bf16, images, steps, batch=256, channels_last=False):
    torch.manual_seed(0)
    model = VT.VICReg(EncoderConfig(width=width, stem_stride=stride))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)
    g = torch.Generator().manual_seed(0)
    total, aug = [], []
    for i in range(steps + 1):
        x = VT.to_float(images[i * batch % len(images):][:batch], "cpu")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        v1, v2 = augment(x, g), augment(x, g)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z1, z2 = model(v1), model(v2)
        loss = vicreg_loss(z1.float(), z2.float())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i:  # the first step warms up
            total.append(t2 - t0)
            aug.append(t1 - t0)
    return batch / np.mean(total), np.sum(aug) / np.sum(total)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    images = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    native = bf16_fast(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}; batch 256")
    if not native:
        print("bf16 autocast not measured: this CPU has no native bf16 (AVX-512 BF16 or AMX), and emulated bf16 "
              "matmuls ran about 300x slower than fp32 here")
    for width, stride in CONFIGS:
        for bf16 in ([False, True] if native else [False]):
            ips, share = step_time(width, stride, bf16, images, steps)
            print(f"width {width:2d} stride {stride} {'bf16' if bf16 else 'fp32'}: {ips:6.0f} img/s "
                  f"({50000 / ips / 60:5.1f} min per epoch of 50,000), augmentation {share:.1%} of the step")
    ips, _ = step_time(32, 2, False, images, steps, channels_last=True)
    print(f"width 32 stride 2 fp32, channels-last layout: {ips:6.0f} img/s (faster, but not bitwise reproducible)")


if __name__ == "__main__":
    main()
