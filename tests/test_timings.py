import json

import pytest

from tools import readme, timings


def _cell(kind, source, start=None, end=None):
    cell = {"cell_type": kind, "source": source, "metadata": {}}
    if start is not None:
        cell["metadata"]["execution"] = {timings.START: f"2026-12-01T10:00:{start:06.3f}Z",
                                         timings.REPLY: f"2026-12-01T10:00:{end:06.3f}Z"}
    return cell


def _notebook():
    return {"cells": [
        _cell("markdown", "# Title"),
        _cell("code", "import helpers", 0.0, 1.5),                 # set-up: 1.5 s
        _cell("markdown", "## Q1 · Training\ntext"),
        _cell("code", "train()", 2.0, 12.25),                      # 10.25 s
        _cell("code", "plot()", 13.0, 14.0),                       # 1 s
        _cell("markdown", "## Answer only\nno code here"),         # no code: no row
        _cell("code", "   "),                                      # empty cells are never executed
        _cell("markdown", "### a sub-heading stays in its section"),
        _cell("code", "more()", 20.0, 21.5),                       # 1.5 s, still in "Answer only"
        _cell("markdown", "## Q2 · Sampling"),
        _cell("code", "sample()", 30.0, 35.0),                     # 5 s; the wall ends at 35
    ]}


def test_section_times_sum_each_sections_cells_and_wall_spans_first_to_last():
    out = timings.section_times(_notebook())
    assert out["wall_seconds"] == 35.0
    assert out["sections"] == [["set-up (before the first section)", 1.5], ["Q1 · Training", 11.2],
                               ["Answer only", 1.5], ["Q2 · Sampling", 5.0]]


def test_unexecuted_notebook_is_refused():
    nb = _notebook()
    del nb["cells"][3]["metadata"]["execution"]
    with pytest.raises(ValueError, match="code cell 3 has no execution times"):
        timings.section_times(nb)
    with pytest.raises(ValueError, match="no executed code cell"):
        timings.section_times({"cells": [_cell("markdown", "## only text")]})


def test_record_timings_merges_per_notebook_and_readme_shows_them(tmp_path, capsys):
    path = tmp_path / "01_example.ipynb"
    path.write_text(json.dumps(_notebook()))
    out = tmp_path / "timings.json"
    out.write_text(json.dumps({"02_other": {"wall_seconds": 60.0, "sections": [["Q1", 60.0]]}}))
    saved = timings.record_timings([path], out)
    assert set(saved) == {"01_example", "02_other"} and json.loads(out.read_text()) == saved
    entry = saved["01_example"]
    assert entry["wall_seconds"] == 35.0 and entry["threads"] >= 1 and entry["cpu"]

    table = readme.results_table({"01_example": {"profile": "default", "date": "d", "auc": 0.5}}, saved)
    assert "Time: **0.6 min**" in table
    assert "| Q1 · Training | 11 |" in table and "| Q2 · Sampling | 5 |" in table
    assert "02_other" not in table          # only notebooks with metrics get a section


def test_unreadable_notebook_names_the_file(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.ipynb"):
        timings.record_timings([path], tmp_path / "timings.json")
