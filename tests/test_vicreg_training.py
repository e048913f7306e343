import numpy as np
import pytest
import torch

from helpers import vicreg_training as VT
from helpers.vicreg import EncoderConfig


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


def test_features_are_deterministic_and_in_order(tiny_images):
    images = tiny_images(20)
    model, _ = VT.train_vicreg(images, tiny_cfg(epochs=1), progress=False)
    f = VT.features(model.encoder, images, batch_size=7)
    assert f.shape == (20, 8)
    assert torch.allclose(f[5:10], VT.features(model.encoder, images[5:10]), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        VT.features(model.encoder, images.astype(np.float32))
