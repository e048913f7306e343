"""The metrics file the README reads (``figures/metrics.json``, or the smoke profile's temporary folder).

One entry per notebook, written whole by that notebook's last cell (stale keys of an earlier version go), under an
advisory lock so that two notebooks finishing together both keep their results. Standard JSON only: NaN and
infinities are written as null.

A run's figures and its metrics belong together: `begin_run` (called by ``helpers.start``) leaves a marker with the
run's id in the notebook's figures folder, `record_metrics` writes the same id into the entry, and `incomplete_runs`
names the notebooks whose last run started (and may have replaced figures) but never recorded its metrics.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import torch

from . import setup
from .storage import atomic_write, locked


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(f"{path} is damaged ({what}). Fix: `git checkout {path.name}` in its folder if it is the "
                      "committed file, or delete it; the notebooks write it again (make figures)")


def load_metrics(path: str | Path | None = None) -> dict:
    """The metrics file as ``{notebook: {key: value}}`` ({} when there is none); a damaged file raises a
    ValueError that names it and the fix."""
    path = Path(path) if path else setup.metrics_path()
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise _damaged(path, f"not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(metrics, dict):
        raise _damaged(path, f"a {type(metrics).__name__}, not an object of notebooks")
    for notebook, entry in metrics.items():
        if not isinstance(entry, dict):
            raise _damaged(path, f"the entry of {notebook!r} is a {type(entry).__name__}, not an object")
    return metrics


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


BOOKKEEPING = ("profile", "date", "run_id", "complete")  # what every entry carries besides its metrics


def _marker(folder: Path, notebook: str) -> Path:
    return folder / notebook / ".run.json"


def begin_run(run: setup.Run) -> None:
    """Mark `run` as started in its notebook's output folder (``.run.json``, ignored by git)."""
    marker = _marker(setup.output_dir(), run.notebook)
    atomic_write(marker, lambda tmp: tmp.write_text(json.dumps({"run_id": run.run_id}), encoding="utf-8"))


def incomplete_runs(metrics: dict, folder: Path | None = None) -> list[str]:
    """The notebooks whose latest run (marker in `folder`, default the output folder) did not record its metrics:
    its figures may be new while its metrics are old."""
    folder = folder or setup.output_dir()
    out = []
    for notebook in sorted(p.parent.name for p in folder.glob(f"*/{_marker(Path(), '').name}")):
        try:
            started = json.loads(_marker(folder, notebook).read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError):
            started = "unreadable"
        if started != metrics.get(notebook, {}).get("run_id"):
            out.append(notebook)
    return out


def record_metrics(notebook: str | None = None, path: str | Path | None = None, **values: Any) -> dict:
    """Write `values` as the entry of `notebook` in the metrics file, with the profile and the date.

    The entry is replaced whole; other notebooks' entries are untouched, also when another process writes the file
    at the same time (the read-modify-write holds `storage.locked`).
    """
    run = setup.current_run()
    notebook = notebook or (run.notebook if run else None)
    if notebook is None:
        raise ValueError("record_metrics needs a notebook name: call helpers.start(...) first or pass notebook=")
    path = Path(path) if path else setup.metrics_path()
    entry = {k: _jsonable(v) for k, v in values.items()}
    entry["profile"] = setup.profile()
    entry["date"] = _dt.date.today().isoformat()
    if run is not None and run.notebook == notebook:
        entry.update(run_id=run.run_id, complete=True)
    with locked(path):
        metrics = load_metrics(path)
        metrics[notebook] = dict(sorted(entry.items()))
        text = json.dumps(dict(sorted(metrics.items())), indent=2, allow_nan=False) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return metrics[notebook]
