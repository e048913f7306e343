"""Sampling the 2-D diffusion model of `diffusion`: one stateless sampler with a per-step callback, the course's
and our sampler settings, sample quality against the uniform square, and optimising the initial noise.

Modelled on k-diffusion's ``sampling.py``: the sampler takes the denoiser, the starting point and the time grid,
keeps no state, and reports every step to `callback`.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .diffusion import (DATA_VAR, Denoiser, check_classes, check_count, check_points, check_steps, check_times,
                        sigma, sigma_dot, threads_for, time_grid)
from .evaluation import energy_distance


# ------------------------------------------------------------------------------------------ sampling

def prior_noise(n: int, std: float = 1.0, generator=None) -> torch.Tensor:
    """Initial points z_1 ~ N(0, std²I). The course uses std = 1; at t = 1 the data's marginal has
    variance σ(1)² + Var(x_0) per coordinate, so ``std = sqrt(1 + DATA_VAR)`` matches its moments."""
    return std * torch.randn(n, 2, generator=generator)


def step_coefficient(t: torch.Tensor, t_next: torch.Tensor, step: str = "ddim") -> torch.Tensor:
    """The factor of D(z, t) in one deterministic step from t to t_next (negative: noise is removed).

    ``'euler'``: σ̇(t)·(t_next − t), the course's Euler step in t, with σ̇ at the step's start; ``'ddim'``:
    σ(t_next) − σ(t), the exact change of σ along the step. With σ = e^{5(t−1)} their ratio on a step of length
    Δt is 5Δt / (1 − e^{−5Δt}) > 1: an Euler step removes more noise than σ drops.
    """
    if step == "euler":
        return sigma_dot(t) * (t_next - t)
    if step == "ddim":
        return sigma(t_next) - sigma(t)
    raise ValueError(f"unknown step {step!r}; use 'ddim' or 'euler'")


def sample(model: nn.Module, z: torch.Tensor, ts: torch.Tensor, cls=None, step: str = "ddim",
           eta: float = 0.0, denoise_last: bool = False, generator=None,
           callback: Callable[[dict], None] | None = None, requires_grad: bool = False) -> torch.Tensor:
    """Integrate from ``ts[0]`` down to ``ts[-1]``, starting at `z`; stateless, one `callback` per step.

    With x̂_0 = z − σ(t)·D(z, t), the score is (x̂_0 − z)/σ² = −D/σ and the probability-flow ODE is
    dz = −σ̇·σ·score·dt = σ̇(t)·D·dt. ``step='euler'`` takes that Euler step in t (the course's
    Algorithm 1); ``step='ddim'`` takes it in σ, z ← z + (σ(t') − σ(t))·D, which is DDIM for a VE process
    (Song et al. 2021a, eq. 13) and exact when D is constant along the step. ``eta > 0`` adds noise
    (ancestral sampling, as k-diffusion's ``sample_euler_ancestral``): ``eta = 1`` samples the exact
    posterior q(z_s | z_t, x̂_0) of DDPM. ``denoise_last`` returns x̂_0 at the last time instead of z.
    Gradients are off unless `requires_grad`.
    """
    z = check_points(z, "initial noise")
    if step not in ("ddim", "euler"):
        raise ValueError(f"unknown step {step!r}; use 'ddim' or 'euler'")
    if eta < 0 or (eta > 0 and step == "euler"):
        raise ValueError("eta must be >= 0, and noise (eta > 0) is only defined for step='ddim'")
    ts = check_times(ts)
    n = len(z)
    with torch.set_grad_enabled(requires_grad), threads_for(n):
        for i in range(len(ts) - 1):
            t, t_next = ts[i], ts[i + 1]
            eps = model(z, t.expand(n), cls)                                 # (N, 2)
            s, s_next = sigma(t), sigma(t_next)
            if callback is not None:
                callback({"i": i, "t": t, "sigma": s, "z": z, "x0_hat": z - s * eps})
            if eta > 0:
                s_up = torch.minimum(s_next, eta * torch.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2))
                s_down = torch.sqrt(s_next ** 2 - s_up ** 2)
                z = z + (s_down - s) * eps + s_up * torch.randn(z.shape, generator=generator)
            else:
                z = z + step_coefficient(t, t_next, step) * eps
        if denoise_last:
            z = z - sigma(ts[-1]) * model(z, ts[-1].expand(n), cls)
    if callback is not None:
        callback({"i": len(ts) - 1, "t": ts[-1], "sigma": sigma(ts[-1]), "z": z, "x0_hat": z})
    return z


def trajectory(model, z, ts, **kwargs) -> torch.Tensor:
    """Every intermediate point of `sample`: shape (len(ts), N, 2)."""
    steps = []
    sample(model, z, ts, callback=lambda info: steps.append(info["z"].detach().clone()), **kwargs)
    return torch.stack(steps)


SAMPLERS = {
    # the course's Algorithm 1: z_1 ~ N(0, I), Euler steps in t, equal steps in t
    "course": dict(prior_std=1.0, step="euler", spacing="uniform", denoise_last=False),
    # ours: z_1 with the data's marginal variance at t = 1, DDIM steps in σ, Karras spacing, final x̂_0
    "ours": dict(prior_std=math.sqrt(1.0 + DATA_VAR), step="ddim", spacing="karras", denoise_last=True),
}


def matched_prior(x0: torch.Tensor, labels: torch.Tensor | None = None, cls: torch.Tensor | None = None):
    """(mean, std) of the Gaussian with the first two moments of the marginal at t = 1, x_0 + σ(1)·ε, per
    coordinate; with `labels` (the data's classes) and `cls` (the classes to sample), one row per sample."""
    x0 = check_points(x0)
    s1 = float(sigma(torch.tensor(1.0)))
    if labels is None:
        return x0.mean(0), torch.sqrt(s1 ** 2 + x0.var(0))
    n_classes = int(labels.max()) + 1
    mean = torch.stack([x0[labels == k].mean(0) for k in range(n_classes)])      # (K, 2)
    std = torch.stack([torch.sqrt(s1 ** 2 + x0[labels == k].var(0)) for k in range(n_classes)])
    cls = check_classes(cls, n_classes, len(cls))
    return mean[cls], std[cls]


SAMPLER_CHANGES = {"prior_std": "matched prior", "step": "DDIM step", "spacing": "Karras grid",
                   "denoise_last": "final x̂0"}


def sampler_variants() -> dict[str, dict]:
    """The course's sampler with each of our four changes switched on alone, and ours with each switched off:
    the ablation that says which change buys what."""
    course, ours = SAMPLERS["course"], SAMPLERS["ours"]
    return {"course": course, **{f"course + {label}": {**course, key: ours[key]} for key, label in
                                 SAMPLER_CHANGES.items()},
            "ours": ours, **{f"ours − {label}": {**ours, key: course[key]} for key, label in SAMPLER_CHANGES.items()}}


def generate(model: nn.Module, n: int, steps: int, sampler: str | dict = "ours", seed: int = 0, cls=None,
             eta: float = 0.0, callback=None, prior=None, memo: bool = True) -> torch.Tensor:
    """`n` samples with a sampler of `SAMPLERS` (its name, or a dict with the same four keys), from noise drawn by a
    generator seeded with `seed`.

    `prior` = (mean, std), broadcastable to (n, 2), replaces the sampler's N(0, prior_std²I); pass
    `matched_prior(...)` for a conditional model, whose classes each have their own marginal at t = 1.
    With `memo`, a `Denoiser`'s samples of at least `MEMO_MIN_POINTS` points are remembered (see `_memo_key`):
    asked again for the same weights and arguments, it returns a copy of the same tensor instead of sampling anew.
    """
    if isinstance(sampler, dict):
        if set(sampler) != set(SAMPLER_CHANGES):
            raise ValueError(f"a sampler dict needs exactly the keys {sorted(SAMPLER_CHANGES)}, got {sorted(sampler)}")
    elif sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use one of {list(SAMPLERS)}")
    n, steps = check_count(n, "n (the number of samples)"), check_steps(steps)
    cfg = sampler if isinstance(sampler, dict) else SAMPLERS[sampler]
    key = _memo_key(model, n, steps, cfg, seed, cls, eta, prior) if memo and callback is None else None
    if key is not None and key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key].clone()
    g = torch.Generator().manual_seed(seed)
    mean, std = prior if prior is not None else (0.0, cfg["prior_std"])
    z = mean + std * prior_noise(n, 1.0, g)
    out = sample(model, z, time_grid(steps, cfg["spacing"]), cls=cls, step=cfg["step"], eta=eta,
                 denoise_last=cfg["denoise_last"], generator=g, callback=callback)
    if key is not None:
        _remember(key, out.clone())
    return out


# ------------------------------------------------------------------------------------------ memo

# Notebook 01 asks for the same samples up to three times (the step sweep, the sampler comparison and the ablation
# share their course and ours runs): `generate` remembers them, least recently used first out.
MEMO_MIN_POINTS = 100    # smaller samples cost little to redraw, and a same-seed check on them stays a real one
MEMO_MAX_POINTS = 2_000_000
_MEMO: OrderedDict[tuple, torch.Tensor] = OrderedDict()


def _weights_digest(model: nn.Module) -> str:
    """sha1 of the model's class, mode and every parameter and buffer, by name: any change of a weight changes it."""
    digest = hashlib.sha1(f"{type(model).__qualname__}/{model.training}".encode())
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _value_key(value) -> tuple | None:
    """A hashable stand-in for a number, a tensor (dtype, shape, bytes) or a tuple of them; None for None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(_value_key(v) for v in value)
    value = torch.as_tensor(value).detach().cpu().contiguous()
    return str(value.dtype), tuple(value.shape), value.numpy().tobytes()


def _memo_key(model, n, steps, cfg, seed, cls, eta, prior) -> tuple | None:
    """Everything a sample depends on, or None when it is not remembered: only a `Denoiser`, whose output is a
    function of its weights alone (other modules may depend on plain attributes), and only `MEMO_MIN_POINTS` or
    more points."""
    if not isinstance(model, Denoiser) or n < MEMO_MIN_POINTS:
        return None
    return (_weights_digest(model), n, steps, tuple(sorted(cfg.items())), seed, float(eta), _value_key(cls),
            _value_key(prior))


def _remember(key: tuple, samples: torch.Tensor) -> None:
    _MEMO[key] = samples
    while sum(len(v) for v in _MEMO.values()) > MEMO_MAX_POINTS:
        _MEMO.popitem(last=False)


def forget_samples() -> None:
    """Empty `generate`'s memo (e.g. to time sampling itself)."""
    _MEMO.clear()


def square_quality(samples: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Fraction of samples inside [−1, 1]² and energy distance to a fresh uniform draw of the same size."""
    samples = check_points(samples, "samples")
    g = torch.Generator().manual_seed(10_000 + seed)
    reference = torch.rand(samples.shape, generator=g) * 2 - 1
    return {"frac_in_square": float((samples.abs() <= 1).all(1).float().mean()),
            "energy_distance": energy_distance(samples, reference)}


def overshoot(samples: torch.Tensor) -> torch.Tensor:
    """How far each sample outside [−1, 1]² lies beyond the square (ℓ∞ distance to it); (number outside,)."""
    excess = samples.abs().amax(dim=1) - 1
    return excess[excess > 0]


def edge_fill(samples: torch.Tensor, width: float = 0.1) -> dict[str, float]:
    """How well samples fill the border of [−1, 1]²: the fraction in the frame (inside the square, ℓ∞ norm above
    1 − `width`) and in its four corner squares (both |coordinates| above 1 − `width`), each with what a uniform
    sample puts there (``*_uniform``) and their ratio (``*_ratio``, 1 for a perfect sampler)."""
    samples = check_points(samples, "samples")
    inner = 1 - width
    inside = (samples.abs() <= 1).all(1)
    frame = inside & (samples.abs().amax(1) > inner)
    corners = inside & (samples.abs().amin(1) > inner)
    out = {"frame": float(frame.float().mean()), "frame_uniform": 1 - inner ** 2,
           "corners": float(corners.float().mean()), "corners_uniform": width ** 2}
    out["frame_ratio"] = out["frame"] / out["frame_uniform"]
    out["corners_ratio"] = out["corners"] / out["corners_uniform"]
    return out


def class_energy_distances(samples, cls, data, labels, seed: int = 0,
                           splits: int = 20) -> list[tuple[float, float, float]]:
    """Per class k, over `splits` random halvings of class k's data: (mean energy distance between class k's samples
    and one half, mean energy distance between the two halves, its standard deviation over the halvings). The second
    is what two draws of the same distribution give at these sizes, the chance level the first is compared with, and
    the third its spread; averaging over splits keeps one lucky halving from setting it. Each set is cut to the size
    of the smallest of the three. Pass held-out `data`: samples that copy the training points then score no better
    than chance."""
    samples, data = check_points(samples, "samples"), check_points(data, "data")
    if splits < 1:
        raise ValueError(f"splits must be at least 1, got {splits}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(int(labels.max()) + 1):
        own, mine = data[labels == k], samples[cls == k]
        n = min(len(own) // 2, len(mine))
        pairs = []
        for _ in range(splits):
            own = own[torch.randperm(len(own), generator=g)]
            pairs.append((energy_distance(mine[:n], own[:n]), energy_distance(own[n:2 * n], own[:n])))
        pairs = torch.tensor(pairs, dtype=torch.float64)
        sd = float(pairs[:, 1].std()) if splits > 1 else float("nan")
        out.append((float(pairs[:, 0].mean()), float(pairs[:, 1].mean()), sd))
    return out


def euler_step_ratio(steps: int) -> float:
    """Algorithm 1's Euler step in t against the DDIM step in σ on the course's equal-t grid: σ̇(t)·Δt over
    σ(t) − σ(t − Δt), the same for every step (σ is exponential). Above 1, each Euler step removes that many times
    more predicted noise than the σ it descends: 5Δt/(1 − e^{−5Δt}), 1.58 at T = 5."""
    dt = 1.0 / check_steps(steps)
    t = torch.tensor(1.0, dtype=torch.float64)
    return float(step_coefficient(t, t - dt, "euler") / step_coefficient(t, t - dt, "ddim"))


def mean_quality(model: nn.Module, sampler: str | dict, steps: int, n: int = 1000, seeds=range(5)) -> dict[str, float]:
    """`square_quality` averaged over seeds: one sample of `n` points per seed."""
    rows = [square_quality(generate(model, n, steps, sampler, seed=s), s) for s in seeds]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# E‖X − X'‖ for X, X' independent and uniform in the unit square (Ghosh 1951): (2 + √2 + 5·ln(1 + √2)) / 15
MEAN_DISTANCE_UNIT_SQUARE = (2 + math.sqrt(2) + 5 * math.log(1 + math.sqrt(2))) / 15


def energy_distance_floor(n: int = 1000) -> float:
    """What a perfect sampler scores on average: the expectation of `square_quality`'s energy distance (the
    V-statistic) between two independent draws of `n` points from U[−1, 1]². Its cross term has mean 2δ and each
    within-set term (n − 1)/n·δ (the n zero diagonal distances), so E = 2δ/n, with δ = E‖X − X'‖ = 2·0.5214…"""
    return 2 * (2 * MEAN_DISTANCE_UNIT_SQUARE) / check_count(n, "n")


def energy_distance_spread(n: int = 1000, pairs: int = 200, seed: int = 123) -> dict[str, float]:
    """Monte Carlo of that estimator over `pairs` independent uniform pairs: its mean (≈ the floor) and the standard
    deviation of one estimate, i.e. how far a perfect sampler's single score wanders from the floor."""
    g = torch.Generator().manual_seed(seed)
    values = [energy_distance(torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 2, generator=g) * 2 - 1)
              for _ in range(check_count(pairs, "pairs", 2))]
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))}


# ----------------------------------------------------------------------------------------------- bonus

def optimise_noise(model: nn.Module, target, ts: torch.Tensor, iters: int = 200, lr: float = 0.1,
                   z_init: torch.Tensor | None = None, progress: bool = True, **sample_kwargs):
    """Find an initial noise whose sample lands on `target`: Adam on ‖sample(z) − target‖², with gradients
    through every sampler step. Returns (z, final point, losses)."""
    target = check_points(torch.as_tensor(target, dtype=torch.float32).reshape(1, 2), "target")
    z = (z_init if z_init is not None else torch.zeros(1, 2)).clone().requires_grad_(True)
    iters = check_count(iters, "iters")
    opt = torch.optim.Adam([z], lr=lr)
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    losses = []
    with threads_for(len(z)):  # the backward pass's matmuls are as small as the sampler's
        try:
            for _ in tqdm(range(iters), desc="optimising z_1", disable=not progress, mininterval=1.0):
                out = sample(model, z, ts, requires_grad=True, **sample_kwargs)
                loss = (out - target).pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        finally:
            for p in frozen:
                p.requires_grad_(True)
        with torch.no_grad():
            final = sample(model, z.detach(), ts, **sample_kwargs)
    return z.detach(), final, losses
