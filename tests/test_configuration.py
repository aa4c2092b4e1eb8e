"""One configuration surface: emoloop/settings.py is the only module that reads the
environment, and docker/.env.example lists every variable it reads, each with a comment,
its default and its bound.

Read from the source (AST), not by importing: a variable read on a branch the test
environment does not take (the SQLite cache, a filesystem broker) is still found.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from learner import conf
from tests.conftest import REPO, start_django

SETTINGS = REPO / "emoloop" / "settings.py"
EXAMPLE = REPO / "docker" / ".env.example"
HELPERS = {"env_str", "env_int", "env_bool", "env_float", "env_list"}
# Product code: what the image ships and runs (tests, bench and scripts set up environments
# of their own and are not checked).
PRODUCT = ["emoloop", "labelling", "learner", "manage.py"]
# The two modules allowed to read the environment.
READERS = {"emoloop/settings.py", "emoloop/env.py"}
OS_ENVIRONMENT = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


class Access(NamedTuple):
    """One place code touches the environment: file, operation, variable (when literal)."""

    path: str
    what: str
    name: str | None


_SETTINGS_MODULE = "tells Django which settings module to load, before any setting exists"
ALLOWED = {
    Access("manage.py", "os.environ.setdefault", "DJANGO_SETTINGS_MODULE"): _SETTINGS_MODULE,
    Access("emoloop/celery.py", "os.environ.setdefault", "DJANGO_SETTINGS_MODULE"): (
        _SETTINGS_MODULE
    ),
    Access("emoloop/wsgi.py", "os.environ.setdefault", "DJANGO_SETTINGS_MODULE"): (
        _SETTINGS_MODULE
    ),
    Access("emoloop/asgi.py", "os.environ.setdefault", "DJANGO_SETTINGS_MODULE"): (
        _SETTINGS_MODULE
    ),
}
# In docker/.env.example but not read by EmoLoop.
NOT_SETTINGS = {"POSTGRES_PASSWORD": "read by docker-compose.yml for the db service"}


# --- Reading the environment, found in source ---------------------------------------------


def _first_literal(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def environment_access(source: str, path: str) -> list[Access]:
    """Every way `source` reads or writes the environment: os.environ in any form, os.getenv
    and friends (also under an alias or imported by name), and emoloop.env's helpers."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    os_names: set[str] = set()
    found: list[Access] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os":
                    os_names.add(alias.asname or "os")
                elif alias.name == "emoloop.env":
                    found.append(Access(path, "import emoloop.env", None))
        elif isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            if node.module == "os" and names & OS_ENVIRONMENT:
                found.append(Access(path, f"from os import {', '.join(sorted(names))}", None))
            if node.module == "emoloop.env" or (node.module == "emoloop" and "env" in names):
                found.append(Access(path, "import emoloop.env", None))
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
            and node.attr in OS_ENVIRONMENT
        ):
            continue
        parent = parents.get(node)
        if node.attr == "environ" and isinstance(parent, ast.Attribute):
            call = parents.get(parent)
            name = _first_literal(call) if isinstance(call, ast.Call) else None
            found.append(Access(path, f"os.environ.{parent.attr}", name))
        elif node.attr == "environ" and isinstance(parent, ast.Subscript):
            key = parent.slice
            literal = key.value if isinstance(key, ast.Constant) else None
            found.append(
                Access(path, "os.environ[]", literal if isinstance(literal, str) else None)
            )
        elif isinstance(parent, ast.Call) and parent.func is node:
            found.append(Access(path, f"os.{node.attr}", _first_literal(parent)))
        else:
            found.append(Access(path, f"os.{node.attr}", None))
    return found


def _product_files() -> Iterator[Path]:
    for entry in PRODUCT:
        path = REPO / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


# --- What the settings read ---------------------------------------------------------------


class _NotLiteral:
    def __repr__(self) -> str:
        return "<not a literal>"


NOT_LITERAL = _NotLiteral()
_OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def _literal(node: ast.expr | None) -> object:
    """The value of a default written as a constant, a list of them or arithmetic on numbers
    (``200 * 1024 * 1024``); NOT_LITERAL for anything computed from other settings."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List):
        items = [_literal(item) for item in node.elts]
        return NOT_LITERAL if NOT_LITERAL in items else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        return -value if isinstance(value, int | float) else NOT_LITERAL
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, int | float) and isinstance(right, int | float):
            return _OPERATORS[type(node.op)](left, right)
    return NOT_LITERAL


@dataclass(frozen=True)
class Read:
    """One env_* call in settings.py."""

    name: str
    helper: str
    default: object
    minimum: object
    line: int


def settings_reads(source: str) -> list[Read]:
    reads = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in HELPERS:
            continue
        name = _first_literal(node)
        assert name, f"settings.py:{node.lineno}: the variable's name must be a literal string"
        arguments = dict(zip(["name", "default", "minimum"], node.args, strict=False))
        arguments.update({kw.arg: kw.value for kw in node.keywords if kw.arg})
        minimum = _literal(arguments["minimum"]) if "minimum" in arguments else None
        reads.append(
            Read(name, node.func.id, _literal(arguments.get("default")), minimum, node.lineno)
        )
    return reads


READS = settings_reads(SETTINGS.read_text())


# --- What docker/.env.example lists -------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    value: str
    active: bool  # set in the file (required in production), not a commented-out default
    comment: str  # the inline comment of a commented-out line, the lines above an active one


_ENTRY = re.compile(
    r"^(?P<off>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>\S*)\s*(?:#\s*(?P<c>.*))?$"
)


_NAME = re.compile(r"^(#\s*)?[A-Z][A-Z0-9_]*=")


def example_entries(text: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    above: list[str] = []
    for line in text.splitlines():
        match = _ENTRY.match(line.strip())
        if match is None and _NAME.match(line.strip()):
            raise ValueError(f"not NAME=value  # comment: {line!r}")
        if match:
            active = match["off"] is None
            comment = " ".join(above) if active else (match["c"] or "")
            entries[match["name"]] = Entry(match["name"], match["value"], active, comment.strip())
            above = []
        elif line.startswith("#"):
            above.append(line.lstrip("# ").strip())
        else:
            above = []
    return entries


ENTRIES = example_entries(EXAMPLE.read_text())


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shows(value: str, default: object) -> bool:
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(value) == default
        except ValueError:
            return False
    if isinstance(default, list):
        return [item.strip() for item in value.split(",") if item.strip()] == default
    return value == default


# --- The tests ----------------------------------------------------------------------------


def test_the_settings_read_variables_through_the_typed_helpers_and_nothing_else():
    assert len(READS) >= 40  # the parser found the reads (there were 44 when this was written)
    assert len({read.name for read in READS}) == len(READS), "a variable is read twice"
    assert environment_access(SETTINGS.read_text(), "emoloop/settings.py") == [
        Access("emoloop/settings.py", "import emoloop.env", None)
    ]


def test_every_variable_the_settings_read_is_in_the_example_file_with_a_comment():
    missing = sorted(read.name for read in READS if read.name not in ENTRIES)
    silent = sorted(
        read.name for read in READS if read.name in ENTRIES and not ENTRIES[read.name].comment
    )

    assert missing == [], f"add to docker/.env.example: {missing}"
    assert silent == [], f"say what these do in docker/.env.example: {silent}"


def test_the_example_file_lists_nothing_the_settings_do_not_read():
    extra = sorted(set(ENTRIES) - {read.name for read in READS} - set(NOT_SETTINGS))

    assert extra == [], f"docker/.env.example lists variables nothing reads: {extra}"
    assert set(NOT_SETTINGS) <= set(ENTRIES), "stale entries in NOT_SETTINGS: remove them"


def test_the_example_file_shows_each_default_and_bound_the_settings_use():
    wrong = []
    for read in READS:
        entry = ENTRIES.get(read.name)
        if entry is None:
            continue
        if (
            not entry.active
            and read.default is not NOT_LITERAL
            and not _shows(entry.value, read.default)
        ):
            wrong.append(f"{read.name}={entry.value}, settings.py's default is {read.default!r}")
        if read.minimum is not None and f"at least {_number(read.minimum)}" not in entry.comment:
            wrong.append(f"{read.name}: the comment should say 'at least {_number(read.minimum)}'")

    assert wrong == []


def test_product_code_reads_the_environment_only_in_the_settings():
    found = [
        access
        for path in _product_files()
        if (relative := path.relative_to(REPO).as_posix()) not in READERS
        for access in environment_access(path.read_text(), relative)
    ]

    assert [access for access in found if access not in ALLOWED] == [], (
        "read it in emoloop/settings.py with emoloop.env's helpers, then use django.conf.settings"
    )
    assert sorted(set(ALLOWED) - set(found)) == [], "stale entries in ALLOWED: remove them"


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import os\nos.environ['X']", Access("m.py", "os.environ[]", "X")),
        ("import os\nos.environ.get('X', '1')", Access("m.py", "os.environ.get", "X")),
        ("import os\nos.getenv('X')", Access("m.py", "os.getenv", "X")),
        ("import os as o\no.environ.get('X')", Access("m.py", "os.environ.get", "X")),
        ("import os\nsettings = dict(os.environ)", Access("m.py", "os.environ", None)),
        ("from os import environ", Access("m.py", "from os import environ", None)),
        ("from os import getenv, path", Access("m.py", "from os import getenv, path", None)),
        ("from emoloop.env import env_int", Access("m.py", "import emoloop.env", None)),
        ("from emoloop import env", Access("m.py", "import emoloop.env", None)),
    ],
)
def test_the_check_finds_each_way_of_reading_the_environment(source, what):
    assert environment_access(source, "m.py") == [what]


def test_the_check_leaves_other_uses_of_os_alone():
    assert environment_access("import os\nos.path.join('a', 'b')\nos.makedirs('x')", "m.py") == []


def test_the_example_parser_reads_active_and_commented_out_lines():
    text = "# what it is\n# and more\nA_URL=redis://x\n\n# B_LIMIT=5   # at least 1\n# C=\n"

    assert example_entries(text) == {
        "A_URL": Entry("A_URL", "redis://x", True, "what it is and more"),
        "B_LIMIT": Entry("B_LIMIT", "5", False, "at least 1"),
        "C": Entry("C", "", False, ""),
    }
    with pytest.raises(ValueError, match="not NAME=value"):
        example_entries("# D=<two words>  # a value with a space is not read")


@pytest.mark.parametrize(
    ("accessor", "setting", "value"),
    [
        (conf.ssl_checkpoint, "EMOLOOP_SSL_CHECKPOINT", "/models/tiny.pt"),
        (conf.ssl_arch, "EMOLOOP_SSL_ARCH", "hubert_base"),
        (conf.training_stale_seconds, "EMOLOOP_TRAINING_STALE_SECONDS", 42),
        (conf.training_redispatch_seconds, "EMOLOOP_TRAINING_REDISPATCH_SECONDS", 43),
        (conf.training_time_limit, "EMOLOOP_TRAINING_TIME_LIMIT", 4000),
        (conf.feature_chunk_size, "EMOLOOP_FEATURE_CHUNK", 7),
        (conf.torch_threads, "EMOLOOP_TRAINING_THREADS", 3),
    ],
)
def test_the_learner_accessors_follow_the_settings_fixture(settings, accessor, setting, value):
    setattr(settings, setting, value)

    assert accessor() == value


def test_a_learner_variable_out_of_bounds_stops_start_up():
    env = {**os.environ, "EMOLOOP_TRAINING_STALE_SECONDS": "5"}
    result = start_django(env)

    assert result.returncode != 0
    assert "EMOLOOP_TRAINING_STALE_SECONDS must be at least 10" in result.stderr
