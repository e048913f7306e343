"""Training a `GPT` on one text: token split, batches, AdamW with warm-up and cosine decay, checkpoints."""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import storage
from .training import restore, save, warmup_cosine
from .setup import bf16_fast
from .gpt import GPT, GPTConfig


@dataclass
class TrainConfig:
    max_steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1     # the cosine decays to lr·min_lr_ratio
    warmup: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 20        # batches for the training-loss estimate (validation uses the whole split)
    seed: int = 0
    bf16: bool | None = None      # None: bf16 autocast where the device runs it fast


def encode_text(text: str, encoding) -> torch.Tensor:
    """The whole text as one long tensor of GPT-2 token ids."""
    if not text or not text.strip():
        raise ValueError("the text is empty: nothing to train on")
    return torch.tensor(encoding.encode_ordinary(text), dtype=torch.long)


def split_tokens(tokens: torch.Tensor, val_frac: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (1 − val_frac) of the tokens for training, the last val_frac for validation: no window crosses."""
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must lie in (0, 1), got {val_frac}")
    cut = int(len(tokens) * (1 - val_frac))
    return tokens[:cut], tokens[cut:]


def get_batch(tokens: torch.Tensor, batch_size: int, block: int, generator=None):
    """Random windows: example i is tokens[i:i+block], its target tokens[i+1:i+block+1]. (B, T) each."""
    if len(tokens) < block + 1:
        raise ValueError(f"{len(tokens)} tokens cannot fill one window of block size {block} (+1 target)")
    starts = torch.randint(0, len(tokens) - block, (batch_size,), generator=generator)
    offsets = torch.arange(block)
    x = tokens[starts[:, None] + offsets]
    y = tokens[starts[:, None] + offsets + 1]
    return x, y


def lr_at(step: int, cfg: TrainConfig) -> float:
    """`warmup_cosine`: linear warm-up to cfg.lr, then half-cosine decay to cfg.lr·min_lr_ratio at max_steps."""
    return cfg.lr * warmup_cosine(step, cfg.max_steps, cfg.warmup, cfg.min_lr_ratio)


@torch.no_grad()
def evaluate(model: GPT, tokens: torch.Tensor, batches: int | None = None, batch_size: int = 32,
             bf16: bool = False, seed: int = 1234) -> float:
    """Mean next-token cross-entropy. With `batches`, on that many seeded random batches; without, on every
    non-overlapping window of `tokens` (the exact loss of a split)."""
    block = model.config.block_size
    if len(tokens) < block + 1:
        raise ValueError(f"{len(tokens)} tokens cannot fill one window of block size {block} (+1 target): use a "
                         "longer split or a smaller block_size")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if batches is None:
        n = (len(tokens) - 1) // block
        xs = tokens[: n * block].view(n, block)
        ys = tokens[1: n * block + 1].view(n, block)
        pairs = [(xs[i:i + batch_size], ys[i:i + batch_size]) for i in range(0, n, batch_size)]
    else:
        g = torch.Generator().manual_seed(seed)
        pairs = [get_batch(tokens, batch_size, block, g) for _ in range(batches)]
    total, count = 0.0, 0
    for x, y in pairs:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(x.to(device), y.to(device))
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and LayerNorm gains), as in nanoGPT. Its fused kernel
    (one pass over each parameter's four tensors) on CPU and CUDA: on a 2-core CPU it takes a third of the time of
    the per-tensor loop that is the CPU default (benchmarks/bench_gpt.py)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    fused = next(model.parameters()).device.type in ("cpu", "cuda") or None
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95), fused=fused)


def train_step(model: GPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
               bf16: bool = False) -> float:
    """One optimisation step on a batch of token windows x, targets y (B, T): forward (bf16 autocast if asked),
    backward, gradient clipping at ``cfg.grad_clip``, AdamW step. Returns the loss; a non-finite loss raises before
    the weights are touched."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        _, loss = model(x, y)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return loss.item()


def token_digest(tokens: torch.Tensor) -> str:
    """``"<count>:<sha256 prefix>"`` of a token split: what a checkpoint was trained on, so that a checkpoint of
    another text (or of another split of the same text) is never resumed or returned as this one's."""
    values = tokens.detach().cpu().to(torch.int64).contiguous().numpy()
    return f"{values.size}:{hashlib.sha256(values.tobytes()).hexdigest()[:16]}"


def train(model: GPT, train_tokens: torch.Tensor, val_tokens: torch.Tensor, cfg: TrainConfig,
          checkpoint: str | Path | None = None, resume: bool = True, progress: bool = True) -> dict:
    """Train `model`; every cfg.eval_every steps estimate the training loss and compute the validation loss.

    The checkpoint (written atomically at every evaluation) holds the model and training configs, the digests of
    both token splits (`token_digest`), the latest state (to resume after an interruption) and the best-validation
    weights; a checkpoint written for other settings or other tokens raises. At the end the model holds the best
    weights.
    Returns the history: steps, train and validation losses, best step and loss, tokens/s.
    """
    for name in ("max_steps", "batch_size", "eval_every", "eval_batches"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
    for name, split in (("training", train_tokens), ("validation", val_tokens)):
        if len(split) < model.config.block_size + 1:
            raise ValueError(f"the {name} split has {len(split)} tokens, fewer than one window of block size "
                             f"{model.config.block_size} (+1 target): use more text or a smaller block_size")
    device = next(model.parameters()).device
    bf16 = bf16_fast(device) if cfg.bf16 is None else cfg.bf16
    opt = make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    history = {"step": [], "train_loss": [], "val_loss": [], "best_step": None, "best_val_loss": math.inf,
               "bf16": bf16, "seconds": 0.0}
    best_state, step = None, 0
    expected = {"config": asdict(model.config), "train_config": asdict(cfg),
                "data": {"train_tokens": token_digest(train_tokens), "val_tokens": token_digest(val_tokens)}}
    if checkpoint:
        storage.require_writable(Path(checkpoint).parent, "training writes a checkpoint there at every evaluation")
    state = restore(checkpoint if resume else None, expected, model, opt, g, device,
                    fix="delete it or pass resume=False")
    if state is not None:
        history, best_state, step = state["history"], state["best_model"], state["step"]

    model.train()
    start = time.perf_counter() - history["seconds"]
    bar = tqdm(total=cfg.max_steps, initial=step, desc="training", disable=not progress, mininterval=1.0)
    while step < cfg.max_steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(train_tokens, cfg.batch_size, model.config.block_size, g)
        try:
            train_step(model, opt, x.to(device), y.to(device), cfg, bf16)
        except FloatingPointError as err:
            raise FloatingPointError(f"{err} at step {step}: lower the learning rate or check the inputs") from None
        step += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            history["seconds"] = time.perf_counter() - start
            train_loss = evaluate(model, train_tokens, cfg.eval_batches, cfg.batch_size, bf16)
            val_loss = evaluate(model, val_tokens, None, cfg.batch_size, bf16)
            history["step"].append(step)
            history["train_loss"].append(train_loss)
            history["val_loss"].append(val_loss)
            if val_loss < history["best_val_loss"]:
                history["best_val_loss"], history["best_step"] = val_loss, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
            if checkpoint:
                save(checkpoint, expected, model, opt, g, best_model=best_state, history=history, step=step)
    bar.close()
    history["seconds"] = time.perf_counter() - start
    history["tokens_per_second"] = (cfg.max_steps * cfg.batch_size * model.config.block_size) / history["seconds"]
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def load_model(checkpoint: str | Path, best: bool = True) -> GPT:
    """A model rebuilt from a checkpoint's config, with its best (or latest) weights."""
    state = storage.load_checkpoint(checkpoint)
    if not {"config", "model", "best_model"} <= set(state) or not isinstance(state["config"], dict) \
            or set(state["config"]) - set(asdict(GPTConfig())):
        raise ValueError(f"{checkpoint} is not a GPT checkpoint of this workbook (it holds {sorted(state)}); "
                         "pass the file that `train` wrote")
    model = GPT(GPTConfig(**state["config"]))
    model.load_state_dict(state["best_model"] if best and state["best_model"] is not None else state["model"])
    return model.eval()


def start_losses(model: GPT, train_tokens: torch.Tensor, val_tokens: torch.Tensor, cfg: TrainConfig) -> tuple:
    """The two numbers `train` records at each evaluation (training loss on cfg.eval_batches seeded batches,
    exact validation loss), measured on the model as it is: called before `train`, the losses at step 0."""
    device = next(model.parameters()).device
    bf16 = bf16_fast(device) if cfg.bf16 is None else cfg.bf16
    return (evaluate(model, train_tokens, cfg.eval_batches, cfg.batch_size, bf16),
            evaluate(model, val_tokens, None, cfg.batch_size, bf16))


def slice_losses(model: GPT, tokens: torch.Tensor, n_slices: int = 20, batch_size: int = 32) -> list[float]:
    """The exact loss (`evaluate`) on each of `n_slices` consecutive equal slices of `tokens`: slice k is
    tokens[⌊k·n/n_slices⌋ : ⌊(k+1)·n/n_slices⌋], the same cuts as `split_tokens` at multiples of 1/n_slices."""
    n = len(tokens)
    return [evaluate(model, tokens[int(n * k / n_slices): int(n * (k + 1) / n_slices)], None, batch_size)
            for k in range(n_slices)]


def ngram_loss(train_tokens: torch.Tensor, eval_tokens: torch.Tensor, vocab_size: int, alpha: float = 0.01,
               lam: float = 0.0) -> float:
    """Mean −log p(x_i | x_{i−1}) over eval_tokens[1:] of a count model fitted on `train_tokens`:
    p = lam · c(x_{i−1}, x_i)/c(x_{i−1}) + (1 − lam) · (c(x_i) + alpha)/(N + alpha · vocab_size).
    lam = 0 is the add-alpha unigram model; a previous token never seen in training falls back to the unigram."""
    if not 0 <= lam < 1 or alpha <= 0:
        raise ValueError(f"need 0 <= lam < 1 and alpha > 0, got lam={lam}, alpha={alpha}")
    train = torch.as_tensor(train_tokens).long().flatten()
    ev = torch.as_tensor(eval_tokens).long().flatten()
    uni = torch.bincount(train, minlength=vocab_size).double()
    p_uni = (uni[ev[1:]] + alpha) / (len(train) + alpha * vocab_size)
    keys, counts = torch.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    query = ev[:-1] * vocab_size + ev[1:]
    at = torch.searchsorted(keys, query).clamp(max=len(keys) - 1)
    pair = torch.where(keys[at] == query, counts[at], 0).double()
    prev = torch.bincount(train[:-1], minlength=vocab_size).double()[ev[:-1]]
    p_bi = torch.where(prev > 0, pair / prev.clamp(min=1), p_uni)
    return float(-torch.log(lam * p_bi + (1 - lam) * p_uni).mean())


def fit_ngram(train_tokens: torch.Tensor, select_tokens: torch.Tensor, vocab_size: int) -> dict:
    """`ngram_loss`'s alpha (unigram) and then lam (bigram) chosen from small grids by the loss on `select_tokens`:
    {'alpha', 'lam', 'unigram', 'bigram'} with the two selection losses."""
    alphas, lams = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0), tuple(i / 20 for i in range(1, 20))
    alpha = min(alphas, key=lambda a: ngram_loss(train_tokens, select_tokens, vocab_size, a))
    lam = min(lams, key=lambda l: ngram_loss(train_tokens, select_tokens, vocab_size, alpha, l))
    return {"alpha": alpha, "lam": lam, "unigram": ngram_loss(train_tokens, select_tokens, vocab_size, alpha),
            "bigram": ngram_loss(train_tokens, select_tokens, vocab_size, alpha, lam)}
