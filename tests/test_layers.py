"""The package's structure: imports between `helpers` modules go one way (no cycle), and none is hidden in a function."""
import ast
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text(), str(p)) for p in PACKAGE.glob("*.py")}


def internal_imports(tree: ast.Module) -> set[str]:
    """The `helpers` modules a module imports (``from . import x``, ``from .x import y``, ``import helpers.x``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
            out |= {node.module.split(".")[1]} if "." in node.module else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("helpers.")}
    return out & set(MODULES)


def test_no_import_cycle_between_modules():
    graph = {name: internal_imports(tree) for name, tree in MODULES.items() if name != "__init__"}
    order, visiting, done = [], set(), set()

    def visit(name, path):
        if name in done:
            return
        assert name not in visiting, f"import cycle: {' → '.join(path + [name])}"
        visiting.add(name)
        for dep in sorted(graph[name]):
            visit(dep, path + [name])
        visiting.discard(name)
        done.add(name)
        order.append(name)

    for name in sorted(graph):
        visit(name, [])
    # the leaves the issue names: storage and environment import nothing of ours; setup only environment-free code
    assert graph["storage"] == set() and graph["environment"] == set()
    assert graph["setup"] == set() and "plotting" not in graph["results"]


def test_no_import_inside_a_function_or_class():
    hidden = []
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                hidden += [f"{name}.py:{inner.lineno} in {node.name}" for inner in ast.walk(node)
                           if isinstance(inner, (ast.Import, ast.ImportFrom))]
    assert hidden == []


def test_the_walker_sees_relative_and_absolute_imports():
    tree = ast.parse("from . import setup, storage\nfrom .vicreg import Encoder\nimport helpers.data\n"
                     "def f():\n    from .results import record_metrics\n")
    assert internal_imports(tree) == {"setup", "storage", "vicreg", "data", "results"}
