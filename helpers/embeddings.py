"""Non-amortised embeddings, the end point of "peeling back" VICReg: Laplacian eigenmaps on a kNN graph and
per-image codes optimised directly with the VICReg loss.

Both need a notion of which images are neighbours; as in the course, it comes from the features of an
*untrained* small CNN (:class:`RandomCNN`), a fixed, label-free similarity in which nearby images look alike.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from scipy import sparse
from scipy.sparse.linalg import eigsh
from sklearn.neighbors import kneighbors_graph

from .vicreg import vicreg_loss
from .vicreg_training import FEATURE_BATCH, features


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


def random_cnn_features(images: np.ndarray, seed: int = 0, out_dim: int = 1024,
                        batch_size: int = FEATURE_BATCH) -> torch.Tensor:
    """Features of uint8 (N, 32, 32, 3) images under an untrained `RandomCNN` initialised with `seed`, by
    `vicreg_training.features` in inference mode. They choose the kNN graphs, where a rounding difference reorders
    near-tied neighbours, so they stay bitwise those of the plain forward: fp32, NCHW (channels-last would be about
    2.4× faster here, but rounds differently; benchmarks/bench_vicreg.py)."""
    with torch.random.fork_rng():  # leaves the global generator as it was
        torch.manual_seed(seed)
        net = RandomCNN(out_dim=out_dim)
    return features(net, images, "cpu", batch_size, bf16=False, channels_last=False)


def knn_affinity(features, n_neighbors: int) -> sparse.csr_array:
    """The symmetrised kNN graph W = (A + Aᵀ)/2 of `features` (N, d) (ℓ2, float64): w_ij = 1 when i and j are
    among each other's neighbours, ½ when one way. As in scikit-learn's `SpectralEmbedding`, a point counts among
    its own `n_neighbors` (a self-loop, which the Laplacian ignores), so each has n_neighbors − 1 others."""
    a = kneighbors_graph(np.asarray(features, dtype=np.float64), n_neighbors, include_self=True)
    return sparse.csr_array(0.5 * (a + a.T))


def spectral_embedding(affinity, n_components: int, seed: int = 0, tol: float = 0.0) -> np.ndarray:
    """The bottom eigenvectors of the normalised Laplacian L = I − D^-½ W D^-½ of the graph `affinity` W (N, N),
    self-loops ignored, each divided by √d and signed so that its largest entry is positive, without the trivial
    first one (Belkin & Niyogi 2003; scikit-learn's conventions): (N, n_components).

    Solved as the top n_components + 1 eigenvectors of S = D^-½ W D^-½ (eigenvalues 1 − λ) by Lanczos to machine
    precision (ARPACK `eigsh`, which="LA", tol=0): one sparse product per step, 0.7 s on the notebook's
    10,000-point graph (2-core Xeon). scikit-learn's default, shift-invert around λ = 0, first factorises L, which
    fills in to ~45M entries (48 s on the same CPU); both give the same eigenvectors to 1e-11°
    (benchmarks/bench_eigenmaps.py, which also times LOBPCG). `tol`: ARPACK's relative accuracy of the
    eigenvalues (0: machine precision)."""
    w = sparse.csr_array(affinity, dtype=np.float64)
    n = w.shape[0]
    if w.ndim != 2 or w.shape[1] != n or n_components < 1 or n_components + 1 >= n:
        raise ValueError(f"need a square (N, N) affinity with N > n_components + 1 ({n_components + 1}), got "
                         f"{w.shape}")
    if abs(w - w.T).max() > 1e-10 * abs(w).max():
        raise ValueError("the affinity must be symmetric (an undirected graph): pass (A + A.T) / 2")
    w = w - sparse.diags_array(w.diagonal())                                       # self-loops do not count
    degree = np.asarray(w.sum(axis=1)).ravel()
    if (degree <= 0).any():
        raise ValueError(f"{int((degree <= 0).sum())} point(s) have no neighbour: the Laplacian is undefined there")
    scale = sparse.diags_array(1 / np.sqrt(degree))
    s = (scale @ w @ scale).tocsr()                                                 # D^-½ W D^-½
    v0 = np.random.RandomState(seed).uniform(-1, 1, n)                             # ARPACK's own start, seeded
    values, vectors = eigsh(s, k=n_components + 1, which="LA", tol=tol, v0=v0)
    y = vectors[:, np.argsort(-values)] / np.sqrt(degree)[:, None]                # λ ascending, (N, k + 1)
    y *= np.sign(y[np.abs(y).argmax(axis=0), np.arange(y.shape[1])])
    return y[:, 1:]


def laplacian_eigenmaps(features: torch.Tensor, n_components: int = 64, n_neighbors: int = 10,
                        seed: int = 0) -> np.ndarray:
    """Laplacian eigenmaps (Belkin & Niyogi 2003): the `spectral_embedding` of the symmetrised `n_neighbors`-NN
    graph of `features` (`knn_affinity`): (N, n_components), float32. The same embedding as scikit-learn's
    `SpectralEmbedding(affinity="nearest_neighbors")` to float32 rounding, 20× faster on the notebook's graph."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or n_components + 1 >= len(x) or not 2 <= n_neighbors < len(x):
        raise ValueError(f"need (N, d) features with N > n_components + 1 ({n_components + 1}) and N > "
                         f"n_neighbors >= 2 ({n_neighbors}, the point itself included), got {x.shape}")
    return spectral_embedding(knn_affinity(x, n_neighbors), n_components, seed).astype(np.float32)


def optimise_codes(neighbours: torch.Tensor, dim: int = 128, steps: int = 2000, batch_size: int = 256,
                   lr: float = 5e-2, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0, seed: int = 0,
                   callback=None) -> torch.Tensor:
    """Per-image codes z_i (no encoder) trained with the VICReg loss on pairs (z_i, z_j), j one of i's neighbours
    in `neighbours` (N, k), drawn at random each step.

    Why the fix: with generated views every view of image i maps to the same free code z_i, so invariance is 0 for
    any codes and nothing ties the codes to image content; pairing *different* images that are neighbours makes
    the invariance term pull similar images together — a stochastic Laplacian eigenmap with VICReg's variance and
    covariance terms in place of the eigenvectors' orthogonality constraint. `callback(step, losses)` per step.
    Bitwise reproducible on a CPU for a seed, whatever the number of threads.
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
        # index_select, not codes[i]: the latter's backward (index_put_ with accumulate) adds repeated rows' gradients
        # in a thread-dependent order on a CPU, so the codes were not reproducible; index_add_ adds them in order
        out = vicreg_loss(codes.index_select(0, i), codes.index_select(0, j), lam, mu, nu)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if callback is not None:
            callback(step, {key: v.item() for key, v in out.items()})
    return codes.detach()
