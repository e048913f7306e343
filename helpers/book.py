"""The executed notebooks as a static HTML book: ``python -m helpers.book`` (``make book``).

Reads the notebooks ``make figures`` executed (never executes them again) and writes ``build/book/``: ``index.html``
(what the workbook is, one line and the headline numbers of each chapter from ``figures/metrics.json``) and one page
per notebook with inputs, outputs, figures and answers, linked to the previous and next chapter. Every page is made
by nbconvert's HTML exporter (lab template); figures are embedded as data URIs, so the pages read offline (math then
shows as its TeX source: MathJax comes from a CDN). Long outputs are trimmed and progress bars collapsed to their last
state. :func:`check_site` finds missing pages, broken links and images, and cell errors.
"""
from __future__ import annotations

import argparse
import html.parser
import re
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from . import results, setup, storage
from .execute import check_fresh

# name: (title, one line). The order is the book's.
CHAPTERS = {
    "01_diffusion": ("Diffusion in 2-D", "A denoiser on points of a square: the VE SDE, DDIM sampling, a conditional "
                                         "model and probabilities from the ELBO."),
    "02_gpt_alice": ("GPT on Alice", "A GPT-2-style model trained on *Alice in Wonderland*: sampling, inverting the "
                                     "model, attention and log-probabilities."),
    "03_vicreg": ("VICReg on CIFAR-10", "Self-supervised representations: linear probing, ablations down to Laplacian "
                                        "eigenmaps, retrieval, kNN anomaly detection against MNIST and clustering."),
}
# Headline numbers per chapter: (metric, label, format).
HEADLINES = {
    "01_diffusion": [("energy_distance", "energy distance to the data", "{:.4f}"),
                     ("frac_in_square", "samples inside the square", "{:.1%}")],
    "02_gpt_alice": [("val_perplexity", "validation perplexity", "{:.1f}"),
                     ("inversion_exact", "inversion recovers the sentence exactly", "{}")],
    "03_vicreg": [("probe_acc_vicreg", "linear probe", "{:.1%}"), ("auc_vicreg", "anomaly AUC (MNIST)", "{:.3f}")],
}
MAX_LINES = 30      # a longer text output keeps its first and last lines
KEEP_LINES = 12
ERROR_MARK = "Traceback (most recent call last)"


def page_name(notebook: str) -> str:
    return f"{notebook}.html"


def collapse_progress(text: str) -> str:
    """Keep the last state of every carriage-return-updated line (tqdm's progress bars)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def trim_text(text: str, max_lines: int = MAX_LINES, keep: int = KEEP_LINES) -> str:
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    return "\n".join(lines[:keep] + [f"… {len(lines) - 2 * keep} lines trimmed in the book …"] + lines[-keep:])


def readable(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Progress bars collapsed and long text outputs trimmed (in place; returns `nb`)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = trim_text(collapse_progress(output["text"]))
            elif "text/plain" in output.get("data", {}) and len(output["data"]) == 1:
                output["data"]["text/plain"] = trim_text(output["data"]["text/plain"])
    return nb


def navigation(names: list[str], i: int) -> str:
    links = ["[Contents](index.html)"]
    if i > 0:
        links.insert(0, f"[← {CHAPTERS[names[i - 1]][0]}]({page_name(names[i - 1])})")
    if i + 1 < len(names):
        links.append(f"[{CHAPTERS[names[i + 1]][0]} →]({page_name(names[i + 1])})")
    return " · ".join(links)


def headline(notebook: str, metrics: dict) -> str:
    values = metrics.get(notebook, {})
    def shown(value, fmt):
        return ("yes" if value else "no") if isinstance(value, bool) else fmt.format(value)

    parts = [f"{label} **{shown(values[key], fmt)}**" for key, label, fmt in HEADLINES.get(notebook, [])
             if values.get(key) is not None]
    if values.get("profile"):
        parts.append(f"profile `{values['profile']}`, {values.get('date', '')}".rstrip(", "))
    return "; ".join(parts) or "no recorded metrics yet (run `make figures`)"


def index_notebook(names: list[str], metrics: dict) -> nbformat.NotebookNode:
    rows = [f"| {n + 1} | [{CHAPTERS[name][0]}]({page_name(name)}) | {CHAPTERS[name][1]} | {headline(name, metrics)} |"
            for n, name in enumerate(names)]
    text = "\n".join([
        "# Advanced Machine Learning — the workbook", "",
        "Reference solutions to the course's exercises, run top to bottom and answered from their own measurements: "
        "each question has its code, its printed numbers, its figure and an answer that interprets them. "
        "These pages are the notebooks as `make figures` executed them; the code behind them lives in the tested "
        "package `helpers/`.", "",
        "| | chapter | what it does | headline numbers |", "|---|---|---|---|", *rows, "",
        "Offline, formulas show as their TeX source (MathJax is loaded from a CDN); everything else, figures "
        "included, is inside the pages.",
    ])
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])


# Code shown by `helpers.show_source` is a markdown output: give its block the look of code cells.
CSS = ("<style>.jp-RenderedMarkdown pre { font-family: var(--jp-code-font-family, monospace); "
       "font-size: var(--jp-code-font-size, 13px); background: var(--jp-cell-editor-background, #f7f7f7); "
       "padding: 6px 10px; }</style>")


def export(nb: nbformat.NotebookNode, title: str) -> str:
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=False)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body.replace("</head>", CSS + "\n</head>", 1)


def _write(path: Path, text: str) -> None:
    storage.atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def build(executed: str | Path, out: str | Path, metrics: dict | None = None) -> list[Path]:
    """Write the book from the executed notebooks in `executed` (those of CHAPTERS that exist) to `out`."""
    executed, out = Path(executed), Path(out)
    names = [name for name in CHAPTERS if (executed / f"{name}.ipynb").is_file()]
    if not names:
        raise ValueError(f"no executed notebook in {executed} (expected {', '.join(n + '.ipynb' for n in CHAPTERS)}). "
                         "Fix: run `make figures` first, which executes them there")
    metrics = results.load_metrics() if metrics is None else metrics
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for i, name in enumerate(names):
        nb = readable(nbformat.read(executed / f"{name}.ipynb", as_version=4))
        if not any(output for cell in nb.cells for output in cell.get("outputs", [])):
            raise ValueError(f"{executed / (name + '.ipynb')} has no outputs: it is not an executed notebook. "
                             "Fix: run `make figures`, which writes the executed copies there")
        nav = navigation(names, i)
        titled = nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        title = [] if titled else [nbformat.v4.new_markdown_cell(f"# {i + 1} · {CHAPTERS[name][0]}")]
        nb.cells = [nbformat.v4.new_markdown_cell(nav), *title, *nb.cells, nbformat.v4.new_markdown_cell(nav)]
        pages.append(out / page_name(name))
        _write(pages[-1], export(nb, f"{i + 1} · {CHAPTERS[name][0]}"))
    pages.insert(0, out / "index.html")
    _write(pages[0], export(index_notebook(names, metrics), "Advanced Machine Learning — the workbook"))
    return pages


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs.get("src") or "")


def check_site(out: str | Path, chapters: list[str] | None = None) -> list[str]:
    """Problems a reader would trip over: missing pages, links to missing files, images with no source, cell errors.
    An empty list means the site is whole."""
    out = Path(out)
    chapters = chapters if chapters is not None else [n for n in CHAPTERS if (out / page_name(n)).is_file()]
    problems = []
    index = out / "index.html"
    if not index.is_file():
        return [f"{index} is missing"]
    for page in [index] + [out / page_name(n) for n in chapters]:
        if not page.is_file():
            problems.append(f"{page.name}: missing")
            continue
        text = page.read_text(encoding="utf-8")
        parser = _Links()
        parser.feed(text)
        local = sorted({href.split("#")[0] for href in parser.links if not re.match(r"^[a-z]+:|^#", href)})
        problems += [f"{page.name}: link to missing {href}" for href in local if href and not (out / href).is_file()]
        if page != index and "index.html" not in local:
            problems.append(f"{page.name}: no link back to the contents")
        for src in parser.images:
            if not src.startswith("data:image/") and not (out / src.split("#")[0].split("?")[0]).is_file():
                problems.append(f"{page.name}: broken image {src[:60]!r}")
        if ERROR_MARK in text:
            problems.append(f"{page.name}: a cell output shows an error ({ERROR_MARK})")
    index_links = _Links()
    index_links.feed(index.read_text(encoding="utf-8"))
    problems += [f"index.html: no link to chapter {page_name(n)}" for n in chapters if page_name(n) not in index_links.links]
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("executed", nargs="?", default=None, help="folder of executed notebooks "
                        "(default: build/executed, where `make figures` writes them)")
    parser.add_argument("--out", default=str(setup.repo_root() / "build" / "book"))
    args = parser.parse_args(argv)
    executed = Path(args.executed or setup.repo_root() / "build" / "executed")
    for name in CHAPTERS:  # only copies executed from the notebooks as they are now
        check_fresh(executed / f"{name}.ipynb", setup.repo_root() / "notebooks" / f"{name}.ipynb")
    unfinished = results.incomplete_runs(results.load_metrics(), setup.figures_dir())
    if unfinished:
        raise SystemExit(f"the last run of {', '.join(unfinished)} did not finish: its figures and metrics may "
                         "disagree. Fix: run `make figures` to the end")
    began = time.perf_counter()
    pages = build(executed, args.out)
    problems = check_site(args.out)
    print(f"wrote {len(pages)} pages to {args.out} in {time.perf_counter() - began:.1f} s: "
          + ", ".join(p.name for p in pages))
    if problems:
        raise SystemExit("the book has problems:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
