"""What a notebook needs from the Python it runs in, checked before anything heavy is imported.

Standard library only: ``import helpers`` calls :func:`require` first, so a notebook opened in another Jupyter (or a
cloud notebook) stops with one message naming every missing package instead of an ImportError deep in a traceback.
:func:`report` is what ``helpers.start`` prints: versions, device, threads, and one warning line where the installed
versions differ from the pins of ``requirements.txt`` (the results were measured with the pins).
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

# The distributions `helpers` and the notebooks import (requirements.txt pins them, with the tools around them).
RUNTIME = ("torch", "numpy", "matplotlib", "seaborn", "scikit-learn", "scipy", "tiktoken", "tqdm", "pillow")


def fix(missing: list[str]) -> str:
    """How to get `missing` (pinned requirements, e.g. ``torch==2.13.0``): a line to paste into a notebook cell,
    which installs into the kernel's own Python wherever the notebook was opened, or `make lab`."""
    root = Path(__file__).resolve().parent.parent
    torch_cpu = " --extra-index-url https://download.pytorch.org/whl/cpu" if any(
        m.startswith("torch") for m in missing) and sys.platform.startswith("linux") else ""
    return (f"Fix: run `%pip install{torch_cpu} {' '.join(missing)}` in a cell of this notebook, then restart the "
            f"kernel; or, from the repository root ({root}), run `make lab` (JupyterLab in the project's environment)")


def requirements_file() -> Path:
    return Path(__file__).resolve().parent.parent / "requirements.txt"


def pins(path: str | Path | None = None) -> dict[str, str]:
    """``{distribution: version}`` for every ``name==version`` line of requirements.txt ({} when it is absent)."""
    path = Path(path) if path is not None else requirements_file()
    if not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+).*", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def installed(name: str) -> str | None:
    """The installed version of distribution `name`, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing_packages(names=RUNTIME) -> list[str]:
    return [name for name in names if installed(name) is None]


def require(names=RUNTIME) -> None:
    """Raise one ModuleNotFoundError listing every missing distribution, with its pinned version."""
    missing = missing_packages(names)
    if missing:
        pinned = pins()
        listed = ", ".join(f"{name}=={pinned[name]}" if name in pinned else name for name in missing)
        raise ModuleNotFoundError(f"this Python ({_python()}) lacks {len(missing)} package(s) the workbook needs: "
                                  f"{listed}. {fix(listed.split(', '))}", name=missing[0])


def version_mismatches(names=RUNTIME, pinned: dict[str, str] | None = None) -> list[str]:
    """``"numpy 2.3.0 (pinned 2.4.6)"`` for each installed runtime package whose version differs from its pin
    (a local build tag such as ``+cpu`` is not a difference)."""
    pinned = pins() if pinned is None else pinned
    out = []
    for name in names:
        have = installed(name)
        if have is not None and name in pinned and have.split("+")[0] != pinned[name]:
            out.append(f"{name} {have} (pinned {pinned[name]})")
    return out


def report(device: str, threads: int, cpu: str, bf16_native: bool = False) -> list[str]:
    """The lines ``start`` prints about the environment: versions, device, and whether bf16 autocast is on where a
    setting leaves it to the machine (``bf16=None``); then warnings (if any)."""
    bf16 = "on (native bf16)" if bf16_native else "off (no native bf16: fp32)"
    lines = [f"torch {installed('torch')} | numpy {installed('numpy')} | device {device} | {threads} threads | {cpu}",
             f"bf16 autocast where the settings leave it to the machine (bf16=None): {bf16}"]
    differ = version_mismatches()
    if differ:
        lines.append("warning: installed versions differ from requirements.txt, with which the results were "
                     f"measured: {', '.join(differ)}")
    if device == "mps":
        lines.append("warning: device mps: numbers will differ from the CPU/CUDA runs the answers quote")
    return lines


def _python() -> str:
    return sys.executable or "python"
