"""Atomic writes, the metrics file the README reads, and checkpoints."""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from . import setup


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it over `path`.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def output_dir() -> Path:
    """Where figures and metrics go: ``figures/`` except in the smoke profile (a temporary folder)."""
    if setup.profile() == "smoke":
        return Path(tempfile.gettempdir()) / "aml-smoke-figures"
    return setup.figures_dir()


def metrics_path() -> Path:
    return output_dir() / "metrics.json"


def load_metrics(path: str | Path | None = None) -> dict:
    path = Path(path) if path else metrics_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def record_metrics(notebook: str | None = None, path: str | Path | None = None, **values: Any) -> dict:
    """Merge `values` into the metrics file under `notebook`, with the profile and the date.

    Keys already recorded for the notebook and not named here are kept; other notebooks are untouched.
    """
    run = setup.current_run()
    notebook = notebook or (run.notebook if run else None)
    if notebook is None:
        raise ValueError("record_metrics needs a notebook name: call helpers.start(...) first or pass notebook=")
    path = Path(path) if path else metrics_path()
    metrics = load_metrics(path)
    entry = metrics.get(notebook, {})
    entry.update({k: _jsonable(v) for k, v in values.items()})
    entry["profile"] = setup.profile()
    entry["date"] = _dt.date.today().isoformat()
    metrics[notebook] = dict(sorted(entry.items()))
    text = json.dumps(dict(sorted(metrics.items())), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return metrics[notebook]


def save_checkpoint(path: str | Path, **state: Any) -> Path:
    """`torch.save` a dict (model state, config, optimiser, step...) atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=False)
