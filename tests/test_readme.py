import json

import pytest

from helpers import setup
from tools import readme


def test_readme_and_results_page_match_the_metrics_file():
    metrics = json.loads((setup.figures_dir() / "metrics.json").read_text())
    fix = "run `python -m tools.readme` (make figures does)"
    page = readme.readme_block((setup.repo_root() / "docs" / "results.md").read_text())
    assert page == readme.results_table(metrics, readme.load_timings()), fix
    summary = readme.readme_block((setup.repo_root() / "README.md").read_text(), readme.SUMMARY_START,
                                  readme.SUMMARY_END)
    assert summary == readme.summary_table(metrics, readme.load_timings()), fix


def pages(tmp_path):
    readme_page, results_page = tmp_path / "README.md", tmp_path / "results.md"
    readme_page.write_text(f"intro\n{readme.SUMMARY_START}\nstale summary\n{readme.SUMMARY_END}\noutro\n")
    results_page.write_text(f"top\n{readme.START}\nstale\n{readme.END}\nbottom\n")
    return readme_page, results_page


def test_update_readme_rewrites_only_the_blocks(tmp_path):
    page, results_page = pages(tmp_path)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"01_diffusion": {"profile": "default", "date": "2026-01-01", "auc": 0.987654321,
                                                    "point": [4.0, 5.5], "steps": None, "frac_in_square": 0.99}}))
    (tmp_path / "timings.json").write_text(json.dumps({"01_diffusion": {
        "wall_seconds": 90.0, "cpu": "CPU X", "threads": 2, "profile": "default", "date": "d", "sections": []}}))
    readme.update_readme(page, metrics, notebooks=["01_diffusion"], results_page=results_page)
    text, table = page.read_text(), results_page.read_text()
    assert table.startswith("top\n") and table.endswith("bottom\n") and "stale" not in table
    assert "| `auc` | 0.9877 |" in table and "| `point` | [4, 5.5] |" in table and "| `steps` | — |" in table
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    assert "| `01_diffusion` | 1.5 min | samples inside the square **99.0%**" in text
    assert "All 1 notebooks: **1.5 min** on CPU X, 2 threads" in text
    page.write_text("no markers")
    with pytest.raises(ValueError, match="no generated block"):
        readme.update_readme(page, metrics, notebooks=["01_diffusion"], results_page=results_page)


def test_update_readme_refuses_a_missing_notebook(tmp_path):
    page, results_page = pages(tmp_path)
    before = page.read_text(), results_page.read_text()
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"01_a": {"profile": "default", "date": "d", "x": 1}}))
    with pytest.raises(ValueError, match="no results of 02_b.*make figures"):
        readme.update_readme(page, metrics, notebooks=["01_a", "02_b"], results_page=results_page)
    with pytest.raises(ValueError, match="no results of 01_diffusion, 02_gpt_alice, 03_vicreg"):
        readme.update_readme(page, tmp_path / "missing.json", results_page=results_page)
    assert (page.read_text(), results_page.read_text()) == before


def test_every_metric_is_one_table_row():
    """A generated sentence with a line break or a `|` stays inside its cell."""
    table = readme.results_table({"nb": {"profile": "default", "date": "d", "text": "Alice said | no\nand\r\nwent"}})
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == ["| `text` | Alice said \\| no<br>and<br>went |"]
