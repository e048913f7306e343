"""The executed notebooks as a book built by Sphinx + MyST-NB (Jupyter Book's engine): ``python -m tools.book``.

``make book`` runs it after ``make figures``. It refuses executed copies of older notebooks (`check_fresh`) and an
unfinished run (`results.incomplete_runs`), then assembles the book's sources in ``build/book-src``: ``index.md``
(what the workbook is, one line and the headline numbers of each chapter from ``figures/metrics.json``, and the table
of contents), a readable copy of each executed notebook (progress bars at their last state, long outputs trimmed)
and the markdown pages that ``book/book.toml`` names (e.g. ``docs/*.md``). Sphinx then writes ``build/book/`` with
the configuration in ``book/`` (``conf.py``: sphinx-book-theme, no execution, MathJax from a local copy): a sidebar
with every chapter and its questions, search, previous/next links, figures, outputs and typeset maths, all offline.
:func:`check_site` finds missing pages, broken links, anchors and images, error outputs and remote assets.
"""
from __future__ import annotations

import argparse
import html
import html.parser
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from helpers import results, setup
from .execute import check_fresh

ROOT = setup.repo_root()
CONF = ROOT / "book"              # conf.py, book.toml, templates and styles
# Headline numbers per chapter: (metric names, the first one recorded is shown; label; format).
HEADLINES = {
    "01_diffusion": [(("energy_distance",), "energy distance to the data", "{:.4f}"),
                     (("frac_in_square",), "samples inside the square", "{:.1%}")],
    "02_gpt_alice": [(("test_perplexity", "val_perplexity"), "test perplexity", "{:.1f}"),
                     (("inversion_exact",), "inversion recovers the sentence exactly", "{}")],
    "03_vicreg": [(("probe_acc_vicreg",), "linear probe", "{:.1%}"), (("auc_vicreg",), "anomaly AUC (MNIST)", "{:.3f}")],
}
MAX_LINES = 30      # a longer text output keeps its first and last lines
KEEP_LINES = 12
ERROR_MARK = "Traceback (most recent call last)"
WIDGET = "application/vnd.jupyter.widget-view+json"
RELATIVE_LINK = re.compile(r"\]\(\.\./([^)\s]+)\)")


def load_toc(path: str | Path = CONF / "book.toml") -> dict:
    """The table of contents: ``chapters`` (name, title, blurb) and ``pages`` (caption, globs)."""
    with open(path, "rb") as f:
        toc = tomllib.load(f)
    toc.setdefault("pages", {}).setdefault("globs", [])
    return toc


def collapse_progress(text: str) -> str:
    """Keep the last state of every carriage-return-updated line (tqdm's progress bars)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def trim_text(text: str, max_lines: int = MAX_LINES, keep: int = KEEP_LINES) -> str:
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    return "\n".join(lines[:keep] + [f"… {len(lines) - 2 * keep} lines trimmed in the book …"] + lines[-keep:])


def widget_text(state: dict, model_id: str) -> str | None:
    """The last state of a tqdm progress widget (an HBox of HTML, progress bar, HTML) as one line of text."""
    box = state.get(model_id, {}).get("state", {})
    parts = []
    for child in box.get("children", []):
        model = state.get(str(child).removeprefix("IPY_MODEL_"), {})
        values = model.get("state", {})
        if model.get("model_name", "").endswith("ProgressModel") and values.get("max"):
            filled = round(10 * values.get("value", 0) / values["max"])
            parts.append("|" + "█" * filled + " " * (10 - filled) + "|")
        elif isinstance(values.get("value"), str):
            parts.append(html.unescape(re.sub(r"<[^>]+>", "", values["value"])).strip())
    return " ".join(p for p in parts if p) or None


def readable(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Progress bars (text or widgets) at their last state, long text outputs trimmed and markdown links out of
    notebooks/ (``../docs/x.md``) made relative to the book's root (in place; returns `nb`). The widget state is
    dropped: the book loads no widget JavaScript."""
    state = nb.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":  # a link from notebooks/ to the repository (../docs/x.md): the book's pages
            cell.source = RELATIVE_LINK.sub(r"](\1)", cell.source)  # sit at its root, beside docs/
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.get("output_type") == "stream":
                output["text"] = trim_text(collapse_progress(output["text"]))
            elif WIDGET in data:
                text = widget_text(state, data[WIDGET].get("model_id", "")) or data.get("text/plain", "")
                output["data"] = {"text/plain": text}
            elif "text/plain" in data and len(data) == 1:
                data["text/plain"] = trim_text(data["text/plain"])
    return nb


def questions(nb: nbformat.NotebookNode) -> list[str]:
    """The notebook's sections (its ``## `` headings: the questions, bonus and results), in order."""
    return [line[3:].strip() for cell in nb.cells if cell.cell_type == "markdown"
            for line in "".join(cell.source).splitlines() if line.startswith("## ")]


def headline(notebook: str, metrics: dict) -> str:
    values = metrics.get(notebook, {})

    def shown(value, fmt):
        return ("yes" if value else "no") if isinstance(value, bool) else fmt.format(value)

    parts = []
    for keys, label, fmt in HEADLINES.get(notebook, []):
        key = next((k for k in keys if values.get(k) is not None), None)
        if key is not None:
            parts.append(f"{label} **{shown(values[key], fmt)}**")
    if values.get("profile"):
        parts.append(f"profile `{values['profile']}`, {values.get('date', '')}".rstrip(", "))
    return "; ".join(parts) or "no recorded metrics yet (run `make figures`)"


def index_page(chapters: list[dict], metrics: dict, pages: list[str], caption: str) -> str:
    """The book's front page (MyST markdown): the workbook in a few lines, the chapters with their headline numbers,
    and the (hidden) tables of contents the sidebar is made from."""
    rows = [f"| {n + 1} | [{c['title']}]({c['name']}.ipynb) | {c['blurb']} | {headline(c['name'], metrics)} |"
            for n, c in enumerate(chapters)]
    lines = [
        "# Advanced Machine Learning — the workbook", "",
        "Reference solutions to the course's exercises, as notebooks run top to bottom: a 2-D diffusion model, a "
        "GPT-2-style model trained on *Alice in Wonderland*, and VICReg on CIFAR-10. Each question has its code, its "
        "printed numbers, its figures and an answer that interprets them. These pages show the notebooks as "
        "`make figures` executed them (nothing is run again); the code behind them lives in the tested package "
        "`helpers/`. The sidebar lists every chapter and its questions; search is at its top.", "",
        "| | chapter | what it does | headline numbers |", "|---|---|---|---|", *rows, "",
        "```{toctree}", ":hidden:", ":caption: Chapters", ":maxdepth: 2", "", *[c["name"] for c in chapters], "```",
    ]
    if pages:
        lines += ["", "```{toctree}", ":hidden:", f":caption: {caption}", ":maxdepth: 1", "", *pages, "```"]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, data: bytes) -> None:
    """Unchanged files keep their time stamps, so that Sphinx re-reads only what changed (warm builds)."""
    if not path.is_file() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def assemble(executed: str | Path, src: str | Path, metrics: dict, toc: dict | None = None,
             root: str | Path = ROOT) -> list[str]:
    """Write the book's sources into `src` from the executed notebooks in `executed` (the chapters of `toc` that
    exist there) and the markdown pages the globs of `toc` match under `root`; return the document names."""
    executed, src, root = Path(executed), Path(src), Path(root)
    toc = toc or load_toc()
    chapters = [c for c in toc["chapters"] if (executed / f"{c['name']}.ipynb").is_file()]
    if not chapters:
        raise ValueError(f"no executed notebook in {executed} (expected "
                         f"{', '.join(c['name'] + '.ipynb' for c in toc['chapters'])}). "
                         "Fix: run `make figures` first, which executes them there")
    written = {}
    for chapter in chapters:
        path = executed / f"{chapter['name']}.ipynb"
        nb = nbformat.read(path, as_version=4)
        if not any(output for cell in nb.cells for output in cell.get("outputs", [])):
            raise ValueError(f"{path} has no outputs: it is not an executed notebook. "
                             "Fix: run `make figures`, which writes the executed copies there")
        if not (nb.cells and nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")):
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {chapter['title']}"))
        written[f"{chapter['name']}.ipynb"] = nbformat.writes(readable(nb)).encode()
    pages = sorted({p.relative_to(root).as_posix() for pattern in toc["pages"]["globs"]
                    for p in root.glob(pattern) if p.is_file() and p.suffix == ".md"})
    for page in pages:
        written[page] = (root / page).read_bytes()
    written["index.md"] = index_page(chapters, metrics, [p[:-3] for p in pages],
                                     toc["pages"].get("caption", "Pages")).encode()
    for name, data in written.items():
        _write_if_changed(src / name, data)
    for old in [p for p in src.rglob("*") if p.is_file() and p.relative_to(src).as_posix() not in written]:
        old.unlink()  # a page that left the contents leaves the book
    return ["index"] + [c["name"] for c in chapters] + [p[:-3] for p in pages]


def sphinx(src: str | Path, out: str | Path, cache: str | Path, conf: str | Path = CONF) -> list[str]:
    """Run Sphinx's HTML builder (a separate process, so that importing this module needs no Sphinx); return its
    warnings. Its environment is kept in `cache`, so a second build re-reads only the changed sources; every page is
    written again (``-a``), since each carries the sidebar of every chapter's questions."""
    warnings = Path(cache) / "warnings.txt"
    warnings.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-a", "-q", "-c", str(conf), "-d", str(Path(cache) / "doctrees"),
               "-w", str(warnings), str(src), str(out)]
    done = subprocess.run(command)
    if done.returncode:
        raise SystemExit(f"sphinx failed (exit {done.returncode}): {' '.join(command)}")
    return [line for line in warnings.read_text(encoding="utf-8").splitlines() if line.strip()]


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images, self.ids, self.remote = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs.get("src") or "")
        url = attrs.get("src") if tag == "script" else attrs.get("href") if tag == "link" else None
        if url and re.match(r"^(https?:)?//", url):
            self.remote.append(url)


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def check_site(out: str | Path, documents: list[str]) -> list[str]:
    """Problems a reader would trip over: a missing page, a link to a missing file or anchor, an image with no file,
    an error output, a script or style fetched from the network. An empty list means the site is whole."""
    out = Path(out)
    problems, parsed = [], {}

    def ids(target: Path) -> set[str]:
        if target not in parsed:
            parsed[target] = _parse(target).ids
        return parsed[target]

    for doc in documents:
        page = out / f"{doc}.html"
        if not page.is_file():
            problems.append(f"{doc}.html: missing")
            continue
        found = _parse(page)
        for href in found.links:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.is_file():
                problems.append(f"{doc}.html: link to missing {href}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in ids(target):
                problems.append(f"{doc}.html: link to missing anchor {href}")
        for src in found.images:
            if not src.startswith("data:image/") and not (page.parent / unquote(urlsplit(src).path)).is_file():
                problems.append(f"{doc}.html: broken image {src[:60]!r}")
        problems += [f"{doc}.html: fetches {url} from the network" for url in found.remote]
        if ERROR_MARK in page.read_text(encoding="utf-8"):
            problems.append(f"{doc}.html: a cell output shows an error ({ERROR_MARK})")
    if not (out / "search.html").is_file() or not (out / "searchindex.js").is_file():
        problems.append("search.html or searchindex.js: missing")
    return problems


def build(executed: str | Path, out: str | Path, metrics: dict | None = None, toc: dict | None = None,
          work: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Assemble the sources (in `work`/book-src) and build the site in `out`; return (document names, warnings)."""
    out = Path(out)
    work = Path(work) if work is not None else out.parent
    metrics = results.load_metrics() if metrics is None else metrics
    documents = assemble(executed, work / "book-src", metrics, toc)
    return documents, sphinx(work / "book-src", out, work / "book-cache")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("executed", nargs="?", default=str(ROOT / "build" / "executed"),
                        help="folder of executed notebooks (default: build/executed, where `make figures` writes them)")
    parser.add_argument("--out", default=str(ROOT / "build" / "book"))
    parser.add_argument("--clean", action="store_true", help="remove the site and Sphinx's cache first (cold build)")
    args = parser.parse_args(argv)
    executed, out = Path(args.executed), Path(args.out)
    for chapter in load_toc()["chapters"]:  # only copies executed from the notebooks as they are now
        check_fresh(executed / f"{chapter['name']}.ipynb", ROOT / "notebooks" / f"{chapter['name']}.ipynb")
    unfinished = results.incomplete_runs(results.load_metrics(), setup.figures_dir())
    if unfinished:
        raise SystemExit(f"the last run of {', '.join(unfinished)} did not finish: its figures and metrics may "
                         "disagree. Fix: run `make figures` to the end")
    if args.clean:
        for folder in (out, out.parent / "book-cache"):
            shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    documents, warnings = build(executed, out)
    problems = check_site(out, documents)
    print(f"wrote {len(documents)} pages to {out}/ in {time.perf_counter() - began:.1f} s: "
          + ", ".join(f"{d}.html" for d in documents))
    if warnings:
        print(f"sphinx warned {len(warnings)} time(s):\n  " + "\n  ".join(warnings))
    if problems:
        raise SystemExit("the book has problems:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
