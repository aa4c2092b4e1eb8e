"""The browser's ES modules under static/js (no build step: the browser resolves each import
itself): every import names a file that exists, relative to the importing file; no module is
past 600 lines (STYLE.md: a module that long has seams); and the import graph has no cycle.

Files under static/vendor are put there by scripts/vendor-frontend.sh (`make install`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[1]
STATIC_JS = REPO / "static" / "js"
MAX_LINES = 600

# `import … from "x"`, `export … from "x"` (possibly over several lines), `import "x"`, and
# dynamic `import("x")`. A statement starts a line, so prose in comments does not count.
_STATIC = re.compile(r"^[ \t]*(?:import|export)\b[^;\"'`]*?\bfrom\s*[\"']([^\"']+)[\"']", re.M)
_BARE = re.compile(r"^[ \t]*import\s*[\"']([^\"']+)[\"']", re.M)
_DYNAMIC = re.compile(r"\bimport\(\s*[\"']([^\"']+)[\"']\s*\)")


def specifiers(source: str) -> list[str]:
    return [m.group(1) for pattern in (_STATIC, _BARE, _DYNAMIC) for m in pattern.finditer(source)]


def modules() -> list[Path]:
    return sorted(STATIC_JS.rglob("*.js")) + sorted(STATIC_JS.rglob("*.mjs"))


def _resolve(importer: Path, specifier: str) -> Path:
    return (importer.parent / PurePosixPath(specifier)).resolve()


def test_the_parser_finds_every_form_of_import():
    source = (
        'import a from "./a.js";\n'
        "import {\n  b,\n  c,\n} from '../b.js';\n"
        'export { d } from "./d.js";\n'
        'import "./side-effect.js";\n'
        'const e = await import("./e.js");\n'
        "// the page imports these modules from the vendor folder\n"
    )
    assert specifiers(source) == ["./a.js", "../b.js", "./d.js", "./side-effect.js", "./e.js"]


def test_every_import_of_a_static_module_names_a_file_that_exists():
    problems = []
    for path in modules():
        for specifier in specifiers(path.read_text()):
            where = f"{path.relative_to(REPO)}: {specifier!r}"
            if not specifier.startswith(("./", "../")):
                # No build step and no import map: the browser cannot resolve anything else.
                problems.append(f"{where} is not a relative path")
            elif not _resolve(path, specifier).is_file():
                problems.append(f"{where} does not exist")
    assert modules(), f"no module found under {STATIC_JS}"
    assert not problems, "\n".join(problems) + (
        "\n(files under static/vendor come from scripts/vendor-frontend.sh)"
    )


def test_no_static_module_is_longer_than_600_lines():
    long = {
        str(path.relative_to(REPO)): n
        for path in modules()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these along their seams: {long}"


def test_the_static_modules_import_each_other_without_a_cycle():
    ours = {path.resolve() for path in modules()}
    graph = {
        path: [dep for s in specifiers(path.read_text()) if (dep := _resolve(path, s)) in ours]
        for path in ours
    }
    done: set[Path] = set()

    def visit(path: Path, trail: list[Path]) -> None:
        if path in trail:
            cycle = [*trail[trail.index(path) :], path]
            raise AssertionError(
                "import cycle: " + " -> ".join(str(p.relative_to(REPO)) for p in cycle)
            )
        if path in done:
            return
        for dep in graph[path]:
            visit(dep, [*trail, path])
        done.add(path)

    for path in sorted(graph):
        visit(path, [])
