"""Exact denoisers for data whose noisy marginals are known in closed form: the ground truth that the tests and
notebook 01 measure the learned denoiser (and its loss) against, for the schedule of `diffusion`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from .diffusion import sigma


class GaussianDenoiser(nn.Module):
    """The exact ε-predictor for data N(μ, s²I): E[ε | x_t] = σ/(s² + σ²)·(x_t − μ). For tests."""

    def __init__(self, mean, std: float):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.std = float(std)

    def forward(self, x, t, cls=None):
        s = sigma(t)[:, None]
        return s / (self.std ** 2 + s ** 2) * (x - self.mean)


def _truncated_normal(y: torch.Tensor, s: torch.Tensor, a: float):
    """For x_0 ~ U[−a, a] and y = x_0 + s·ε (1-D): P(y)·(2a), E[x_0 | y] and Var(x_0 | y)/s².

    x_0 | y is N(y, s²) truncated to [−a, a] (Johnson, Kotz & Balakrishnan, ch. 13).
    """
    lo, hi = (-a - y) / s, (a - y) / s
    z = torch.special.ndtr(hi) - torch.special.ndtr(lo)
    phi_lo, phi_hi = [torch.exp(-u ** 2 / 2) / math.sqrt(2 * math.pi) for u in (lo, hi)]
    zs = z.clamp_min(1e-300)
    mean = y + s * (phi_lo - phi_hi) / zs
    var_ratio = 1 + (lo * phi_lo - hi * phi_hi) / zs - ((phi_lo - phi_hi) / zs) ** 2
    return z, mean, var_ratio


class UniformDenoiser(nn.Module):
    """The Bayes-optimal ε-predictor for data uniform on [−a, a]²: E[ε | x_t] = (x_t − E[x_0 | x_t])/σ."""

    n_classes = 0

    def __init__(self, a: float = 1.0):
        super().__init__()
        self.a = a

    def forward(self, x, t, cls=None):
        s = sigma(t)[:, None].to(torch.float64)
        _, mean, _ = _truncated_normal(x.double(), s, self.a)
        return ((x.double() - mean) / s).to(x.dtype)


def bayes_floor_uniform(a: float = 1.0, n_t: int = 400, n_y: int = 4001) -> float:
    """The lowest possible denoising loss E_t E‖ε − E[ε|x_t]‖²/d for data uniform on [−a, a]^d.

    Coordinates are independent, so it is the 1-D minimum error E_y[Var(x_0|y)]/σ², integrated over y
    (trapezoid) and over t ~ U(0, 1) (Gauss-Legendre).
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_t)
    total = 0.0
    for t, w in zip(0.5 * (nodes + 1), 0.5 * weights):
        s = float(sigma(torch.tensor(t, dtype=torch.float64)))
        y = torch.linspace(-a - 9 * s, a + 9 * s, n_y, dtype=torch.float64)
        z, _, var_ratio = _truncated_normal(y, torch.tensor(s, dtype=torch.float64), a)
        integrand = torch.where(z > 1e-12, z / (2 * a) * var_ratio, torch.zeros_like(z))  # p(y)·Var/σ²
        total += w * float(torch.trapezoid(integrand, y))
    return total
