import math

import numpy as np
import pytest
import torch

from helpers import diffusion, diffusion_exact as exact, diffusion_sampling as sampling

MU, S = torch.tensor([0.3, -0.2]), 0.5


def gaussian_logpdf(x, mean, std):
    d = x.shape[1]
    return -0.5 * ((x - mean) ** 2).sum(1) / std ** 2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def test_sigma_dot_matches_finite_differences():
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    h = 1e-6
    numeric = (diffusion.sigma(t + h) - diffusion.sigma(t - h)) / (2 * h)
    assert torch.allclose(diffusion.sigma_dot(t), numeric, rtol=1e-6)
    assert float(diffusion.sigma(torch.tensor(1.0))) == 1.0
    assert torch.allclose(diffusion.t_of_sigma(diffusion.sigma(t)), t)


def test_elbo_weight_identity():
    """The ELBO computes (SNR(s) − SNR(t))·‖x − x̂_0‖² as (σ_t²/σ_s² − 1)·‖ε − D‖²: the weights must agree."""
    for steps in (4, 1000):
        t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        lhs = (diffusion.snr(t - 1 / steps) - diffusion.snr(t)) * diffusion.sigma(t) ** 2
        assert torch.allclose(lhs, torch.full_like(t, math.expm1(2 * diffusion.SIGMA_RATE / steps)))


def test_forward_process_marginal():
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[0.5, -1.5]]).expand(200_000, 2)
    t = torch.full((200_000,), 0.8)
    xt = diffusion.add_noise(x0, t, torch.randn(x0.shape, generator=g))
    assert torch.allclose(xt.mean(0), x0[0], atol=4 * diffusion.sigma(t[0]) / math.sqrt(200_000))
    assert torch.allclose(xt.std(0), diffusion.sigma(t[:2]), rtol=0.01)


@pytest.mark.parametrize("spacing", ["uniform", "karras"])
def test_time_grid(spacing):
    ts = diffusion.time_grid(10, spacing)
    assert len(ts) == 11 and ts[0] == 1.0 and abs(float(ts[-1])) < 1e-6 and (ts.diff() < 0).all()
    with pytest.raises(ValueError, match="positive integer"):
        diffusion.time_grid(0)


def test_exact_gaussian_denoiser_reproduces_the_data():
    model = exact.GaussianDenoiser(MU, S)
    g = torch.Generator().manual_seed(0)
    n = 20_000
    z = MU + math.sqrt(S ** 2 + 1.0) * torch.randn(n, 2, generator=g)  # the true marginal at t = 1
    x = sampling.sample(model, z, diffusion.time_grid(200))
    se_mean, se_var = S / math.sqrt(n), S ** 2 * math.sqrt(2 / n)
    assert torch.allclose(x.mean(0), MU, atol=4 * se_mean)
    assert torch.allclose(x.var(0), torch.full((2,), S ** 2 + diffusion.sigma(torch.tensor(0.0)) ** 2), atol=4 * se_var)
    course = sampling.sample(model, z, diffusion.time_grid(1000), step="euler")  # Algorithm 1's Euler step agrees
    assert torch.allclose(course.var(0), x.var(0), rtol=0.02)


def test_ancestral_sampler_also_reproduces_the_data_and_is_random():
    model = exact.GaussianDenoiser(MU, S)
    z = MU + math.sqrt(S ** 2 + 1.0) * torch.randn(20_000, 2, generator=torch.Generator().manual_seed(1))
    a = sampling.sample(model, z, diffusion.time_grid(200), eta=1.0, generator=torch.Generator().manual_seed(2))
    b = sampling.sample(model, z, diffusion.time_grid(200), eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a.var(0), torch.full((2,), S ** 2), rtol=0.06)
    assert not torch.allclose(a, b)
    c = sampling.sample(model, z, diffusion.time_grid(200), eta=1.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, c)


def analytic_diffusion_term(x, steps, mean=MU):
    """E over (i, ε) of the L_T integrand for the exact Gaussian denoiser, in closed form."""
    i = torch.arange(1, steps + 1, dtype=torch.float64)
    s2 = diffusion.sigma(i / steps).double()[:, None] ** 2
    err = (2 * S ** 4 + s2 * ((x.double() - mean.double()) ** 2).sum(1)) / (S ** 2 + s2) ** 2  # E‖ε − ε̂‖²
    return (0.5 * steps * math.expm1(2 * diffusion.SIGMA_RATE / steps) * err).mean(0)


def test_elbo_bounds_log_density_and_closes_with_more_steps():
    model = exact.GaussianDenoiser(torch.zeros(2), S)  # centred data: N(0, (s²+1)I) is the true marginal at t = 1
    x = torch.tensor([[0.0, 0.0], [0.4, -0.3], [1.2, 0.9]])
    log_p = gaussian_logpdf(x.double(), 0.0, S)
    mc_gaps, closed_gaps = [], []
    for steps in (10, 100, 10_000):
        out = diffusion.elbo(model, x, steps, n_samples=200_000, prior_std=math.sqrt(S ** 2 + 1), seed=steps)
        mc_gaps.append(log_p - out["elbo"])
        closed = out["reconstruction"] - out["prior"] - analytic_diffusion_term(x, steps, mean=torch.zeros(2))
        closed_gaps.append(log_p - closed)
    mc_gaps, closed_gaps = torch.stack(mc_gaps), torch.stack(closed_gaps)
    # the Monte Carlo estimate (standard error about 0.02 here) stays below log p(x)...
    assert (mc_gaps > -0.06).all() and (mc_gaps[0] > mc_gaps[1]).all(), mc_gaps
    # ...and its expectation is a bound whose gap shrinks like 1/T and closes for the exact model
    assert (closed_gaps > 0).all(), closed_gaps
    assert (closed_gaps[0] > 5 * closed_gaps[1]).all() and (closed_gaps[1] > 5 * closed_gaps[2]).all(), closed_gaps
    assert (closed_gaps[2] < 0.01).all(), closed_gaps


def test_elbo_monte_carlo_equals_closed_form():
    model = exact.GaussianDenoiser(MU, S)
    x = torch.tensor([[0.3, -0.2], [1.0, 1.0]])
    for steps in (10, 1000):
        out = diffusion.elbo(model, x, steps, n_samples=50_000, seed=1)
        assert torch.allclose(out["diffusion"], analytic_diffusion_term(x, steps), rtol=0.03)


def test_bayes_floor_agrees_with_monte_carlo_of_the_optimal_denoiser():
    floor = exact.bayes_floor_uniform()
    x = torch.rand(50_000, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mc = diffusion.heldout_loss(exact.UniformDenoiser(), x, repeats=10)
    assert abs(mc - floor) < 0.006, (mc, floor)  # about 3 standard errors
    assert 0.80 < floor < 0.85


def test_training_lowers_the_loss_and_is_seeded():
    x = torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = diffusion.Denoiser(hidden=32, depth=2)
        before = diffusion.heldout_loss(model, x)
        losses = diffusion.train(model, x, epochs=300, progress=False)
        runs.append((losses, diffusion.heldout_loss(model, x)))
    assert runs[0][1] < before - 0.1, (before, runs[0][1])
    assert runs[0][0] == runs[1][0]


def test_same_seed_same_samples():
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=16, depth=2)
    draw = lambda seed: sampling.sample(model, sampling.prior_noise(50, generator=torch.Generator().manual_seed(seed)),
                                 diffusion.time_grid(20))
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_conditional_model_and_regions():
    x = torch.tensor([[0.0, 0.0], [0.9, 0.9], [-0.9, 0.9], [-0.9, -0.9], [0.9, -0.9]])
    assert diffusion.square_regions(x).tolist() == [0, 1, 2, 3, 4]
    model = diffusion.Denoiser(hidden=16, depth=2, n_classes=5)
    t = torch.full((5,), 0.5)
    assert model(x, t, torch.arange(5)).shape == (5, 2)
    with pytest.raises(ValueError, match="out of range"):
        model(x, t, torch.tensor([0, 1, 2, 3, 5]))
    with pytest.raises(ValueError, match="conditional"):
        model(x, t)


def test_bad_input():
    model = diffusion.Denoiser(hidden=8, depth=1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        sampling.sample(model, torch.zeros(5, 3), diffusion.time_grid(5))
    with pytest.raises(ValueError, match="positive integer"):
        diffusion.elbo(model, torch.zeros(2, 2), steps=0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        diffusion.train(model, torch.zeros(4), epochs=1, progress=False)
    with pytest.raises(ValueError, match="step"):
        sampling.sample(model, torch.zeros(5, 2), diffusion.time_grid(5), step="heun")


def test_trajectory_and_callback():
    model = exact.GaussianDenoiser(MU, S)
    path = sampling.trajectory(model, torch.zeros(4, 2) + 2.0, diffusion.time_grid(30))
    assert path.shape == (31, 4, 2) and torch.equal(path[0], torch.full((4, 2), 2.0))
    assert (path[-1] - MU).norm(dim=1).max() < (path[0] - MU).norm(dim=1).min()


def test_optimise_noise_moves_the_sample_towards_the_target():
    model = exact.GaussianDenoiser(MU, S)
    z, final, losses = sampling.optimise_noise(model, [1.5, -1.0], diffusion.time_grid(10), iters=100, lr=0.2, progress=False)
    assert losses[-1] < 0.01 * losses[0] and torch.allclose(final[0], torch.tensor([1.5, -1.0]), atol=0.1)


def test_energy_floor_is_the_estimators_expectation():
    assert abs(sampling.MEAN_DISTANCE_UNIT_SQUARE - 0.5214054) < 1e-7        # the classical constant
    spread = sampling.energy_distance_spread(200, pairs=300, seed=1)
    floor = sampling.energy_distance_floor(200)                                 # 2·1.0428/200 = 0.01043
    assert abs(spread["mean"] - floor) < 3 * spread["sd"] / 300 ** 0.5, (spread, floor)


def test_sampler_ablation_switches_one_change_at_a_time():
    variants = sampling.sampler_variants()
    assert variants["course"] == sampling.SAMPLERS["course"] and variants["ours"] == sampling.SAMPLERS["ours"]
    for key, label in sampling.SAMPLER_CHANGES.items():
        on, off = variants[f"course + {label}"], variants[f"ours − {label}"]
        assert [k for k in on if on[k] != sampling.SAMPLERS["course"][k]] == [key]
        assert [k for k in off if off[k] != sampling.SAMPLERS["ours"][k]] == [key]
    assert torch.equal(sampling.generate(exact.UniformDenoiser(), 50, 10, dict(sampling.SAMPLERS["ours"]), seed=2),
                       sampling.generate(exact.UniformDenoiser(), 50, 10, "ours", seed=2))
    assert sampling.overshoot(torch.tensor([[0.5, 0.5], [1.2, 0.0], [-0.3, -1.05]])).tolist() == pytest.approx([0.2, 0.05])


def test_optimal_denoiser_with_our_sampler_reaches_the_energy_floor():
    floor = sampling.energy_distance_floor(1000)
    assert 0.0 < floor < 0.005
    q = sampling.mean_quality(exact.UniformDenoiser(), "ours", steps=50, n=1000, seeds=range(3))
    assert q["frac_in_square"] > 0.995 and q["energy_distance"] < 2 * floor, (q, floor)


def test_generate_remembers_samples_until_the_weights_change(monkeypatch):
    sampling.forget_samples()
    calls = []
    real_sample = sampling.sample
    monkeypatch.setattr(sampling, "sample", lambda *a, **k: calls.append(1) or real_sample(*a, **k))
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=16, depth=2)
    n = sampling.MEMO_MIN_POINTS
    first = sampling.generate(model, n, 5, "ours", seed=1)
    again = sampling.generate(model, n, 5, dict(sampling.SAMPLERS["ours"]), seed=1)   # the same sampler as a dict
    assert len(calls) == 1 and torch.equal(first, again) and again is not first
    again.add_(1.0)                                                                     # the caller owns its copy
    assert torch.equal(sampling.generate(model, n, 5, "ours", seed=1), first) and len(calls) == 1
    assert torch.equal(sampling.generate(model, n, 5, "ours", seed=1, memo=False), first) and len(calls) == 2
    for other in (dict(seed=2), dict(steps=6), dict(sampler="course"), dict(eta=1.0), dict(n=n + 1),
                  dict(prior=(0.5, 1.0))):                                             # any other argument: sampled
        args = {"n": n, "steps": 5, "sampler": "ours", "seed": 1, **other}
        before = len(calls)
        assert not torch.equal(sampling.generate(model, **args)[:n], first) and len(calls) == before + 1
    with torch.no_grad():
        model.net[-1].bias.add_(0.01)                                                   # a weight changed in place
    moved = sampling.generate(model, n, 5, "ours", seed=1)
    assert len(calls) == 9 and not torch.equal(moved, first)
    sampling.generate(model, n - 1, 5, "ours", seed=1)
    sampling.generate(model, n - 1, 5, "ours", seed=1)                                  # small: drawn every time
    assert len(calls) == 11
    sampling.forget_samples()


def test_few_points_sample_on_one_thread_with_the_same_numbers(monkeypatch):
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=32, depth=2)
    seen = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a: seen.append(torch.get_num_threads()) or real_forward(*a))
    threads = torch.get_num_threads()
    z = sampling.prior_noise(diffusion.SMALL_BATCH, generator=torch.Generator().manual_seed(0))
    one = sampling.sample(model, z, diffusion.time_grid(20), eta=1.0, generator=torch.Generator().manual_seed(1))
    assert set(seen) == {1} and torch.get_num_threads() == threads                    # restored afterwards
    bonus = sampling.optimise_noise(model, [2.0, 1.0], diffusion.time_grid(5), iters=3, progress=False)
    seen.clear()
    sampling.sample(model, torch.zeros(diffusion.SMALL_BATCH + 1, 2), diffusion.time_grid(2))
    assert set(seen) == {threads}                                                       # a larger batch: all
    monkeypatch.setattr(diffusion, "SMALL_BATCH", 0)                                    # as before: every thread
    seen.clear()
    every = sampling.sample(model, z, diffusion.time_grid(20), eta=1.0, generator=torch.Generator().manual_seed(1))
    assert set(seen) == {threads} and torch.equal(one, every)
    again = sampling.optimise_noise(model, [2.0, 1.0], diffusion.time_grid(5), iters=3, progress=False)
    assert torch.equal(bonus[0], again[0]) and bonus[2] == again[2]


def test_pixel_extent_centres_each_pixel_on_its_grid_point():
    assert diffusion.pixel_extent(torch.linspace(-1.8, 1.8, 25)) == pytest.approx((-1.875, 1.875, -1.875, 1.875))
    with pytest.raises(ValueError):
        diffusion.pixel_extent(torch.tensor([0.0]))


def test_mean_noise_distance_matches_monte_carlo():
    assert diffusion.mean_noise_distance(1.0) == pytest.approx(math.sqrt(math.pi / 2))
    eps = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0))
    assert diffusion.mean_noise_distance(0.5, dim=3) == pytest.approx(0.5 * eps.norm(dim=1).mean().item(), rel=0.01)


def test_denoising_losses_pair_two_models_on_the_same_draws():
    """Per-draw losses average to `heldout_loss`; two models on the same seed see the same (t, ε), so the paired
    differences of two nearly equal denoisers vary far less than either loss does."""
    x = torch.rand(500, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1
    optimal = exact.UniformDenoiser()
    draws = diffusion.denoising_losses(optimal, x, repeats=12)
    assert draws.shape == (12,) and np.isclose(draws.mean(), diffusion.heldout_loss(optimal, x, repeats=12))
    nudged = lambda z, t, cls=None: optimal(z, t) * 0.9
    paired = diffusion.denoising_losses(nudged, x, repeats=12) - draws
    assert paired.std() < 0.2 * draws.std(), (paired.std(), draws.std())
    assert paired.mean() > 3 * paired.std() / 12 ** 0.5, paired   # shrinking the optimal prediction costs
    other_seed = diffusion.denoising_losses(optimal, x, repeats=12, seed=99)
    assert not np.allclose(other_seed, draws)
