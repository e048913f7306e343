"""Evaluation: sample quality (energy distance) and, for the representation notebooks, probes and kNN."""
from __future__ import annotations

import torch


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo 2013), V-statistic.

    Zero only when the two distributions agree; two samples of one distribution give a small positive value
    (about 2·E‖X − X'‖/n from the diagonals), so compare it with that floor.
    """
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"energy_distance needs two non-empty (N, d) sets of one dimension, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())
