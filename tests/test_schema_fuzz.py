"""Schema fuzzing: schemathesis sends generated requests to every operation of /api/schema/
on a live gunicorn, as a project admin and as an annotator, and every response must be free
of server errors and match the schema.

The server is the deployment's own (gunicorn, gthread workers, DEBUG off) on the test
database, so the test holds committed rows (`transactional_db`). DELETE is left out: one
generated DELETE would remove the very project the rest of the run explores.

Bounded: at most FUZZ_MAX_EXAMPLES cases per operation and FUZZ_SECONDS per persona (about
2 min for both). EMOLOOP_FUZZ_EXAMPLES, EMOLOOP_FUZZ_SECONDS and EMOLOOP_FUZZ_CHECKS change
them for a deeper run by hand, e.g. EMOLOOP_FUZZ_CHECKS=status_code_conformance adds that
check to the default ones.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from labelling.models import Annotation, Membership, Project, Role
from labelling.services import ingest, queue, taxonomy
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "emodb"
FUZZ_MAX_EXAMPLES = int(os.environ.get("EMOLOOP_FUZZ_EXAMPLES", "15"))
FUZZ_SECONDS = int(os.environ.get("EMOLOOP_FUZZ_SECONDS", "50"))
CHECKS = ["not_a_server_error", "response_schema_conformance"] + [
    c for c in os.environ.get("EMOLOOP_FUZZ_CHECKS", "").split(",") if c
]
# Real clips (decoded, with peaks and canonical audio) from the demo subset in the repository.
DEMO_FILES = ["03a01Fa.wav", "08a01Na.wav", "09a01Wb.wav", "13a02Ta.wav"]


# --- The data a run explores ------------------------------------------------------------


@pytest.fixture
def fuzz_data(transactional_db, tmp_path) -> dict:
    """A project on the Willcox wheel with real and factory clips, two finished imports (by
    a user and by the command), one annotation, a gold clip, members of every role, and a
    DRF token for each."""
    willcox = taxonomy.install_preset("willcox")
    taxonomy.install_preset("basic")
    project = Project.objects.create(
        name="Call centre", slug="callcentre", taxonomy_version=willcox, annotators_per_clip=2
    )
    users = {}
    for username, role in [
        ("ada", Role.ADMIN),
        ("emil", Role.ML_ENGINEER),
        ("rita", Role.REVIEWER),
        ("anna", Role.ANNOTATOR),
    ]:
        users[role] = make_user(username)
        Membership.objects.create(user=users[role], project=project, role=role)

    folder = tmp_path / "upload"
    folder.mkdir()
    for name in DEMO_FILES:
        shutil.copyfile(DEMO / "wav" / name, folder / name)
    rows = {r["file"]: r for r in csv.DictReader((DEMO / "labels.csv").open())}
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "speaker", "gender"])
        for name in DEMO_FILES:
            writer.writerow([name, rows[name]["speaker"], rows[name]["gender"]])
    batch = ingest.stage_folder(
        project, folder, manifest_path=tmp_path / "manifest.csv", user=users[Role.ADMIN]
    )
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)
    # The same file again, as the ingest command would import it: no user (created_by null),
    # one duplicate item.
    again = tmp_path / "again"
    again.mkdir()
    shutil.copyfile(DEMO / "wav" / DEMO_FILES[0], again / DEMO_FILES[0])
    for item_id in ingest.pending_item_ids(ingest.stage_folder(project, again)):
        ingest.process_item(item_id)
    made = ClipFactory.create_batch(4, project=project)
    queue.enqueue_clips(project, made, seed=1)
    queue.mark_gold(made[0], "joyful", users[Role.REVIEWER])

    leased = queue.next_clip(project, users[Role.ANNOTATOR])
    queue.submit(
        project,
        users[Role.ANNOTATOR],
        lease_id=leased.lease.id,
        client_id=uuid.uuid4(),
        node_key="mad.angry",
    )
    return {
        "project": project,
        "tokens": {role: Token.objects.create(user=user).key for role, user in users.items()},
    }


# --- The server -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_server(fuzz_data, media_root, tmp_path) -> Iterator[str]:
    """gunicorn on a free loopback port, on the test database and this test's media."""
    db = settings.DATABASES["default"]
    port = _free_port()
    env = {
        **os.environ,
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "MEDIA_ROOT": str(media_root),
        # The predict throttle (30/min per user) would answer most generated uploads 429.
        "EMOLOOP_PREDICT_RATE": "100000/min",
    }
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "emoloop.wsgi",
             "--bind", f"127.0.0.1:{port}", "--no-control-socket",
             "--worker-class", "gthread", "--workers", "1", "--threads", "4",
             "--timeout", "30", "--log-level", "warning"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- Running schemathesis ---------------------------------------------------------------


def _config(fuzz_data: dict, role: Role, out: Path) -> Path:
    """schemathesis.toml for one run.

    Path parameters are drawn mostly (9 in 10) from the rows that exist, so that requests
    reach the views rather than their 404, and otherwise generated, so that odd values are
    tried too. A project's own slug cannot be changed by a PUT or PATCH (every later request
    would miss it), and the fuzzing user's own membership is not edited (an admin who
    demotes itself explores nothing after that).
    """
    project = fuzz_data["project"]
    own = project.memberships.get(user__auth_token__key=fuzz_data["tokens"][role]).pk
    values = {
        "projects": [project.slug],
        "taxonomies": ["willcox", "basic"],
        "versions": [1, 2],
        "clips": list(project.clips.values_list("pk", flat=True)),
        "annotations": list(
            Annotation.objects.filter(clip__project=project).values_list("pk", flat=True)
        ),
        "imports": list(project.import_batches.values_list("pk", flat=True)),
        "members": list(project.memberships.exclude(pk=own).values_list("pk", flat=True)),
    }
    # Most specific first: of the entries matching an operation, the first one that sets
    # `parameters` decides them all.
    entries = [
        (r"^/api/projects/\{slug\}/$", "^(PUT|PATCH)$",
         {"path.slug": "projects", "body.slug": ("projects", 1.0)}),
        (r"^/api/projects/\{slug\}", None, {"path.slug": "projects"}),
        (r"^/api/projects/\{project_slug\}/members/\{id\}", None,
         {"path.project_slug": "projects", "path.id": "members"}),
        (r"^/api/projects/\{project_slug\}", None, {"path.project_slug": "projects"}),
        (r"^/api/taxonomies/\{slug\}/versions/\{number\}", None,
         {"path.slug": "taxonomies", "path.number": "versions"}),
        (r"^/api/taxonomies/\{slug\}", None, {"path.slug": "taxonomies"}),
        (r"^/api/clips/\{id\}", None, {"path.id": "clips"}),
        (r"^/api/annotations/\{id\}", None, {"path.id": "annotations"}),
        (r"^/api/imports/\{id\}", None, {"path.id": "imports"}),
    ]  # fmt: skip
    lines = []
    for name, items in values.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(items)}", ""]
    for path_regex, method_regex, parameters in entries:
        lines += ["[[operations]]", f"include-path-regex = {json.dumps(path_regex)}"]
        if method_regex:
            lines.append(f"include-method-regex = {json.dumps(method_regex)}")
        bindings = []
        for key, target in parameters.items():
            dictionary, probability = target if isinstance(target, tuple) else (target, 0.9)
            bindings.append(
                f'"{key}" = {{ dictionary = "{dictionary}", probability = {probability} }}'
            )
        lines += [f"parameters = {{ {', '.join(bindings)} }}", ""]
    path = out / "schemathesis.toml"
    path.write_text("\n".join(lines))
    return path


def _fuzz(base: str, token: str, config: Path, out: Path) -> dict:
    """One schemathesis run: its JSON report, with the console's account of each failure."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
        f"{base}/api/schema/", "--url", base,
        "--header", f"Authorization: Token {token}",
        "--checks", ",".join(CHECKS),
        "--exclude-method", "DELETE",
        "--max-examples", str(FUZZ_MAX_EXAMPLES),
        "--max-time", str(FUZZ_SECONDS),
        "--seed", "1",
        # One worker: with two, hypothesis' lambda descriptions (ast.parse in threads) break
        # on Python 3.11 now and then ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
        "--output-truncate", "true",
        "--report", "json", "--report-json-path", str(out / "report.json"),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=out, capture_output=True, text=True, timeout=FUZZ_SECONDS + 180
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis ran past its time bound:\n{str(exc.output or '')[-4000:]}")
    console = result.stdout + result.stderr
    (out / "console.txt").write_text(console)
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        pytest.fail(f"schemathesis wrote no report (exit {result.returncode}):\n{console[-4000:]}")
    report["console"] = console
    report["details"] = _sections(console, ("ERRORS", "FAILURES"))
    return report


def _sections(console: str, names: tuple[str, ...]) -> str:
    """The console's `==== NAME ====` sections (each failure with its response and a curl
    line to reproduce it), tracebacks cut short."""
    parts = re.split(r"^=+ ([A-Z ]+) =+$", console, flags=re.MULTILINE)
    text = "\n".join(
        f"== {title} ==\n{body.strip()}"
        for title, body in zip(parts[1::2], parts[2::2], strict=True)
        if title.strip() in names
    )
    # A runtime error's traceback may quote whole source files: keep the head of each line.
    # `st replay` needs the run's database, which is not kept.
    return "\n".join(
        line[:2000] for line in text.splitlines() if not line.strip().startswith("st replay")
    )


RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (\w+) ([\w.]+): (.*)$")
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Violation|Exit)\b.*$")
OUR_FRAME = re.compile(
    r'^\s+File "' + re.escape(str(REPO)) + r'/((?:emoloop|labelling|learner)/[^"]+)", line (\d+)'
)


def _server_errors(log: Path) -> list[str]:
    """Each distinct exception behind a 500, from the server's log:
    `path: exception (at the deepest frame of our code)`."""
    seen: dict[str, str] = {}
    path = exception = frame = None
    for line in [*log.read_text(errors="replace").splitlines(), "0000-00-00 00:00:00,0 END x: y"]:
        record = RECORD.match(line)
        if record:
            if path and exception:
                # One line per exception and endpoint, whatever values the requests carried.
                endpoint = re.sub(r"\d+", "_", path.rstrip("/").rpartition("/")[2])
                key = endpoint + re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", exception)
                where = f" (at {frame})" if frame else ""
                seen.setdefault(key, f"{path}: {exception}{where}")
            path = exception = frame = None
            if record[1] == "ERROR" and record[3].startswith("Internal Server Error: "):
                path = record[3].removeprefix("Internal Server Error: ")
        elif path and EXCEPTION.match(line):
            exception = line.strip()[:300]  # the last one: what the request died of
        elif path and (ours := OUR_FRAME.match(line)):
            frame = f"{ours[1]}:{ours[2]}"
    return list(seen.values())


def _summary(persona: str, report: dict) -> list[str]:
    lines = [
        f"as the {persona}: {report['test_cases']['generated']} cases over "
        f"{report['operations']['tested']} operations, "
        f"{report['test_cases']['unique_failures']} unique failure(s), exit {report['exit_code']}"
    ]
    for group in report["failures"]:
        for operation in group["operations"]:
            lines.append(f"  {group['code']} {group['title']}: {operation}")
    for error in report["errors"]:
        lines.append(f"  error: {error['title']} (x{error['count']})")
    return lines


def test_every_operation_answers_within_its_schema(api_server, fuzz_data, tmp_path):
    summary, details = [], []
    # The annotator first: the admin's run renames and pauses the project, among others.
    for persona, role in [("annotator", Role.ANNOTATOR), ("project admin", Role.ADMIN)]:
        fuzz_data["project"].save()  # as the fixture made it, whatever the last run did
        out = tmp_path / persona.replace(" ", "-")
        out.mkdir()
        report = _fuzz(api_server, fuzz_data["tokens"][role], _config(fuzz_data, role, out), out)
        summary += _summary(persona, report)
        if report["failures"] or report["errors"] or report["exit_code"]:
            details.append(f"\n#### as the {persona} ({out / 'console.txt'})\n{report['details']}")
    crashes = _server_errors(tmp_path / "gunicorn.log")
    if crashes:
        summary += ["the server log's 500s, one line per distinct exception:"]
        summary += [f"  {crash}" for crash in crashes]
    failed = any(line.startswith("  ") for line in summary) or details
    assert not failed, "schema fuzzing found:\n" + "\n".join(summary + details)
