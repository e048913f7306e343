"""Bad arguments get a ValueError that says what was wrong and what is allowed, never silent garbage or a
library's cryptic error (one parametrised test per module)."""
import numpy as np
import pytest
import torch

from helpers import diffusion, diffusion_sampling as sampling, evaluation as E, gpt_probing as probing, gpt_training as gpt_train
from helpers import vicreg_training as VT
from helpers.gpt import GPT, GPTConfig, token_logprobs
from helpers.vicreg import EncoderConfig, augment

torch.manual_seed(0)
DENOISER = diffusion.Denoiser(hidden=8, depth=1)
POINTS = torch.rand(16, 2) * 2 - 1
GRID = diffusion.time_grid(5)


@pytest.mark.parametrize("call, message", [
    (lambda: sampling.sample(DENOISER, POINTS, GRID.flip(0)), "decrease strictly"),
    (lambda: sampling.sample(DENOISER, POINTS, torch.tensor([1.5, 0.5, 0.0])), r"lie in \[0, 1\]"),
    (lambda: sampling.sample(DENOISER, POINTS, torch.tensor([1.0, float("nan"), 0.0])), "finite"),
    (lambda: sampling.sample(DENOISER, POINTS, torch.tensor([1.0])), "at least two times"),
    (lambda: sampling.generate(DENOISER, 10, 5, cls=3), "unconditional: it cannot sample a class"),
    (lambda: sampling.generate(DENOISER, -1, 5), r"n \(the number of samples\) must be an integer >= 1"),
    (lambda: diffusion.train(DENOISER, POINTS, epochs=-1, progress=False), "epochs must be an integer >= 1"),
    (lambda: diffusion.train(DENOISER, POINTS, epochs=0, progress=False), "epochs must be an integer >= 1"),
    (lambda: diffusion.train(DENOISER, POINTS, epochs=2, batch_size=0, progress=False), "batch_size"),
    (lambda: diffusion.train(DENOISER, torch.zeros(0, 2), epochs=2, progress=False), r"N >= 1"),
    (lambda: diffusion.heldout_loss(DENOISER, torch.zeros(0, 2)), r"held-out points must have shape \(N, 2\) with N >= 1"),
    (lambda: sampling.optimise_noise(DENOISER, [0.0, 0.0], GRID, iters=0, progress=False), "iters"),
])
def test_diffusion_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_optimise_noise_unfreezes_the_model_even_when_it_fails():
    with pytest.raises(ValueError):
        sampling.optimise_noise(DENOISER, [0.0, 0.0], torch.tensor([0.0, 1.0]), iters=2, progress=False)
    assert all(p.requires_grad for p in DENOISER.parameters())


torch.manual_seed(0)
GPT_MODEL = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).eval()
IDS = torch.randint(0, 50, (2, 8))
TOKENS = torch.randint(0, 50, (200,))


class Words:
    """Each token decodes to ' w': one word per token."""

    def decode(self, ids):
        return " w"

    def encode_ordinary(self, text):
        return [1] * len(text.split())


@pytest.mark.parametrize("call, message", [
    (lambda: GPT_MODEL.generate(IDS, max_new_tokens=-2), "max_new_tokens must be an integer >= 1"),
    (lambda: GPT_MODEL.generate(IDS, 3, top_k=0), "top_k must be None .* or an integer >= 1"),
    (lambda: GPT_MODEL.generate(IDS, 3, top_k=-1), "top_k"),
    (lambda: GPT_MODEL.generate(IDS[0], 3), r"shape \(B, T\) .* ids\[None\]"),
    (lambda: GPT_MODEL.generate(IDS[:0], 3), r"B, T >= 1"),
    (lambda: GPT_MODEL.generate(IDS.float(), 3), "integer tensor"),
    (lambda: token_logprobs(GPT_MODEL, [5, 60000]), r"must lie in \[0, 50\)"),
    (lambda: token_logprobs(GPT_MODEL, torch.tensor([1.5, 2.0])), "must be integers"),
    (lambda: probing.generate_words(GPT_MODEL, Words(), "a b", n_words=0), "n_words must be an integer >= 1"),
    (lambda: probing.attention_from(GPT_MODEL, IDS[0], 3, layer=5), r"layer must be an integer in 0..1"),
    (lambda: probing.invert(GPT_MODEL, IDS[0], steps=-1, progress=False), "steps must be an integer >= 0"),
    (lambda: gpt_train.train(GPT_MODEL, TOKENS, TOKENS, gpt_train.TrainConfig(max_steps=0), progress=False),
     "max_steps must be an integer >= 1"),
    (lambda: gpt_train.train(GPT_MODEL, TOKENS, TOKENS, gpt_train.TrainConfig(max_steps=2, eval_every=0),
                             progress=False), "eval_every must be an integer >= 1"),
    (lambda: gpt_train.train(GPT_MODEL, TOKENS, TOKENS[:10], gpt_train.TrainConfig(max_steps=2), progress=False),
     "validation split has 10 tokens"),
    (lambda: gpt_train.evaluate(GPT_MODEL, TOKENS[:10]), "10 tokens cannot fill one window"),
])
def test_gpt_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_gpt_training_stops_on_a_nan_loss():
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at step 0"):
        gpt_train.train(model, TOKENS, TOKENS, gpt_train.TrainConfig(max_steps=3, eval_every=1, batch_size=2,
                                                                   eval_batches=1), progress=False)


IMAGES = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
VCFG = dict(encoder=EncoderConfig(width=4, stem_stride=2, repr_dim=8, proj_dim=16), epochs=1, bf16=False)
FEATS = torch.randn(20, 4)
LABELS = torch.arange(20) % 4


@pytest.mark.parametrize("call, message", [
    (lambda: VT.train_vicreg(IMAGES, VT.VICRegConfig(batch_size=1, **VCFG), progress=False),
     "batch_size must be an integer >= 2"),
    (lambda: VT.train_vicreg(IMAGES, VT.VICRegConfig(batch_size=0, **VCFG), progress=False), "batch_size"),
    (lambda: VT.train_vicreg(IMAGES, VT.VICRegConfig(**{**VCFG, "epochs": 0}), progress=False), "epochs"),
    (lambda: augment(torch.as_tensor(IMAGES).permute(0, 3, 1, 2)), r"float images \(B, 3, H, W\) in \[0, 1\]"),
    (lambda: VT.features(torch.nn.Identity(), IMAGES[:0]), "empty set"),
    (lambda: E.knn(torch.full((2, 4), float("nan")), FEATS, 3), "NaN"),
    (lambda: E.linear_probe(FEATS, LABELS - 1, FEATS, LABELS, epochs=1), "class indices"),
    (lambda: E.linear_probe(FEATS, LABELS.float(), FEATS, LABELS, epochs=1), "class indices"),
])
def test_representation_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_test_class_absent_from_training_is_warned_about():
    with pytest.warns(UserWarning, match=r"test classes \[3\] never occur in the training labels"):
        out = E.linear_probe(FEATS[LABELS < 3], LABELS[LABELS < 3], FEATS, LABELS, epochs=1)
    assert out["test_acc"] <= 0.75  # the class-3 quarter of the test set cannot be right
