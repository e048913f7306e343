"""One plot style, one `save_fig`, and the few plotting functions every notebook shares."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Circle

from . import setup, storage


def set_style() -> None:
    """The workbook's plot style (seaborn's whitegrid with a colour-blind safe palette)."""
    sns.set_theme(style="whitegrid", palette="colorblind", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "savefig.bbox": "tight",
                         "axes.titlesize": "medium"})


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def figure_path(name: str, notebook: str | None = None) -> Path:
    """``<output dir>/<notebook>/<name>.png``; both must be plain names, so a figure never lands outside it."""
    run = setup.current_run()
    notebook = notebook or (run.notebook if run else "misc")
    for what, value in (("figure name", name), ("notebook name", notebook)):
        if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value:
            raise ValueError(f"{what} {value!r} must be a plain file name such as 'samples_grid' "
                             "(letters, digits, '_', '-', '.'; no folders)")
    return setup.output_dir() / notebook / f"{name}.png"


def save_fig(name: str, fig: plt.Figure | None = None, notebook: str | None = None) -> Path:
    """Write `fig` (the current figure by default) to ``figures/<notebook>/<name>.png`` atomically.

    In the smoke profile it goes to a temporary folder, never over the README's figures.
    """
    fig = fig or plt.gcf()
    path = figure_path(name, notebook)
    storage.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


def scatter2d(ax, points, c=None, title: str | None = None, lim: float | None = 1.6, s: float = 3,
              square: bool = True, **kwargs):
    """Scatter (N, 2) points on `ax` with equal, labelled (x_1, x_2) axes and, optionally, the [-1, 1]^2 square drawn."""
    points = np.asarray(points)
    sc = ax.scatter(points[:, 0], points[:, 1], c=c, s=s, **kwargs)
    if square:
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], color="0.3", lw=0.8, ls="--")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set(xlabel=r"$x_1$", ylabel=r"$x_2$")
    if title:
        ax.set_title(title)
    return sc


def colored_tokens(ax, tokens: list[str], scores, cmap: str = "Reds", width: int = 60, highlight: int | None = None,
                   vmax: float | None = None, fontsize: int = 12, values: str | None = None):
    """Draw `tokens` as text whose background colour is its score (monospace, wrapped at `width` characters).

    `highlight` outlines one token (e.g. the query). `values`, a format such as ".2f", writes each score under its
    token (a leading "0" dropped: .12). Each token starts where the drawn previous one ends (measured), so the axes
    must have their final size when this is called (a colorbar gets its own axes: `fig.colorbar(..., cax=...)`).
    Returns the colour-mapping ScalarMappable for a colorbar.
    """
    scores = np.asarray(scores, dtype=float)
    if len(scores) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    norm = mpl.colors.Normalize(vmin=0.0, vmax=vmax or max(scores.max(), 1e-12))
    colours = plt.get_cmap(cmap)
    ax.set_axis_off()
    texts = [tok.replace("\n", "⏎") for tok in tokens]
    rows, col, row = [], 0, 0
    for text in texts:                                                            # wrap by characters
        if col + len(text) > width and col > 0:
            col, row = 0, row + 1
        rows.append(row)
        col += len(text)
    step = 2.9 if values else 1.9                                                  # line height, in text rows
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-row * step - (2.0 if values else 1.2), 1.2)
    renderer = ax.figure.canvas.get_renderer()
    to_data = ax.transData.inverted()
    x, last_row = 0.0, 0
    for i, (text, score, row) in enumerate(zip(texts, scores, rows)):
        if row != last_row:
            x, last_row = 0.0, row
        fc = colours(norm(score))
        dark = 0.299 * fc[0] + 0.587 * fc[1] + 0.114 * fc[2] < 0.5                # luma of the background
        drawn = ax.text(x, -row * step, text, family="monospace", fontsize=fontsize, va="center", ha="left",
                        color="white" if dark else "black",
                        bbox=dict(boxstyle="square,pad=0.15", fc=fc, ec="k" if i == highlight else "none", lw=1.5))
        box = drawn.get_window_extent(renderer)
        left, right = (to_data.transform((px, 0))[0] for px in (box.x0, box.x1))
        if values:
            lead = (len(text) - len(text.lstrip())) / max(len(text), 1)            # a leading space: centre the word
            label = format(score, values)
            label = label[1:] if label.startswith("0.") else label
            ax.text(left + (right - left) * (1 + lead) / 2, -row * step - 1.25, label, family="monospace",
                    fontsize=fontsize * 0.72, va="center", ha="center", color="0.2")
        x = right + 0.35 * (right - left) / max(len(text), 1)                    # a third of a character apart
    return mpl.cm.ScalarMappable(norm=norm, cmap=colours)


def class_scatter(ax, points, labels, names=None, title: str | None = None, centres=None, s: float = 4,
                  legend: bool = True, palette: str = "tab10"):
    """2-D points coloured by integer label (one colour per label, seaborn `palette`), optional centres in black."""
    points, labels = np.asarray(points), np.asarray(labels)
    n = int(labels.max()) + 1
    palette = sns.color_palette(palette if n <= 10 else "husl", n)
    for c in range(n):
        mask = labels == c
        ax.scatter(points[mask, 0], points[mask, 1], s=s, color=palette[c], alpha=0.7, linewidths=0,
                   label=names[c] if names is not None else str(c), rasterized=True)
    if centres is not None:
        ax.scatter(*np.asarray(centres).T, s=60, c="black", marker="X", edgecolors="white", linewidths=0.8,
                   label="centres")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    if legend:
        leg = ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
        for handle in leg.legend_handles:
            handle.set_sizes([25])


def image_rows(rows, row_labels=None, col_titles=None, size: float = 1.1, title: str | None = None,
               captions=None):
    """A figure of uint8 (H, W, 3) images, one row per list in `rows`; returns the figure.

    `captions`, lists shaped like `rows`, writes a short text under each image (e.g. its class)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols + (1.2 if row_labels else 0), size * n_rows),
                             squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for side in ax.spines.values():
                side.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
                if captions is not None and c < len(captions[r]):
                    ax.set_xlabel(captions[r][c], fontsize="x-small", labelpad=1)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize="small")
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def draw_regions(ax, radius: float = 0.5, color: str = "0.3") -> None:
    """Outline the classes of `diffusion.square_regions` on a matplotlib axes: the centre disk of `radius` and the two axes
    that split the rest of [−1, 1]² into quadrants (drawn from the disk to the square's edge)."""
    ax.add_patch(Circle((0, 0), radius, fill=False, color=color, lw=0.9))
    for (x0, y0), (x1, y1) in (((radius, 0), (1, 0)), ((-radius, 0), (-1, 0)), ((0, radius), (0, 1)),
                               ((0, -radius), (0, -1))):
        ax.plot([x0, x1], [y0, y1], color=color, lw=0.9)


OBJECTIVE_TERMS = ("invariance", "variance", "covariance")


def plot_objectives(histories: dict, title: str, yscale: str = "log", linthresh: float = 1e-4) -> plt.Figure:
    """VICReg's three (unweighted) loss terms, one panel each: per training batch (lines, x in epochs) and on the
    test set after every epoch (dots), one colour per entry of `histories` ({label: training history with
    "batch", "epoch" and "test"}). `yscale="symlog"` (linear below `linthresh`) shows terms that reach exactly 0.
    A panel whose range spans under two decades is labelled at 1, 2 and 5 of each decade."""
    if yscale not in ("log", "symlog", "linear"):
        raise ValueError(f"yscale must be 'log', 'symlog' or 'linear', got {yscale!r}")
    if not histories:
        raise ValueError("histories is empty: give at least one {label: training history}")
    for label, hist in histories.items():
        missing = [k for k in ("batch", "epoch", "test") if k not in hist]
        missing += [f"batch[{t!r}]" for t in OBJECTIVE_TERMS + ("loss",) if t not in hist.get("batch", {})]
        if missing or not hist["epoch"]:
            raise ValueError(f"history {label!r} lacks {', '.join(missing) or 'epochs'}: expected the history of "
                             "helpers.vicreg_training (batch terms, epochs, test terms)")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for (label, hist), colour in zip(histories.items(), sns.color_palette()):
        steps = len(hist["batch"]["loss"]) // len(hist["epoch"])
        for ax, term in zip(axes, OBJECTIVE_TERMS):
            values = np.asarray(hist["batch"][term])
            ax.plot(np.arange(1, len(values) + 1) / steps, values, color=colour, lw=0.4, alpha=0.35,
                    label=f"{label}, train batches")
            if hist["test"]:
                ax.plot(hist["epoch"], [t[term] for t in hist["test"]], "o", mfc="white", mec=colour, mew=1.5, ms=5,
                        label=f"{label}, test set")
    first = next(iter(histories.values()))
    batches = len(first["batch"]["loss"]) // len(first["epoch"])                 # per epoch, for the x label
    for ax, term in zip(axes, OBJECTIVE_TERMS):
        ax.set(title=term, xlabel=f"training batches, in epochs of {batches}", ylabel=f"{term} term (unweighted)")
        ax.set_yscale(yscale, **({"linthresh": linthresh} if yscale == "symlog" else {}))
        if yscale == "log":       # labels at 1, 2 and 5 of each decade: every panel has some, short ones
            ax.yaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
        elif yscale == "symlog":
            low, high = ax.get_ylim()
            if high < 100 * max(low, linthresh):     # under two decades: a single decade label otherwise
                ax.yaxis.set_major_locator(mpl.ticker.SymmetricalLogLocator(linthresh=linthresh, base=10,
                                                                            subs=(1, 2, 5)))
                ax.yaxis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())      # no minor tick labels between the panels
    fig.subplots_adjust(wspace=0.32)                                  # room for each panel's y label
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize="small",
               bbox_to_anchor=(0.5, -0.12), frameon=False)           # below the panels, off the data
    fig.suptitle(title, y=1.03)
    return fig
