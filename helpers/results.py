"""The metrics file the README reads (``figures/metrics.json``, or the smoke profile's temporary folder)."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from . import setup
from .storage import atomic_write


def load_metrics(path: str | Path | None = None) -> dict:
    path = Path(path) if path else setup.metrics_path()
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
    path = Path(path) if path else setup.metrics_path()
    metrics = load_metrics(path)
    entry = metrics.get(notebook, {})
    entry.update({k: _jsonable(v) for k, v in values.items()})
    entry["profile"] = setup.profile()
    entry["date"] = _dt.date.today().isoformat()
    metrics[notebook] = dict(sorted(entry.items()))
    text = json.dumps(dict(sorted(metrics.items())), indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return metrics[notebook]
