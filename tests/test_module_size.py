"""No god modules: a production module stays under MAX_LINES, or says at its top why it
does not (a line starting "Why this module is long:" in its docstring). Modules are split
along their seams instead (README, "Rooms")."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("audit", "console", "emoloop", "exports", "labelling", "learner", "ops", "review")
MAX_LINES = 600
REASON = "Why this module is long:"


def oversized(root: Path) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            lines = text.count("\n")
            if lines <= MAX_LINES:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if REASON not in docstring:
                problems.append(f"{path.relative_to(root)}: {lines} lines and no reason given")
    return problems


def test_no_production_module_is_too_long_without_a_reason():
    assert oversized(REPO) == []


def test_the_check_sees_a_long_module(tmp_path):
    (tmp_path / "learner").mkdir()
    (tmp_path / "learner" / "big.py").write_text('"""Big."""\n' + "x = 1\n" * 700)
    (tmp_path / "learner" / "fine.py").write_text(
        f'"""Big on purpose.\n\n{REASON} a table.\n"""\n' + "x = 1\n" * 700
    )
    assert oversized(tmp_path) == ["learner/big.py: 701 lines and no reason given"]
