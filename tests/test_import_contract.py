"""Imports run one way (README, "What is there"): learner may use labelling's public
functions, labelling never imports learner, and services never import the task layer.
Every import counts, including those inside functions: a function-local import does not
make a cycle go away."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    problems = []
    for path in sorted((REPO / folder).rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if any(part in relative for part in skip):
            continue
        for line, module in _imports(path):
            if module in forbidden or module.startswith(tuple(f"{f}." for f in forbidden)):
                problems.append(f"{relative}:{line} imports {module}")
    return problems


def test_labelling_never_imports_learner():
    assert _violations("labelling", ("learner",), skip=("/migrations/",)) == []


def test_services_never_import_the_task_layer():
    problems = _violations("labelling/services", ("labelling.tasks",))
    problems += _violations("learner/services", ("learner.tasks",))
    assert problems == []


def test_the_contract_sees_a_function_local_import(tmp_path):
    """The check itself: an import hidden in a function body is found."""
    module = tmp_path / "sneaky.py"
    module.write_text("def f():\n    from learner.tasks import train_model\n")
    assert _imports(module) == [(2, "learner.tasks")]
