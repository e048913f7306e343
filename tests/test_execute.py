import json

import nbformat
import pytest

from tools import execute, timings


def _write(path, cells):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(s) if kind == "md" else
                                         nbformat.v4.new_code_cell(s) for kind, s in cells])
    nbformat.write(nb, path)
    return path


def test_execute_records_the_source_digest_times_and_prints_progress(tmp_path, capsys):
    source = _write(tmp_path / "01_x.ipynb", [("md", "# Title"), ("code", "x = 6 * 7"),
                                              ("md", "## Q1 · Sums"), ("code", "# comment\nprint(x)")])
    out = execute.execute(source, tmp_path / "build")
    printed = capsys.readouterr().out
    assert "cell 1/2 [set-up] x = 6 * 7" in printed and "cell 2/2 [Q1 · Sums] print(x)" in printed
    done = json.loads(out.read_text())
    assert "".join(done["cells"][3]["outputs"][0]["text"]) == "42\n"
    execute.check_fresh(out, source)                                    # fresh: no error
    assert [s for s, _ in timings.section_times(done)["sections"]] == ["set-up (before the first section)",
                                                                       "Q1 · Sums"]
    _write(source, [("md", "# Title"), ("code", "x = 6 * 7"), ("md", "## Q1 · Sums, changed"),
                    ("code", "print(x)")])
    with pytest.raises(ValueError, match="another version of .*01_x.ipynb.*make figures"):
        execute.check_fresh(out, source)


def test_an_executed_copy_without_a_digest_is_refused(tmp_path):
    source = _write(tmp_path / "nb.ipynb", [("code", "1")])
    other = _write(tmp_path / "other.ipynb", [("code", "1")])            # e.g. executed by plain nbconvert
    with pytest.raises(ValueError, match="records no source digest"):
        execute.check_fresh(other, source)
    with pytest.raises(ValueError, match="does not exist.*make figures"):
        execute.check_fresh(tmp_path / "missing.ipynb", source)


def test_outputs_do_not_change_the_digest():
    cells = [{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "outputs": []}]
    with_output = [{**cells[0], "outputs": [{"output_type": "stream", "text": "x"}], "execution_count": 3}]
    assert execute.source_digest({"cells": cells}) == execute.source_digest({"cells": with_output})
    assert execute.source_digest({"cells": cells}) != execute.source_digest(
        {"cells": [{**cells[0], "source": "a = 1\nb = 3"}]})
