"""Benchmark of notebook 01's targets (training time, sampling time, held-out loss, sample quality) and, side by side
in the same run, each speed-up of issue #21 against the code it replaced, with the numbers checked to be identical.

Run: .venv/bin/python benchmarks/bench_diffusion.py   (the default profile's sizes; about 3 min on 2 cores)
"""
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import torch

from helpers import diffusion, diffusion_exact as exact, diffusion_sampling as sampling
from helpers.setup import cpu_name, settings


def seconds(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def notebook_sampling(model, cfg) -> dict[str, list[tuple]]:
    """Every `generate` call of notebook 01's sections on samples, in the notebook's order: (steps, sampler, seed)."""
    T, names = cfg.sample_steps, list(sampling.SAMPLERS)
    return {
        "nine seeds": [(T, "course", s) for s in range(9)],
        "step sweep": [(steps, name, s) for name in names for steps in cfg.steps_sweep for s in range(5)],
        "its figure": [(steps, "course", 0) for steps in cfg.steps_sweep[:4]],
        "comparison": [(T, name, 0) for name in ("course", "ours")]
                      + [(T, name, s) for name in ("ours", "course") for s in range(10)],
        "ablation": [(steps, v, s) for v in sampling.sampler_variants().values() for steps in cfg.ablation_steps
                     for s in range(cfg.ablation_seeds)]
                    + [(T, name, s) for name in ("course", "ours") for s in range(10)] + [(T, "ours", 0)],
    }


def bonus(model, cfg, iters: int):
    """Notebook 01's bonus (`iters` of its Adam steps): optimise the initial noise of one point through every
    sampler step."""
    target = torch.tensor([4.0, 5.5])
    return sampling.optimise_noise(model, target, diffusion.time_grid(cfg.bonus_sample_steps, "karras"),
                                   iters=iters, lr=1.0, z_init=target[None].clone(), denoise_last=True, progress=False)


def side_by_side(model, cfg):
    print("\nside by side (old = the code before issue #21, new = today's; same numbers required):")
    # 1. the notebook's samples, section by section: every call drawn (old) against the memo (new), which keeps what
    #    the earlier sections drew, as in the notebook; the two alternate, so that other load hits both alike
    sampling.forget_samples()
    total = {"old": 0.0, "new": 0.0}
    for k, (section, calls) in enumerate(notebook_sampling(model, cfg).items()):
        out, took = {}, {}
        for label in ("old", "new") if k % 2 == 0 else ("new", "old"):
            memo = label == "new"
            took[label], out[label] = seconds(lambda: [sampling.generate(model, cfg.n_samples, T, v, seed=s, memo=memo)
                                                       for T, v, s in calls])
            total[label] += took[label]
        same = all(torch.equal(a, b) for a, b in zip(out["old"], out["new"]))
        print(f"  notebook 01's samples, {section} ({len(calls)} calls of {cfg.n_samples} points): every one drawn "
              f"{took['old']:.1f} s, with the memo {took['new']:.1f} s; samples identical: {same}")
    sampling.forget_samples()
    print(f"  all of them: {total['old']:.1f} s against {total['new']:.1f} s: {total['old'] / total['new']:.2f}x")
    # 2. few-point sampling (the bonus: 1 point) on every thread (old) against one thread (new), on idle cores and
    #    beside another program's busy loop (in its own session, as a browser or a second notebook would be)
    bonus(model, cfg, 5)  # untimed: the first backward pass pays for one-time initialisation
    # beside the busy loop, a tenth of the bonus: two threads then take minutes for the whole of it
    for load, iters in (("idle cores", cfg.bonus_steps), ("beside a busy loop", max(1, cfg.bonus_steps // 10))):
        spinner = None
        if load != "idle cores":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            time.sleep(0.5)
        try:
            with mock.patch.object(diffusion, "SMALL_BATCH", 0):
                t_old, (z_old, _, l_old) = seconds(lambda: bonus(model, cfg, iters))
            t_new, (z_new, _, l_new) = seconds(lambda: bonus(model, cfg, iters))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        print(f"  bonus ({iters} Adam steps through {cfg.bonus_sample_steps} sampler steps, 1 point), {load}: "
              f"{torch.get_num_threads()} threads {t_old:.2f} s, 1 thread {t_new:.2f} s: {t_old / t_new:.2f}x; "
              f"results identical: {torch.equal(z_old, z_new) and l_old == l_new}")


def main():
    cfg = settings("01_diffusion", "default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
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
        sampling.generate(model, 1000, 1000, "ours", seed=seed, memo=False)
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
    side_by_side(model, cfg)


if __name__ == "__main__":
    main()
