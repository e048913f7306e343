"""The book (tools.book): its sources assembled from small executed notebooks made here (no kernel, no Sphinx),
what it refuses, and the site check on a hand-written site. The Sphinx build itself is covered by `make book` and
scripts/check_book_in_browser.py (`--fixture` builds tests/data/book, whose maths must render); the last test reads
the built book when there is one."""
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import setup

from tools import book  # noqa: E402

TOC = {"chapters": [{"name": "01_diffusion", "title": "Diffusion in 2-D", "blurb": "Points."},
                    {"name": "02_gpt_alice", "title": "GPT on Alice", "blurb": "Text."},
                    {"name": "03_vicreg", "title": "VICReg", "blurb": "Images."}],
       "pages": {"caption": "Engineering records", "globs": ["docs/*.md"]}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def executed(folder: Path, name: str, title: bool = True) -> nbformat.NotebookNode:
    """An 'executed' notebook written by hand: questions, a progress bar, a long output, a widget and a figure."""
    widgets = {"application/vnd.jupyter.widget-state+json": {"state": {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 30, "max": 30}},
        "right": {"model_name": "HTMLModel", "state": {"value": " 30/30 [00:01&lt;00:00, 25.0it/s]"}}}}}
    cells = ([new_markdown_cell(f"# {name} · a chapter")] if title else []) + [
        new_markdown_cell("## Q1 · Points\n**Answer.** The figure shows a line, $x^2$."),
        new_code_cell("run()", outputs=[
            new_output("stream", name="stderr", text="started\rhalfway\rall done\n"),
            new_output("stream", name="stdout", text="\n".join(f"step {i}" for i in range(100))),
            new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "box"},
                                             "text/plain": "training:   0%|          | 0/30"}),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]),
        new_markdown_cell("## Q2 · Bonus\nText.\n### a sub-point"),
    ]
    nb = new_notebook(cells=cells, metadata={"widgets": widgets})
    nbformat.write(nb, folder / f"{name}.ipynb")
    return nb


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "executed"
    folder.mkdir()
    executed(folder, "01_diffusion")
    executed(folder, "03_vicreg", title=False)
    return folder


def test_sources_list_every_chapter_and_docs_page(notebooks, tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "timings.md").write_text("# Timings\n")
    (root / "docs" / "notes.txt").write_text("not markdown")
    metrics = {"03_vicreg": {"probe_acc_vicreg": 0.7123, "auc_vicreg": 0.91, "profile": "default", "date": "2026-11-28"}}
    src = tmp_path / "src"
    documents = book.assemble(notebooks, src, metrics, TOC, root)
    assert documents == ["index", "01_diffusion", "03_vicreg", "docs/timings"]   # 02 was not executed: left out
    index = (src / "index.md").read_text()
    chapters = index.split(":caption: Chapters")[1].split("```")[0].split()
    assert chapters == [":maxdepth:", "2", "01_diffusion", "03_vicreg"]
    assert ":caption: Engineering records" in index and "\ndocs/timings\n" in index
    assert "[VICReg](03_vicreg.ipynb)" in index and "linear probe **71.2%**; anomaly AUC (MNIST) **0.910**" in index
    assert "no recorded metrics yet" in index                      # chapter 01 has none in `metrics`
    for name in ("01_diffusion", "03_vicreg"):                      # each question is a `## ` heading of its page
        assert book.questions(nbformat.read(src / f"{name}.ipynb", as_version=4)) == ["Q1 · Points", "Q2 · Bonus"]
    untitled = nbformat.read(src / "03_vicreg.ipynb", as_version=4)
    assert untitled.cells[0].source == "# VICReg"                   # an untitled notebook gets the chapter's title
    assert (src / "docs" / "timings.md").read_text() == "# Timings\n" and not (src / "docs" / "notes.txt").exists()


def test_a_second_assembly_keeps_unchanged_files_and_drops_pages_that_left(notebooks, tmp_path):
    src = tmp_path / "src"
    book.assemble(notebooks, src, {}, TOC, tmp_path)
    os.utime(src / "01_diffusion.ipynb", (1, 1))
    (notebooks / "03_vicreg.ipynb").unlink()
    assert book.assemble(notebooks, src, {}, TOC, tmp_path) == ["index", "01_diffusion"]
    assert (src / "01_diffusion.ipynb").stat().st_mtime == 1      # unchanged: Sphinx need not read it again
    assert not (src / "03_vicreg.ipynb").exists() and "03_vicreg" not in (src / "index.md").read_text()


def test_outputs_are_made_readable(notebooks, tmp_path):
    src = tmp_path / "src"
    book.assemble(notebooks, src, {}, TOC, tmp_path)
    nb = nbformat.read(src / "01_diffusion.ipynb", as_version=4)
    stderr, stdout, widget, figure = nb.cells[2].outputs
    assert stderr.text == "all done\n"                             # a progress bar shows its last state only
    lines = stdout.text.split("\n")
    assert lines[:2] == ["step 0", "step 1"] and "… 76 lines trimmed in the book …" in lines and lines[-1] == "step 99"
    assert widget.data == {"text/plain": "training: 100% |██████████| 30/30 [00:01<00:00, 25.0it/s]"}
    assert figure.data["image/png"] == PNG and "widgets" not in nb.metadata
    assert book.trim_text("a\nb") == "a\nb" and book.collapse_progress("a\r b\r c\nd") == " c\nd"


def test_headlines_prefer_the_test_perplexity_and_fall_back_to_the_old_name():
    assert book.headline("02_gpt_alice", {"02_gpt_alice": {"inversion_exact": True, "val_perplexity": 9.04}}) == \
        "test perplexity **9.0**; inversion recovers the sentence exactly **yes**"
    both = {"02_gpt_alice": {"test_perplexity": 7.0, "val_perplexity": 9.0, "profile": "smoke", "date": "d"}}
    assert book.headline("02_gpt_alice", both) == "test perplexity **7.0**; profile `smoke`, d"


def test_the_book_refuses_missing_stale_or_unexecuted_notebooks(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no executed notebook .* run `make figures` first"):
        book.assemble(tmp_path, tmp_path / "src", {}, TOC, tmp_path)
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), tmp_path / "03_vicreg.ipynb")
    with pytest.raises(ValueError, match="has no outputs: it is not an executed notebook"):
        book.assemble(tmp_path, tmp_path / "src", {}, TOC, tmp_path)
    monkeypatch.setattr(book, "build", lambda *a, **k: pytest.fail("built from a stale notebook"))
    with pytest.raises(ValueError, match="01_diffusion.ipynb does not exist: run `make figures` first"):
        book.main([str(tmp_path), "--out", str(tmp_path / "book")])
    for chapter in book.load_toc()["chapters"]:                  # copies of other versions of the notebooks
        executed(tmp_path, chapter["name"])
    with pytest.raises(ValueError, match="records no source digest"):
        book.main([str(tmp_path), "--out", str(tmp_path / "book")])


def test_the_committed_contents_name_every_notebook():
    toc = book.load_toc()
    names = [c["name"] for c in toc["chapters"]]
    assert names == sorted(p.stem for p in (setup.repo_root() / "notebooks").glob("*.ipynb"))
    assert set(book.HEADLINES) <= set(names) and "docs/*.md" in toc["pages"]["globs"]


def page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><head><script src='_static/x.js'></script></head><body>{body}</body></html>")


def test_check_site_finds_what_a_reader_would_trip_over(tmp_path):
    page(tmp_path / "index.html", "<a href='a.html#q1'>Q1</a><a href='https://example.org'>out</a>"
                                  "<img src='_images/f.png'><a href='#top' id='top'>top</a>")
    page(tmp_path / "a.html", "<h2 id='q1'>Q1</h2><a href='index.html'>contents</a>")
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "f.png").write_bytes(b"png")
    (tmp_path / "search.html").write_text("search")
    (tmp_path / "searchindex.js").write_text("index")
    assert book.check_site(tmp_path, ["index", "a"]) == []
    page(tmp_path / "a.html", f"<a href='index.html#q9'>gone</a><a href='b.html'>b</a><img src='_images/g.png'>"
                              f"<pre>{book.ERROR_MARK}</pre><link rel='stylesheet' href='https://cdn.example/m.css'>")
    (tmp_path / "searchindex.js").unlink()
    assert book.check_site(tmp_path, ["index", "a", "c"]) == [
        "index.html: link to missing anchor a.html#q1",
        "a.html: link to missing anchor index.html#q9", "a.html: link to missing b.html",
        "a.html: broken image '_images/g.png'", "a.html: fetches https://cdn.example/m.css from the network",
        f"a.html: a cell output shows an error ({book.ERROR_MARK})", "c.html: missing",
        "search.html or searchindex.js: missing"]


FIXTURE = setup.repo_root() / "tests" / "data" / "book"


def test_a_built_book_has_every_question_in_its_sidebar_and_no_remote_asset(tmp_path):
    """Sphinx run for real (a few seconds) on the small executed notebook of tests/data/book: its `##` questions
    are in every page's sidebar, its maths is left for the local MathJax, nothing is fetched from the network."""
    toc = {"chapters": [{"name": "00_maths", "title": "Maths", "blurb": "LaTeX."}], "pages": {"globs": []}}
    documents, _ = book.build(FIXTURE, tmp_path / "site", {}, toc, work=tmp_path)
    assert book.check_site(tmp_path / "site", documents) == []
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    nav = index.split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'href="00_maths.html"' in nav
    questions = book.questions(nbformat.read(FIXTURE / "00_maths.ipynb", as_version=4))
    assert questions and all(q.replace("`", "").replace("*", "") in nav for q in questions)
    page = (tmp_path / "site" / "00_maths.html").read_text(encoding="utf-8")
    assert "_static/mathjax/" in page and "cdn" not in page.lower()
