"""Benchmark of notebook 01's targets: training time, sampling time, held-out loss and sample quality.

Run: .venv/bin/python benchmarks/bench_diffusion.py   (the default profile's sizes; ~1 min on 2 cores)
"""
import time

import numpy as np
import torch

from helpers import diffusion, diffusion_exact as exact, diffusion_sampling as sampling
from helpers.setup import settings


def main():
    cfg = settings("01_diffusion", "default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    x_train = torch.rand(cfg.n_train, 2, generator=g) * 2 - 1
    x_heldout = torch.rand(cfg.n_heldout, 2, generator=g) * 2 - 1
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=cfg.hidden)
    t0 = time.perf_counter()
    diffusion.train(model, x_train, cfg.epochs, progress=False)
    train_s = time.perf_counter() - t0

    times = []
    for seed in range(3):
        t0 = time.perf_counter()
        sampling.generate(model, 1000, 1000, "ours", seed=seed)
        times.append(time.perf_counter() - t0)

    quality = {name: sampling.mean_quality(model, name, 1000, seeds=range(10)) for name in sampling.SAMPLERS}
    floor_ed = sampling.energy_distance_floor(1000)
    print(f"training {cfg.epochs} epochs on {cfg.n_train} points (full batch): {train_s:.1f} s   (target <= 30 s)")
    print(f"sampling 1000 points, T=1000: median {np.median(times):.2f} s   (target <= 2 s)")
    print(f"held-out MSE {diffusion.heldout_loss(model, x_heldout, repeats=50):.4f}   (target <= 0.835; "
          f"Bayes floor {exact.bayes_floor_uniform():.4f})")
    for name, q in quality.items():
        print(f"sampler {name:>6}, T=1000, 10 seeds x 1000 points: "
              f"inside {q['frac_in_square']:.2%}, energy distance {q['energy_distance']:.4f}")
    print(f"energy distance of two uniform draws (floor): {floor_ed:.4f}   (target for 'ours' <= 0.0025, >= 99% inside)")


if __name__ == "__main__":
    main()
