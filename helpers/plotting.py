"""One plot style, one `save_fig`, and the few plotting functions every notebook shares."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from . import results, setup


def set_style() -> None:
    """The workbook's plot style (seaborn's whitegrid with a colour-blind safe palette)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette="colorblind", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "savefig.bbox": "tight",
                         "axes.titlesize": "medium"})


def figure_path(name: str, notebook: str | None = None) -> Path:
    run = setup.current_run()
    notebook = notebook or (run.notebook if run else "misc")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"figure name {name!r} must be a plain file name such as 'samples_grid'")
    return results.output_dir() / notebook / f"{name}.png"


def save_fig(name: str, fig: plt.Figure | None = None, notebook: str | None = None) -> Path:
    """Write `fig` (the current figure by default) to ``figures/<notebook>/<name>.png`` atomically.

    In the smoke profile it goes to a temporary folder, never over the README's figures.
    """
    fig = fig or plt.gcf()
    path = figure_path(name, notebook)
    results.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def scatter2d(ax, points, c=None, title: str | None = None, lim: float | None = 1.6, s: float = 3,
              square: bool = True, **kwargs):
    """Scatter (N, 2) points on `ax` with equal axes and, optionally, the [-1, 1]^2 square drawn."""
    points = np.asarray(points)
    sc = ax.scatter(points[:, 0], points[:, 1], c=c, s=s, **kwargs)
    if square:
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="0.3", lw=0.8, ls="--")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return sc


def colored_tokens(ax, tokens: list[str], scores, cmap: str = "Reds", width: int = 60, highlight: int | None = None,
                   vmax: float | None = None, fontsize: int = 12):
    """Draw `tokens` as text whose background colour is its score (monospace, wrapped at `width` characters).

    `highlight` outlines one token (e.g. the query). Returns the colour-mapping ScalarMappable for a colorbar.
    """
    import matplotlib as mpl

    scores = np.asarray(scores, dtype=float)
    if len(scores) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    norm = mpl.colors.Normalize(vmin=0.0, vmax=vmax or max(scores.max(), 1e-12))
    colours = plt.get_cmap(cmap)
    ax.set_axis_off()
    col, row = 0, 0
    for i, (tok, score) in enumerate(zip(tokens, scores)):
        text = tok.replace("\n", "⏎")
        if col + len(text) > width and col > 0:
            col, row = 0, row + 1
        fc = colours(norm(score))
        dark = 0.299 * fc[0] + 0.587 * fc[1] + 0.114 * fc[2] < 0.5                # luma of the background
        ax.text(col, -row * 1.9, text, family="monospace", fontsize=fontsize, va="center", ha="left",
                color="white" if dark else "black",
                bbox=dict(boxstyle="square,pad=0.15", fc=fc, ec="k" if i == highlight else "none", lw=1.5))
        col += len(text)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-row * 1.9 - 1.2, 1.2)
    return mpl.cm.ScalarMappable(norm=norm, cmap=colours)
