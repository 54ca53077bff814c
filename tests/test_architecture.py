"""The architecture is enforced, not hoped for (ARCHITECTURE.md).

`make lint` runs the import-linter contracts in `.importlinter`; these tests
show that the contracts bite (a forbidden import added to a copy of the tree
breaks them) and that no module imports itself back through others.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("masar", "services", "workflows", "console")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _tree_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    return copy


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold_on_the_tree() -> None:
    result = subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("services/shelter/_probe.py", "import services.intake.models\n", "Services never"),
        ("workflows/_probe.py", "import services.shelter.models\n", "Layers"),
        ("masar/platform/_probe.py", "import masar.referral\n", "Layers"),
        ("masar/contract/_probe.py", "import sqlalchemy\n", "standard library only"),
        ("services/legal/domain.py", "import sqlalchemy\n", "Domain modules are pure"),
        ("masar/cli/_probe.py", "import services.intake.app\n", "never by import"),
        ("masar/cli/_probe.py", "import temporalio.client\n", "never talks to Temporal"),
        (
            "masar/cli/cases.py",
            "from temporalio.common import SearchAttributeKey\n",
            "never talks to Temporal",
        ),
        ("workflows/tracks.py", "import masar.platform.db\n", "Workflow code imports only"),
        ("masar/devstack/_probe.py", "import console.app\n", "The CLI and the local stack"),
        ("console/_probe.py", "import services.intake.app\n", "The console talks to services"),
        ("console/_probe.py", "import workflows.journey\n", "The console talks to services"),
        ("console/_probe.py", "import temporalio.client\n", "The console talks to services"),
    ],
)
def test_a_forbidden_import_breaks_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    tree = _tree_copy(tmp_path)
    target = tree / module
    target.write_text(line + (target.read_text() if target.exists() else ""))
    result = _lint(tree)
    assert result.returncode != 0, result.stdout[-2000:]
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    modules = sorted(graph.modules)

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph.modules or child.split(".")[0] not in PACKAGES:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in modules:
        if module.split(".")[0] in PACKAGES and module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back() -> None:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("masar.a", "masar.b", "masar.c"):
        graph.add_module(name)
    graph.add_import(importer="masar.a", imported="masar.b")
    graph.add_import(importer="masar.b", imported="masar.a")
    graph.add_import(importer="masar.b", imported="masar.c")
    assert _cycles(graph) == [["masar.a", "masar.b"]]
