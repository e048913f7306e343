"""The cross-entropy of a linear head without its logits: chunked over tokens, both gradients formed in the forward.

A language model's loss CE(h Wᵀ, y) over GPT-2's 50,257-token vocabulary is dominated by the logits: (N, V) floats
written by the forward, read by the log-softmax, written again as the softmax gradient by the backward. Here the
tokens are processed in chunks of n: for each chunk, z = h_c Wᵀ (n, V) goes into one reused buffer; its
log-sum-exp gives the loss, and, when autograd will need them, the softmax gradient is formed in the same buffer
and turned at once into both gradients,

    ∂L/∂h_c = (softmax(z) − onehot(y_c)) W / N,      ∂L/∂W += (softmax(z) − onehot(y_c))ᵀ h_c / N,

so the backward only scales them by the incoming gradient. The loss is the same function as
``F.cross_entropy(h @ W.T, y)`` (mean over the targets that are not ``ignore_index``); only the order of the sums
differs. This is the idea of Cut Cross-Entropy (Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary Language
Models") and of torchtune's and NeMo's chunked losses, written for this workbook.
"""
from __future__ import annotations

import math

import torch

# Tokens per chunk. CPU: measured on a 2-core Xeon (AVX-512) with the workbook's head (C = 128, V = 50,257) by
# benchmarks/bench_gpt.py; elsewhere (a GPU) the buffer is sized to a few hundred MB.
CHUNK = {"cpu": 128}
CHUNK_ELEMENTS = 2 ** 26   # non-CPU devices: tokens per chunk = CHUNK_ELEMENTS // V (1,335 for GPT-2's vocabulary)
EXP_SAFE = 60.0            # logits within ±60: exp(z) and its sums over a vocabulary below 10^12 stay normal fp32


def default_chunk(device: torch.device, vocab_size: int) -> int:
    """Tokens per chunk on `device`: the measured CPU value, otherwise a buffer of CHUNK_ELEMENTS logits."""
    return CHUNK.get(device.type, max(1, CHUNK_ELEMENTS // vocab_size))


def check_inputs(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> None:
    """ValueError unless h is (N, C) floating, weight (V, C), targets (N,) integers in [0, V) or ignore_index."""
    if not h.is_floating_point() or h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(f"hidden states must be a floating (N, C) tensor with N >= 1 (flatten (B, T, C) to "
                         f"(B·T, C)), got {h.dtype} {tuple(h.shape)}")
    if weight.ndim != 2 or weight.shape[1] != h.shape[1]:
        raise ValueError(f"the head weight must be (V, C) with C = {h.shape[1]} (the hidden size), got "
                         f"{tuple(weight.shape)}")
    if targets.dtype not in (torch.int64, torch.int32) or targets.shape != h.shape[:1]:
        raise ValueError(f"targets must be an integer tensor of shape ({h.shape[0]},), one per hidden state, got "
                         f"{targets.dtype} {tuple(targets.shape)}")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bad.any():
        raise ValueError(f"targets must lie in [0, {weight.shape[0]}) (or equal ignore_index={ignore_index}), got "
                         f"{targets[bad][0].item()}")


def _needs_shift(h: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the log-sum-exp needs its max shift. By Cauchy–Schwarz |z_ij| ≤ ‖h_i‖·‖w_j‖; while that bound is at
    most EXP_SAFE, exp(z) and its row sums stay normal fp32 numbers, so exp(z) can be summed as it is: one pass over
    each chunk's logits instead of three (max, subtract, exp)."""
    bound = h.float().norm(dim=1).max() * weight.float().norm(dim=1).max()
    return bool(bound > EXP_SAFE)


def _exp_rows(z: torch.Tensor, shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """z ← exp(z − m) in place, row by row; returns m (the row max, or 0 without `shift`) and Σ_j exp(z_j − m)."""
    if shift:
        m = z.amax(1)                                                         # (n,)
        z.sub_(m[:, None])
    else:
        m = z.new_zeros(len(z))
    z.exp_()
    return m, z.sum(1)


def _mm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, first: bool) -> None:
    """out = a @ b (first) or out += a @ b, accumulated in out's dtype when a and b are low precision (autocast)."""
    if a.dtype == out.dtype:
        torch.mm(a, b, out=out) if first else out.addmm_(a, b)
    else:
        product = torch.mm(a, b).to(out.dtype)
        out.copy_(product) if first else out.add_(product)


def _run(h, weight, targets, ignore_index, chunk, need_h, need_w, compute_dtype):
    """The loss (a 0-d tensor) and, when asked, its gradients w.r.t. h (N, C) and weight (V, C)."""
    (N, C), V = h.shape, len(weight)
    acc = torch.float64 if compute_dtype == torch.float64 else torch.float32  # softmax and sums
    h_lp, w_lp = h.to(compute_dtype), weight.to(compute_dtype)                # no-ops without autocast
    shift = _needs_shift(h, weight)
    valid = targets != ignore_index
    count = int(valid.sum())
    row_weight = valid.to(acc) / max(count, 1)                                # (N,) the mean's 1/count; 0 if ignored
    safe = torch.where(valid, targets, 0).long()                              # an ignored row points at token 0
    buf = torch.empty(min(chunk, N), V, dtype=acc, device=h.device)           # (n, V), reused by every chunk
    grad_h = torch.empty(N, C, dtype=acc, device=h.device) if need_h else None
    grad_w = torch.empty(V, C, dtype=acc, device=h.device) if need_w else None
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    for s in range(0, N, chunk):
        h_c, y, r = h_lp[s:s + chunk], safe[s:s + chunk], row_weight[s:s + chunk]
        z = buf[:len(h_c)]
        _mm_into(z, h_c, w_lp.t(), first=True)                                # (n, V) logits, fp32 softmax
        z_y = z.gather(1, y[:, None])[:, 0]                                   # (n,) the targets' logits
        m, sum_exp = _exp_rows(z, shift)                                      # z ← exp(z − m)
        total += ((m + sum_exp.log() - z_y) * (r > 0)).sum()                  # Σ log-sum-exp − z_y
        if not (need_h or need_w):
            continue
        # (softmax(z) − onehot(y))·r = exp(z − m)·r/Σ − onehot(y)·r: the row scales go on the small (n, C) side of
        # each product, never over the (n, V) buffer
        scale = r / sum_exp                                                   # (n,)
        p = z.to(compute_dtype)                                               # no-op without autocast
        if need_h:                                                            # (n, C) = (n, V)(V, C)
            grad_h[s:s + chunk] = torch.mm(p, w_lp).to(acc) * scale[:, None] - weight[y].to(acc) * r[:, None]
        if need_w:                                                            # (V, C) += (V, n)(n, C)
            _mm_into(grad_w, p.t(), h_c * scale[:, None].to(compute_dtype), first=s == 0)
            grad_w.index_add_(0, y, h_c.to(acc) * r[:, None], alpha=-1)       # − onehot(y)ᵀ h_c·r
    loss = total / count if count else torch.full((), math.nan, dtype=torch.float64, device=h.device)
    return loss.to(acc), grad_h, grad_w


class _LinearCrossEntropy(torch.autograd.Function):
    """Loss in the forward, with both gradients computed there; the backward scales them by the upstream gradient."""

    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index, chunk, compute_dtype):
        loss, grad_h, grad_w = _run(h, weight, targets, ignore_index, chunk, ctx.needs_input_grad[0],
                                    ctx.needs_input_grad[1], compute_dtype)
        # kept on ctx (not saved tensors): the backward hands them on without a copy and drops its reference
        ctx.grads = tuple(None if g is None else g.to(x.dtype) for g, x in ((grad_h, h), (grad_w, weight)))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if ctx.grads is None:
            raise RuntimeError("linear_cross_entropy's gradients were already handed to a first backward; "
                               "compute the loss again for a second one")
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        if grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:   # a GPU scales rather than sync with the host
            for g in (grad_h, grad_w):
                if g is not None:
                    g.mul_(grad_loss.to(g.dtype))   # in place: the buffers belong to this call alone
        return grad_h, grad_w, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                         chunk: int | None = None) -> torch.Tensor:
    """``F.cross_entropy(h @ weight.T, targets, ignore_index=ignore_index)`` without the (N, V) logits.

    h (N, C) hidden states, weight (V, C) the head (GPT-2's is the token embedding), targets (N,). Mean over the
    targets that are not `ignore_index` (NaN when all are). `chunk` tokens at a time (default: `default_chunk`).
    Gradient work is done only when autograd will need it: under ``no_grad`` or for inputs that need no gradient
    the forward computes the loss alone. Under autocast the matmuls run in the autocast dtype, the softmax and the
    sums in fp32. Each call supports one backward.
    """
    check_inputs(h, weight, targets, ignore_index)
    if chunk is None:
        chunk = default_chunk(h.device, weight.shape[0])
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1 (tokens per chunk), got {chunk!r}")
    device = h.device.type
    autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    compute_dtype = torch.get_autocast_dtype(device) if autocast else h.dtype
    with torch.autocast(device, enabled=False):
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            return _LinearCrossEntropy.apply(h, weight, targets, ignore_index, chunk, compute_dtype)
        return _run(h, weight, targets, ignore_index, chunk, False, False, compute_dtype)[0]
