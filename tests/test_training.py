"""The shared training machinery: one warm-up + cosine schedule (used by all three trainers) and resumable state."""
import math

import numpy as np
import pytest
import torch

from helpers import diffusion, gpt_training as GT, training, vicreg_training as VT
from helpers.gpt import GPT, preset
from helpers.vicreg import EncoderConfig


def test_warmup_cosine_against_its_closed_form():
    f = training.warmup_cosine
    assert [f(k, 100, warmup=4) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]       # linear warm-up
    assert f(4, 100, warmup=4) == 1.0                                               # the peak, cosine at 0
    assert f(52, 100, warmup=4) == pytest.approx(0.5)                               # half-way through the cosine
    assert f(52, 100, warmup=4, floor=0.1) == pytest.approx(0.55)
    assert f(100, 100, warmup=4, floor=0.1) == pytest.approx(0.1)                   # the floor at `total`...
    assert f(500, 100, warmup=4, floor=0.1) == pytest.approx(0.1)                   # ...and after it
    k = np.arange(0, 100)
    expected = 0.5 * (1 + np.cos(np.pi * k / 100))
    assert np.allclose([f(int(i), 100) for i in k], expected, rtol=0, atol=1e-15)
    assert all(f(i + 1, 100) <= f(i, 100) for i in range(100))                     # decreasing after warm-up


def recorder(monkeypatch, module):
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return training.warmup_cosine(*args, **kwargs)

    monkeypatch.setattr(module, "warmup_cosine", spy)
    return calls


def test_diffusion_training_follows_the_shared_schedule(monkeypatch):
    calls = recorder(monkeypatch, diffusion)
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=8)
    seen = []
    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    diffusion.train(model, torch.rand(40, 2) * 2 - 1, epochs=3, lr=1e-2, batch_size=10, progress=False)
    n = 12
    assert seen == pytest.approx([1e-2 * training.warmup_cosine(k, n) for k in range(n)], rel=1e-12)
    assert calls and all(args[1] == n for args, _ in calls)


def test_gpt_and_vicreg_rates_come_from_the_shared_schedule(monkeypatch):
    gpt_calls, vicreg_calls = recorder(monkeypatch, GT), recorder(monkeypatch, VT)
    cfg = GT.TrainConfig(max_steps=50, warmup=5, lr=1e-3, min_lr_ratio=0.1)
    assert GT.lr_at(30, cfg) == pytest.approx(1e-3 * training.warmup_cosine(30, 50, 5, 0.1), rel=1e-15)
    assert gpt_calls[-1][0] == (30, 50, 5, 0.1)
    vcfg = VT.VICRegConfig(epochs=4, warmup_epochs=0.5)
    assert VT.lr_factor(25, 10, vcfg) == training.warmup_cosine(25, 40, 5)
    assert vicreg_calls[-1][0] == (25, 40, 5)
    assert VT.lr_factor(25, 10, VT.VICRegConfig(schedule="constant")) == 1.0


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab_size=50, block_size=8))


def test_restore_puts_back_what_save_wrote(tmp_path):
    model = tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(3)
    model(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))[1].backward()
    opt.step()
    torch.randint(0, 10, (5,), generator=g)
    expected = {"config": {"a": 1, "b": {"c": 2}}}
    training.save(tmp_path / "c.pt", expected, model, opt, g, history={"loss": [1.0]}, step=7)
    rng_after_save = torch.get_rng_state()
    torch.rand(3)                                                   # move the global generator on

    fresh, fresh_g = tiny_gpt(), torch.Generator()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    state = training.restore(tmp_path / "c.pt", expected, fresh, fresh_opt, fresh_g)
    assert state["step"] == 7 and state["history"] == {"loss": [1.0]}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(fresh_g.get_state(), g.get_state())
    assert torch.equal(torch.get_rng_state(), rng_after_save)
    assert training.restore(tmp_path / "none.pt", expected, fresh, fresh_opt, fresh_g) is None
    assert training.restore(None, expected, fresh, fresh_opt, fresh_g) is None


def test_restore_names_the_settings_that_differ(tmp_path):
    model, g = tiny_gpt(), torch.Generator()
    opt = torch.optim.AdamW(model.parameters())
    training.save(tmp_path / "c.pt", {"config": {"lr": 1e-3, "n": 2}}, model, opt, g)
    with pytest.raises(ValueError, match=r"another configuration \(lr: saved 0.001, wanted 0.002\); delete it"):
        training.restore(tmp_path / "c.pt", {"config": {"lr": 2e-3, "n": 2}}, model, opt, g)
    with pytest.raises(ValueError, match=r"\(train.epochs: saved None, wanted 3\); pass resume=False"):
        training.restore(tmp_path / "c.pt", {"config": {"lr": 1e-3, "n": 2}, "train": {"epochs": 3}}, model, opt, g,
                         fix="pass resume=False")


def test_vicreg_resume_goes_through_the_shared_state(tiny_images, tmp_path, monkeypatch):
    images = tiny_images(32)
    cfg = VT.VICRegConfig(encoder=EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16), epochs=2,
                          batch_size=16, bf16=False)
    VT.train_vicreg(images, cfg, checkpoint=tmp_path / "v.pt", progress=False)
    restored = []
    real = VT.restore
    monkeypatch.setattr(VT, "restore", lambda *a, **k: restored.append(real(*a, **k)) or restored[-1])
    _, history = VT.train_vicreg(images, cfg, checkpoint=tmp_path / "v.pt", progress=False)
    assert restored[0]["epoch"] == 2 and history["epoch"] == [1, 2]
    assert not math.isnan(history["batch"]["loss"][-1])
