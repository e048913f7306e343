"""VICReg (Bardes, Ponce & LeCun 2022): encoder, projector, loss terms and batched augmentations.

Images are float tensors (B, 3, 32, 32) in [0, 1]; every augmentation works on the whole batch at once, on the
batch's device, with a `torch.Generator` for reproducibility (no per-image loop, no PIL).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


# ------------------------------------------------------------------------------------------ the loss

def invariance(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """inv(Z, Z′) = mean over the batch and dimensions of (z − z′)² (the course's Eq. 2)."""
    return F.mse_loss(z1, z2)


def variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """var(Z) = mean_j max(0, γ − sqrt(Var(z_j) + ε)), with the unbiased variance over the batch (Eq. 3)."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def covariance(z: torch.Tensor) -> torch.Tensor:
    """cov(Z) = (1/d)·Σ_{i≠j} C(Z)²_ij (Eq. 5), C(Z) the unbiased covariance matrix of the batch (Eq. 4)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)                                                       # (d, d)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, lam: float = 25.0, mu: float = 25.0, nu: float = 1.0,
                gamma: float = 1.0, eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """λ·inv(Z, Z′) + µ·[var(Z) + var(Z′)] + ν·[cov(Z) + cov(Z′)], the course's Eq. 6 (its terms: Eq. 2–5).

    The two branches' variance and covariance terms are *summed* as in the course; the authors' code averages
    the variance terms, so the same µ weighs twice as much here: weights are not comparable across codebases.
    Returns the weighted loss and the three unweighted terms (variance and covariance summed over branches).
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"the two views' embeddings must have one shape (B, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError("VICReg needs a batch of at least 2: the variance and covariance are over the batch")
    inv = invariance(z1, z2)
    var = variance(z1, gamma, eps) + variance(z2, gamma, eps)
    cov = covariance(z1) + covariance(z2)
    return {"loss": lam * inv + mu * var + nu * cov, "invariance": inv, "variance": var, "covariance": cov}


# ------------------------------------------------------------------------------------------ the model

@dataclass
class EncoderConfig:
    width: int = 64           # channels of the first stage (ResNet-18: 64); stages have w, 2w, 4w, 8w
    stem_stride: int = 1      # stride of the 3×3 first convolution (CIFAR ResNet: 1)
    repr_dim: int = 128       # the representation, after the course's head
    proj_dim: int = 512       # the projector's width and output


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Encoder(nn.Module):
    """ResNet-18 for CIFAR (3×3 first convolution, no max-pool), then the course's head
    Linear(8w, 512) → BatchNorm → ReLU → Linear(512, repr_dim). The head's output is the representation."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages, c_in = [], w
        for i, c_out in enumerate((w, 2 * w, 4 * w, 8 * w)):
            stages += [BasicBlock(c_in, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Linear(8 * w, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, cfg.repr_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))                                               # (B, 8w, H', W')
        return self.head(h.mean(dim=(2, 3)))                                        # (B, repr_dim)


def _fold(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> nn.Module:
    """`layer` followed by `bn` in eval mode as one layer: BN(Wx + b) = s·(Wx + b − μ) + β with s = γ/√(σ² + ε),
    so W' = s·W (per output channel) and b' = s·(b − μ) + β."""
    scale = torch.rsqrt(bn.running_var + bn.eps)                                   # (C,)
    shift = -scale * bn.running_mean
    if bn.affine:
        scale, shift = bn.weight * scale, bn.weight * shift + bn.bias
    fused = copy.deepcopy(layer)
    fused.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.ndim - 1)))
    fused.bias = nn.Parameter(shift if layer.bias is None else scale * layer.bias + shift)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every BatchNorm folded into the convolution or linear layer before it
    (in a `nn.Sequential`, or a `BasicBlock`'s conv1/bn1 and conv2/bn2): the same function at inference, with one
    pass over the activations fewer per layer. `model` itself is left as it is."""
    model = copy.deepcopy(model).eval()
    foldable = (nn.Conv2d, nn.Linear), (nn.BatchNorm2d, nn.BatchNorm1d)
    with torch.no_grad():
        for module in list(model.modules()):
            if isinstance(module, nn.Sequential):
                pairs = [(str(i), str(i + 1)) for i in range(len(module) - 1)]
            elif isinstance(module, BasicBlock):
                pairs = [("conv1", "bn1"), ("conv2", "bn2")]
            else:
                continue
            for a, b in pairs:
                layer, bn = module.get_submodule(a), module.get_submodule(b)
                if isinstance(layer, foldable[0]) and isinstance(bn, foldable[1]) and bn.track_running_stats:
                    setattr(module, a, _fold(layer, bn))
                    setattr(module, b, nn.Identity())
    return model


def projector(cfg: EncoderConfig) -> nn.Sequential:
    """repr_dim → d → d → d with d = cfg.proj_dim (the course's 512; 1024 in the default profile):
    Linear-BN-ReLU, Linear-BN-ReLU, Linear."""
    d = cfg.proj_dim
    return nn.Sequential(nn.Linear(cfg.repr_dim, d), nn.BatchNorm1d(d), nn.ReLU(),
                         nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, d))


# -------------------------------------------------------------------------------------- augmentations

class VICReg(nn.Module):
    """Encoder (the representation) followed by the projector (where the loss is computed)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.projector = projector(cfg)

    def forward(self, x):
        return self.projector(self.encoder(x))


def _uniform(n: int, lo: float, hi: float, g, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g).to(device)


def _coin(n: int, p: float, g, device) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).to(device)


def random_resized_crop(x: torch.Tensor, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), generator=None) -> torch.Tensor:
    """Crop a random box of area fraction in `scale` and aspect ratio in `ratio` (log-uniform) from each image and
    resize it back to the input size (bilinear, via one `grid_sample` for the batch). Boxes that do not fit are
    shrunk to fit, instead of torchvision's 10 retries and centre-crop fallback."""
    B, _, H, W = x.shape
    area = _uniform(B, *scale, generator, "cpu")
    log_r = _uniform(B, math.log(ratio[0]), math.log(ratio[1]), generator, "cpu")
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)                                    # fractions of the side
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(B, generator=generator) * (1 - w) + w / 2) * 2 - 1             # box centre in [-1, 1]
    cy = (torch.rand(B, generator=generator) * (1 - h) + h / 2) * 2 - 1
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def horizontal_flip(x: torch.Tensor, p: float = 0.5, generator=None) -> torch.Tensor:
    flip = _coin(len(x), p, generator, x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, (B, 1, H, W)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def color_jitter(x: torch.Tensor, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p: float = 0.8,
                 generator=None) -> torch.Tensor:
    """Brightness, contrast, saturation factors uniform in [1 − s, 1 + s] and a hue shift uniform in [−h, h]
    turns, in that fixed order (torchvision shuffles it), applied to each image with probability `p`.
    The hue shift rotates the chroma plane of YIQ, a linear stand-in for torchvision's HSV shift."""
    B, dev = len(x), x.device
    apply = _coin(B, p, generator, dev)[:, None, None, None]
    b = _uniform(B, 1 - brightness, 1 + brightness, generator, dev)[:, None, None, None]
    c = _uniform(B, 1 - contrast, 1 + contrast, generator, dev)[:, None, None, None]
    s = _uniform(B, 1 - saturation, 1 + saturation, generator, dev)[:, None, None, None]
    angle = _uniform(B, -hue, hue, generator, dev) * 2 * math.pi
    y = (x * b).clamp(0, 1)
    y = ((y - _gray(y).mean(dim=(2, 3), keepdim=True)) * c + _gray(y).mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    y = ((y - _gray(y)) * s + _gray(y)).clamp(0, 1)
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(B, 3, 3, device=dev)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
    mix = torch.linalg.inv(to_yiq) @ rot @ to_yiq                                   # (B, 3, 3)
    y = torch.einsum("bij,bjhw->bihw", mix, y).clamp(0, 1)
    return torch.where(apply, y, x)


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator=None) -> torch.Tensor:
    gray = _coin(len(x), p, generator, x.device)[:, None, None, None]
    return torch.where(gray, _gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, p: float = 0.5, sigma=(0.1, 2.0), generator=None) -> torch.Tensor:
    """A 3×3 Gaussian blur with σ uniform in `sigma`, per image with probability `p` (one grouped convolution)."""
    B, C, H, W = x.shape
    s = _uniform(B, *sigma, generator, x.device)
    taps = torch.exp(-torch.tensor([-1.0, 0.0, 1.0], device=x.device) ** 2 / (2 * s[:, None] ** 2))  # (B, 3)
    taps = taps / taps.sum(1, keepdim=True)
    kernel = (taps[:, :, None] * taps[:, None, :]).repeat_interleave(C, 0)[:, None]  # (B·C, 1, 3, 3)
    blurred = F.conv2d(F.pad(x.reshape(1, B * C, H, W), (1, 1, 1, 1), mode="reflect"), kernel.to(x), groups=B * C)
    apply = _coin(B, p, generator, x.device)[:, None, None, None]
    return torch.where(apply, blurred.reshape(B, C, H, W), x)


def to_float(images: np.ndarray | torch.Tensor, device,
             memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) → float (N, 3, 32, 32) in [0, 1] on `device`, in `memory_format`."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    return x.to(device).permute(0, 3, 1, 2).float().contiguous(memory_format=memory_format) / 255.0


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CIFAR_MEAN, device=x.device, dtype=x.dtype)[None, :, None, None]
    std = torch.tensor(CIFAR_STD, device=x.device, dtype=x.dtype)[None, :, None, None]
    return (x - mean) / std


def augment(x: torch.Tensor, generator=None, blur: bool = True) -> torch.Tensor:
    """The course's training view: RandomResizedCrop(32, scale 0.2–1), flip, ColorJitter(0.4, 0.4, 0.2, 0.1)
    with p 0.8, grayscale p 0.2, 3×3 Gaussian blur p 0.5 (unless `blur` is False), then normalisation.
    x: (B, 3, H, W) in [0, 1]; the result keeps x's memory format."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"augment takes float images (B, 3, H, W) in [0, 1], got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}; convert uint8 "
                         "(N, H, W, 3) arrays with vicreg_training.to_float")
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1 \
        else torch.contiguous_format
    x = random_resized_crop(x, generator=generator)
    x = horizontal_flip(x, generator=generator)
    x = color_jitter(x, generator=generator)
    x = random_grayscale(x, generator=generator)
    if blur:
        x = gaussian_blur(x, generator=generator)
    return normalize(x).contiguous(memory_format=fmt)
