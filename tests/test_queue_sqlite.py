"""`make run` uses SQLite: the queue's portable path must work there too (no SKIP LOCKED)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import django, uuid
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from labelling.models import Annotation, Membership, Project, QueueEntry
    from labelling.services import queue, taxonomy
    from tests.factories import ClipFactory

    assert connection.vendor == "sqlite"
    settings.MEDIA_ROOT = settings.DATA_DIR / "media"
    project = Project.objects.create(name="P", slug="p", annotators_per_clip=2,
                                     taxonomy_version=taxonomy.install_preset("willcox"))
    clips = [ClipFactory(project=project) for _ in range(3)]
    queue.enqueue_clips(project, clips, seed=0)
    user = get_user_model().objects.create_user("ann", password="pw")
    Membership.objects.create(user=user, project=project, role="annotator")
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)

    leased = client.post("/api/projects/p/next/").json()
    body = {"lease": leased["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "mad"}
    first = client.post("/api/projects/p/annotations/", body, content_type="application/json")
    again = client.post("/api/projects/p/annotations/", body, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200), (first.content, again.content)
    undone = client.post("/api/projects/p/undo/").json()
    assert undone["clip"]["id"] == leased["clip"]["id"]
    body = {"lease": undone["lease"]["id"], "client_id": str(uuid.uuid4()), "skip_reason": "noise"}
    assert client.post("/api/projects/p/annotations/", body,
                       content_type="application/json").status_code == 201
    assert Annotation.objects.count() == 2
    assert QueueEntry.objects.get(clip_id=leased["clip"]["id"]).open_slots == 2
    print("queue on sqlite: ok")
    """
)


def test_next_submit_and_undo_work_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "EMOLOOP_DATA_DIR": str(tmp_path),
        "EMOLOOP_DEV": "true",
        "DJANGO_SETTINGS_MODULE": "emoloop.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "queue on sqlite: ok" in result.stdout
