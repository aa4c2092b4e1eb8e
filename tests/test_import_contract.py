"""Imports run one way (README, "Rooms"): the contracts of .importlinter hold (labelling
never imports learner; learner uses labelling's public interface; inside each app urls >
doors > tasks > services > models; the math, audio and taxonomy cores are Django-free),
and the import graph of the three packages has no cycle. Every import counts, including
those inside functions: a function-local import does not make a cycle go away.

Each check is also run against a small package written here that breaks it, so a check
that has stopped seeing anything fails too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("audit", "console", "emoloop", "exports", "labelling", "learner", "ops", "review")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _write_package(root: Path, files: Mapping[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))


def cycles(graph: grimp.ImportGraph, packages: Iterable[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    roots = tuple(packages)
    modules = sorted(m for m in graph.modules if m.split(".")[0] in roots)
    edges = {
        m: sorted(x for x in graph.find_modules_directly_imported_by(m) if x.split(".")[0] in roots)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
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
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_the_import_contracts_hold():
    result = _lint_imports(REPO, REPO / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_import_graph_has_no_cycle():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert len([m for m in graph.modules if m.startswith("learner.")]) > 20  # it saw the tree
    assert cycles(graph, PACKAGES) == []


def test_a_function_local_import_breaks_a_contract(tmp_path):
    """The contract checker sees an import hidden in a function body."""
    _write_package(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/models.py": "X = 1\n",
            "plugin/__init__.py": "",
            "plugin/tasks.py": "Y = 2\n",
            "core/services.py": """
                def f():
                    from plugin.tasks import Y
                    return Y
            """,
        },
    )
    config = tmp_path / "contracts.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    core\n    plugin\n\n"
        "[importlinter:contract:one-way]\nname = core never imports plugin\n"
        "type = forbidden\nsource_modules =\n    core\nforbidden_modules =\n    plugin\n"
    )

    result = _lint_imports(tmp_path, config)

    assert result.returncode != 0
    assert "core.services -> plugin.tasks" in result.stdout


def test_the_cycle_check_finds_a_cycle_through_a_function_local_import(tmp_path):
    _write_package(
        tmp_path,
        {
            "loopy/__init__.py": "",
            "loopy/a.py": "from loopy import b\n",
            "loopy/b.py": "def g():\n    from loopy import c\n",
            "loopy/c.py": "import loopy.a\n",
            "loopy/d.py": "from loopy import a\n",
        },
    )
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("loopy", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))

    assert cycles(graph, ["loopy"]) == [["loopy.a", "loopy.b", "loopy.c"]]
