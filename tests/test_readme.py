import json

import pytest

from helpers import readme, setup


def test_readme_table_matches_metrics_file():
    metrics = json.loads((setup.figures_dir() / "metrics.json").read_text())
    block = readme.readme_block((setup.repo_root() / "README.md").read_text())
    assert block == readme.results_table(metrics, readme.load_timings()), \
        "run `python -m helpers.readme` (make figures does)"


def test_update_readme_rewrites_only_the_block(tmp_path):
    page = tmp_path / "README.md"
    page.write_text(f"intro\n{readme.START}\nstale\n{readme.END}\noutro\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"nb": {"profile": "default", "date": "2026-01-01", "auc": 0.987654321,
                                          "point": [4.0, 5.5], "steps": None}}))
    readme.update_readme(page, metrics, notebooks=["nb"])
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale" not in text
    assert "| `auc` | 0.9877 |" in text and "| `point` | [4, 5.5] |" in text and "| `steps` | — |" in text
    assert readme.readme_block(text) == readme.results_table(json.loads(metrics.read_text()))
    page.write_text("no markers")
    with pytest.raises(ValueError, match="results block"):
        readme.update_readme(page, metrics, notebooks=["nb"])


def test_update_readme_refuses_a_missing_notebook(tmp_path):
    page = tmp_path / "README.md"
    before = f"intro\n{readme.START}\nold table\n{readme.END}\n"
    page.write_text(before)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"01_a": {"profile": "default", "date": "d", "x": 1}}))
    with pytest.raises(ValueError, match="no results of 02_b.*make figures"):
        readme.update_readme(page, metrics, notebooks=["01_a", "02_b"])
    with pytest.raises(ValueError, match="no results of 01_diffusion, 02_gpt_alice, 03_vicreg"):
        readme.update_readme(page, tmp_path / "missing.json")      # the repository's notebooks by default
    assert page.read_text() == before


def test_every_metric_is_one_table_row():
    """A generated sentence with a line break or a `|` stays inside its cell."""
    table = readme.results_table({"nb": {"profile": "default", "date": "d", "text": "Alice said | no\nand\r\nwent"}})
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == ["| `text` | Alice said \\| no<br>and<br>went |"]
