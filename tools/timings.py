"""Where a notebook's time goes: wall time per section, read from an executed notebook's own cell metadata.

nbclient (which `make figures` runs through nbconvert) stamps every executed code cell with
``metadata.execution["iopub.execute_input"]`` and ``["shell.execute_reply"]``. A section is everything under one
``## `` heading (as in `tools.answers`; the cells before the first one are the set-up); its time is the sum of
its code cells' times. The notebook's wall time is
from the first cell's start to the last cell's reply (kernel start-up excluded).

Run ``python -m tools.timings EXECUTED.ipynb ...`` (``make figures`` does): it prints each notebook's wall time and
writes ``timings.json`` beside the metrics, which `tools.readme` turns into the README's time tables.
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path

import torch

from helpers import setup
from helpers.storage import atomic_write

START, REPLY = "iopub.execute_input", "shell.execute_reply"


def _when(stamp: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def section_times(notebook: dict) -> dict:
    """``{"wall_seconds": w, "sections": [[heading, seconds], ...]}`` of an executed notebook (a dict as in the
    .ipynb file), sections in notebook order. A notebook with an unexecuted code cell raises a ValueError."""
    sections: list[list] = [["set-up (before the first section)", 0.0]]
    first = last = None
    for i, cell in enumerate(notebook.get("cells", [])):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            heading = next((line[3:].strip() for line in source.splitlines() if line.startswith("## ")), None)
            if heading:
                sections.append([heading, 0.0])
            continue
        if cell.get("cell_type") != "code" or not source.strip():
            continue
        stamps = cell.get("metadata", {}).get("execution", {})
        if START not in stamps or REPLY not in stamps:
            raise ValueError(f"code cell {i} has no execution times: pass a notebook executed by nbconvert/nbclient "
                             "(make figures), not a source notebook")
        begin, end = _when(stamps[START]), _when(stamps[REPLY])
        sections[-1][1] += (end - begin).total_seconds()
        first = begin if first is None else min(first, begin)
        last = end if last is None else max(last, end)
    if first is None:
        raise ValueError("the notebook has no executed code cell")
    kept = [[name, round(seconds, 1)] for name, seconds in sections if seconds > 0]
    return {"wall_seconds": round((last - first).total_seconds(), 1), "sections": kept}


def record_timings(paths: list[str | Path], out: str | Path | None = None) -> dict:
    """Measure each executed notebook in `paths` and merge the result, with the CPU, threads and date, into
    ``timings.json`` beside the metrics (written atomically); returns the whole file's content."""
    out = Path(out) if out else setup.output_dir() / "timings.json"
    timings = json.loads(out.read_text()) if out.exists() else {}
    if not isinstance(timings, dict):
        timings = {}
    for path in map(Path, paths):
        try:
            notebook = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read the executed notebook {path}: {err}; run `make figures` first") from None
        entry = section_times(notebook)
        timings[path.stem] = {"profile": setup.profile(), "date": _dt.date.today().isoformat(),
                              "cpu": setup.cpu_name(), "threads": torch.get_num_threads(), **entry}
    text = json.dumps(dict(sorted(timings.items())), indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text))
    return timings


def main(argv: list[str] | None = None) -> None:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        raise SystemExit("usage: python -m tools.timings EXECUTED.ipynb ...")
    timings = record_timings(paths)
    total = 0.0
    for path in paths:
        entry = timings[Path(path).stem]
        total += entry["wall_seconds"]
        print(f"{Path(path).stem}: {entry['wall_seconds'] / 60:.1f} min")
    print(f"all {len(paths)} notebooks: {total / 60:.1f} min on {setup.cpu_name()}")


if __name__ == "__main__":
    main()
