"""The measurements notebook 01 explains its answers with: loss and diffusion term by noise level, the denoiser's
mean output, the class-matched prior in the ELBO, edge filling and the Euler step's excess."""
import math

import numpy as np

import matplotlib
import pytest
import torch

from helpers import diffusion, diffusion_exact as exact, diffusion_sampling as sampling

matplotlib.use("Agg")
MU, S = torch.tensor([0.3, -0.2]), 0.5


def test_loss_by_time_splits_the_heldout_loss():
    """Same draws as `heldout_loss`: the bins, weighted by their share of t, average back to it."""
    x = torch.rand(3000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = exact.UniformDenoiser()
    edges = torch.linspace(0, 1, 5)
    by_bin = diffusion.loss_by_time(model, x, edges, repeats=4)
    total = diffusion.heldout_loss(model, x, repeats=4)
    assert abs(float(by_bin.mean()) - total) < 0.01, (by_bin, total)
    # the optimal error is largest at the smallest noise (an interior point says nothing about ε) and falls with σ
    assert by_bin[0] > 0.95 and by_bin[-1] < 0.6 and (by_bin.diff() < 0).all(), by_bin


def test_diffusion_term_by_time_sums_to_the_elbos_term():
    model = exact.GaussianDenoiser(MU, S)
    x = torch.tensor([[0.3, -0.2], [1.5, 1.0]])
    parts = diffusion.diffusion_term_by_time(model, x, torch.linspace(0, 1, 6), n_samples=20_000)
    total = diffusion.elbo(model, x, 1000, n_samples=50_000, seed=1)["diffusion"]
    assert parts.shape == (2, 5)
    assert torch.allclose(parts.sum(1), total, rtol=0.03), (parts.sum(1), total)
    assert parts[1].sum() > parts[0].sum()  # a point far from the data costs more


def test_denoised_mean_of_the_exact_gaussian_denoiser():
    """For data N(μ, s²I), E_ε x̂_0(x + σε) = x − σ²/(s² + σ²)·(x − μ): near x at small σ, near μ at large σ."""
    model = exact.GaussianDenoiser(MU, S)
    x = torch.tensor([[1.0, 1.0]])
    ts = torch.tensor([0.0, 1.0])
    got = diffusion.denoised_mean(model, x, ts, n_samples=50_000)[:, 0]
    for row, t in zip(got, ts):
        s2 = float(diffusion.sigma(t)) ** 2
        want = x[0] - s2 / (S ** 2 + s2) * (x[0] - MU)
        assert torch.allclose(row, want, atol=0.02), (row, want)


def test_elbo_prior_mean_and_per_point_std():
    model = exact.GaussianDenoiser(MU, S)
    x = torch.tensor([[0.5, 0.5], [-0.5, 0.2]])
    base = diffusion.elbo(model, x, 10, n_samples=10, prior_std=1.2)
    same = diffusion.elbo(model, x, 10, n_samples=10, prior_std=torch.full((2, 2), 1.2), prior_mean=torch.zeros(2))
    assert torch.allclose(base["prior"], same["prior"])
    # the KL is smallest, log(std²)-ish only, when the prior is centred on the point
    centred = diffusion.elbo(model, x, 10, n_samples=10, prior_std=1.2, prior_mean=x)["prior"]
    assert (centred < base["prior"]).all()
    s1 = 1.0
    want = 2 * 0.5 * (s1 ** 2 / 1.44 - 1 + math.log(1.44 / s1 ** 2))
    assert torch.allclose(centred, torch.full((2,), want, dtype=torch.float64))
    with pytest.raises(ValueError):
        diffusion.elbo(model, x, 10, n_samples=10, prior_std=0.0)


def test_edge_fill_of_uniform_and_squeezed_samples():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(200_000, 2, generator=g) * 2 - 1
    fill = sampling.edge_fill(u, 0.1)
    assert abs(fill["frame_ratio"] - 1) < 0.03 and abs(fill["corners_ratio"] - 1) < 0.1, fill
    squeezed = sampling.edge_fill(0.9 * u, 0.1)
    assert squeezed["frame"] == 0.0 and squeezed["corners"] == 0.0
    assert fill["frame_uniform"] == pytest.approx(0.19) and fill["corners_uniform"] == pytest.approx(0.01)


def test_euler_step_ratio():
    assert sampling.euler_step_ratio(5) == pytest.approx(1 / (1 - math.exp(-1)), rel=1e-6)  # 1.58
    assert 1 < sampling.euler_step_ratio(1000) < 1.003


def test_step_coefficients_telescope_and_euler_removes_more():
    ts = diffusion.time_grid(20, "uniform").double()
    ddim = torch.stack([sampling.step_coefficient(a, b, "ddim") for a, b in zip(ts[:-1], ts[1:])])
    euler = torch.stack([sampling.step_coefficient(a, b, "euler") for a, b in zip(ts[:-1], ts[1:])])
    # DDIM steps descend exactly σ(t_end) − σ(t_start) in all; Euler's exceed each step's drop by one ratio
    assert float(ddim.sum()) == pytest.approx(float(diffusion.sigma(ts[-1]) - diffusion.sigma(ts[0])), rel=1e-9)
    assert torch.allclose(euler / ddim, torch.full_like(ddim, sampling.euler_step_ratio(20)), rtol=1e-5)  # a float32 grid
    assert (ddim < 0).all() and (euler < ddim).all()
    with pytest.raises(ValueError, match="unknown step"):
        sampling.step_coefficient(ts[0], ts[1], "heun")


def test_draw_regions_adds_the_disk_and_four_lines():
    import matplotlib.pyplot as plt

    from helpers.plotting import draw_regions
    fig, ax = plt.subplots()
    draw_regions(ax, 0.5)
    assert len(ax.patches) == 1 and len(ax.lines) == 4
    plt.close(fig)


def test_region_border_distance():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.6], [0.3, 0.45], [0.9, 0.9], [0.0, 0.3]])
    got = diffusion.region_border_distance(x, 0.5)
    want = torch.tensor([0.5, 0.0, (0.3 ** 2 + 0.45 ** 2) ** 0.5 - 0.5, 2 ** 0.5 * 0.9 - 0.5, 0.2])
    assert torch.allclose(got, want, atol=1e-6), got


def test_class_energy_distances_separate_a_shifted_class():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(2000, 2, generator=g) * 2 - 1
    labels = (data[:, 0] > 0).long()
    samples = torch.rand(2000, 2, generator=g) * 2 - 1
    cls = (samples[:, 0] > 0).long()
    samples[cls == 1] += torch.tensor([0.5, 0.0])            # class 1 drawn in the wrong place
    (ed0, floor0, _), (ed1, floor1, _) = sampling.class_energy_distances(samples, cls, data, labels)
    assert ed0 < 4 * floor0 and ed1 > 10 * floor1, (ed0, floor0, ed1, floor1)


def test_class_energy_distances_average_over_splits():
    g = torch.Generator().manual_seed(1)
    data = torch.rand(600, 2, generator=g) * 2 - 1
    labels = torch.zeros(600, dtype=torch.long)
    samples = torch.rand(300, 2, generator=g) * 2 - 1                # the same distribution as the data
    one = [sampling.class_energy_distances(samples, labels[:300], data, labels, seed=s, splits=1)[0][1] for s in range(8)]
    many = [sampling.class_energy_distances(samples, labels[:300], data, labels, seed=s, splits=20)[0][1] for s in range(8)]
    assert np.std(many) < 0.5 * np.std(one), (np.std(many), np.std(one))   # the chance level no longer hangs on one split
    (ed, chance, sd), = sampling.class_energy_distances(samples, labels[:300], data, labels)
    assert 0.3 < ed / chance < 3, (ed, chance)                     # same distribution: at the chance level
    # the printed spread is that of one halving's chance level (8 single halvings above)
    assert 0.4 < sd / np.std(one, ddof=1) < 2.5, (sd, np.std(one, ddof=1))
    with pytest.raises(ValueError, match="splits"):
        sampling.class_energy_distances(samples, labels[:300], data, labels, splits=0)


def test_samples_copying_the_training_points_are_at_chance_against_held_out_points():
    """Against the training points, copies of them score far below the two-halves level; against held-out points of
    the same distribution they score at it: the reason notebook 01 compares with held-out points."""
    g = torch.Generator().manual_seed(2)
    train, heldout = torch.rand(800, 2, generator=g) * 2 - 1, torch.rand(800, 2, generator=g) * 2 - 1
    zeros = torch.zeros(800, dtype=torch.long)
    copies = train[:400]
    (vs_train, chance_train, _), = sampling.class_energy_distances(copies, zeros[:400], train, zeros)
    (vs_heldout, chance_heldout, sd), = sampling.class_energy_distances(copies, zeros[:400], heldout, zeros)
    assert vs_train < 0.6 * chance_train, (vs_train, chance_train)
    assert abs(vs_heldout - chance_heldout) < 3 * sd, (vs_heldout, chance_heldout, sd)
