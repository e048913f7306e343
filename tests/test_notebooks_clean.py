import json

from helpers import setup


def test_notebooks_are_committed_without_outputs():
    notebooks = sorted((setup.repo_root() / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks found"
    dirty = []
    for path in notebooks:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count")):
                dirty.append(path.name)
                break
    assert not dirty, f"clear the outputs of {dirty} (make clean-notebooks) before committing"
