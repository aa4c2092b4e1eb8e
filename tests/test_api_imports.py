"""Imports are sent to the workers: through the API to a real Celery worker on Redis, and
what happens when the broker is down (the batch is kept and the beat sends it later).

The beat-task tests at the end (lease reclaiming) live here with the other beat task.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from emoloop.dispatch import BrokerUnavailable
from labelling import tasks
from labelling.models import Clip, ImportBatch, ImportItem
from labelling.services import ingest, queue
from tests.conftest import wait_until
from tests.factories import tone_wav


def _batch_done(batch_id: int) -> bool:
    return ImportBatch.objects.get(pk=batch_id).status == ImportBatch.Status.DONE


@pytest.mark.celery
def test_uploaded_files_archive_and_manifest_become_clips_via_the_worker(
    worker, client_for, project, engineer
):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("calls/c1.wav", tone_wav(0.7, 300))
        zf.writestr("../evil.wav", tone_wav(0.7, 310))
    manifest = (
        b"file,speaker,gender,age,language,mood\na.wav,s1,f,41,en-GB,calm\nc1.wav,s2,m,29,,\n"
    )
    files = [
        SimpleUploadedFile("a.wav", tone_wav(0.6, 220), content_type="audio/wav"),
        SimpleUploadedFile("notes.wav", b"not audio at all" * 10, content_type="audio/wav"),
        SimpleUploadedFile("bundle.zip", archive.getvalue(), content_type="application/zip"),
    ]

    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {"files": files, "manifest": SimpleUploadedFile("meta.csv", manifest), "segment": False},
        format="multipart",
    )

    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]
    wait_until(lambda: _batch_done(batch_id), timeout=120, what="the worker to finish the batch")
    items = client_for(engineer).get(f"/api/imports/{batch_id}/items/").json()["results"]
    # The archive was one item until the worker expanded it into its members.
    archive = ImportItem.objects.get(batch_id=batch_id, name="bundle.zip")
    assert archive.status == "expanded"
    outcome = {
        item["name"]: (item["status"], item["reason_code"])
        for item in items
        if item["status"] != "expanded"
    }
    assert outcome == {
        "a.wav": ("accepted", ""),
        "notes.wav": ("rejected", "not_audio"),
        "bundle.zip/calls/c1.wav": ("accepted", ""),
        "bundle.zip/../evil.wav": ("rejected", "path_escape"),
    }
    a = Clip.objects.get(original_name="a.wav")
    assert (a.speaker_id, a.gender, a.age_band, a.language) == ("s1", "female", "35-44", "en-GB")
    assert a.metadata["mood"] == "calm"
    c1 = Clip.objects.get(original_name="bundle.zip/calls/c1.wav")
    assert (c1.speaker_id, c1.gender) == ("s2", "male")
    counts = client_for(engineer).get(f"/api/imports/{batch_id}/").json()["counts"]
    assert counts == {
        "total": 4,
        "pending": 0,
        "accepted": 2,
        "duplicate": 0,
        "rejected": 2,
        "clips": 2,
    }


@pytest.mark.celery
def test_a_url_import_to_an_internal_address_is_refused_by_the_worker(
    worker, client_for, project, engineer
):
    # Passes the syntax check at the API (a public-looking name), but resolves to loopback
    # on the worker: the download is refused after DNS resolution.
    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/", {"url": "http://localhost/a.wav"}, format="json"
    )

    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]
    wait_until(lambda: _batch_done(batch_id), timeout=60, what="the URL import to finish")
    item = ImportBatch.objects.get(pk=batch_id).items.get()
    assert (item.status, item.reason_code) == ("rejected", "unsafe_url")
    assert "loopback" in item.reason
    assert not Clip.objects.exists()


# --- Refused at the API, before any batch exists ----------------------------------------


def test_a_url_with_a_user_name_is_refused_at_the_api(client_for, project, engineer):
    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {"url": "https://someone:secret@example.org/a.wav"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "user name or password" in str(response.json()["errors"]["url"])
    assert not ImportBatch.objects.exists()


def test_a_url_import_is_refused_when_the_server_disables_it(
    client_for, project, engineer, settings
):
    settings.EMOLOOP_URL_IMPORT_ENABLED = False

    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {"url": "https://example.org/a.wav"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert "URL import is disabled" in str(response.json()["errors"]["url"])
    assert not ImportBatch.objects.exists()


def test_a_manifest_that_is_neither_csv_nor_jsonl_is_refused_at_the_api(
    client_for, project, engineer
):
    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/imports/",
        {
            "files": [SimpleUploadedFile("a.wav", tone_wav(0.6, 220), content_type="audio/wav")],
            "manifest": SimpleUploadedFile("meta.txt", b"file,speaker\na.wav,s1\n"),
        },
        format="multipart",
    )

    assert response.status_code == 400, response.content
    assert "must be .csv or .jsonl" in str(response.json()["errors"]["manifest"])
    assert not ImportBatch.objects.exists()


# --- Broker outages ---------------------------------------------------------------------


class FakeBroker:
    """Stands in for Celery's publish (opt-in per test): records or refuses messages."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[int] = []

    def apply_async(self, args=(), kwargs=None, **options) -> None:
        if not self.up:
            raise KombuOperationalError("Error 111 connecting to 127.0.0.1:6379. Refused.")
        json.dumps([args, kwargs])  # what Celery's JSON serializer must take
        self.sent.append(args[0])


@pytest.fixture
def broker(monkeypatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(tasks.ingest_item, "apply_async", fake.apply_async)
    return fake


def _url_batch(project) -> ImportBatch:
    return ingest.stage_url(project, "https://example.org/a.wav")


def _age(batch: ImportBatch, seconds: float) -> None:
    ImportBatch.objects.filter(pk=batch.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


@pytest.mark.django_db
def test_a_broker_outage_keeps_the_batch_and_the_beat_sends_it_when_the_broker_is_back(
    project, broker, django_capture_on_commit_callbacks
):
    batch = _url_batch(project)
    broker.up = False

    with (
        pytest.raises(BrokerUnavailable) as caught,
        django_capture_on_commit_callbacks(execute=True),
    ):
        tasks.dispatch_batch(batch)

    assert f"Import #{batch.pk} is saved" in caught.value.message
    assert "as soon as the task queue is back" in caught.value.message
    batch.refresh_from_db()
    assert batch.dispatched_at is None
    assert batch.items.get().status == "pending"

    _age(batch, 60)
    with pytest.raises(BrokerUnavailable):  # still down: the beat fails loudly, keeps it
        tasks.redispatch_stalled_imports()
    broker.up = True
    assert tasks.redispatch_stalled_imports() == 1

    assert broker.sent == [batch.items.get().pk]
    batch.refresh_from_db()
    assert batch.dispatched_at is not None
    assert tasks.redispatch_stalled_imports() == 0  # sent once, not on every tick


@pytest.mark.django_db
def test_dispatch_inside_a_transaction_publishes_after_commit(
    project, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        batch = _url_batch(project)
        tasks.dispatch_batch(batch)
        assert broker.sent == []  # not before the rows are committed
    assert len(callbacks) == 1
    assert broker.sent == [batch.items.get().pk]
    batch.refresh_from_db()
    assert batch.dispatched_at is not None


@pytest.mark.django_db
def test_a_batch_just_staged_is_left_to_the_request_that_sends_it(project, broker):
    _url_batch(project)  # not sent yet, but only a moment old
    assert tasks.redispatch_stalled_imports() == 0
    assert broker.sent == []


@pytest.mark.django_db
def test_lost_messages_are_sent_again_only_for_batches_without_progress(project, broker, settings):
    settings.EMOLOOP_IMPORT_STALL_SECONDS = 900
    stalled, busy = _url_batch(project), _url_batch(project)
    for batch in (stalled, busy):
        _age(batch, 3600)
        ImportBatch.objects.filter(pk=batch.pk).update(
            status=ImportBatch.Status.RUNNING,
            dispatched_at=timezone.now() - timedelta(seconds=1800),
        )
    # The busy batch finished a file a minute ago: its queue is moving, just long.
    ImportItem.objects.create(
        batch=busy,
        name="done.wav",
        status="accepted",
        processed_at=timezone.now() - timedelta(seconds=60),
    )

    assert tasks.redispatch_stalled_imports() == 1
    assert broker.sent == [stalled.items.get().pk]
    assert tasks.redispatch_stalled_imports() == 0  # re-stamped: once per stall period


# --- Lease reclaiming (beat) -------------------------------------------------------------


@pytest.mark.django_db
def test_one_projects_reclaim_failure_does_not_stop_the_others(
    project, other_project, monkeypatch, caplog
):
    reclaimed: list[str] = []
    real = queue.reclaim_expired

    def flaky(p):
        if p.slug == project.slug:
            raise RuntimeError("lease table corrupted")
        reclaimed.append(p.slug)
        return real(p)

    monkeypatch.setattr(queue, "reclaim_expired", flaky)

    with (
        caplog.at_level(logging.ERROR, logger="labelling.tasks"),
        pytest.raises(tasks.ReclaimFailed, match=project.slug),
    ):
        tasks.reclaim_expired_leases()

    assert reclaimed == [other_project.slug]
    failure = next(r for r in caplog.records if r.name == "labelling.tasks")
    assert project.slug in failure.getMessage()
    assert failure.exc_info is not None
