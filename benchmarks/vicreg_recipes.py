"""Rank VICReg recipes by measurement: short proxy trainings at one image budget, each probed the same way.

Every candidate trains from scratch on the 50,000 CIFAR-10 training images for `--epochs` epochs (the same image
budget for all), with a warm-up of 10% of the budget and a cosine decay to zero at its end, in the fast
(channels-last) layout; then the course's 128-d representation is probed as in notebook 03 (linear probe, train
features → test, 30 epochs). The course's loss (λ = µ = 25, ν = 1) is kept throughout.

Results are appended to ``data/recipes/epochs<E>.jsonl`` (one line per candidate; finished candidates are skipped
on the next run, so the script can be stopped and resumed) and printed as a table, best first.

Run: .venv/bin/python benchmarks/vicreg_recipes.py --epochs 1 [--only NAME ...] [--seed S]
"""
import argparse
import json
import time

import torch

from helpers import setup, vicreg_models as M, vicreg_training as VT
from helpers.data import load_cifar10
from helpers.vicreg import EncoderConfig

BASE = dict(width=16, stem_stride=1, batch_size=256, lr=2e-3, optimizer="adam", weight_decay=1e-6, blur=True,
            proj_dim=512)
# name: what differs from BASE
CANDIDATES = {
    "w32s2_adam1e-3": dict(width=32, stem_stride=2, lr=1e-3),       # the recipe shipped so far
    "w16s1_adam1e-3": dict(lr=1e-3),
    "w16s1_adam2e-3": dict(),
    "w16s1_adam3e-3": dict(lr=3e-3),
    "w16s1_adam2e-3_b128": dict(batch_size=128),
    "w16s1_adam2e-3_noblur": dict(blur=False),
    "w16s1_adam2e-3_proj1024": dict(proj_dim=1024),
    "w16s1_adam2e-3_b128_proj1024": dict(batch_size=128, proj_dim=1024),
    "w16s1_adamw2e-3_wd0.05": dict(optimizer="adamw", weight_decay=0.05),
    "w16s1_lars0.3": dict(optimizer="lars", lr=0.3, weight_decay=1e-4),
}


def recipe(name: str, epochs: int, seed: int = 0) -> VT.VICRegConfig:
    r = {**BASE, **CANDIDATES[name]}
    enc = EncoderConfig(width=r["width"], stem_stride=r["stem_stride"], proj_dim=r["proj_dim"])
    return VT.VICRegConfig(encoder=enc, epochs=epochs, batch_size=r["batch_size"], lr=r["lr"],
                           weight_decay=r["weight_decay"], schedule="cosine", warmup_epochs=0.1 * epochs,
                           optimizer=r["optimizer"], blur=r["blur"], seed=seed, bf16=None)



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="the image budget, in epochs of 50,000 images")
    parser.add_argument("--only", nargs="*", help="candidates to run (default: all)")
    parser.add_argument("--seed", type=int, default=0,
                        help="another seed for the same candidates (rows named NAME@seedS): how much of a gap is noise")
    args = parser.parse_args(argv)
    unknown = set(args.only or ()) - set(CANDIDATES)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; known: {', '.join(CANDIDATES)}")
    out = setup.data_dir() / "recipes" / f"epochs{args.epochs}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["name"]: json.loads(line) for line in out.read_text().splitlines()} if out.exists() else {}
    cifar = load_cifar10()
    cpu = setup.cpu_name()
    for name in args.only or CANDIDATES:
        key = name if args.seed == 0 else f"{name}@seed{args.seed}"
        if key in done:
            continue
        cfg = recipe(name, args.epochs, args.seed)
        t0 = time.perf_counter()
        model, history = VT.train_vicreg(cifar["x_train"], cfg, progress=False, deterministic=False)
        acc = M.probe_accuracy(model.encoder, cifar["x_train"], cifar["y_train"], cifar["x_test"], cifar["y_test"],
                               epochs=30)
        row = {"name": key, "epochs": args.epochs, "probe_acc": round(acc, 4),
               "train_minutes": round(history["seconds"] / 60, 2),
               "images_per_second": round(args.epochs * len(cifar["x_train"]) / history["seconds"], 1),
               "final_loss": round(sum(history["batch"]["loss"][-20:]) / 20, 3), "cpu": cpu,
               "threads": torch.get_num_threads(), "total_minutes": round((time.perf_counter() - t0) / 60, 2)}
        done[key] = row
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(f"\nbudget {args.epochs} epoch(s), linear probe of the 128-d representation (train → test):")
    for row in sorted(done.values(), key=lambda r: -r["probe_acc"]):
        print(f"  {row['name']:28s} {row['probe_acc']:6.1%}  {row['images_per_second']:5.0f} img/s  "
              f"loss {row['final_loss']:6.2f}")


if __name__ == "__main__":
    main()
