"""The HTML book: built from small notebooks executed here, then checked for pages, links, images and errors."""
import nbclient
import nbformat
import pytest

from helpers import book

CELLS = {
    "01_diffusion": ["## Q1 · Points\n**Answer.** The figure shows a line.",
                     "import sys\nfor i in range(100):\n    print('step', i)\nsys.stderr.write('started\\r' + 'half' + 'way\\r' + 'all ' + 'done\\n')",
                     "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2))\nplt.plot([0, 1])\nplt.show()"],
    "03_vicreg": ["## Q1 · Probe\n**Answer.** Printed below.", "print('probe accuracy 0.5')"],
}


def executed(folder, name, cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) if not c.startswith("##")
                                         else nbformat.v4.new_markdown_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, allow_errors=True).execute()
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("executed")
    for name, cells in CELLS.items():
        executed(folder, name, cells)
    return folder


def test_book_has_every_page_linked_and_readable(notebooks, tmp_path):
    metrics = {"03_vicreg": {"probe_acc_vicreg": 0.7123, "auc_vicreg": 0.91, "profile": "default", "date": "2026-11-28"}}
    pages = book.build(notebooks, tmp_path, metrics)
    assert [p.name for p in pages] == ["index.html", "01_diffusion.html", "03_vicreg.html"]
    assert book.check_site(tmp_path) == []
    index = (tmp_path / "index.html").read_text()
    assert "linear probe <strong>71.2%</strong>" in index and "anomaly AUC (MNIST) <strong>0.910</strong>" in index
    assert "no recorded metrics yet" in index  # chapter 01 has none in `metrics`
    assert book.headline("02_gpt_alice", {"02_gpt_alice": {"inversion_exact": True, "val_perplexity": 1.0}}) == \
        "validation perplexity **1.0**; inversion recovers the sentence exactly **yes**"
    first = (tmp_path / "01_diffusion.html").read_text()
    assert "<h1" in first and "1 · Diffusion in 2-D" in first         # an untitled notebook gets the chapter's title
    assert 'href="03_vicreg.html"' in first and 'href="index.html"' in first
    assert "data:image/png;base64," in first                       # the figure travels inside the page
    assert "step 11" in first and "step 50" not in first and "step 99" in first and "lines trimmed" in first
    assert "all done" in first and "halfway" not in first            # a progress bar shows its last state only
    assert 'href="01_diffusion.html"' in (tmp_path / "03_vicreg.html").read_text()


def test_check_site_finds_what_a_reader_would_trip_over(notebooks, tmp_path):
    book.build(notebooks, tmp_path, {})
    (tmp_path / "03_vicreg.html").unlink()
    problems = book.check_site(tmp_path, chapters=["01_diffusion", "03_vicreg"])
    assert "03_vicreg.html: missing" in problems
    assert "01_diffusion.html: link to missing 03_vicreg.html" in problems
    page = tmp_path / "01_diffusion.html"
    page.write_text(page.read_text().replace('src="data:image/png;base64,', 'src="figures/gone.png#', 1)
                    .replace('href="index.html"', 'href="contents.html"'))
    problems = book.check_site(tmp_path, chapters=["01_diffusion"])
    assert any("broken image 'figures/gone.png#" in p for p in problems), problems
    assert "01_diffusion.html: link to missing contents.html" in problems
    assert "01_diffusion.html: no link back to the contents" in problems


def test_cell_errors_are_reported(tmp_path):
    folder = tmp_path / "executed"
    folder.mkdir()
    executed(folder, "02_gpt_alice", ["1 / 0"])
    book.build(folder, tmp_path / "book", {})
    assert book.check_site(tmp_path / "book") == [f"02_gpt_alice.html: a cell output shows an error ({book.ERROR_MARK})"]


def test_build_refuses_folders_without_executed_notebooks(tmp_path):
    with pytest.raises(ValueError, match="no executed notebook .* run `make figures` first"):
        book.build(tmp_path, tmp_path / "book", {})
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), tmp_path / "03_vicreg.ipynb")
    with pytest.raises(ValueError, match="has no outputs: it is not an executed notebook"):
        book.build(tmp_path, tmp_path / "book", {})


def test_trimming_keeps_short_outputs_and_both_ends_of_long_ones():
    assert book.trim_text("a\nb") == "a\nb"
    long = "\n".join(str(i) for i in range(100))
    lines = book.trim_text(long, max_lines=10, keep=3).split("\n")
    assert lines == ["0", "1", "2", "… 94 lines trimmed in the book …", "97", "98", "99"]
    assert book.collapse_progress("a\r b\r c\nd") == " c\nd"
