"""The answer checker on small fabricated notebooks."""
import json

import pytest

from tools import answers


def notebook(*cells):
    out = []
    for kind, text, printed in cells:
        cell = {"cell_type": kind, "source": text, "metadata": {}}
        if kind == "code":
            cell.update(outputs=[{"output_type": "stream", "name": "stdout", "text": printed}], execution_count=1)
        out.append(cell)
    return {"cells": out}


def check(answer, printed, intro=""):
    return answers.check_notebook(notebook(("markdown", "## Q1 · A question\n" + intro, None),
                                           ("code", "print(...)", printed),
                                           ("markdown", "**Answer.** " + answer, None)), "nb")


def test_a_printed_number_passes_and_an_unprinted_one_fails():
    assert check("The probe reaches **51.4%** after 30 epochs.", "test accuracy 51.43% after 30 epochs\n") == []
    [problem] = check("The probe reaches 52.1%.", "test accuracy 51.43%, train 52.30%\n")
    assert "nb · Q1 · A question: '52.1%' is not printed" in problem and "52.30%" in problem and "51.43%" in problem


@pytest.mark.parametrize("quoted, printed, ok", [
    ("0.918", "AUC 0.9182", True),          # rounding to the quoted precision
    ("0.919", "AUC 0.9182", False),
    ("0.9182", "AUC 0.918", False),         # printed coarser than quoted: does not support it
    ("51.4%", "acc 0.5143", True),          # percent vs fraction, both ways
    ("0.514", "acc 51.43%", True),
    ("51.4%", "acc 0.52", False),
    ("10,000 images", "on 10000 images", True),
    ("94.5–96.5%", "class 0: 94.5%, class 1: 96.5%", True),   # a range: both ends are percentages
    ("94.5–96.5%", "class 0: 0.945, class 1: 0.9650", True),
    ("−78.6 nats", "log p = -78.57", True),
    ("−78.6 nats", "log p = 78.57", False),
])
def test_rounding_and_units(quoted, printed, ok):
    assert (check(f"We measure {quoted}.", printed + "\n") == []) is ok


def test_numbers_that_are_not_measurements_are_not_checked():
    text = ("In `lr=3e-4` and $x^2 + 1.5$, Q7 of ResNet-18 on CIFAR-10 with 128-d codes and 10⁻⁵, "
            "Eq. 12 and Algorithm 1, 3 neighbours, about 34.5 minutes.")
    assert check(text, "nothing printed\n") == []


def test_numbers_must_be_printed_in_their_own_section():
    nb = notebook(("markdown", "## Q1", None), ("code", "", "value 0.75\n"),
                  ("markdown", "## Q2", None), ("code", "", "other 0.10\n"), ("markdown", "**Answer.** 0.75", None))
    [problem] = answers.check_notebook(nb, "nb")
    assert "Q2" in problem and "'0.75'" in problem


def test_only_answer_cells_are_checked():
    nb = notebook(("markdown", "## Q1\nWe train for 600 steps at 1e-3.", None), ("code", "", "done\n"))
    assert answers.check_notebook(nb, "nb") == []


def test_command_line(tmp_path, capsys):
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(notebook(("markdown", "## Q1", None), ("code", "", "acc 0.5\n"),
                                        ("markdown", "**Answer.** 61.0%", None))))
    assert answers.main([str(path)]) == 1
    assert "x.ipynb · Q1: '61.0%' is not printed" in capsys.readouterr().out
