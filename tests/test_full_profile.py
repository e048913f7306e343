"""The `full` profile (the assignment's sizes, for a GPU) is only ever run on a GPU, so nothing else exercises it:
here each notebook's full-profile models and configurations are built as the notebook builds them and take ONE
training step through the notebook's own code path on a tiny CPU batch. The loss must be finite and the weights
must move, so that a GPU user does not meet a crash after the first hour (issue #21)."""
import dataclasses
import gc
import math

import pytest
import torch

from helpers import diffusion, diffusion_sampling as sampling, gpt_training, vicreg_models as M
from helpers.gpt import GPT, preset
from helpers.setup import bf16_fast, settings
from helpers.vicreg import VICReg
from helpers.vicreg_training import train_vicreg

CPU = torch.device("cpu")


def head_of_every_parameter(model: torch.nn.Module, k: int = 64) -> dict[str, torch.Tensor]:
    """The first `k` entries of every parameter: enough to see a step without copying 124M weights."""
    return {name: p.detach().flatten()[:k].clone() for name, p in model.named_parameters()}


def assert_every_parameter_moved(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    still = [name for name, p in model.named_parameters() if torch.equal(p.detach().flatten()[:64], before[name])]
    assert not still, f"parameters the step left unchanged: {still}"


@pytest.mark.parametrize("conditional", [False, True], ids=["denoiser", "conditional denoiser"])
def test_diffusion_full_profile_models_take_a_step(conditional):
    cfg = settings("01_diffusion", "full")
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cls = diffusion.square_regions(x) if conditional else None
    if conditional:
        assert set(cls.tolist()) == set(range(len(diffusion.REGION_NAMES)))  # every class embedding gets a gradient
    torch.manual_seed(0)
    model = diffusion.Denoiser(hidden=cfg.hidden, n_classes=len(diffusion.REGION_NAMES) if conditional else 0)
    assert model.net[0].out_features == cfg.hidden == 256
    before = head_of_every_parameter(model)
    losses = diffusion.train(model, x, epochs=1, cls=cls, progress=False)  # full batch: one epoch is one step
    assert len(losses) == 1 and math.isfinite(losses[0]) and 0.1 < losses[0] < 10, losses
    assert_every_parameter_moved(model, before)
    out = sampling.generate(model, 8, 3, "ours", cls=None if cls is None else cls[:8])
    assert out.shape == (8, 2) and torch.isfinite(out).all()


def test_gpt_full_profile_model_takes_a_step():
    s = settings("02_gpt_alice", "full")
    model_cfg = preset(s.model)
    train_cfg = s.as_config(gpt_training.TrainConfig, seed=0)     # as the notebook: every field the profile sets
    torch.manual_seed(train_cfg.seed)
    model = GPT(model_cfg)
    assert model.n_params() > 120e6                                # GPT-2 small
    opt = gpt_training.make_optimizer(model, train_cfg)
    for group in opt.param_groups:                                 # as `gpt_training.train` sets it at step 0
        group["lr"] = gpt_training.lr_at(0, train_cfg)
    g = torch.Generator().manual_seed(0)
    x, y = gpt_training.get_batch(torch.randint(model_cfg.vocab_size, (64,), generator=g), 1, 8, g)  # (1, 8)
    before = head_of_every_parameter(model)
    model.train()
    bf16 = bf16_fast(CPU) if train_cfg.bf16 is None else train_cfg.bf16
    loss = gpt_training.train_step(model, opt, x, y, train_cfg, bf16)
    assert abs(loss - math.log(model_cfg.vocab_size)) < 1.0, loss  # finite, and an untrained model guesses ~uniformly
    assert_every_parameter_moved(model, before)
    del model, opt, before
    gc.collect()


@pytest.mark.parametrize("name", M.MODELS)
def test_vicreg_full_profile_models_take_a_step(name, tiny_images):
    s = settings("03_vicreg", "full")
    cfg = M.model_config(name, s)
    assert (cfg.encoder.width, cfg.encoder.stem_stride, cfg.encoder.proj_dim) == (s.width, s.stem_stride, s.proj_dim)
    M.model_spec(name, s, n_train=50_000)                          # the spec its weights file would carry
    images = tiny_images(4)
    neighbours = None
    if name == "no_neighbours":                                    # each image's 3 others
        neighbours = torch.tensor([[j for j in range(4) if j != i] for i in range(4)])
    one_step = dataclasses.replace(cfg, epochs=1, batch_size=len(images))
    model, history = train_vicreg(images, one_step, neighbours=neighbours, progress=False,
                                  deterministic=s.deterministic)
    assert len(history["batch"]["loss"]) == 1 and math.isfinite(history["batch"]["loss"][0]), history["batch"]
    torch.manual_seed(cfg.seed)                                    # `train_vicreg` builds its model after this seed
    initial = VICReg(cfg.encoder)
    still = [n for (n, p), q in zip(model.named_parameters(), initial.parameters()) if torch.equal(p, q)]
    assert not still, f"parameters the step left unchanged: {still}"
