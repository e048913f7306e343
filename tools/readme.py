"""The README's results tables, written from ``figures/metrics.json`` and ``figures/timings.json`` (where the time
went, `tools.timings`) so the README can never disagree with them.

Run ``python -m tools.readme`` (``make figures`` does) to rewrite the block between the markers.
"""
from __future__ import annotations

import json
from pathlib import Path

from helpers import results, setup, storage

START, END = "<!-- results:start -->", "<!-- results:end -->"          # docs/results.md: every metric
SUMMARY_START, SUMMARY_END = "<!-- summary:start -->", "<!-- summary:end -->"  # README: one row per notebook


def _fmt(value) -> str:
    """A metric as one markdown table cell: floats to 4 significant digits; a `|` escaped, line breaks as <br>."""
    if isinstance(value, str):
        return value.replace("|", "\\|").replace("\r\n", "\n").replace("\n", "<br>")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None:
        return "—"
    return str(value)


def time_table(entry: dict) -> list[str]:
    """One notebook's `timings.json` entry as markdown lines: its wall time, the machine, seconds per section."""
    lines = [f"Time: **{entry['wall_seconds'] / 60:.1f} min** (profile `{entry.get('profile')}`, {entry.get('cpu')}, "
             f"{entry.get('threads')} threads, {entry.get('date')})", "", "| section | seconds |", "|---|---|"]
    return lines + [f"| {_fmt(name)} | {seconds:.0f} |" for name, seconds in entry["sections"]]


def results_table(metrics: dict, timings: dict | None = None) -> str:
    """A markdown table per notebook: one row per recorded metric, then where its time went (when measured)."""
    lines = []
    for notebook, values in sorted(metrics.items()):
        lines += [f"**{notebook}** (profile `{values.get('profile')}`, {values.get('date')})", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in values.items() if k not in results.BOOKKEEPING]
        lines.append("")
        if timings and notebook in timings:
            lines += time_table(timings[notebook]) + [""]
    return "\n".join(lines).rstrip() + "\n"


def summary_table(metrics: dict, timings: dict | None = None) -> str:
    """One row per notebook: its wall time on the machine that ran it and its headline numbers (`tools.book`)."""
    from .book import headline  # the book's front page shows the same numbers
    timings = timings or {}
    lines = ["| notebook | time | headline results |", "|---|---|---|"]
    for notebook in sorted(metrics):
        entry = timings.get(notebook)
        minutes = f"{entry['wall_seconds'] / 60:.1f} min" if entry else "—"
        lines.append(f"| `{notebook}` | {minutes} | {headline(notebook, metrics)} |")
    machines = sorted({f"{e.get('cpu')}, {e.get('threads')} threads" for e in timings.values()})
    if machines:
        total = sum(e["wall_seconds"] for e in timings.values()) / 60
        lines += ["", f"All {len(timings)} notebooks: **{total:.1f} min** on {'; '.join(machines)} (the last "
                      "`make figures`)."]
    return "\n".join(lines) + "\n"


def load_timings(path: Path | None = None) -> dict:
    path = path or setup.figures_dir() / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def readme_block(readme_text: str, start: str = START, end: str = END) -> str:
    """The text between the markers `start` and `end` of a page."""
    if start not in readme_text or end not in readme_text:
        raise ValueError(f"the page has no generated block: add {start} and {end}")
    return readme_text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def _with_block(text: str, body: str, start: str, end: str) -> str:
    readme_block(text, start, end)  # fails clearly when the markers are missing
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}"


def notebook_names() -> list[str]:
    return sorted(p.stem for p in (setup.repo_root() / "notebooks").glob("*.ipynb"))


def update_readme(readme: Path | None = None, metrics_file: Path | None = None,
                  timings_file: Path | None = None, notebooks: list[str] | None = None,
                  results_page: Path | None = None) -> str:
    """Rewrite the README's summary block and the results page's block (default ``docs/results.md``) from the
    metrics (and timings) files. Refuses when a notebook of `notebooks` (default: every notebook in notebooks/) has no
    metrics, or its last run did not finish: the tables would silently lose it or mix two runs."""
    readme = readme or setup.repo_root() / "README.md"
    results_page = results_page or readme.parent / "docs" / "results.md"
    metrics_file = metrics_file or setup.figures_dir() / "metrics.json"
    metrics = results.load_metrics(metrics_file)
    missing = [n for n in (notebook_names() if notebooks is None else notebooks) if n not in metrics]
    if missing:
        raise ValueError(f"{metrics_file} has no results of {', '.join(missing)}: the README's table is left as it "
                         f"is. Fix: run `make figures` (or the notebook), or `git checkout {metrics_file.name}`")
    unfinished = results.incomplete_runs(metrics, metrics_file.parent)
    if unfinished:
        raise ValueError(f"the last run of {', '.join(unfinished)} started but did not finish: its figures and "
                         f"{metrics_file.name} may disagree. Fix: run it again to the end (make figures)")
    timings = load_timings(timings_file or metrics_file.parent / "timings.json")
    page = _with_block(results_page.read_text(), results_table(metrics, timings), START, END)
    new = _with_block(readme.read_text(), summary_table(metrics, timings), SUMMARY_START, SUMMARY_END)
    storage.atomic_write(results_page, lambda tmp: tmp.write_text(page))
    storage.atomic_write(readme, lambda tmp: tmp.write_text(new))
    return new


if __name__ == "__main__":
    try:
        update_readme()
    except ValueError as err:
        raise SystemExit(str(err)) from None
    print(json.dumps({"updated": ["README.md", "docs/results.md"]}))
