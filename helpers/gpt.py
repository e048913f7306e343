"""A GPT-2-style language model (Radford et al. 2019), small enough to read and to train on a CPU.

Token and learned position embeddings, pre-LayerNorm blocks of causal multi-head self-attention and a 4×
GELU MLP, a final LayerNorm and a linear head over GPT-2's full 50,257-token vocabulary, tied to the token
embedding as in GPT-2. The training loss never materialises the (B·T, vocab) logits (`gpt_loss`), and generation
computes the head at the last position only (`last_logits`). Besides `forward`, the model exposes its attention
probabilities (`attention_maps`) and a forward from input embeddings (`forward_embeddings`, for inversion).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gpt_loss import linear_cross_entropy


@dataclass
class GPTConfig:
    block_size: int = 64
    vocab_size: int = 50257      # GPT-2's byte-pair encoding
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    bias: bool = True
    fast_attention: bool = True  # scaled_dot_product_attention; False: explicit softmax(QKᵀ/√d)V (minGPT)


PRESETS = {
    "tiny": GPTConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0),        # smoke tests
    "cpu": GPTConfig(n_layer=4, n_head=4, n_embd=128, dropout=0.2),        # default profile, 2-core CPU
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768, dropout=0.1),     # full profile: GPT-2 small, 124M
}


def preset(name: str, **overrides) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; use one of {list(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd={config.n_embd} must be a multiple of n_head={config.n_head}")
        self.n_head, self.fast, self.dropout = config.n_head, config.fast_attention, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False)

    def _qkv(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        return [y.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for y in (q, k, v)]  # (B, nh, T, hs)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(QKᵀ/√d) with the causal mask: (B, nh, T, T), rows sum to 1, zero above the diagonal."""
        q, k, _ = self._qkv(x)
        T = x.shape[1]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])                       # (B, nh, T, T)
        att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
        return F.softmax(att, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if self.fast:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        else:
            y = self.attn_dropout(self.probs(x)) @ v                                    # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def check_ids(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"token ids must be an integer tensor (torch.long), got "
                             f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.ndim != 2 or idx.shape[0] == 0 or idx.shape[1] == 0:
            raise ValueError(f"token ids must have shape (B, T) with B, T >= 1 (a single sequence is ids[None]), "
                             f"got {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"sequence of {idx.shape[1]} tokens is longer than the model's block size "
                             f"{self.config.block_size}; crop it (generate() does)")
        if idx.min() < 0 or idx.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                             f"{idx.min().item()}..{idx.max().item()}")
        return idx

    def trunk(self, tok_emb: torch.Tensor) -> torch.Tensor:
        """Input embeddings (B, T, C) plus positions through the blocks: (B, T, C), before the final LayerNorm."""
        B, T, C = tok_emb.shape
        if T > self.config.block_size or C != self.config.n_embd:
            raise ValueError(f"embeddings must have shape (B, T <= {self.config.block_size}, {self.config.n_embd}),"
                             f" got {tuple(tok_emb.shape)}")
        pos = torch.arange(T, device=tok_emb.device)
        x = self.drop(tok_emb + self.wpe(pos))                                  # (B, T, C)
        for block in self.h:
            x = block(x)
        return x

    def forward_embeddings(self, tok_emb: torch.Tensor, targets: torch.Tensor | None = None,
                           return_logits: bool = False):
        """The forward pass from input embeddings (B, T, C) in place of token ids; returns (logits, loss).

        Without targets: the logits (B, T, vocab) and None. With targets (B, T): the mean cross-entropy, computed
        by `linear_cross_entropy` without materialising the logits, and logits None unless `return_logits`."""
        if targets is not None and targets.shape != tok_emb.shape[:2]:
            raise ValueError(f"targets must have the inputs' shape (B, T) = {tuple(tok_emb.shape[:2])}, got "
                             f"{tuple(targets.shape)}")
        x = self.ln_f(self.trunk(tok_emb))                                      # (B, T, C)
        if targets is None:
            return self.lm_head(x), None
        loss = linear_cross_entropy(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1))
        return (self.lm_head(x) if return_logits else None), loss

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, return_logits: bool = False):
        """(logits, loss) for token ids (B, T): see `forward_embeddings`."""
        return self.forward_embeddings(self.wte(self.check_ids(idx)), targets, return_logits)

    def last_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """The logits of the last position only, (B, vocab): the head runs on B hidden states, not B·T."""
        x = self.trunk(self.wte(self.check_ids(idx)))[:, -1]                    # (B, C)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's attention probabilities softmax(QKᵀ/√d), causal: a list of (B, nh, T, T)."""
        idx = self.check_ids(idx)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device)))
        maps = []
        for block in self.h:
            maps.append(block.attn.probs(block.ln_1(x)))
            x = block(x)
        return maps

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append `max_new_tokens` sampled tokens to idx (B, T), cropping the context to the block size."""
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None (sample from every token) or an integer >= 1, got {top_k!r}")
        self.check_ids(idx)
        self.check_ids(idx[:, -self.config.block_size:])
        for _ in range(max_new_tokens):
            logits = self.last_logits(idx[:, -self.config.block_size:]).float() / temperature  # (B, vocab)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


@torch.no_grad()
def token_logprobs(model: nn.Module, ids) -> torch.Tensor:
    """log p(x_i | x_<i) for i = 2..n, in log space throughout (float64): log_softmax of the logits, never
    the log of a probability. The prefix is cropped to the block size: one forward pass covers the first
    block, then one pass per further token with a sliding window, whose head runs at its last position only.
    Shape (n − 1,)."""
    ids = torch.as_tensor(ids).flatten()
    if ids.is_floating_point():
        raise ValueError(f"token ids must be integers, got {ids.dtype}")
    ids = ids.long()
    if len(ids) < 2:
        raise ValueError("a log-probability needs at least two tokens (the first one is the condition)")
    if ids.min() < 0 or ids.max() >= model.config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {model.config.vocab_size}), got {ids.min().item()}.."
                         f"{ids.max().item()}")
    block = model.config.block_size
    logits, _ = model(ids[None, :min(len(ids) - 1, block)])
    logp = F.log_softmax(logits[0].double(), dim=-1)                            # (T, vocab)
    out = [logp.gather(1, ids[1:logp.shape[0] + 1, None])[:, 0]]
    for i in range(block + 1, len(ids)):                                        # sliding windows: the last position
        logits = model.last_logits(ids[None, i - block:i])[0]
        out.append(F.log_softmax(logits.double(), dim=-1)[ids[i]].reshape(1))
    return torch.cat(out)


def sequence_logprob(model: nn.Module, ids) -> torch.Tensor:
    """log p(x_2..x_n | x_1) = Σ_i log softmax(logits(x_<i))[x_i], a scalar."""
    return token_logprobs(model, ids).sum()
