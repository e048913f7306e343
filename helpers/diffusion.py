"""A variance-exploding diffusion model in 2-D: schedule, the learned denoiser, training, likelihood (ELBO).

The course's formulation (Song et al. 2021, "Score-based generative modeling through SDEs"; Karras et al.
2022, "Elucidating the design space"): scale S(t) = 1, noise level σ(t) = exp(5(t − 1)), so
x_t = x_0 + σ(t)·ε with t ∈ [0, 1]. The denoiser D(x_t, t) predicts ε and is trained with ‖D − ε‖².
Sampling from it is in `diffusion_sampling`; the exact denoisers the learned one is measured against in
`diffusion_exact`.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .training import warmup_cosine

SIGMA_RATE = 5.0  # σ(t) = exp(SIGMA_RATE·(t − 1))
DATA_VAR = 1.0 / 3.0  # per-coordinate variance of the uniform distribution on [-1, 1]


# ------------------------------------------------------------------------------------------- schedule

def sigma(t: torch.Tensor) -> torch.Tensor:
    """Noise level σ(t) = e^{5(t−1)}: σ(0) = e^{-5} ≈ 0.0067, σ(1) = 1."""
    return torch.exp(SIGMA_RATE * (torch.as_tensor(t) - 1.0))


def sigma_dot(t: torch.Tensor) -> torch.Tensor:
    """dσ/dt = 5·σ(t), analytic."""
    return SIGMA_RATE * sigma(t)


def t_of_sigma(s: torch.Tensor) -> torch.Tensor:
    """Inverse of σ(t)."""
    return 1.0 + torch.log(torch.as_tensor(s)) / SIGMA_RATE


def snr(t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio 1/σ(t)² (the signal scale is 1)."""
    return sigma(t) ** -2


def time_grid(steps: int, spacing: str = "uniform", rho: float = 7.0) -> torch.Tensor:
    """`steps` + 1 decreasing times from 1 to 0.

    ``uniform``: equal steps in t (geometric in σ, the course's choice). ``karras``: the σ spacing of
    Karras et al. 2022, eq. 5, σ_i = (σ_max^{1/ρ} + i/N·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ.
    """
    steps = check_steps(steps)
    if spacing == "uniform":
        return torch.linspace(1.0, 0.0, steps + 1)
    if spacing == "karras":
        lo, hi = sigma(torch.tensor(0.0)) ** (1 / rho), sigma(torch.tensor(1.0)) ** (1 / rho)
        ramp = torch.linspace(0, 1, steps + 1)
        return t_of_sigma((hi + ramp * (lo - hi)) ** rho).clamp(0.0, 1.0)
    raise ValueError(f"unknown spacing {spacing!r}; use 'uniform' or 'karras'")


def add_noise(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Forward process x_t = x_0 + σ(t)·ε, one t per row."""
    return x0 + sigma(t)[:, None] * eps


def forward_trajectory(x0: torch.Tensor, ts: torch.Tensor, generator=None) -> torch.Tensor:
    """One path of the forward process at increasing times `ts`: independent Gaussian increments of
    variance σ(t_k)² − σ(t_{k−1})², so that every x_{t_k} has the marginal x_0 + σ(t_k)·ε. (len(ts), N, 2)."""
    x0 = check_points(x0)
    ts = torch.as_tensor(ts, dtype=torch.float32)
    if (ts.diff() <= 0).any():
        raise ValueError("ts must increase")
    var = torch.cat([sigma(ts[:1]) ** 2, (sigma(ts) ** 2).diff()])                     # (K,)
    steps = var.sqrt()[:, None, None] * torch.randn(len(ts), *x0.shape, generator=generator)
    return x0 + steps.cumsum(0)


# ------------------------------------------------------------------------------------------ threads

SMALL_BATCH = 64  # at most this many points: the denoiser's matmuls are too small to share between threads


@contextlib.contextmanager
def threads(n: int | None):
    """Run the block on `n` of torch's intra-op threads (None: as set), then restore the previous count.

    For a batch of a few points every matmul of the denoiser is a few microseconds of work: splitting it over threads
    buys nothing on idle cores (notebook 01's one-point bonus ran 1.1–1.2× faster on one thread than on two), and
    beside any other busy program every parallel section waits for a descheduled thread (the same bonus: 76–128×
    faster on one; benchmarks/bench_diffusion.py, 2-core Xeon). The results do not depend on the count (tested)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(n_points: int):
    """`threads(1)` for a batch of at most `SMALL_BATCH` points, else the thread count as set."""
    return threads(1 if n_points <= SMALL_BATCH else None)


# ------------------------------------------------------------------------------------ input checks

def check_steps(steps: int) -> int:
    if int(steps) != steps or steps <= 0:
        raise ValueError(f"the number of steps T must be a positive integer, got {steps!r}")
    return int(steps)


def check_points(x: torch.Tensor, name: str = "points") -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != 2 or not len(x):
        raise ValueError(f"{name} must have shape (N, 2) with N >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return x


def check_count(value, name: str, minimum: int = 1) -> int:
    """`value` as an int ≥ `minimum`, or a ValueError that names `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_times(ts) -> torch.Tensor:
    """Sampling times: at least two, finite, in [0, 1], strictly decreasing (from noise towards data)."""
    ts = torch.as_tensor(ts, dtype=torch.float32)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"ts must be a 1-D sequence of at least two times, got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all() or ts.min() < 0 or ts.max() > 1:
        raise ValueError(f"times must be finite and lie in [0, 1], got {ts.min().item()}..{ts.max().item()}")
    if not (ts[1:] < ts[:-1]).all():
        raise ValueError("times must decrease strictly, from t = 1 (noise) towards t = 0 (data), e.g. time_grid(T)")
    return ts


# ----------------------------------------------------------------------------------------- denoisers

class Denoiser(nn.Module):
    """A small MLP with LeakyReLU that predicts ε from (x_t, t) and, optionally, a class.

    The input is preconditioned as in Karras et al. 2022 (c_in = 1/sqrt(σ² + σ_data²)) so that it has unit
    variance at every noise level, plus `x_freq` Fourier features of it (Tancik et al. 2020), which let the
    net draw the sharp edges of the square at small σ; t enters through log σ(t) and `n_freq` Fourier
    features. A class goes
    through ``nn.Embedding`` and is concatenated with the input, so the first fully connected layer mixes
    them.
    """

    def __init__(self, hidden: int = 128, depth: int = 3, n_classes: int = 0, class_dim: int = 16,
                 n_freq: int = 4, x_freq: int = 2):
        super().__init__()
        self.n_classes = n_classes
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freq, dtype=torch.float32))
        self.register_buffer("x_freqs", math.pi * 2.0 ** torch.arange(x_freq, dtype=torch.float32))
        self.embed = nn.Embedding(n_classes, class_dim) if n_classes else None
        width = 2 + 4 * x_freq + 1 + 2 * n_freq + (class_dim if n_classes else 0)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        s = sigma(t)[:, None]                                               # (N, 1)
        x_in = x / torch.sqrt(s ** 2 + DATA_VAR)                            # (N, 2), unit variance
        phase = t[:, None] * self.freqs                                     # (N, F)
        x_phase = (x_in[:, :, None] * self.x_freqs).flatten(1)               # (N, 2·Fx)
        feats = [x_in, torch.sin(x_phase), torch.cos(x_phase), torch.log(s) / SIGMA_RATE,
                 torch.sin(phase), torch.cos(phase)]
        if self.n_classes:
            if cls is None:
                raise ValueError("this denoiser is conditional: pass the class of every point")
            feats.append(self.embed(check_classes(cls, self.n_classes, len(x))))
        elif cls is not None:
            raise ValueError("this denoiser is unconditional: it cannot sample a class (cls must be None); train "
                             "one with n_classes > 0 for class-conditional samples")
        return self.net(torch.cat(feats, dim=1))                            # (N, 2) predicted ε


def check_classes(cls: torch.Tensor, n_classes: int, n: int) -> torch.Tensor:
    cls = torch.as_tensor(cls, dtype=torch.long)
    if cls.ndim == 0:
        cls = cls.expand(n)
    if cls.shape != (n,):
        raise ValueError(f"classes must have shape ({n},), got {tuple(cls.shape)}")
    if len(cls) and (cls.min() < 0 or cls.max() >= n_classes):
        raise ValueError(f"class index out of range: got {cls.min().item()}..{cls.max().item()}, "
                         f"the model has classes 0..{n_classes - 1}")
    return cls


# ------------------------------------------------------------------------------------------ training

def denoising_loss(model: nn.Module, x0: torch.Tensor, cls=None, generator=None) -> torch.Tensor:
    """‖D(x_t, t) − ε‖² averaged over points and coordinates, with one t ~ U(0, 1) per point."""
    t = torch.rand(len(x0), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    return F.mse_loss(model(add_noise(x0, t, eps), t, cls), eps)


@torch.no_grad()
def denoising_losses(model: nn.Module, x0: torch.Tensor, cls=None, repeats: int = 20, seed: int = 1234) -> np.ndarray:
    """The denoising loss on the points for each of `repeats` fresh (t, ε) draws per point, (repeats,). Two models
    (or two calls) with the same `seed` and the same number of points see the same draws, so their per-draw
    differences give a paired comparison and its standard error."""
    g = torch.Generator().manual_seed(seed)
    x0 = check_points(x0, "held-out points")
    repeats = check_count(repeats, "repeats")
    return np.array([denoising_loss(model, x0, cls, g).item() for _ in range(repeats)])


def heldout_loss(model: nn.Module, x0: torch.Tensor, cls=None, repeats: int = 20, seed: int = 1234) -> float:
    """The denoising loss on held-out points, averaged over `repeats` fresh (t, ε) draws per point."""
    return float(denoising_losses(model, x0, cls, repeats, seed).mean())


def train(model: nn.Module, x0: torch.Tensor, epochs: int, cls=None, lr: float = 1e-3,
          batch_size: int | None = None, seed: int = 0, cosine: bool = True, progress: bool = True) -> list[float]:
    """Adam on the denoising loss; full batch unless `batch_size`. Returns the loss of every batch.

    With `cosine` the learning rate decays from `lr` to 0 along a half cosine (Loshchilov & Hutter 2017);
    the course keeps it constant, which leaves the weights noisier at the end (see the notebook).
    """
    x0 = check_points(x0, "training points")
    epochs = check_count(epochs, "epochs")
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size (or None for full batch)")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_batches = epochs * math.ceil(len(x0) / (batch_size or len(x0)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: warmup_cosine(k, n_batches) if cosine else 1.0)
    batch_size = batch_size or len(x0)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc="training", disable=not progress, mininterval=1.0):
        order = torch.randperm(len(x0), generator=g)
        for start in range(0, len(x0), batch_size):
            idx = order[start:start + batch_size]
            loss = denoising_loss(model, x0[idx], None if cls is None else cls[idx], g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------- likelihood

def elbo(model: nn.Module, x: torch.Tensor, steps: int, cls=None, n_samples: int = 1000,
         prior_std=1.0, seed: int = 0, batch: int = 4096, prior_mean=0.0) -> dict[str, torch.Tensor]:
    """A Monte Carlo lower bound on log p(x) per point (Kingma et al. 2021, "Variational diffusion models").

    Diffusion term, with dt = 1/T, t_i = i/T, s = t_i − dt and i uniform in 1..T (stratified):
    L_T(x) = T/2 · E_{ε,i}[(SNR(s) − SNR(t_i))·‖x − x̂_0(z_t, t_i)‖²], computed in ε-space as
    T/2 · E[(σ_t²/σ_s² − 1)·‖ε − D(z_t, t_i)‖²] (same value, no large SNRs).
    −L_T is the course's estimate. It is a bound on log p(x) only with the two terms it leaves out:
    log p(x) ≥ E[log N(x; z_0, σ(0)²I)] − KL(q(z_1|x) ‖ N(prior_mean, prior_std²)) − L_T(x), both closed form.
    `prior_mean` and `prior_std` are numbers or tensors broadcastable to (N, 2) (per point and coordinate), e.g. a
    conditional model's class-matched prior from `diffusion_sampling.matched_prior`.
    Returns ``diffusion`` (L_T), ``prior``, ``reconstruction`` and ``elbo``, each of shape (N,).
    """
    x = check_points(x)
    steps = check_steps(steps)
    if n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    g = torch.Generator().manual_seed(seed)
    n, d = x.shape
    total = torch.zeros(n, dtype=torch.float64)
    with torch.no_grad():
        xs = x.repeat_interleave(n_samples, 0)                                   # (N·S, 2)
        cs = None if cls is None else check_classes(cls, model.n_classes, n).repeat_interleave(n_samples)
        owner = torch.arange(n).repeat_interleave(n_samples)
        # low-discrepancy times (Kingma et al. 2021, app. I): the S draws of a point cover 1..T evenly
        u = (torch.arange(n_samples) + torch.rand(n, 1, generator=g)) / n_samples            # (N, S)
        steps_i = (u * steps).long().clamp(max=steps - 1).flatten() + 1                      # (N·S,)
        for lo in range(0, len(xs), batch):
            xb = xs[lo:lo + batch]
            t = steps_i[lo:lo + batch] / steps
            eps = torch.randn(xb.shape, generator=g)
            err = (eps - model(add_noise(xb, t, eps), t, None if cs is None else cs[lo:lo + batch])).pow(2).sum(1)
            weight = math.expm1(2 * SIGMA_RATE / steps)                          # σ_t²/σ_s² − 1, constant here
            total.index_add_(0, owner[lo:lo + batch], (0.5 * steps * weight * err).double())
    diffusion = total / n_samples
    s0, s1 = float(sigma(torch.tensor(0.0))), float(sigma(torch.tensor(1.0)))
    recon = torch.full((n,), -0.5 * d * (math.log(2 * math.pi * s0 ** 2) + 1), dtype=torch.float64)
    m = torch.as_tensor(prior_mean, dtype=torch.float64).expand(n, d)
    v = torch.as_tensor(prior_std, dtype=torch.float64).expand(n, d) ** 2
    if (v <= 0).any():
        raise ValueError("prior_std must be positive")
    prior = 0.5 * (s1 ** 2 / v - 1 + torch.log(v / s1 ** 2) + (x.double() - m) ** 2 / v).sum(1)  # KL per point
    return {"diffusion": diffusion, "prior": prior, "reconstruction": recon, "elbo": recon - prior - diffusion}


def loss_by_time(model: nn.Module, x0: torch.Tensor, edges, repeats: int = 20, seed: int = 1234) -> torch.Tensor:
    """The held-out denoising loss split by noise level: the mean of ‖D − ε‖²/2 over the (t, ε) draws of
    `heldout_loss` (same `seed`, same draws) whose t falls in each bin [edges[k], edges[k+1]); (len(edges) − 1,)."""
    g = torch.Generator().manual_seed(seed)
    x0 = check_points(x0, "held-out points")
    edges = torch.as_tensor(edges, dtype=torch.float32)
    total, count = torch.zeros(len(edges) - 1, dtype=torch.float64), torch.zeros(len(edges) - 1)
    with torch.no_grad():
        for _ in range(check_count(repeats, "repeats")):
            t = torch.rand(len(x0), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            err = (model(add_noise(x0, t, eps), t) - eps).pow(2).mean(1)
            k = torch.bucketize(t, edges, right=True) - 1
            ok = (k >= 0) & (k < len(total))
            total.index_add_(0, k[ok], err[ok].double())
            count.index_add_(0, k[ok], torch.ones(int(ok.sum())))
    return total / count.clamp_min(1)


@torch.no_grad()
def diffusion_term_by_time(model: nn.Module, x: torch.Tensor, edges, cls=None, n_samples: int = 2000,
                           seed: int = 0) -> torch.Tensor:
    """Where in time the diffusion term L_T of `elbo` comes from: for T → ∞ its integrand is
    SIGMA_RATE·E_ε‖ε − D(x + σ(t)ε, t)‖² dt (the SNR difference is 2·SIGMA_RATE·dt/σ² and ‖x − x̂_0‖² = σ²‖ε − D‖²),
    so bin k holds SIGMA_RATE·(b − a)·E‖ε − D‖² with t uniform in [a, b). Returns (N, bins); rows sum to ≈ L_T."""
    x = check_points(x)
    edges = torch.as_tensor(edges, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    xs = x.repeat_interleave(n_samples, 0)
    cs = None if cls is None else check_classes(cls, model.n_classes, n).repeat_interleave(n_samples)
    out = torch.zeros(n, len(edges) - 1, dtype=torch.float64)
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        t = a + (b - a) * (torch.arange(len(xs)) % n_samples + torch.rand(len(xs), generator=g)) / n_samples
        eps = torch.randn(xs.shape, generator=g)
        err = (eps - model(add_noise(xs, t, eps), t, cs)).pow(2).sum(1).double()
        out[:, k] = SIGMA_RATE * float(b - a) * err.view(n, n_samples).mean(1)
    return out


@torch.no_grad()
def denoised_mean(model: nn.Module, x: torch.Tensor, ts, cls=None, n_samples: int = 2000, seed: int = 0):
    """E_ε[x̂_0(x + σ(t)ε, t)] with x̂_0 = z − σ(t)·D(z, t), for each point of `x` at each time of `ts`:
    where the denoiser sends the noisy versions of x. Shape (len(ts), N, 2)."""
    x = check_points(x)
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    xs = x.repeat_interleave(n_samples, 0)
    cs = None if cls is None else check_classes(cls, model.n_classes, n).repeat_interleave(n_samples)
    rows = []
    for t in torch.as_tensor(ts, dtype=torch.float32):
        tt = t.expand(len(xs))
        z = add_noise(xs, tt, torch.randn(xs.shape, generator=g))
        rows.append((z - sigma(tt)[:, None] * model(z, tt, cs)).view(n, n_samples, 2).mean(1))
    return torch.stack(rows)


# ------------------------------------------------------------------------------------------- regions

REGION_NAMES = ("centre disk", "top right", "top left", "bottom left", "bottom right")


def square_regions(x: torch.Tensor, radius: float = 0.5) -> torch.Tensor:
    """Class of each point: 0 inside the centre disk of `radius`, else 1..4 by quadrant (counter-clockwise)."""
    x = check_points(x)
    quadrant = torch.where(x[:, 0] >= 0, torch.where(x[:, 1] >= 0, 1, 4), torch.where(x[:, 1] >= 0, 2, 3))
    return torch.where(x.norm(dim=1) < radius, 0, quadrant)


def region_border_distance(x: torch.Tensor, radius: float = 0.5) -> torch.Tensor:
    """Distance of each point to the nearest border between the classes of `square_regions`: the circle of
    `radius`, or, outside it, the axes that separate the quadrants. (N,)."""
    x = check_points(x)
    r = x.norm(dim=1)
    to_circle = (r - radius).abs()
    # an axis borders two quadrants only outside the disk: beyond it, the distance to the nearer axis
    to_axes = torch.where(r >= radius, x.abs().amin(1), torch.full_like(r, float("inf")))
    return torch.minimum(to_circle, to_axes)


def pixel_extent(centres) -> tuple[float, float, float, float]:
    """The `imshow` extent that puts each pixel of a square grid over its own grid point: an evenly spaced 1-D
    grid of pixel centres (e.g. ``torch.linspace(-1.8, 1.8, 25)``) widened by half a spacing at both ends."""
    c = torch.as_tensor(centres, dtype=torch.float64)
    if c.ndim != 1 or len(c) < 2:
        raise ValueError("centres must be a 1-D grid of at least two points")
    half = float(c[1] - c[0]) / 2
    lo, hi = float(c[0]) - half, float(c[-1]) + half
    return (lo, hi, lo, hi)


def mean_noise_distance(s, dim: int = 2):
    """E‖x_t − x_0‖ = σ·E‖ε‖ for ε ~ N(0, I_dim): σ·√2·Γ((dim+1)/2)/Γ(dim/2), i.e. σ·√(π/2) in two dimensions."""
    return s * math.sqrt(2) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
