"""Every number an answer quotes was printed by its run: the check `make figures` runs on the executed notebooks.

A notebook is cut into sections at its ``## `` headings. In each section, every number quoted in an *answer* (a
markdown cell that contains ``**Answer``) must appear, at the precision quoted, among the numbers printed by the
section's code cells (stream output and text results). A quoted ``51.4%`` is matched by a printed ``51.43%`` or
``0.5143``; a quoted ``0.918`` by a printed ``0.9182`` but not by ``0.92`` (too coarse to support it).

Not checked, by rule: numbers inside ``code`` or $math$, parts of names (Q7, ResNet-18, 128-d, GPT-2, 10⁻⁵),
single-digit integers (counts such as "3 neighbours" are settings), and — the one documented way to mark a number
that depends on the machine — a number preceded by the word **about** ("about 34 minutes").

Run: ``python -m tools.answers EXECUTED.ipynb ...`` (exit status 1 and one line per mismatch).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .execute import check_fresh
from helpers.setup import repo_root

_NUMBER = re.compile(r"(?<![\w.,⁰¹²³⁴⁵⁶⁷⁸⁹⁻])(?<![A-Za-z][-−])([-−]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(\s?%)?"
                     r"(?![\w⁰¹²³⁴⁵⁶⁷⁸⁹⁻]|-[A-Za-z]|\.\d|,\d{3})")
_SKIPPED_SPANS = re.compile(r"`[^`]*`|\$[^$]*\$|\bEq(?:s?\.|uations?)\s*[\d–\-, ]+|\bAlgorithm\s+\d+")
_ABOUT = re.compile(r"\babout\s*$", re.IGNORECASE)
_RANGE_TO_PERCENT = re.compile(r"\s?[–-]\s?[-−]?\d[\d,]*(?:\.\d+)?\s?%")


@dataclass(frozen=True)
class Quoted:
    """A number as written: its value, decimals shown and whether it is a percentage."""
    text: str
    value: float
    decimals: int
    percent: bool


def numbers(text: str, answer: bool = False) -> list[Quoted]:
    """The numbers in `text`. With `answer`, the rules for answers apply (see the module docstring)."""
    if answer:
        text = _SKIPPED_SPANS.sub(lambda m: " " * len(m.group()), text)
    out = []
    for m in _NUMBER.finditer(text):
        sign, whole, frac, pct = m.groups()
        if answer and (_ABOUT.search(text[:m.start()]) or (frac is None and not pct and len(whole) == 1)):
            continue
        value = float(whole.replace(",", "") + ("." + frac if frac else ""))
        pct = pct or _RANGE_TO_PERCENT.match(text, m.end())      # "94.5–96.5%": both ends are percentages
        out.append(Quoted(m.group().strip(), -value if sign else value, len(frac or ""), bool(pct)))
    return out


def supports(printed: Quoted, quoted: Quoted) -> bool:
    """Whether a printed number, rounded to the quoted precision, is the quoted number. A percentage and a fraction
    are the same number (51.4% = 0.514); a printed number coarser than the quote does not support it."""
    value, decimals = printed.value, printed.decimals
    if quoted.percent and not printed.percent:
        value, decimals = value * 100, decimals - 2
    elif printed.percent and not quoted.percent:
        value, decimals = value / 100, decimals + 2
    return decimals >= quoted.decimals and abs(value - quoted.value) <= 0.5 * 10 ** -quoted.decimals + 1e-9


def _text(cell: dict) -> str:
    return "".join(cell.get("source", ""))


def _outputs(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
        elif "text/plain" in out.get("data", {}):
            parts.append("".join(out["data"]["text/plain"]))
    return "\n".join(parts)


def sections(nb: dict) -> list[tuple[str, list[dict]]]:
    """(heading, cells) for each ``## `` section; cells before the first heading form the section ''."""
    out: list[tuple[str, list[dict]]] = [("", [])]
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and _text(cell).lstrip().startswith("## "):
            out.append((_text(cell).lstrip()[3:].splitlines()[0].strip(), []))
        out[-1][1].append(cell)
    return [s for s in out if s[1]]


def check_notebook(nb: dict, name: str = "notebook") -> list[str]:
    """One message per quoted number that no printed number of its section supports."""
    problems = []
    for heading, cells in sections(nb):
        printed = [q for c in cells if c["cell_type"] == "code" for q in numbers(_outputs(c))]
        for cell in cells:
            if cell["cell_type"] != "markdown" or "**Answer" not in _text(cell):
                continue
            for q in numbers(_text(cell), answer=True):
                if not any(supports(p, q) for p in printed):
                    scale = (lambda p: p.value * 100 if q.percent and not p.percent else p.value)
                    nearest = sorted(printed, key=lambda p: abs(scale(p) - q.value))[:3]
                    problems.append(f"{name} · {heading or '(before the first section)'}: {q.text!r} is not printed "
                                    f"by the section (nearest printed: {', '.join(p.text for p in nearest) or 'none'})")
    return problems


def main(argv=None) -> int:
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print("usage: python -m tools.answers EXECUTED.ipynb ...", file=sys.stderr)
        return 2
    for path in paths:  # an executed copy of an older version (or another checkout's) is no evidence
        source = repo_root() / "notebooks" / path.name
        if source.exists():
            try:
                check_fresh(path, source)
            except ValueError as err:
                print(err)
                return 1
    problems = [p for path in paths for p in check_notebook(json.loads(path.read_text()), path.name)]
    for p in problems:
        print(p)
    print(f"answers: {len(problems)} quoted number(s) not printed by their section, in {len(paths)} notebook(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
