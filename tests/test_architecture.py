"""The house: xlrec's modules on floors, each importing only from its own floor or below, with no
import cycle; function-level imports count (README "Architecture"). Computed from the source with
`ast`, so a new module or import is checked without a list to keep up to date."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xlrec"
# The floors, lowest first, each the packages and modules on it (a module belongs to the longest
# prefix that names it). On one floor a package may import the ones listed before it.
FLOORS: list[tuple[str, ...]] = [
    ("xlrec.errors", "xlrec.redact", "xlrec.settings", "xlrec.device"),
    ("xlrec.catalog",),
    ("xlrec.config",),
    ("xlrec.data_prep", "xlrec.rec_models"),
    ("xlrec.training",),
    ("xlrec.experiment",),
    ("xlrec.platform",),
    ("xlrec.report",),
    ("xlrec.sweeps",),
    ("xlrec.cli", "xlrec.__main__"),
]
# packages of one floor that never import each other
APART = {("xlrec.rec_models", "xlrec.data_prep")}
# third-party packages only some floors may import (anywhere in a module, functions included)
ONLY_IN = {"mlflow": ("xlrec.platform",), "argparse": ("xlrec.cli",), "ray": ("xlrec.sweeps",)}
# what the lowest floors never import: settings, names and config resolution stay cheap to load
NEVER_BELOW_DATA = ("torch", "mlflow", "ray", "pandas", "optuna")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """(xlrec modules, top-level third-party packages) that `module` imports, functions included;
    `if TYPE_CHECKING:` blocks are for the type checker only and do not count."""
    internal, external = set(), set()
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
            names = [f"{names[0]}.{a.name}" for a in node.names] + names
        for name in names:
            if name.split(".")[0] == "xlrec":
                target = _resolve(name)
                if target and target != module and target != "xlrec" and not module.startswith(target + "."):
                    internal.add(target)
            elif name:
                external.add(name.split(".")[0])
    return internal, external


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _floor(module: str) -> tuple[int, str]:
    best = (-1, "")
    for level, members in enumerate(FLOORS):
        for prefix in members:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (level, prefix)
    return best


def test_every_module_is_on_a_floor():
    assert [m for m in MODULES if m != "xlrec" and _floor(m)[0] < 0] == []


def _allowed(module: str, target: str) -> bool:
    (level, unit), (t_level, t_unit) = _floor(module), _floor(target)
    if t_level != level or t_unit == unit:
        return t_level <= level
    order = FLOORS[level]
    return order.index(t_unit) < order.index(unit) and (unit, t_unit) not in APART


def test_each_module_imports_only_from_its_floor_or_below():
    upward = [
        f"{module} (floor {_floor(module)[0]}) imports {target} (floor {_floor(target)[0]})"
        for module, (internal, _) in GRAPH.items()
        if module != "xlrec"
        for target in internal
        if not _allowed(module, target)
    ]
    assert upward == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over the import graph (a package's __init__ included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v][0]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("package, allowed", sorted(ONLY_IN.items()))
def test_libraries_stay_on_their_floor(package, allowed):
    """MLflow only in xlrec.platform (the report reads runs through it), argparse only in xlrec.cli,
    Ray only in xlrec.sweeps."""
    users = sorted(m for m, (_, ext) in GRAPH.items() if package in ext and not m.startswith(allowed))
    assert users == []


def test_the_ground_floors_load_no_heavy_library():
    low = [m for m in MODULES if 0 <= _floor(m)[0] <= 2 and m != "xlrec.device"]
    heavy = {m: sorted(GRAPH[m][1] & set(NEVER_BELOW_DATA)) for m in low}
    assert {m: h for m, h in heavy.items() if h} == {}


def test_the_checker_sees_function_level_imports_and_upward_edges(tmp_path):
    """The graph is not vacuous: a function-level import is an edge, and an upward one is caught."""
    internal, external = _imports("xlrec.cli.train", MODULES["xlrec.cli.train"])
    assert "xlrec.experiment" in internal  # imported inside cmd_train
    assert _floor("xlrec.settings.run") == (0, "xlrec.settings") and _floor("xlrec.cli.train")[0] == 9
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from xlrec.sweeps.spec import SweepSpec\n")
    assert _imports("xlrec.training.probe", probe)[0] == {"xlrec.sweeps.spec"}
    assert not _allowed("xlrec.training.probe", "xlrec.sweeps.spec")
    assert not _allowed("xlrec.rec_models.base", "xlrec.data_prep.split")  # one floor, kept apart
    assert _allowed("xlrec.settings.run", "xlrec.errors") and not _allowed("xlrec.errors", "xlrec.settings.run")
