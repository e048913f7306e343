"""What the trainers share: one learning-rate schedule, and the state that makes a training loop resumable.

Each trainer (`diffusion.train`, `gpt_training.train`, `vicreg_training.train_vicreg`) keeps only its loop body:
the rate comes from `warmup_cosine`, and the GPT and VICReg loops `restore` their state from a checkpoint before
the first step and `save` it at each evaluation or epoch (minGPT's trainer and nanoGPT's single ``get_lr`` are the
models for this split).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .storage import dict_diff, load_checkpoint, save_checkpoint


def warmup_cosine(step: int, total: int, warmup: int = 0, floor: float = 0.0) -> float:
    """The learning rate's multiplier at `step` (0-based) of `total`: a linear warm-up ``(step + 1) / warmup`` over
    the first `warmup` steps, then a half cosine from 1 down to `floor` at `total` (SGDR without restarts, Loshchilov &
    Hutter 2017, Eq. 5); steps past `total` stay at `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return floor + (1 - floor) * (0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span)))


def restore(path: str | Path | None, expected: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
            generator: torch.Generator, device="cpu", fix: str = "delete it to retrain") -> dict | None:
    """Load a loop's state from the checkpoint at `path` into `model`, `opt`, `generator` and torch's global RNG,
    and return the whole checkpoint (history, position, extras); None when there is none. Prints
    "resuming from step N of <file>" (or epoch), so that a re-run says it did not start over.

    `expected` maps checkpoint keys to the configuration dicts the file must have been written for; a file written
    for another configuration raises a ValueError that lists the differing settings and `fix`."""
    path = Path(path) if path else None
    if path is None or not path.exists():
        return None
    state = load_checkpoint(path, map_location=device)
    saved = {key: state.get(key) for key in expected}
    if saved != expected:
        # one part: name its settings directly; several: prefix each setting with its part
        diff = dict_diff(*saved.values(), *expected.values()) if len(expected) == 1 else \
            dict_diff({k: v or {} for k, v in saved.items()}, expected)
        raise ValueError(f"{path} was written for another configuration ({diff}); {fix}")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    position = next((f"{unit} {state[unit]}" for unit in ("step", "epoch") if unit in state), "its last state")
    print(f"resuming from {position} of {path}")
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])  # dropout and weight initialisation draw from the global generator
    return state


def save(path: str | Path, expected: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
         generator: torch.Generator, **progress) -> Path:
    """Write what `restore` reads (atomically): `expected`, the model, optimiser, data generator and torch's RNG,
    plus `progress` (history, step or epoch, best weights...)."""
    return save_checkpoint(path, **expected, model=model.state_dict(), optimizer=opt.state_dict(),
                           generator=generator.get_state(), torch_rng=torch.get_rng_state(), **progress)
