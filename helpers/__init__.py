"""Helpers for the Advanced Machine Learning workbook: the notebooks stay thin, the logic lives here.

Modules, lowest layer first (each imports only modules above it in this list): `environment` (packages and
versions), `storage` (atomic writes, checkpoints), `setup` (profile, settings, seeding, device, paths), `results`
(metrics file), `plotting`, `downloads`, `data`, `training` (schedule, resumable state), `evaluation`,
`diffusion`, `diffusion_sampling`, `gpt`, `gpt_training`, `gpt_probing`, `vicreg`, `vicreg_training`,
`vicreg_models`, `embeddings`, `retrieval`, `gpt_loss`. This package's `start` sits on top of them all. What builds the
workbook around the notebooks (executing them, timings, the README's tables, the answer check, the book) is the
separate package `tools`.
"""
from .environment import require

require()  # one message naming every missing package, before torch & co. are imported

import ast  # noqa: E402
import inspect  # noqa: E402
import textwrap  # noqa: E402

import torch  # noqa: E402
from IPython.display import Markdown, display  # noqa: E402

from . import environment, results, setup  # noqa: E402
from .plotting import save_fig, set_style  # noqa: E402
from .results import record_metrics  # noqa: E402
from .setup import profile  # noqa: E402

__all__ = ["start", "profile", "save_fig", "record_metrics", "show_source"]


def start(notebook: str, seed: int = 0, verbose: bool = True) -> setup.Run:
    """Set up a notebook in one call: profile, seeds, device, plot style; prints what it chose and the environment."""
    run = setup.begin(notebook, seed)
    results.load_metrics()  # a damaged metrics file stops the notebook now, not in its last cell after all the work
    results.begin_run(run)
    set_style()
    if verbose:
        print(f"notebook {notebook} | profile {run.profile} | seed {seed} | data {setup.shown_path(setup.data_dir())}")
        print("\n".join(environment.report(run.device.type, torch.get_num_threads(), setup.cpu_name(),
                                            setup.bf16_fast(run.device))))
        for key, value in vars(run.cfg).items():
            print(f"  {key:>20} = {value}")
    return run


def source(obj, docstring: bool = False) -> str:
    """The source of a function, method or class as written in `helpers`, without its docstring unless asked."""
    text = textwrap.dedent(inspect.getsource(obj))
    if docstring:
        return text
    node = ast.parse(text).body[0]
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines = text.splitlines(keepends=True)
        text = "".join(lines[:first.lineno - 1] + lines[first.end_lineno:])
    return text


def show_source(*objs, docstring: bool = False) -> None:
    """Display the tested helpers a question is about, highlighted, next to the cell that uses them: the notebook
    shows the code that runs, from its one source of truth."""
    code = "\n\n".join(source(obj, docstring).rstrip() for obj in objs)
    display(Markdown(f"```python\n{code}\n```"))  # a fenced block: monospace and highlighted in Lab and in the book
