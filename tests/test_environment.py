"""Opening the notebooks: the environment check, the first cell's message, `make lab` and the notebooks' kernel."""
import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from helpers import environment, setup

ROOT = setup.repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def first_code_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def run_first_cell(path: Path, prelude: str) -> subprocess.CompletedProcess:
    """Execute a notebook's first code cell in a fresh Python after `prelude` (which breaks the environment)."""
    script = textwrap.dedent(prelude) + "\nexec(compile(open(%r).read(), 'cell', 'exec'))\n"
    cell = ROOT / "build" / f".first_cell_{path.stem}.py"
    cell.parent.mkdir(exist_ok=True)
    cell.write_text(first_code_cell(path))
    try:
        return subprocess.run([sys.executable, "-c", script % str(cell)], capture_output=True, text=True,
                              cwd=ROOT / "notebooks", env={"AML_PROFILE": "smoke", "PATH": "/usr/bin:/bin"}, timeout=120)
    finally:
        cell.unlink()


def test_pins_are_read_from_requirements(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\ntorch==2.13.0\nnumpy == 2.4.6  # pinned\nscipy>=1.0\n-e .\nPillow==13.0.0\n")
    assert environment.pins(req) == {"torch": "2.13.0", "numpy": "2.4.6", "pillow": "13.0.0"}
    assert environment.pins(tmp_path / "absent.txt") == {}


def test_every_runtime_package_is_pinned():
    assert set(environment.RUNTIME) <= set(environment.pins())


def test_missing_packages_are_named_in_one_message(monkeypatch):
    real = metadata.version

    def version(name):
        if name in ("torch", "tiktoken"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    with pytest.raises(ModuleNotFoundError) as err:
        environment.require()
    message = str(err.value)
    assert "torch==2.13.0" in message and "tiktoken==0.14.0" in message and "2 package(s)" in message
    assert "make lab" in message and "pip install -r requirements.txt" not in message  # `-e .` fails from notebooks/
    assert "`%pip install" in message and " torch==2.13.0 tiktoken==0.14.0` in a cell" in message
    assert str(setup.repo_root()) in message and err.value.name == "torch"


def test_version_differences_give_one_warning_line(monkeypatch):
    monkeypatch.setattr(environment, "installed", lambda name: {"numpy": "2.3.0", "torch": "2.13.0+cpu"}.get(name, "x"))
    pinned = {"numpy": "2.4.6", "torch": "2.13.0"}
    assert environment.version_mismatches(("numpy", "torch"), pinned) == ["numpy 2.3.0 (pinned 2.4.6)"]
    monkeypatch.setattr(environment, "pins", lambda: pinned)
    lines = environment.report("mps", 8, "Apple M2")
    assert lines[0].startswith("torch 2.13.0+cpu | numpy 2.3.0 | device mps | 8 threads")
    assert lines[1].endswith("(bf16=None): off (no native bf16: fp32)")
    assert len(lines) == 4 and lines[3].startswith("warning: device mps")
    assert lines[2].startswith("warning: installed versions differ") and lines[2].endswith("numpy 2.3.0 (pinned 2.4.6)")
    assert environment.report("cuda", 8, "x", bf16_native=True)[1].endswith("on (native bf16)")


def test_this_environment_matches_the_pins():
    """The tests (and the README's numbers) run with the pinned versions: `start` prints no warning here."""
    assert environment.version_mismatches() == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_names_missing_packages_and_the_fix(path):
    broken = """
        from importlib import metadata
        real = metadata.version
        def version(name):
            if name == "torch":
                raise metadata.PackageNotFoundError(name)
            return real(name)
        metadata.version = version
    """
    result = run_first_cell(path, broken)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ") and "torch==2.13.0" in last and "make lab" in last, result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_explains_a_python_without_helpers(path):
    result = run_first_cell(path, "import sys; sys.modules['helpers'] = None")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: ") and "helpers" in last, result.stderr
    assert "make lab" in last and "%pip install -e <path of the repository>" in last


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_cell_in_a_python_without_the_packages_names_them_from_notebooks(path):
    """Another Jupyter starts its kernel in notebooks/ with its own Python: no site-packages here (`-S`), so neither
    `helpers` nor any requirement is installed. The first cell still finds this repository's `helpers`, which names
    every missing package and a line to paste into a cell."""
    cell = ROOT / "build" / f".first_cell_bare_{path.stem}.py"
    cell.parent.mkdir(exist_ok=True)
    cell.write_text(first_code_cell(path))
    try:
        result = subprocess.run([sys.executable, "-S", str(cell)], capture_output=True, text=True,
                                cwd=ROOT / "notebooks", env={"PATH": "/usr/bin:/bin"}, timeout=120)
    finally:
        cell.unlink()
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: this Python"), result.stderr
    assert "torch==2.13.0" in last and "`%pip install" in last and "helpers" not in last.split(":")[1]


def test_make_lab_dry_run_starts_jupyterlab_from_the_project_environment():
    result = subprocess.run(["make", "-n", "lab", "LAB_ARGS=--no-browser"], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    command = next(line for line in result.stdout.splitlines() if "jupyter lab" in line)
    assert command.startswith("JUPYTER_PREFER_ENV_PATH=1 .venv/bin/jupyter lab")
    assert command.rstrip().endswith("--no-browser notebooks/")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec_resolves_to_this_environment(path, monkeypatch):
    """The notebook's kernel (as `make lab` and nbval start it) is this Python, which imports this checkout's helpers."""
    name = json.loads(path.read_text())["metadata"]["kernelspec"]["name"]
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")
    manager = KernelManager(kernel_name=name)
    assert manager.format_kernel_cmd()[0] == sys.executable
    manager.start_kernel(cwd=str(ROOT / "notebooks"), env={**os.environ, "AML_PROFILE": "smoke"})
    try:
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        seen = []
        client.execute_interactive("import sys, os, helpers; print(sys.executable, helpers.__file__, "
                                   "os.environ['AML_PROFILE'])",
                                   output_hook=lambda msg: seen.append(msg["content"].get("text", "")), timeout=60)
        executable, package, profile = "".join(seen).split()
        assert executable == sys.executable
        assert Path(package) == ROOT / "helpers" / "__init__.py"
        assert profile == "smoke"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
