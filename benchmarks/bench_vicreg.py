"""Images/s of one full VICReg training step (augment both views, forward, backward, optimiser step: the same
`train_step` the notebooks train with), for every execution variant side by side in one run, with the speed-up over
the step the workbook used before (fp32, NCHW layout, width 32 / stride 2, batch 256).

Variants: NCHW fp32 (`deterministic=True`), channels-last fp32 (the fast path where bf16 is not native),
channels-last + bf16 autocast (only where the CPU or GPU runs bf16 natively: emulated bf16 is ~300x slower), and
`torch.compile` of the model on top of the fast path, for each encoder we compared (batch 256); last, the shipped
recipe's own step (its encoder and batch size) on the fast path.

Then inference (`--part features`): images/s of `vicreg_training.features` on the default encoder against the code it
replaced (as at commit 7cb0949: no `inference_mode`, NCHW, batches of 512), each change alone on the way, with the
largest feature difference; the same for the untrained CNN of the Laplacian graph (`random_cnn_features`).

Run: .venv/bin/python benchmarks/bench_vicreg.py [steps] [--part train|features|all]
(default 4 timed training steps per variant after 2 warm-up steps; all parts)
"""
import argparse
import time

import numpy as np
import torch

from helpers import embeddings as EM
from helpers import vicreg_training as VT
from helpers.setup import SETTINGS, bf16_fast, cpu_name, pick_device
from helpers.vicreg import Encoder, EncoderConfig, VICReg, fold_batchnorm, normalize, to_float

ENCODERS = [(32, 2), (16, 1), (24, 1), (64, 1)]  # (width, first-convolution stride); (64, 1) is the course's


def images_per_second(width: int, stride: int, images, steps: int, device, deterministic: bool, bf16: bool,
                      compile: bool = False, batch: int = 256,
                      proj_dim: int = EncoderConfig.proj_dim) -> tuple[float, float]:
    """Mean images/s over `steps` timed steps and the share of the step spent on augmentation."""
    cfg = VT.VICRegConfig(encoder=EncoderConfig(width=width, stem_stride=stride, proj_dim=proj_dim),
                          batch_size=batch, lr=1e-3)
    fmt = VT.memory_format(deterministic, width)
    torch.manual_seed(0)
    model = VICReg(cfg.encoder).to(device, memory_format=fmt)
    opt = VT.make_optimizer(model, cfg)
    step_model = torch.compile(model) if compile else model
    g = torch.Generator().manual_seed(0)
    total, aug, warmup = [], [], 3 if compile else 2
    for i in range(steps + warmup):
        x = to_float(images[i * batch % len(images):][:batch], device, fmt)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        v1, v2 = VT.generated_views(x, g, cfg)
        t1 = time.perf_counter()
        VT.train_step(step_model, opt, v1, v2, cfg, bf16)   # .item() inside synchronises
        t2 = time.perf_counter()
        if i >= warmup:
            total.append(t2 - t0)
            aug.append(t1 - t0)
    return batch / np.mean(total), np.sum(aug) / np.sum(total)


def train_rows(steps: int, device, images, native: bool):
    """The training table: every encoder × variant, then the shipped recipe's own step."""
    variants = [("NCHW fp32 (deterministic)", dict(deterministic=True, bf16=False)),
                ("channels-last fp32", dict(deterministic=False, bf16=False))]
    if native:
        variants.append(("channels-last bf16", dict(deterministic=False, bf16=True)))
    else:
        print("bf16 autocast not measured: no native bf16 here (AVX-512 BF16, AMX or a GPU)")
    fast = variants[-1][1]
    variants.append((f"{variants[-1][0]} + torch.compile", dict(fast, compile=True)))
    rows = [(width, stride, 256, label, kw) for width, stride in ENCODERS for label, kw in variants
            if not (width == 64 and device.type == "cpu" and "compile" in label)]  # minutes of compilation
    d = SETTINGS["03_vicreg"]["default"]  # the shipped recipe's own step, at its batch size, on the fast path
    rows.append((d["width"], d["stem_stride"], d["batch_size"], f"{variants[-2][0]}, default recipe",
                 dict(variants[-2][1], proj_dim=d["proj_dim"])))
    baseline = None
    print(f"{'encoder':>8} {'batch':>5} {'variant':44s} {'img/s':>7} {'min/epoch':>9} {'speed-up':>8} {'augment':>7}")
    for width, stride, batch, label, kw in rows:
        ips, share = images_per_second(width, stride, images, steps if width < 64 else 2, device, batch=batch, **kw)
        baseline = baseline or ips  # the first row: the step the workbook used before
        print(f"{width:>4d}/{stride:<3d} {batch:5d} {label:44s} {ips:7.0f} {50000 / ips / 60:9.1f} "
              f"{ips / baseline:7.2f}x {share:7.1%}", flush=True)


# ------------------------------------------------------------------------------------------------- inference

@torch.no_grad()
def features_before(net: torch.nn.Module, images, device, batch_size: int = 512) -> torch.Tensor:
    """`vicreg_training.features` as at commit 7cb0949 (no_grad, NCHW, batches of 512, BatchNorm applied)."""
    net.eval()
    return torch.cat([net(normalize(to_float(images[s:s + batch_size], device))).float().cpu()
                      for s in range(0, len(images), batch_size)])


@torch.inference_mode()
def features_step(net: torch.nn.Module, images, device, batch_size: int, fmt) -> torch.Tensor:
    """One change at a time on the way to `features`: inference mode, then the batch size, then the layout."""
    return torch.cat([net(normalize(to_float(images[s:s + batch_size], device, fmt))).float().cpu()
                      for s in range(0, len(images), batch_size)])


def interleaved_rates(fns: dict, count: int, rounds: int = 5) -> dict:
    """{name: (items/s, result)}: `count` items over the fastest of `rounds` timed calls of each function, the
    functions taking turns within every round (after one warm-up call each), so that all see the same load."""
    out = {name: fn() for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: (count / best[name], out[name]) for name in fns}


def feature_rows(device):
    """Images/s of feature extraction, before and after, side by side; then the untrained CNN."""
    d = SETTINGS["03_vicreg"]["default"]
    torch.manual_seed(0)
    encoder = Encoder(EncoderConfig(width=d["width"], stem_stride=d["stem_stride"], proj_dim=d["proj_dim"]))
    with torch.no_grad():  # trained-like BatchNorm statistics, so that the fold is not the identity
        for m in encoder.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    images = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    cl, nchw = torch.channels_last, torch.contiguous_format
    folded = fold_batchnorm(encoder).to(memory_format=cl)
    rates = interleaved_rates({
        "before (7cb0949): no_grad, NCHW, batch 512": lambda: features_before(encoder, images, device),
        "inference_mode, NCHW, batch 512": lambda: features_step(encoder, images, device, 512, nchw),
        "inference_mode, NCHW, batch 128": lambda: features_step(encoder, images, device, 128, nchw),
        "inference_mode, channels-last, batch 128": lambda: features_step(encoder, images, device, 128, cl),
        "+ BatchNorm folded, channels-last weights": lambda: features_step(folded, images, device, 128, cl),
        **{f"features(), batch {b}": lambda b=b: VT.features(encoder, images, device, batch_size=b)
           for b in (32, 64, 256)},
        f"features() as shipped (batch {VT.FEATURE_BATCH}, bf16 only if native)":
            lambda: VT.features(encoder, images, device)}, len(images))
    print(f"\nfeatures of the default encoder (width {d['width']} / stride {d['stem_stride']}), {len(images)} images:")
    print(f"{'variant':62s} {'img/s':>7} {'speed-up':>8} {'max |diff|':>10}")
    base, ref = next(iter(rates.values()))
    for label, (ips, out) in rates.items():
        print(f"{label:62s} {ips:7.0f} {ips / base:7.2f}x {(out - ref).abs().max().item():10.1e}")

    torch.manual_seed(0)
    cnn = EM.RandomCNN().eval()
    rates = interleaved_rates({"before": lambda: features_before(cnn, images, "cpu", 1000),
                               "now": lambda: EM.random_cnn_features(images, seed=0),
                               "channels-last": lambda: features_step(cnn, images, "cpu", 128, cl)}, len(images))
    (base, ref), (ips, out), (ips_cl, out_cl) = rates.values()
    print(f"\nuntrained CNN of the Laplacian graph, {len(images)} images: before (no_grad, NCHW, batch 1000) "
          f"{base:.0f} img/s; random_cnn_features (inference_mode, NCHW, batch {VT.FEATURE_BATCH}) {ips:.0f} img/s "
          f"({ips / base:.2f}x), bitwise equal: {torch.equal(out, ref)}; channels-last would run {ips_cl:.0f} img/s "
          f"({ips_cl / base:.2f}x) but differs by {(out_cl - ref).abs().max().item():.1e}, which reorders near-tied "
          "neighbours of the graph: not used")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="?", type=int, default=4, help="timed training steps per variant")
    parser.add_argument("--part", choices=("train", "features", "all"), default="all")
    args = parser.parse_args()
    device = pick_device()
    native = bf16_fast(device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else cpu_name()
    print(f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {native}")
    if args.part in ("train", "all"):
        images = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
        train_rows(args.steps, device, images, native)
    if args.part in ("features", "all"):
        feature_rows(device)


if __name__ == "__main__":
    main()
