"""Notebook 03's three VICReg models: their configurations per profile, the shipped weights, load-or-train.

- ``vicreg``: VICReg with the course's loss and augmentations;
- ``no_variance``: the same with µ = 0 (no variance term), same epochs;
- ``no_neighbours``: a fresh model trained on pairs (image, one of its 3 nearest training images in ``vicreg``'s
  representation), without generated views.

Weights live in ``data/weights/<name>_<profile>.pt`` (committed for ``default``): the encoder's fp16 state dict,
the *spec* it was trained for (training config and, for ``no_neighbours``, the spec of the model that chose the
neighbours), the training history and the wall-clock minutes. A file whose spec differs from the requested one is
never loaded. ``python -m helpers.vicreg_models [--retrain]`` (``make weights``) trains them in the active profile.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from . import setup, storage
from .data import load_cifar10
from .evaluation import knn_graph, linear_probe
from .vicreg import Encoder, EncoderConfig
from .vicreg_training import VICRegConfig, features, train_vicreg

MODELS = ("vicreg", "no_variance", "no_neighbours")
N_NEIGHBOURS = 3


def model_config(name: str, s: SimpleNamespace, seed: int = 0) -> VICRegConfig:
    """The training configuration of model `name` for the profile settings `s` (``settings("03_vicreg")``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    enc = EncoderConfig(width=s.width, stem_stride=s.stem_stride, proj_dim=s.proj_dim)
    if name == "no_neighbours":
        return VICRegConfig(encoder=enc, epochs=s.neighbour_epochs, batch_size=s.batch_size, lr=s.neighbour_lr,
                            schedule="constant", seed=seed + 2, bf16=s.bf16)
    return VICRegConfig(encoder=enc, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, schedule=s.schedule,
                        warmup_epochs=s.warmup_epochs, optimizer=s.optimizer, weight_decay=s.weight_decay,
                        blur=s.blur, mu=0.0 if name == "no_variance" else 25.0,
                        seed=seed, bf16=s.bf16)  # no_variance: the same seed, so that µ is the only difference


def model_spec(name: str, s: SimpleNamespace, n_train: int, seed: int = 0) -> dict:
    """What a weights file must have been trained for: the config, and for ``no_neighbours`` the spec of the model
    whose representation chose the neighbours, k and the training-set size."""
    depends = None
    if name == "no_neighbours":
        depends = {"neighbours_of": model_spec("vicreg", s, n_train, seed), "k": N_NEIGHBOURS, "n_train": n_train}
    return {"config": asdict(model_config(name, s, seed)), "depends": depends}


def weights_path(name: str) -> Path:
    """``data/weights/<name>_<profile>.pt``; in the smoke profile a temporary folder (nothing is shipped)."""
    folder = setup.output_dir() / "weights" if setup.profile() == "smoke" else setup.weights_dir()
    return folder / f"{name}_{setup.profile()}.pt"


MANIFEST = "SHA256SUMS"


def sha256(path: str | Path) -> str:
    return storage.file_digest(path, "sha256")


def read_manifest(folder: str | Path) -> dict[str, str]:
    """``{file name: sha256}`` from ``<folder>/SHA256SUMS`` (the format of ``sha256sum``); empty if absent."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {}
    pairs = (line.split(maxsplit=1) for line in path.read_text().splitlines() if line.strip())
    return {name.strip().lstrip("*"): digest for digest, name in pairs}


def manifest_lock(folder: str | Path):
    """The lock under which a weights file and its manifest entry are replaced together, and read together: a
    reader never sees a new file with the old digest. A read-only folder (nobody can write there) needs none."""
    folder = Path(folder)
    if not os.access(folder, os.W_OK):
        return contextlib.nullcontext()
    return storage.locked(folder / MANIFEST)


def _write_manifest_entry(path: Path, digest: str) -> None:
    sums = {**read_manifest(path.parent), path.name: digest}
    text = "".join(f"{d}  {name}\n" for name, d in sorted(sums.items()))
    storage.atomic_write(path.parent / MANIFEST, lambda tmp: tmp.write_text(text))


def record_in_manifest(path: str | Path) -> None:
    """Write `path`'s sha256 into the manifest beside it (atomically, under `manifest_lock`; other entries kept)."""
    path = Path(path)
    with manifest_lock(path.parent):
        _write_manifest_entry(path, sha256(path))


def _checked_bytes(path: Path) -> bytes:
    """The bytes of `path`, read once, after checking them against the manifest's sha256 (if listed)."""
    with manifest_lock(path.parent):
        data, expected = path.read_bytes(), read_manifest(path.parent).get(path.name)
    if expected is not None and (got := hashlib.sha256(data).hexdigest()) != expected:
        raise storage.CorruptFileError(
            f"{path} does not match its recorded sha256 ({got[:12]}… instead of {expected[:12]}…): the file was "
            f"changed or damaged. Fix: restore it with `git checkout -- {path.name}` in {path.parent}, or retrain "
            "it with `make weights`")
    return data


def verify_against_manifest(path: str | Path) -> None:
    """Raise `CorruptFileError` when `path` is listed in the manifest beside it with another sha256."""
    _checked_bytes(Path(path))


def save_weights(path: str | Path, encoder: Encoder, spec: dict, history: dict) -> Path:
    """The encoder as an fp16 state dict, with its spec, training history, wall-clock minutes and the machine it
    was trained on; the file (atomic) and its sha256 in the manifest beside it are replaced under one lock."""
    path = Path(path)
    state = {k: v.half() if v.is_floating_point() else v for k, v in encoder.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with manifest_lock(path.parent):
        storage.save_checkpoint(path, spec=spec, encoder=state, history=history,
                                minutes=history["seconds"] / 60, torch_version=str(torch.__version__),
                                hardware=history.get("hardware", setup.cpu_name()))
        _write_manifest_entry(path, sha256(path))
    return path


def _with_defaults(spec: dict) -> dict:
    """`spec` with the configuration fields added to `VICRegConfig` after it was written set to their defaults,
    which is what the code that wrote it did (e.g. ``warmup_epochs``, ``optimizer``, ``blur``)."""
    defaults = asdict(VICRegConfig())
    config = {**defaults, **spec["config"], "encoder": {**defaults["encoder"], **spec["config"]["encoder"]}}
    depends = spec["depends"]
    if depends is not None:
        depends = {**depends, "neighbours_of": _with_defaults(depends["neighbours_of"])}
    return {**spec, "config": config, "depends": depends}


def load_weights(path: str | Path, spec: dict) -> tuple[Encoder, dict]:
    """The encoder saved at `path` (in eval mode) and its history, if it was trained for `spec`. The file is checked
    against the manifest's sha256 first, then read without unpickling code."""
    path = Path(path)
    state = storage.load_checkpoint(path, fix="restore it with `git checkout` or retrain it with `make weights`",
                                    data=_checked_bytes(path))  # the bytes whose hash was checked, read once
    state["spec"] = _with_defaults(state["spec"])
    if state["spec"] != spec:
        raise ValueError(f"{path} holds weights trained for another configuration ({storage.dict_diff(state['spec'], spec)}); "
                         "retrain them with `make weights` (or retrain=True), or restore the settings they were "
                         "trained with")
    encoder = Encoder(EncoderConfig(**spec["config"]["encoder"]))
    encoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["encoder"].items()})
    state["history"]["minutes"] = state["minutes"]
    return encoder.eval(), state["history"]


def load_or_train(name: str, cfg: VICRegConfig, images, test_images=None, neighbours=None, depends: dict | None = None,
                  device="cpu", retrain: bool = False, progress: bool = True,
                  deterministic: bool = True, callback=None, fresh: bool = False) -> tuple[Encoder, dict]:
    """Load model `name` when its weights file matches `cfg` (and `depends`), otherwise train and save it.

    Training resumes from ``data/checkpoints/<name>_<profile>.pt`` after an interruption, `retrain` included (it
    prints "resuming from epoch N of <file>"); only `fresh` deletes that checkpoint and starts from epoch 0. The
    returned encoder is always the one read back from the weights file, so results are the same whether it was
    trained now or loaded.
    """
    path, spec = weights_path(name), {"config": asdict(cfg), "depends": depends}
    if path.exists() and not (retrain or fresh):
        return load_weights(path, spec)
    checkpoint = setup.data_dir() / "checkpoints" / f"{name}_{setup.profile()}.pt"
    storage.require_writable(path.parent, "the trained weights are saved there")  # before training, not after
    if fresh and checkpoint.exists():
        print(f"starting over: deleting {checkpoint}")
        checkpoint.unlink()
    model, history = train_vicreg(images, cfg, test_images, checkpoint, device, progress, neighbours=neighbours,
                                  deterministic=deterministic, callback=callback,
                                  fix="start over with `make weights FRESH=1` (it deletes the checkpoint)")
    save_weights(path, model.encoder, spec, history)
    checkpoint.unlink(missing_ok=True)
    return load_weights(path, spec)


def training_speed(history: dict, images_per_epoch: int) -> dict:
    """Each epoch's training minutes (from the history's cumulative ``epoch_seconds``) and the images/s of the
    median epoch: the machine's rate, which an epoch slowed by other work on the same cores does not move."""
    cumulative = history.get("epoch_seconds") or []
    if len(cumulative) != len(history["epoch"]) or not cumulative:
        raise ValueError("this history has no per-epoch training times (weights saved before they were recorded); "
                         "retrain the model with `make weights` to measure them")
    per_epoch = np.diff([0.0, *cumulative])
    return {"epoch_minutes": (per_epoch / 60).tolist(),
            "images_per_second": images_per_epoch / float(np.median(per_epoch))}


def probe_accuracy(encoder: Encoder, x_train, y_train, x_test, y_test, epochs: int, device="cpu",
                   seed: int = 0) -> float:
    """Notebook 03's protocol: a linear probe on the encoder's representation, trained on the training features
    only and scored on the test features (eval mode, no augmentation)."""
    f_train, f_test = features(encoder, x_train, device), features(encoder, x_test, device)
    return linear_probe(f_train, torch.as_tensor(y_train), f_test, torch.as_tensor(y_test), epochs=epochs,
                        seed=seed)["test_acc"]


def cached_features(encoder: Encoder, images, key: str, device="cpu") -> torch.Tensor:
    """`features` of `images`, cached on disk under a hash of the encoder's weights and of the images.

    The key names what the features are a function of, not the code path: fp32 features from the path before
    BatchNorm folding and channels-last (commit 7cb0949) differ from today's by rounding only (at most 7e-7 of
    the largest feature, measured on notebook 03's four encoders), so an existing cache entry is reused. bf16
    features (where the device runs bf16 natively) are rounded to 3 digits and kept under their own key."""
    bf16 = setup.bf16_fast(torch.device(device))
    digest = hashlib.sha1()
    for v in encoder.state_dict().values():
        digest.update(v.detach().cpu().numpy().tobytes())
    digest.update(memoryview(images).cast("B") if images.flags.c_contiguous else images.tobytes())
    path = setup.data_dir() / "cache" / f"features_{key}_{digest.hexdigest()[:16]}{'_bf16' if bf16 else ''}.pt"
    if path.exists():
        try:
            feats = storage.load_checkpoint(path)["features"]
            problem = feature_problem(feats, len(images), encoder)
        except (storage.CorruptFileError, KeyError, TypeError) as err:
            problem = str(err).splitlines()[0]
        if problem is None:
            return feats
        print(f"recomputing the cached features {path.name}: {problem}")
    feats = features(encoder, images, device, bf16=bf16)
    try:
        storage.require_writable(path.parent, "features are cached there")
    except PermissionError as err:  # the cache is optional: compute, use, say so once
        if path.parent not in _UNCACHED:
            _UNCACHED.add(path.parent)
            warnings.warn(f"features are not cached ({err}); each run recomputes them", stacklevel=2)
        return feats
    storage.save_checkpoint(path, features=feats)
    return feats


_UNCACHED: set[Path] = set()  # cache folders already reported as read-only


def feature_problem(feats, n: int, encoder: Encoder) -> str | None:
    """Why `feats` cannot be `n` images' features from `encoder` (None when they can): not an (n, repr_dim) float32
    tensor, not finite, or the same for every image (all-zero, say) — what a damaged or foreign cache holds."""
    repr_dim = encoder.head[-1].out_features
    if not isinstance(feats, torch.Tensor):
        return f"it holds a {type(feats).__name__}, not a tensor"
    if feats.shape != (n, repr_dim) or feats.dtype != torch.float32:
        return f"it holds {feats.dtype} {tuple(feats.shape)}, not float32 ({n}, {repr_dim})"
    if not torch.isfinite(feats).all():
        return f"{int((~torch.isfinite(feats)).sum())} values are NaN or infinite"
    if n > 1 and torch.equal(feats.amax(0), feats.amin(0)):
        return "every image has the same features"
    return None


def build(s: SimpleNamespace, train_images, test_images, device="cpu", retrain: bool | None = None,
          seed: int = 0, progress: bool = True, fresh: bool = False) -> dict[str, tuple[Encoder, dict]]:
    """All three models for settings `s`: loaded where the weights match, trained otherwise (in order, since the
    no-neighbours model needs the VICReg representation of the training set)."""
    retrain = s.retrain if retrain is None else retrain
    models = {}
    for name in MODELS:
        neighbours = None  # only needed to train the no-neighbours model
        if name == "no_neighbours" and (retrain or fresh or not weights_path(name).exists()):
            train_feats = cached_features(models["vicreg"][0], train_images, "vicreg_train", device)
            neighbours = knn_graph(train_feats, N_NEIGHBOURS)  # into the unshuffled training set
        depends = model_spec(name, s, len(train_images), seed)["depends"]
        models[name] = load_or_train(name, model_config(name, s, seed), train_images, test_images, neighbours,
                                     depends, device, retrain, progress, s.deterministic, fresh=fresh)
    return models


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train (or check) notebook 03's VICReg models in the active "
                                                 "profile (AML_PROFILE) and save their weights.")
    parser.add_argument("--retrain", action="store_true",
                        help="train even when matching weights exist (resuming an interrupted training)")
    parser.add_argument("--fresh", action="store_true",
                        help="with --retrain: delete interrupted-training checkpoints and start from epoch 0")
    args = parser.parse_args(argv)

    s = setup.settings("03_vicreg")
    cifar = load_cifar10()
    n_train, n_test = s.n_train or len(cifar["x_train"]), s.n_test or len(cifar["x_test"])
    models = build(s, cifar["x_train"][:n_train], cifar["x_test"][:n_test], setup.pick_device(), args.retrain or None,
                   fresh=args.fresh)
    for name, (_, history) in models.items():
        print(f"{name}: {weights_path(name)} ({history['minutes']:.1f} min of training, "
              f"{len(history['epoch'])} epochs)")


if __name__ == "__main__":
    main()
