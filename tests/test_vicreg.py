import math

import pytest
import torch

from helpers import vicreg as V


def direct_loss(z1, z2, lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4):
    """The course's Eq. 2–6 written out element by element, on nested lists."""
    n, d = len(z1), len(z1[0])
    inv = sum(((z1[b][j] - z2[b][j]) ** 2 for b in range(n) for j in range(d))) / (n * d)

    def var(z):
        total = 0.0
        for j in range(d):
            m = sum(z[b][j] for b in range(n)) / n
            v = sum((z[b][j] - m) ** 2 for b in range(n)) / (n - 1)
            total += max(0.0, gamma - math.sqrt(v + eps))
        return total / d

    def cov(z):
        means = [sum(z[b][j] for b in range(n)) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = sum((z[b][i] - means[i]) * (z[b][j] - means[j]) for b in range(n)) / (n - 1)
                    total += c ** 2
        return total / d

    return lam * inv + mu * (var(z1) + var(z2)) + nu * (cov(z1) + cov(z2))


def test_loss_equals_the_course_formulas():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64) * 0.3
    out = V.vicreg_loss(z1, z2)
    assert out["loss"].item() == pytest.approx(direct_loss(z1.tolist(), z2.tolist()), rel=1e-10)


def test_loss_symmetry_identity_and_collapse():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    assert torch.allclose(V.vicreg_loss(z1, z2)["loss"], V.vicreg_loss(z2, z1)["loss"])
    assert V.vicreg_loss(z1, z1.clone())["invariance"].item() == 0.0
    collapsed = torch.ones(16, 8) * 3.0
    assert V.variance(collapsed).item() == pytest.approx(1.0 - math.sqrt(1e-4))  # γ − sqrt(ε)
    assert V.covariance(collapsed).item() == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        V.vicreg_loss(torch.randn(1, 8), torch.randn(1, 8))


def images(n=8, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("aug", [V.random_resized_crop, V.horizontal_flip, V.color_jitter, V.random_grayscale,
                                 V.gaussian_blur])
def test_augmentations_keep_shape_dtype_range_and_repeat_with_a_seed(aug):
    x = images()
    a = aug(x, generator=torch.Generator().manual_seed(3))
    b = aug(x, generator=torch.Generator().manual_seed(3))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1 + 1e-6
    assert torch.equal(a, b)


def test_flip_twice_is_identity_and_full_crop_is_identity():
    x = images()
    once = V.horizontal_flip(x, p=1.0)
    assert torch.equal(V.horizontal_flip(once, p=1.0), x) and not torch.equal(once, x)
    assert torch.allclose(V.random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-5)


def test_grayscale_has_equal_channels():
    y = V.random_grayscale(images(), p=1.0)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_full_augmentation_and_model_shapes():
    x = images(4)
    view = V.augment(x, torch.Generator().manual_seed(0))
    assert view.shape == x.shape
    cfg = V.EncoderConfig(width=8, stem_stride=2)
    enc, proj = V.Encoder(cfg), V.projector(cfg)
    z = enc(view)
    assert z.shape == (4, 128) and proj(z).shape == (4, 512)


def with_running_statistics(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`model` with random BatchNorm statistics and affine parameters, as a trained model has (fresh ones are the
    identity at inference, which would hide a wrong fold)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model


def test_folding_batchnorm_keeps_the_eval_function_and_leaves_the_model_alone():
    """W' = s·W, b' = s·(b − μ) + β with s = γ/√(σ² + ε): the folded copy has no BatchNorm left and computes the
    eval-mode encoder (stem, blocks, shortcuts, the head's Linear → BatchNorm1d) to fp32 rounding."""
    torch.manual_seed(0)
    enc = with_running_statistics(V.Encoder(V.EncoderConfig(width=4, stem_stride=2, repr_dim=8))).train()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    folded = V.fold_batchnorm(enc)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert enc.training and all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = enc.eval()(x)
        assert (folded(x) - ref).abs().max() <= 2e-6 * ref.abs().max()
