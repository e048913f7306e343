"""Executing the notebooks for `make figures`: a progress line per cell, and executed copies that know their source.

``python -m tools.execute notebooks/*.ipynb --out build/executed`` runs each notebook top to bottom with nbclient
(the kernel inherits ``AML_PROFILE``), prints each cell's section and first line as it starts and the notebook's
wall time at the end, and writes the executed copy atomically into ``--out`` with the digest of the source's code
and markdown (``metadata.aml.source_sha256``). `check_fresh` compares that digest with the notebook as it is now:
the answer check and the book refuse an executed copy of an older (or another checkout's) notebook.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from helpers.storage import atomic_write


def source_digest(notebook) -> str:
    """sha256 of a notebook's code and markdown cells (type and source, in order); outputs do not count."""
    cells = [[c["cell_type"], "".join(c["source"])] for c in notebook["cells"] if c["cell_type"] in ("code", "markdown")]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).hexdigest()


def check_fresh(executed: str | Path, source: str | Path) -> None:
    """Raise a ValueError unless `executed` was executed from `source` as it is now."""
    executed, source = Path(executed), Path(source)
    if not executed.exists():
        raise ValueError(f"{executed} does not exist: run `make figures` first")
    recorded = json.loads(executed.read_text(encoding="utf-8")).get("metadata", {}).get("aml", {}).get("source_sha256")
    current = source_digest(json.loads(source.read_text(encoding="utf-8")))
    if recorded != current:
        why = "records no source digest" if recorded is None else f"was executed from another version of {source}"
        raise ValueError(f"{executed} {why} (another checkout's, or the notebook changed since): run `make figures`")


def _section(notebook, index: int) -> str:
    for cell in reversed(notebook.cells[:index]):
        heading = next((line[3:].strip() for line in cell.source.splitlines() if line.startswith("## ")), None)
        if cell.cell_type == "markdown" and heading:
            return heading
    return "set-up"


def execute(source: str | Path, out_dir: str | Path, timeout: int = 3600, progress: bool = True) -> Path:
    """Run `source` top to bottom in a fresh kernel (working directory: its folder); write the executed copy into
    `out_dir` (atomically) with the source digest; return its path. A cell that raises stops the run (nothing is
    written) with nbclient's CellExecutionError naming the cell."""
    source, out_dir = Path(source), Path(out_dir)
    notebook = nbformat.read(source, as_version=4)
    digest = source_digest(notebook)
    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]
    began = time.perf_counter()

    def on_cell_start(cell, cell_index):
        if progress and cell_index in code:
            first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
            print(f"  {time.perf_counter() - began:6.0f} s  cell {code.index(cell_index) + 1}/{len(code)} "
                  f"[{_section(notebook, cell_index)}] {first[:60]}", flush=True)

    print(f"{source.name}: executing {len(code)} code cells", flush=True)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", on_cell_start=on_cell_start,
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    notebook.metadata["aml"] = {"source_sha256": digest}
    out = out_dir / source.name
    atomic_write(out, lambda tmp: nbformat.write(notebook, str(tmp)))
    print(f"{source.name}: done in {(time.perf_counter() - began) / 60:.1f} min -> {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--out", required=True, help="folder for the executed copies")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        execute(path, args.out, args.timeout)


if __name__ == "__main__":
    main()
