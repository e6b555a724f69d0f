"""latlab's internal imports follow its layers and close no cycle, and they sit at the top of each file.

Layers, ground up (a module may import its own layer's other subpackages and anything below, never above):
base modules (errors, yamlio, fingerprint, runs, threads, progress, ...) → ops → profiling →
detection, guidelines → lut → search → report → commands, cli, quickstart.

``lut`` sits below ``search``: a latency table is built from architectures (``search`` enumerates a space's
blocks and predicts with a table), so ``lut`` never imports ``search``.

A function-local import of a latlab module hides a neighbour from the file's header; it is allowed only
where its line says why with a ``# start-up:`` comment (a measured import cost). Imports of optional
third-party packages are not checked here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import latlab

PACKAGE = Path(latlab.__file__).resolve().parent
RANKS: dict[str, int] = {
    "ops": 1,
    "profiling": 2,
    "detection": 3,
    "guidelines": 3,
    "lut": 4,
    "search": 5,
    "report": 6,
    "commands": 7,
    "cli": 7,
    "quickstart": 7,
}
BASE_RANK = 0  # any other top-level module (errors, yamlio, fingerprint, runs, ...)


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: its subpackage, or the top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(unit: str) -> int:
    return RANKS.get(unit, BASE_RANK)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path, module: str | None = None) -> list[tuple[str, int, bool, str]]:
    """(imported latlab module, line, is function-local, source line) for every latlab import in ``path``."""
    module = module or _module_name(path)
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    local_lines: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    local_lines.add(node.lineno)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            names = [target]
            # ``from latlab.ops import blocks`` imports the submodule latlab.ops.blocks
            names += [f"{target}.{a.name}" for a in node.names if (PACKAGE.parent / f"{target}.{a.name}".replace(
                ".", "/")).with_suffix(".py").exists() or (PACKAGE.parent / f"{target}.{a.name}".replace(".", "/")).is_dir()]
        else:
            continue
        for name in names:
            if name == "latlab" or name.startswith("latlab."):
                out.append((name, node.lineno, node.lineno in local_lines, lines[node.lineno - 1]))
    return out


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "kit_runner.py")  # the kit runner ships alone


def test_no_import_goes_up_a_layer() -> None:
    bad = []
    for path in _files():
        here = _unit(_module_name(path))
        if here == "__init__":
            continue
        for target, line, _, _ in _imports(path):
            there = _unit(target)
            if there != "__init__" and _rank(there) > _rank(here):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}, layer {_rank(here)}) imports "
                           f"{target} ({there}, layer {_rank(there)})")
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_no_cycle_between_subpackages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        here = _unit(_module_name(path))
        for target, _, _, _ in _imports(path):
            there = _unit(target)
            if there not in (here, "__init__") and here != "__init__":
                graph[here].add(there)
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles between latlab subpackages:\n" + "\n".join(cycles)


def test_internal_imports_sit_at_the_top() -> None:
    hidden = [f"{path.relative_to(PACKAGE.parent)}:{line}: {text.strip()}"
              for path in _files() for _, line, local, text in _imports(path)
              if local and "# start-up:" not in text]
    assert not hidden, ("function-local latlab imports (move them to the top, or say '# start-up: <cost>' on "
                        "the line):\n" + "\n".join(hidden))


def test_the_walker_sees_a_planted_violation(tmp_path: Path) -> None:
    """The checks above can fail: a file that imports upward from inside a function is reported."""
    fake = tmp_path / "planted.py"
    fake.write_text("def f():\n    from latlab.search.space import load_space\n    return load_space\n")
    found = _imports(fake, "latlab.ops.planted")
    assert found == [("latlab.search.space", 2, True, "    from latlab.search.space import load_space")]
    assert _rank(_unit(found[0][0])) > _rank(_unit("latlab.ops.planted"))


@pytest.mark.parametrize("module,unit,rank", [("latlab.lut.build", "lut", 4), ("latlab.errors", "errors", 0),
                                              ("latlab.cli", "cli", 7)])
def test_units_and_ranks(module: str, unit: str, rank: int) -> None:
    assert _unit(module) == unit and _rank(unit) == rank
