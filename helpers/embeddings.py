"""Non-amortised embeddings, the end point of "peeling back" VICReg: Laplacian eigenmaps on a kNN graph and
per-image codes optimised directly with the VICReg loss.

Both need a notion of which images are neighbours; as in the course, it comes from the features of an
*untrained* small CNN (:class:`RandomCNN`), a fixed, label-free similarity in which nearby images look alike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.manifold import SpectralEmbedding

from .vicreg import normalize, to_float, vicreg_loss


class RandomCNN(nn.Module):
    """4 convolutions (3×3, ReLU, 2×2 max-pool after each) and a linear layer to `out_dim`; used untrained, as a
    fixed random feature map: (B, 3, 32, 32) → (B, out_dim)."""

    def __init__(self, width: int = 32, out_dim: int = 1024):
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in * 2 * 2, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))                               # (B, out_dim)


@torch.no_grad()
def random_cnn_features(images: np.ndarray, seed: int = 0, out_dim: int = 1024, batch_size: int = 1000) -> torch.Tensor:
    """Features of uint8 (N, 32, 32, 3) images under an untrained `RandomCNN` initialised with `seed`."""
    with torch.random.fork_rng():  # leaves the global generator as it was
        torch.manual_seed(seed)
        net = RandomCNN(out_dim=out_dim).eval()
    return torch.cat([net(normalize(to_float(images[s:s + batch_size], "cpu")))
                      for s in range(0, len(images), batch_size)])


def laplacian_eigenmaps(features: torch.Tensor, n_components: int = 64, n_neighbors: int = 10,
                        seed: int = 0) -> np.ndarray:
    """Laplacian eigenmaps (Belkin & Niyogi 2003) with scikit-learn's `SpectralEmbedding`: the bottom eigenvectors
    of the normalised Laplacian of the symmetrised `n_neighbors`-NN graph of `features`. (N, n_components)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or n_components >= len(x) or n_neighbors >= len(x):
        raise ValueError(f"need (N, d) features with N > n_components ({n_components}) and n_neighbors "
                         f"({n_neighbors}), got {x.shape}")
    return SpectralEmbedding(n_components=n_components, affinity="nearest_neighbors", n_neighbors=n_neighbors,
                             random_state=seed).fit_transform(x).astype(np.float32)


def optimise_codes(neighbours: torch.Tensor, dim: int = 128, steps: int = 2000, batch_size: int = 256,
                   lr: float = 5e-2, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0, seed: int = 0,
                   callback=None) -> torch.Tensor:
    """Per-image codes z_i (no encoder) trained with the VICReg loss on pairs (z_i, z_j), j one of i's neighbours
    in `neighbours` (N, k), drawn at random each step.

    Why the fix: with generated views every view of image i maps to the same free code z_i, so invariance is 0 for
    any codes and nothing ties the codes to image content; pairing *different* images that are neighbours makes
    the invariance term pull similar images together — a stochastic Laplacian eigenmap with VICReg's variance and
    covariance terms in place of the eigenvectors' orthogonality constraint. `callback(step, losses)` per step.
    """
    neighbours = torch.as_tensor(neighbours)
    n, k = neighbours.shape
    if batch_size < 2 or batch_size > n:
        raise ValueError(f"batch_size must lie in 2..{n} (the number of codes), got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    codes = nn.Parameter(torch.randn(n, dim, generator=g))
    opt = torch.optim.Adam([codes], lr=lr)
    for step in range(steps):
        i = torch.randint(n, (batch_size,), generator=g)
        j = neighbours[i, torch.randint(k, (batch_size,), generator=g)]
        out = vicreg_loss(codes[i], codes[j], lam, mu, nu)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if callback is not None:
            callback(step, {key: v.item() for key, v in out.items()})
    return codes.detach()
