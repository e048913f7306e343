"""The chunked linear cross-entropy against F.cross_entropy on the full logits."""
import copy

import pytest
import torch
import torch.nn.functional as F

from helpers import gpt_training as T
from helpers.gpt import GPT, GPTConfig
from helpers.gpt_loss import linear_cross_entropy


def inputs(N, V, C, dtype, ignored=(), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    h = (scale * torch.randn(N, C, generator=g, dtype=dtype)).requires_grad_()
    w = torch.randn(V, C, generator=g, dtype=dtype).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)
    y[list(ignored)] = -100
    return h, w, y


def reference(h, w, y):
    """Loss and both gradients through the full (N, V) logits, upstream gradient 0.7."""
    loss = F.cross_entropy(h @ w.T, y)
    return (loss, *torch.autograd.grad(0.7 * loss, (h, w)))


# (N tokens, V vocabulary, chunk): V not a multiple of anything, N not a multiple of the chunk, one token, a chunk
# larger than the input, a chunk of one token
SIZES = [(37, 101, 16), (1, 53, 8), (5, 53, 100), (64, 257, 64), (9, 31, 1)]


@pytest.mark.parametrize("scale", [1.0, 30.0])   # logits within ±60 (summed unshifted) or up to ±500 (max-shifted)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("N, V, chunk", SIZES)
def test_loss_and_both_gradients_equal_the_full_logits(N, V, chunk, dtype, tol, scale):
    h, w, y = inputs(N, V, 8, dtype, ignored=range(0, N, 4) if N > 4 else (), scale=scale)
    loss, grad_h, grad_w = reference(h, w, y)
    ours = linear_cross_entropy(h, w, y, chunk=chunk)
    our_h, our_w = torch.autograd.grad(0.7 * ours, (h, w))
    assert ours.dtype == dtype and ours.shape == ()
    assert abs(ours.item() - loss.item()) < tol * max(1.0, loss.item())
    assert torch.allclose(our_h, grad_h, rtol=0, atol=tol) and torch.allclose(our_w, grad_w, rtol=0, atol=tol)
    with torch.no_grad():   # the forward-only path: the same loss
        assert linear_cross_entropy(h, w, y, chunk=chunk).item() == ours.item()


def test_ignored_targets_and_a_frozen_weight():
    h, w, y = inputs(10, 40, 6, torch.float64, ignored=[0, 3, 9])
    kept = y != -100
    expected = F.cross_entropy(h[kept] @ w.T, y[kept])      # the mean is over the 7 real targets
    ours = linear_cross_entropy(h, w.detach(), y, chunk=4)  # no gradient for the weight: only h's is formed
    assert abs(ours.item() - expected.item()) < 1e-12
    ours.backward()
    assert torch.all(h.grad[~kept] == 0) and h.grad[kept].abs().sum() > 0
    assert torch.isnan(linear_cross_entropy(h, w, torch.full((10,), -100), chunk=4))   # as F.cross_entropy


def test_under_autocast_the_matmuls_are_bf16_and_the_softmax_fp32():
    """As F.cross_entropy on autocast's bf16 logits cast to fp32: equal to bf16 rounding, fp32 loss and gradients."""
    h, w, y = inputs(37, 301, 16, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy((h @ w.T).float(), y)
        ours = linear_cross_entropy(h, w, y, chunk=8)
    grads, our_grads = torch.autograd.grad(expected, (h, w)), torch.autograd.grad(ours, (h, w))
    assert ours.dtype == torch.float32 and abs(ours.item() - expected.item()) < 1e-5
    for g, ours_g in zip(grads, our_grads):
        assert ours_g.dtype == torch.float32 and (ours_g - g).abs().max() < 0.01 * g.abs().max()


def test_the_gradients_serve_one_backward():
    h, w, y = inputs(6, 20, 4, torch.float64)
    loss = linear_cross_entropy(h, w, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already handed"):
        loss.backward()


def test_bad_input():
    h, w, y = inputs(6, 20, 4, torch.float32)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 20\).*got 20"):
        linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 20, 4, 5]))
    with pytest.raises(ValueError, match="got -1"):
        linear_cross_entropy(h, w, torch.tensor([0, 1, 2, -1, 4, 5]))
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        linear_cross_entropy(h, w, y[:5])
    with pytest.raises(ValueError, match="integer tensor"):
        linear_cross_entropy(h, w, y.float())
    with pytest.raises(ValueError, match=r"\(V, C\) with C = 4"):
        linear_cross_entropy(h, w[:, :3], y)
    with pytest.raises(ValueError, match=r"\(N, C\).*flatten"):
        linear_cross_entropy(h[None], w, y)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        linear_cross_entropy(h, w, y, chunk=0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=1, n_embd=4, dropout=0.0))
    with pytest.raises(ValueError, match=r"targets must have the inputs' shape \(B, T\) = \(2, 3\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=97, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0, **kw)).double()


def full_logits_loss(model, x, y):
    """The loss as the model computed it before the chunked head: every logit, then F.cross_entropy."""
    logits = model.lm_head(model.ln_f(model.trunk(model.wte(x))))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def test_the_models_loss_and_tied_gradient_equal_the_full_logits():
    model = tiny()
    x, y = torch.randint(0, 97, (3, 8)), torch.randint(0, 97, (3, 8))
    full_logits_loss(model, x, y).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    logits, loss = model(x, y)
    assert logits is None and abs(loss.item() - full_logits_loss(model, x, y).item()) < 1e-13
    loss.backward()
    assert model.wte.weight is model.lm_head.weight   # one gradient: the embedding's and the head's together
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], rtol=0, atol=1e-13), name
    assert torch.allclose(model(x, y, return_logits=True)[0], model(x)[0])


def test_last_logits_are_the_full_forwards_last_position():
    model = tiny()
    x = torch.randint(0, 97, (2, 5))
    assert torch.allclose(model.last_logits(x), model(x)[0][:, -1], rtol=0, atol=1e-13)


def test_training_steps_match_the_full_logits_steps():
    """Two steps of the notebook's train_step move every parameter as the old full-logits steps did. In fp64: the
    keys' bias has a zero gradient (softmax ignores a constant), and Adam turns its rounding noise into ±lr steps."""
    torch.manual_seed(0)
    new = GPT(GPTConfig(vocab_size=211, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)).double()
    old, start = copy.deepcopy(new), copy.deepcopy(new)
    cfg = T.TrainConfig(lr=1e-3, weight_decay=0.1, grad_clip=1.0, bf16=False)
    new_opt = T.make_optimizer(new, cfg)
    old_opt = torch.optim.AdamW([{"params": [p for p in old.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                                 {"params": [p for p in old.parameters() if p.dim() < 2], "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), foreach=False)
    for _ in range(2):
        x, y = torch.randint(0, 211, (4, 16)), torch.randint(0, 211, (4, 16))
        new_loss = T.train_step(new, new_opt, x, y, cfg)
        old_opt.zero_grad()
        old_loss = full_logits_loss(old, x, y)
        old_loss.backward()
        torch.nn.utils.clip_grad_norm_(old.parameters(), cfg.grad_clip)
        old_opt.step()
        assert abs(new_loss - old_loss.item()) < 1e-12
    for (name, a), b, a0 in zip(new.named_parameters(), old.parameters(), start.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-10), name
        assert (a - a0).abs().max() > 1e-4, name   # the steps moved it far more than the tolerance
