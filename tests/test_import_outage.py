"""A real broker outage at the import door: 503 with the batch saved, sent by the beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from labelling import tasks
from labelling.models import ImportBatch
from tests.broker import broker_down
from tests.factories import tone_wav


@pytest.mark.parametrize("kind", ["url", "files"])
def test_an_import_during_an_outage_is_a_503_and_the_beat_sends_it(
    transactional_db, project, engineer, client_for, kind
):
    body = (
        {"url": "https://example.org/call.wav"}
        if kind == "url"
        else {"files": [SimpleUploadedFile("a.wav", tone_wav())]}
    )
    client = client_for(engineer)

    with broker_down():
        response = client.post(
            f"/api/projects/{project.slug}/imports/",
            body,
            format="json" if kind == "url" else "multipart",
        )

    assert response.status_code == 503, response.content
    assert response.json()["code"] == "broker_unavailable"
    batch = ImportBatch.objects.get(project=project)
    assert f"Import #{batch.pk} is saved" in response.json()["detail"]
    assert batch.dispatched_at is None
    assert batch.items.filter(status="pending").count() == 1

    # The next beat tick (every 30 s), with the broker back; a batch younger than a few
    # seconds is left to the request that is still sending it.
    ImportBatch.objects.filter(pk=batch.pk).update(
        created_at=timezone.now() - timedelta(seconds=30)
    )
    assert tasks.redispatch_stalled_imports() == 1
    batch.refresh_from_db()
    assert batch.dispatched_at is not None
