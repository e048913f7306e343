import numpy as np
import pytest
import torch

from helpers import vicreg_training as VT
from helpers.vicreg import Encoder, EncoderConfig, normalize, to_float

from test_vicreg import with_running_statistics


def tiny_cfg(**kw):
    settings = {**dict(epochs=3, batch_size=16, bf16=False), **kw}
    return VT.VICRegConfig(encoder=EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16), **settings)


def test_killed_training_resumes_at_the_next_epoch_with_the_same_state(tiny_images, tmp_path, kill_on_call):
    images = tiny_images()
    straight, hist = VT.train_vicreg(images, tiny_cfg(), test_images=images[:16], progress=False, deterministic=True)
    ckpt = tmp_path / "v.pt"
    undo = kill_on_call(VT, "loss_terms", 2)  # the test-set evaluation of epoch 2
    with pytest.raises(KeyboardInterrupt):
        VT.train_vicreg(images, tiny_cfg(), test_images=images[:16], checkpoint=ckpt, progress=False,
                        deterministic=True)
    undo()
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    resumed, hist2 = VT.train_vicreg(images, tiny_cfg(), test_images=images[:16], checkpoint=ckpt, progress=False,
                                     deterministic=True)
    assert hist2["batch"]["loss"] == hist["batch"]["loss"] and hist2["test"] == hist["test"]
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="another configuration"):
        VT.train_vicreg(images, tiny_cfg(lr=1e-3), checkpoint=ckpt, progress=False)


def test_nan_loss_stops_training(tiny_images, monkeypatch):
    monkeypatch.setattr(VT, "vicreg_loss", lambda *a, **k: {key: torch.tensor(float("nan"), requires_grad=True)
                                                           for key in ("loss", "invariance", "variance", "covariance")})
    with pytest.raises(FloatingPointError, match="epoch 1, step 0"):
        VT.train_vicreg(tiny_images(), tiny_cfg(), progress=False)


def test_features_equal_the_plain_eval_forward(tiny_images):
    """The fast path (inference mode, BatchNorm folded, channels-last, batches of 128) against the path it
    replaced (no_grad, BatchNorm applied, NCHW, batches of 512) on a small encoder with trained-like BatchNorm
    statistics: equal to fp32 rounding; the encoder keeps its mode and weights; the result works with autograd."""
    images = tiny_images(300)
    torch.manual_seed(0)
    enc = with_running_statistics(Encoder(EncoderConfig(width=8, stem_stride=1, repr_dim=16))).train()
    with torch.no_grad():
        ref = torch.cat([enc.eval()(normalize(to_float(images[s:s + 512], "cpu"))) for s in range(0, 300, 512)])
    enc.train()
    f = VT.features(enc, images, bf16=False)  # the fp32 path, whatever the CPU (bf16=None is bf16 on AMX ones)
    assert f.shape == (300, 16) and not f.is_inference()
    assert (f - ref).abs().max() <= 2e-6 * ref.abs().max()
    assert enc.training and next(enc.parameters()).is_contiguous()
    assert (f * torch.ones(16, requires_grad=True)).sum().requires_grad
    with pytest.raises(ValueError, match="batch_size"):
        VT.features(enc, images, batch_size=0)


def test_features_are_deterministic_and_in_order(tiny_images):
    images = tiny_images(20)
    model, _ = VT.train_vicreg(images, tiny_cfg(epochs=1), progress=False)
    f = VT.features(model.encoder, images, batch_size=7)
    assert f.shape == (20, 8)
    assert torch.allclose(f[5:10], VT.features(model.encoder, images[5:10]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        VT.features(model.encoder, images.astype(np.float32))
