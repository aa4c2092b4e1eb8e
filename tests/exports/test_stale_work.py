"""Work whose worker died: a conversion converting (or queued and sent) for longer than its
task's time limit is queued again by the next request (once) or shown failed to a poll, and
a worker may claim it over; a version building too long is failed by the beat's reaper; a
soft time limit records a clear error. Time is moved by writing the rows' started_at.
`?status` on the native format answers JSON, not the zip."""

from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from exports import tasks
from exports.models import DatasetConversion, DatasetVersion
from exports.services import build, conversions, versions
from labelling.services import queue
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db

BASE = "/api/projects/callcentre/datasets/"


@pytest.fixture
def ready(project, annotator, second_annotator, engineer) -> DatasetVersion:
    clips = [ClipFactory(project=project, speaker_id=f"s{n}") for n in range(4)]
    queue.enqueue_clips(project, clips, seed=1)
    for user, key in ((annotator, "mad.angry"), (second_annotator, "sad")):
        while (leased := queue.next_clip(project, user)) is not None:
            queue.submit(project, user, lease_id=leased.lease.pk, client_id=uuid.uuid4(),
                         node_key=key)  # fmt: skip
    built = build.run_build(versions.create_version(project, user=engineer, seed=1).pk)
    assert built is not None
    return built


def _age(model, pk: int, seconds: float) -> None:
    """Move the row's start `seconds` into the past."""
    model.objects.filter(pk=pk).update(started_at=timezone.now() - timedelta(seconds=seconds))


STALE = conversions.TIME_LIMIT + conversions.STALE_MARGIN + 5
FRESH = conversions.TIME_LIMIT - 60


def test_a_conversion_whose_worker_died_is_queued_again_once(
    ready, engineer, client_for, django_capture_on_commit_callbacks
):
    client = client_for(engineer)
    url = f"{BASE}1/download/hf.zip"

    def get(query: str = ""):
        with django_capture_on_commit_callbacks(execute=True):
            return client.get(url + query)

    with mock.patch("exports.tasks.publish") as publish:
        assert get().status_code == 202
        conversion = DatasetConversion.objects.get()
        assert conversion.started_at is not None  # when it was sent
        _age(DatasetConversion, conversion.pk, FRESH)
        assert get().json()["status"] == "queued"
        assert publish.call_count == 1  # sent, not lost yet

        _age(DatasetConversion, conversion.pk, STALE)  # the message was lost
        assert get().json()["status"] == "queued"
        assert get().json()["status"] == "queued"
        assert publish.call_count == 2  # sent again, once

        assert conversions.claim(conversion.pk) is not None
        _age(DatasetConversion, conversion.pk, FRESH)
        assert get().json()["status"] == "converting"  # still in its time limit
        _age(DatasetConversion, conversion.pk, STALE)  # its worker was killed
        answer = get("?status&retry=0").json()  # a poll shows it failed, sends nothing
        assert (answer["status"], answer["error"]) == ("failed", conversions.STALE_ERROR)
        assert publish.call_count == 2
        assert get().json()["status"] == "queued"
        assert publish.call_count == 3
    assert [call.args[1] for call in publish.call_args_list] == [conversion.pk] * 3


def test_two_requests_for_one_stale_conversion_take_it_over_once(ready):
    conversion, _unsent = conversions.request(ready, "labelstudio")
    assert conversions.claim(conversion.pk) is not None
    _age(DatasetConversion, conversion.pk, STALE)
    first = DatasetConversion.objects.get(pk=conversion.pk)
    second = DatasetConversion.objects.get(pk=conversion.pk)  # read before `first` acted
    assert conversions.is_stale(first)
    assert conversions.give_up_stale(first, requeue=True)
    assert not conversions.give_up_stale(second, requeue=True)
    assert first.status == second.status == DatasetConversion.Status.QUEUED


def test_a_worker_claims_over_a_stale_conversion_but_not_a_running_one(ready):
    conversion, _unsent = conversions.request(ready, "labelstudio")
    assert conversions.claim(conversion.pk) is not None
    assert conversions.claim(conversion.pk) is None  # the redelivered message leaves
    _age(DatasetConversion, conversion.pk, STALE)
    taken = conversions.claim(conversion.pk)
    assert taken is not None
    assert taken.status == DatasetConversion.Status.CONVERTING
    assert timezone.now() - taken.started_at < timedelta(minutes=1)
    assert conversions.claim(conversion.pk) is None


def test_a_soft_time_limit_records_a_clear_error(ready, project, engineer, monkeypatch):
    assert tasks.convert_dataset.soft_time_limit == conversions.SOFT_TIME_LIMIT
    assert tasks.convert_dataset.time_limit > conversions.SOFT_TIME_LIMIT
    assert tasks.build_dataset.soft_time_limit == build.SOFT_TIME_LIMIT
    assert tasks.build_dataset.time_limit > build.SOFT_TIME_LIMIT

    def too_long(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    conversion, _unsent = conversions.request(ready, "labelstudio")
    monkeypatch.setattr("exports.formats.materialise", too_long)
    with pytest.raises(SoftTimeLimitExceeded):
        conversions.run(conversion.pk)
    conversion.refresh_from_db()
    assert conversion.status == DatasetConversion.Status.FAILED
    assert conversion.error.startswith("TimeLimitExceeded: the conversion ran past its time")

    version = versions.create_version(project, user=engineer, seed=2)
    monkeypatch.setattr(build, "write_version", too_long)
    with pytest.raises(SoftTimeLimitExceeded):
        build.run_build(version.pk)
    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.FAILED
    assert version.error.startswith("TimeLimitExceeded: the build ran past its time limit")


def test_the_beat_fails_builds_whose_worker_died(ready, project, engineer, client_for, monkeypatch):
    assert ready.started_at is not None  # claimed by run_build
    entries = settings.CELERY_BEAT_SCHEDULE.values()
    assert "exports.tasks.reap_stale_builds" in {entry["task"] for entry in entries}
    stale, fresh = (versions.create_version(project, user=engineer) for _ in range(2))
    for version in (stale, fresh):
        assert build.claim(version.pk) is not None
    _age(DatasetVersion, stale.pk, build.TIME_LIMIT + build.STALE_MARGIN + 5)
    _age(DatasetVersion, fresh.pk, build.TIME_LIMIT - 60)
    _age(DatasetVersion, ready.pk, build.TIME_LIMIT * 3)  # ready: left alone

    assert tasks.reap_stale_builds.apply().get() == 1
    assert build.reap_stale_builds() == 0
    statuses = dict(DatasetVersion.objects.values_list("pk", "status"))
    assert statuses == {ready.pk: "ready", stale.pk: "failed", fresh.pk: "building"}
    listed = {v["number"]: v for v in client_for(engineer).get(BASE).json()}
    assert listed[stale.number]["status"] == "failed"
    assert listed[stale.number]["error"] == build.STALE_ERROR  # the page shows it

    with mock.patch("exports.tasks.publish"):  # and the user can build again
        again = client_for(engineer).post(BASE, {"seed": 1}, format="json")
    assert again.status_code == 201


def test_status_on_the_native_format_answers_json_not_the_zip(ready, engineer, client_for):
    client = client_for(engineer)
    answer = client.get(f"{BASE}1/download/native.zip?status")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("application/json")
    body = answer.json()
    assert (body["format"], body["status"], body["error"]) == ("native", "ready", "")
    assert body["url"].endswith(f"{BASE}1/download/native.zip")
    zipped = client.get(f"{BASE}1/download/native.zip")
    assert zipped.status_code == 200
    assert b"".join(zipped.streaming_content)[:2] == b"PK"
