"""Training VICReg: epochs over uint8 images, batched augmentation on the device, checkpoints and resume."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .setup import bf16_fast, cpu_name
from .storage import require_writable
from .training import restore, save, warmup_cosine
from .vicreg import VICReg, EncoderConfig, augment, fold_batchnorm, normalize, to_float, vicreg_loss


OPTIMIZERS = ("adam", "adamw", "lars")


@dataclass
class VICRegConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-6
    schedule: str = "cosine"     # "constant" (the course) or linear warm-up then cosine decay to 0 at `epochs`
    warmup_epochs: float = 1.0   # length of the linear warm-up of the cosine schedule
    optimizer: str = "adam"      # "adam" (the course), "adamw" (decoupled weight decay) or "lars"
    blur: bool = True            # the course's 3×3 Gaussian blur in the generated views
    lam: float = 25.0
    mu: float = 25.0
    nu: float = 1.0
    seed: int = 0
    bf16: bool | None = None     # None: where the device runs bf16 natively


def memory_format(deterministic: bool, width: int = 64) -> torch.memory_format:
    """The layout to train in. Channels-last (NHWC) makes a CPU training step 1.2–1.4× faster
    (benchmarks/bench_vicreg.py), but oneDNN's convolution backward is then not bitwise reproducible, so
    ``deterministic`` keeps the default NCHW. Below width 8 NCHW is kept too: oneDNN's AVX2 1×1-convolution
    weight gradient in NHWC with fewer than 8 input channels corrupted memory here (hangs, "double free";
    torch 2.13), which the shortcut convolutions of a width-4 encoder trigger."""
    return torch.contiguous_format if deterministic or width < 8 else torch.channels_last


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017): each weight matrix's
    step is scaled by η‖w‖ / ‖∇ + wd·w‖. Biases and BatchNorm parameters (1-D) get neither the scaling nor weight
    decay, as in VICReg's and solo-learn's LARS."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.02):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = torch.norm(p), torch.norm(d)
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, 1.0)
                    d = d.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])


def make_optimizer(model: torch.nn.Module, cfg: VICRegConfig) -> torch.optim.Optimizer:
    """Adam (β = 0.9, 0.999; the course's), AdamW or LARS, at the peak rate ``cfg.lr``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lars":
        return LARS(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, steps_per_epoch: int, cfg: VICRegConfig) -> float:
    """The learning rate's multiplier at `step`: 1 (constant), or `warmup_cosine` with a linear warm-up over
    ``cfg.warmup_epochs`` and the cosine reaching 0 at ``cfg.epochs``."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'constant' or 'cosine'")
    return warmup_cosine(step, cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch))


@torch.no_grad()
def loss_terms(model: VICReg, images, cfg: VICRegConfig, device, seed: int = 1234, limit: int = 2048) -> dict:
    """The three loss terms on (up to `limit` of) `images`, two augmented views each, in eval mode."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    totals, count = {"invariance": 0.0, "variance": 0.0, "covariance": 0.0}, 0
    for start in range(0, min(limit, len(images)), cfg.batch_size):
        x = to_float(images[start:min(start + cfg.batch_size, limit)], device)
        if len(x) < 2:
            break
        v1, v2 = generated_views(x, g, cfg)
        out = vicreg_loss(model(v1), model(v2), cfg.lam, cfg.mu, cfg.nu)
        for key in totals:
            totals[key] += out[key].item() * len(x)
        count += len(x)
    model.train()
    return {k: v / count for k, v in totals.items()}


def generated_views(x: torch.Tensor, g: torch.Generator, cfg: VICRegConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of the batch x (B, 3, 32, 32) in [0, 1]."""
    return augment(x, g, cfg.blur), augment(x, g, cfg.blur)


def train_step(model: VICReg, opt: torch.optim.Optimizer, v1: torch.Tensor, v2: torch.Tensor, cfg: VICRegConfig,
               bf16: bool = False) -> dict[str, float]:
    """One optimisation step on a pair of views (B, 3, 32, 32): forward both (bf16 autocast if asked), the VICReg
    loss in fp32, backward, optimiser step. Returns the loss and its three terms as floats; a non-finite loss raises
    before the weights are touched."""
    with torch.autocast(v1.device.type, dtype=torch.bfloat16, enabled=bf16):
        z1, z2 = model(v1), model(v2)                                               # (B, proj_dim) each
    out = vicreg_loss(z1.float(), z2.float(), cfg.lam, cfg.mu, cfg.nu)
    if not torch.isfinite(out["loss"]):
        raise FloatingPointError(f"the loss became {out['loss'].item()}")
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    return {k: v.item() for k, v in out.items()}


def train_vicreg(images, cfg: VICRegConfig, test_images=None, checkpoint: str | Path | None = None,
                 device="cpu", progress: bool = True, neighbours=None, callback=None,
                 deterministic: bool = True, fix: str = "delete it to retrain") -> tuple[VICReg, dict]:
    """Train VICReg with ``cfg.optimizer`` and its learning-rate schedule; the loss terms of every batch are
    logged, and on the test images once per epoch. A checkpoint (atomic, with its config) is written after every
    epoch and training resumes from it; a NaN loss stops training with an error that names the epoch and step.

    `neighbours` (N, k) indices into `images` replaces the generated views: each pair is (image, one of its k
    neighbours drawn at random), both only normalised, no augmentation (the "no generated neighbours" ablation).
    `callback(epoch, model, history)` runs after every epoch's checkpoint (its time is not counted as training).
    `deterministic` trains in the NCHW layout, bitwise reproducible on a CPU for a seed; ``False`` trains
    channels-last, faster but only reproducible to rounding (see `memory_format`).
    """
    device = torch.device(device)
    for name, minimum in (("epochs", 1), ("batch_size", 2)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"VICRegConfig.{name} must be an integer >= {minimum}"
                             f"{' (the variance and BatchNorm are over the batch)' if name == 'batch_size' else ''}"
                             f", got {value!r}")
    if neighbours is not None:
        neighbours = torch.as_tensor(neighbours)
        if neighbours.ndim != 2 or len(neighbours) != len(images):
            raise ValueError(f"neighbours must be (N, k) indices with N = {len(images)} images, "
                             f"got {tuple(neighbours.shape)}")
        if neighbours.min() < 0 or neighbours.max() >= len(images):
            raise ValueError("neighbour indices must refer to the training images (0..N-1)")
    bf16 = bf16_fast(device) if cfg.bf16 is None else cfg.bf16
    fmt = memory_format(deterministic, cfg.encoder.width)
    torch.manual_seed(cfg.seed)
    model = VICReg(cfg.encoder).to(device, memory_format=fmt)
    opt = make_optimizer(model, cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    history = {"batch": {"loss": [], "invariance": [], "variance": [], "covariance": []},
               "epoch": [], "test": [], "seconds": 0.0, "epoch_seconds": [], "bf16": bf16,
               "deterministic": deterministic,
               "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
               "threads": torch.get_num_threads(), "torch_version": str(torch.__version__)}
    epoch, expected = 0, {"config": asdict(cfg)}
    if checkpoint:
        require_writable(Path(checkpoint).parent, "training writes a checkpoint there after every epoch")
    state = restore(checkpoint, expected, model, opt, g, device, fix=fix)
    if state is not None:
        history, epoch = state["history"], state["epoch"]
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} images cannot fill one batch of {cfg.batch_size}")
    start_time = time.perf_counter() - history["seconds"]
    model.train()
    while epoch < cfg.epochs:
        order = torch.randperm(len(images), generator=g)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   mininterval=1.0)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, steps_per_epoch, cfg)
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = to_float(images[idx.numpy()], device, fmt)
            if neighbours is None:
                v1, v2 = generated_views(x, g, cfg)
            else:
                pick = torch.randint(neighbours.shape[1], (len(idx),), generator=g)
                v1 = normalize(x)
                v2 = normalize(to_float(images[neighbours[idx, pick].numpy()], device, fmt))
            try:
                out = train_step(model, opt, v1, v2, cfg, bf16)
            except FloatingPointError as err:
                raise FloatingPointError(f"{err} at epoch {epoch + 1}, step {i}: lower the learning rate or check "
                                         "the inputs") from None
            for key in history["batch"]:
                history["batch"][key].append(out[key])
            bar.set_postfix(loss=f"{out['loss']:.2f}")
        epoch += 1
        history["epoch"].append(epoch)
        if test_images is not None:
            history["test"].append(loss_terms(model, test_images, cfg, device))
        history["seconds"] = time.perf_counter() - start_time
        history.setdefault("epoch_seconds", []).append(history["seconds"])  # cumulative, at each epoch's end
        if checkpoint:
            save(checkpoint, expected, model, opt, g, history=history, epoch=epoch)
        if callback is not None:
            callback(epoch, model, history)
            model.train()
            start_time = time.perf_counter() - history["seconds"]
    model.eval()
    return model, history


FEATURE_BATCH = 128  # images per forward pass at inference: the fastest on 2-core CPUs (benchmarks/bench_vicreg.py)


def features(encoder: torch.nn.Module, images, device="cpu", batch_size: int = FEATURE_BATCH,
             bf16: bool | None = None, channels_last: bool = True) -> torch.Tensor:
    """Representations of `images` in eval mode, without augmentation, in data order: (N, repr_dim).

    Inference only: `torch.inference_mode`, the BatchNorms folded into the layers before them (`fold_batchnorm`, a
    copy: `encoder` is left as it is), channels-last images and weights, bf16 autocast only where the device runs
    it natively (``bf16=None``; the features are then bf16-rounded). In fp32 the features equal those of the plain
    eval-mode forward (NCHW, BatchNorm applied) to rounding, about 1e-6 of their scale. For a network without
    BatchNorm, ``channels_last=False`` keeps the plain forward's convolutions (bitwise equal on the CPUs measured)."""
    if not len(images):
        raise ValueError("features of an empty set of images: pass at least one image")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    bf16 = bf16_fast(device) if bf16 is None else bf16
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = fold_batchnorm(encoder).to(device, memory_format=fmt)
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(images), batch_size):
            x = normalize(to_float(images[s:s + batch_size], device, fmt))                  # (B, 3, 32, 32)
            out.append(net(x).float().cpu())                                                # (B, repr_dim)
    return torch.cat(out)  # outside inference mode: an ordinary tensor, usable with autograd
