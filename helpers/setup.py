"""Profile, settings, seeding, device and paths: the state a notebook's first cell sets up.

The profile is read once from ``AML_PROFILE`` (``smoke`` | ``default`` | ``full``) and decides the size
of every experiment. Each notebook calls ``helpers.start`` once, which calls :func:`begin` here (seeds, device,
settings), sets the plot style and prints what it chose.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import getpass
import hashlib
import json
import os
import platform
import random
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

PROFILES = ("smoke", "default", "full")

# Every size that differs between profiles, per notebook. `smoke` proves that each cell runs (CI),
# `default` gives real results on a 2-core CPU, `full` uses the assignment's own settings (GPU).
SETTINGS: dict[str, dict[str, dict]] = {
    "01_diffusion": {
        "smoke": dict(n_train=300, n_heldout=200, epochs=60, hidden=64, cond_epochs=60, n_samples=300,
                      sample_steps=50, steps_sweep=[5, 20, 50], ablation_steps=[5, 20], ablation_seeds=2,
                      floor_pairs=20, elbo_samples=200, elbo_steps=50,
                      bonus_steps=3, bonus_sample_steps=10),
        "default": dict(n_train=2000, n_heldout=2000, epochs=3000, hidden=128, cond_epochs=3000,
                        n_samples=1000, sample_steps=1000, steps_sweep=[5, 10, 20, 50, 100, 1000],
                        ablation_steps=[20, 100, 1000], ablation_seeds=5, floor_pairs=200, elbo_samples=4000,
                        elbo_steps=1000, bonus_steps=200, bonus_sample_steps=50),
        "full": dict(n_train=3000, n_heldout=3000, epochs=10000, hidden=256, cond_epochs=10000,
                     n_samples=1000, sample_steps=1000, steps_sweep=[5, 10, 20, 50, 100, 1000],
                     ablation_steps=[20, 100, 1000], ablation_seeds=10, floor_pairs=500, elbo_samples=20000,
                     elbo_steps=1000, bonus_steps=500, bonus_sample_steps=100),
    },
    "02_gpt_alice": {
        "smoke": dict(model="tiny", max_steps=30, batch_size=8, eval_every=10, eval_batches=2, warmup=5,
                      lr=3e-3, inversion_steps=30, text_chars=20000),
        "default": dict(model="cpu", max_steps=600, batch_size=16, eval_every=50, eval_batches=4,
                        warmup=50, lr=1e-3, inversion_steps=300, text_chars=None),
        "full": dict(model="gpt2", max_steps=3000, batch_size=32, eval_every=100, eval_batches=20,
                     warmup=200, lr=3e-4, inversion_steps=1000, text_chars=None),
    },
    # VICReg: `vicreg` is (encoder width, first-convolution stride, projector width, epochs, lr, schedule) of the
    # main model and of the µ = 0 ablation; the no-neighbours model trains `neighbour_epochs` on (image, neighbour)
    # pairs.
    "03_vicreg": {
        "smoke": dict(n_train=512, n_test=256, n_mnist=256, width=8, stem_stride=2, proj_dim=512, epochs=1,
                      batch_size=64, lr=1e-3, schedule="constant", warmup_epochs=1.0, optimizer="adam",
                      weight_decay=1e-6, blur=True, neighbour_epochs=1, neighbour_lr=3e-4, probe_epochs=5,
                      tsne_n=200, laplacian_n=300, code_steps=50, silhouette_n=300, retrain=True, bf16=False,
                      deterministic=True),
        "default": dict(n_train=None, n_test=None, n_mnist=None, width=16, stem_stride=1, proj_dim=1024,
                        epochs=40, batch_size=128, lr=2e-3, schedule="cosine", warmup_epochs=2.0, optimizer="adam",
                        weight_decay=1e-6, blur=True, neighbour_epochs=1, neighbour_lr=3e-4, probe_epochs=30,
                        tsne_n=5000, laplacian_n=10000, code_steps=3000, silhouette_n=10000, retrain=False, bf16=None,
                        deterministic=False),
        "full": dict(n_train=None, n_test=None, n_mnist=None, width=64, stem_stride=1, proj_dim=512,
                     epochs=40, batch_size=256, lr=1e-3, schedule="cosine", warmup_epochs=1.0, optimizer="adam",
                     weight_decay=1e-6, blur=True, neighbour_epochs=1, neighbour_lr=3e-4, probe_epochs=100,
                     tsne_n=10000, laplacian_n=10000, code_steps=5000, silhouette_n=20000, retrain=False, bf16=None,
                     deterministic=False),
    },
}


@functools.cache
def profile() -> str:
    """The active profile, read once from ``AML_PROFILE`` (default ``default``; case does not matter)."""
    name = os.environ.get("AML_PROFILE", "default").strip().lower() or "default"
    if name not in PROFILES:
        raise ValueError(f"AML_PROFILE={name!r} is not a profile; use one of {', '.join(PROFILES)}")
    return name


class Settings(SimpleNamespace):
    """One notebook's settings in one profile (attributes), which also build the typed configurations."""

    def as_config(self, cls, **overrides):
        """An instance of the dataclass `cls` with every field these settings name, then `overrides`: the notebook
        never maps settings to a config by hand, and a field the profile sets cannot be forgotten."""
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"as_config needs a dataclass such as TrainConfig, got {cls!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}; its fields: {sorted(names)}")
        return cls(**{**{k: v for k, v in vars(self).items() if k in names}, **overrides})

    def updated(self, assignments: list[str]) -> "Settings":
        """A copy with ``KEY=VALUE`` assignments applied (a command line's ``--set proj_dim=1024``). VALUE is read
        as JSON (``1024``, ``2e-3``, ``true``, ``null``), else as a string; it must be of the setting's type."""
        values = dict(vars(self))
        for assignment in assignments:
            key, sep, text = assignment.partition("=")
            if not sep or not key:
                raise ValueError(f"{assignment!r} is not KEY=VALUE, e.g. epochs=40")
            if key not in values:
                raise ValueError(f"there is no setting {key!r}; the settings: {', '.join(sorted(values))}")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            old = values[key]
            fits = (old is None or value is None or type(value) is type(old)
                    or (type(old) is float and type(value) is int))
            if not fits:
                raise ValueError(f"{key}={text!r}: expected {type(old).__name__} (the profile has {old!r})")
            values[key] = float(value) if type(old) is float and value is not None else value
        return Settings(**values)


def settings(notebook: str, name: str | None = None) -> Settings:
    """The sizes for `notebook` in profile `name` (the active one by default)."""
    if notebook not in SETTINGS:
        raise ValueError(f"unknown notebook {notebook!r}; known: {', '.join(SETTINGS)}")
    return Settings(**SETTINGS[notebook][name or profile()])


# ---------------------------------------------------------------------------------------------- paths

def repo_root() -> Path:
    """The repository root, found from this package (never from the working directory)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """``AML_DATA_DIR`` (relative paths are taken from the repository root), default ``data/``. A setting that names
    a file or a folder that does not exist raises a ValueError (nothing is created: a typo makes no new folder)."""
    setting = os.environ.get("AML_DATA_DIR")
    path = Path(setting or "data").expanduser()
    path = path if path.is_absolute() else repo_root() / path
    if setting and path.exists() and not path.is_dir():
        raise ValueError(f"AML_DATA_DIR={setting!r} is a file ({path}), not a folder: point it at the data folder")
    if setting and not path.exists():
        raise ValueError(f"AML_DATA_DIR={setting!r}: the folder {path} does not exist. Create it (`mkdir -p {path}`) "
                         "or unset AML_DATA_DIR to use the repository's data/")
    return path


def shown_path(path: Path) -> str:
    """`path` as printed in a notebook: relative to the repository when inside it (no machine's absolute path)."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def figures_dir() -> Path:
    return repo_root() / "figures"


def output_dir() -> Path:
    """Where figures and metrics go: ``figures/`` except in the smoke profile, a temporary folder of this user and
    this checkout (two users or two clones never share it)."""
    if profile() == "smoke":
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid()) if hasattr(os, "getuid") else "user"
        checkout = hashlib.sha1(str(repo_root()).encode()).hexdigest()[:10]
        path = Path(tempfile.gettempdir()) / f"aml-smoke-{user}-{checkout}"
        _check_private_folder(path)
        return path
    return figures_dir()


def _check_private_folder(path: Path) -> None:
    """Refuse a smoke output folder that is a symbolic link (it could point at figures/ and overwrite the README's
    results) or that another user owns."""
    if path.is_symlink():
        raise ValueError(f"{path} is a symbolic link; the smoke profile writes only into a real folder of its own. "
                         f"Fix: remove the link (`rm {path}`)")
    if path.exists() and hasattr(os, "getuid") and path.stat().st_uid != os.getuid():
        raise ValueError(f"{path} belongs to another user; the smoke profile will not write there. Fix: set TMPDIR "
                         "to a folder of your own")


def metrics_path() -> Path:
    return output_dir() / "metrics.json"


def weights_dir() -> Path:
    """Committed trained weights the notebooks load (always inside the repository)."""
    return repo_root() / "data" / "weights"


# ------------------------------------------------------------------------------------ seeding, device

def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up matmuls here: CUDA with bf16, or a CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def cpu_name() -> str:
    """The CPU's model name and its fastest matrix instructions, e.g. ``AMD EPYC (AVX2)``, for timing reports."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    isa = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
                                     ("avx2", "AVX2")) if flag in flags]
    return f"{name} ({', '.join(isa[:2]) or 'no AVX2'}), {os.cpu_count()} cores"


@dataclass
class Run:
    """What `start` decided for one notebook: its name, profile, device, seed and settings."""
    notebook: str
    profile: str
    device: torch.device
    seed: int
    cfg: Settings = field(repr=False)
    run_id: str = ""  # when and in which process it started: ties its figures to its metrics


_current: Run | None = None


def current_run() -> Run | None:
    """The run started by the last call to `start` in this process (None before it)."""
    return _current


def begin(notebook: str, seed: int = 0) -> Run:
    """Read the profile and settings of `notebook`, seed every generator and pick the device: the state that
    `helpers.start` (which also sets the plot style and prints it) and `record_metrics` share."""
    global _current
    run_id = f"{_dt.datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{secrets.token_hex(3)}"
    run = Run(notebook, profile(), pick_device(), seed, settings(notebook), run_id)
    seed_everything(seed)
    _current = run
    return run
