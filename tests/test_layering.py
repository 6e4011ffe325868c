"""The layering rule of design.md, checked on the source: ledger <- projections, tasks <- agents <- the CLI.

Reads every module's top-level imports (an import inside a function or under ``if TYPE_CHECKING`` is
a deliberate late binding and is not counted) and fails on an import that points up the layers, or
across from projections to tasks (or back), and on any import cycle between the project's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"ledger": 0, "projections": 1, "tasks": 1, "agents": 2, "arledger": 3}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYER:
        for p in (ROOT / pkg).rglob("*.py"):
            rel = p.relative_to(ROOT).with_suffix("")
            if "builtin" in rel.parts:
                continue
            out[".".join(rel.parts).removesuffix(".__init__")] = p
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            base = node.module
            if node.level:
                base = ".".join(name.split(".")[: -node.level] + [node.module])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def test_no_module_imports_a_higher_layer():
    wrong = []
    for mod, deps in _graph().items():
        top = mod.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if LAYER[other] > LAYER[top] or (top != other and LAYER[top] == LAYER[other]):
                wrong.append(f"{mod} imports {dep}")
    assert not wrong, "imports against the layering rule:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        path.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path)
        path.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_the_layers():
    """Guard against a vacuous pass: the graph holds the packages and their real edges."""
    graph = _graph()
    assert len(graph) > 50
    assert any(dep.startswith("ledger.") for dep in graph["projections.trials"])
    assert any(dep.startswith("tasks.") for dep in graph["agents.campaign"])
