"""S3-compatible object storage, against a real S3-speaking server (moto, tests/s3server.py).

- default_storage on the bucket; the settings that build it and the page's CSP;
- the audio view in its three delivery modes, with the permission check unchanged;
- a batch ingested through the API by a Celery worker whose settings say S3 (a separate
  process with its own empty MEDIA_ROOT): the files are objects in the bucket, nothing is
  written under either MEDIA_ROOT; the worker computes features and trains from the bucket;
  deleting the project deletes its objects.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from emoloop import storage as emoloop_storage
from labelling.models import Annotation, Clip, ImportBatch, ImportItem
from labelling.services import ingest, queue
from labelling.services.ingest import expansion
from tests.conftest import DEMO_EMODB, REPO, wait_until
from tests.factories import tone_wav

ACCEL = "/_protected_media/"


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


# --- Storage and settings -----------------------------------------------------------------


def test_default_storage_is_the_bucket(s3_storage, media_root):
    name = default_storage.save("probe/a.txt", ContentFile(b"hello"))

    assert s3_storage.keys() == [name]
    assert s3_storage.get(name) == b"hello"
    with default_storage.open(name, "rb") as fh:
        assert fh.read() == b"hello"
    # A second save under a taken name gets another name, as on the filesystem.
    assert default_storage.save("probe/a.txt", ContentFile(b"again")) != name
    assert _files_under(media_root) == []


def _settings_in_a_fresh_process(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=REPO,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "emoloop.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_settings_build_s3_storage_and_the_csp_from_the_environment():
    show = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.STORAGES['default'], s.CONTENT_SECURITY_POLICY]))"
    )
    env = {
        "EMOLOOP_STORAGE": "s3",
        "S3_BUCKET": "media",
        "S3_ENDPOINT_URL": "http://minio:9000",
        "S3_PUBLIC_ENDPOINT_URL": "https://media.example.org",
        "S3_PREFIX": "/prod/",
        "EMOLOOP_AUDIO_DELIVERY": "presigned",
    }
    done = _settings_in_a_fresh_process(env, show)
    assert done.returncode == 0, done.stderr
    default, csp = json.loads(done.stdout.strip().splitlines()[-1])
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    options = default["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"], options["location"]) == (
        "media",
        "http://minio:9000",
        "prod",
    )
    assert options["addressing_style"] == "path"
    assert options["file_overwrite"] is False
    # The browser fetches presigned URLs from the public origin: in connect-src and media-src.
    directives = {part.split()[0]: part.split()[1:] for part in csp.split("; ")}
    assert "https://media.example.org" in directives["connect-src"]
    assert "https://media.example.org" in directives["media-src"]
    assert "http://minio:9000" not in csp
    assert directives["default-src"] == ["'self'"]

    local = _settings_in_a_fresh_process({"EMOLOOP_AUDIO_DELIVERY": "view"}, show)
    assert local.returncode == 0, local.stderr
    default, csp = json.loads(local.stdout.strip().splitlines()[-1])
    assert default["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert "connect-src" not in csp


@pytest.mark.parametrize(
    "env",
    [
        # AWS S3 (no endpoint): botocore signs virtual-host URLs, path style for dotted names.
        {"S3_BUCKET": "media-eu", "S3_REGION": "eu-west-1"},
        {"S3_BUCKET": "media.eu.example", "S3_REGION": "eu-west-1"},
        # Signed for the public endpoint, whatever the internal one is.
        {
            "S3_BUCKET": "media",
            "S3_ENDPOINT_URL": "http://minio:9000",
            "S3_PUBLIC_ENDPOINT_URL": "https://media.example.org:8443",
        },
    ],
)
def test_the_csp_allows_the_origin_of_the_urls_the_audio_view_signs(env):
    show = (
        "import json; from django.conf import settings as s; "
        "from emoloop.storage import presigned_url; "
        "print(json.dumps([s.CONTENT_SECURITY_POLICY, presigned_url('clips/a.wav', ttl=60)]))"
    )
    base = {
        "EMOLOOP_STORAGE": "s3",
        "EMOLOOP_AUDIO_DELIVERY": "presigned",
        "S3_ENDPOINT_URL": "",
        "S3_PUBLIC_ENDPOINT_URL": "",
        "S3_ADDRESSING_STYLE": "",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    done = _settings_in_a_fresh_process({**base, **env}, show)
    assert done.returncode == 0, done.stderr
    csp, url = json.loads(done.stdout.strip().splitlines()[-1])
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    assert parts.path.endswith("/clips/a.wav")
    assert "X-Amz-Signature=" in parts.query
    directives = {part.split()[0]: part.split()[1:] for part in csp.split("; ")}
    assert origin in directives["connect-src"]
    assert origin in directives["media-src"]
    assert "minio" not in csp


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EMOLOOP_STORAGE": "s3"}, "S3_BUCKET"),
        ({"EMOLOOP_STORAGE": "nfs"}, "EMOLOOP_STORAGE must be one of local, s3"),
        ({"EMOLOOP_AUDIO_DELIVERY": "presigned"}, "needs EMOLOOP_STORAGE=s3"),
        ({"EMOLOOP_AUDIO_DELIVERY": "cdn"}, "EMOLOOP_AUDIO_DELIVERY must be one of"),
    ],
)
def test_a_storage_misconfiguration_stops_the_start_up(env, message):
    done = _settings_in_a_fresh_process(env, "")
    assert done.returncode != 0
    assert message in done.stderr


def test_csp_with_origin_adds_to_a_directive_once_and_creates_a_missing_one():
    policy = "default-src 'self'; media-src 'self' blob:"
    once = emoloop_storage.csp_with_origin(policy, "https://s3", ("media-src", "connect-src"))
    assert (
        once
        == "default-src 'self'; media-src 'self' blob: https://s3; connect-src 'self' https://s3"
    )
    assert emoloop_storage.csp_with_origin(once, "https://s3", ("media-src",)) == once


# --- Audio delivery -----------------------------------------------------------------------


def _ingest_in_process(project, *waves: bytes) -> list[Clip]:
    uploads = [SimpleUploadedFile(f"t{i}.wav", data) for i, data in enumerate(waves)]
    batch = ingest.stage_uploads(project, uploads)
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)
    return list(batch.clips.order_by("pk"))


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 (the moto server)
        return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()


@pytest.mark.django_db
@pytest.mark.parametrize("delivery", ["view", "presigned"])
def test_audio_is_streamed_or_redirected_only_after_the_permission_check(
    delivery, s3_storage, settings, client_for, project, reviewer, annotator, outsider, media_root
):
    settings.EMOLOOP_AUDIO_DELIVERY = delivery
    leased, other = _ingest_in_process(project, tone_wav(0.6, 220), tone_wav(0.6, 330))
    stored = s3_storage.get(leased.canonical.name)
    queue.enqueue_clips(project, [leased])
    assert (
        client_for(annotator).post(f"/api/projects/{project.slug}/next/").json()["clip"]["id"]
        == leased.pk
    )

    for user in (reviewer, annotator):
        response = client_for(user).get(f"/api/clips/{leased.pk}/audio/")
        if delivery == "view":
            assert response.status_code == 200
            assert b"".join(response.streaming_content) == stored
            continue
        assert response.status_code == 302
        location = response["Location"]
        assert location.startswith(s3_storage.server.endpoint_url + "/")
        assert "X-Amz-Signature=" in location
        assert "X-Amz-Expires=300" in location
        status, headers, body = _get(location)
        assert (status, body) == (200, stored)
        assert headers["content-type"] == "audio/wav"
        assert headers["content-disposition"] == f'inline; filename="clip-{leased.pk}.wav"'

    # Unchanged in every mode: a stranger does not learn the clip exists, an annotator hears
    # only the clip leased to them and never the original upload.
    assert client_for(outsider).get(f"/api/clips/{leased.pk}/audio/").status_code == 404
    blind = client_for(annotator)
    assert blind.get(f"/api/clips/{other.pk}/audio/").status_code == 403
    assert blind.get(f"/api/clips/{leased.pk}/audio/?variant=original").status_code == 403
    assert _files_under(media_root) == []


@pytest.mark.django_db
def test_presigned_urls_are_signed_for_the_public_endpoint_when_one_is_set(
    s3_storage, settings, client_for, project, reviewer
):
    # The same server under another name: what browsers reach (a proxy) differs from what
    # web and workers use, and the signature covers the Host header.
    public = s3_storage.server.endpoint_url.replace("127.0.0.1", "localhost")
    settings.EMOLOOP_AUDIO_DELIVERY = "presigned"
    settings.S3_PUBLIC_ENDPOINT_URL = public
    (clip,) = _ingest_in_process(project, tone_wav(0.5, 270))

    location = client_for(reviewer).get(f"/api/clips/{clip.pk}/audio/")["Location"]

    assert location.startswith(public + f"/{s3_storage.name}/")
    assert _get(location)[2] == s3_storage.get(clip.canonical.name)


@pytest.mark.django_db
def test_accel_mode_hands_nginx_the_object_after_the_permission_check(
    s3_storage, settings, client_for, project, reviewer, outsider
):
    settings.EMOLOOP_AUDIO_DELIVERY = "accel"
    settings.EMOLOOP_AUDIO_ACCEL_LOCATION = ACCEL
    (clip,) = _ingest_in_process(project, tone_wav(0.5, 250))

    response = client_for(reviewer).get(f"/api/clips/{clip.pk}/audio/")

    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "audio/wav"
    assert response["X-Content-Type-Options"] == "nosniff"
    target = response["X-Accel-Redirect"]
    # host/bucket/key?signature, for an internal nginx location that proxies to the store.
    host = s3_storage.server.endpoint_url.split("://", 1)[1]
    assert target.startswith(f"{ACCEL}{host}/{s3_storage.name}/{clip.canonical.name}?")
    assert "X-Amz-Signature=" in target
    _, _, body = _get("http://" + target[len(ACCEL) :])
    assert body == s3_storage.get(clip.canonical.name)
    assert client_for(outsider).get(f"/api/clips/{clip.pk}/audio/").status_code == 404


@pytest.mark.django_db
def test_accel_mode_on_local_storage_names_the_file_under_the_internal_location(
    settings, client_for, project, reviewer, media_root
):
    settings.EMOLOOP_AUDIO_DELIVERY = "accel"
    settings.EMOLOOP_AUDIO_ACCEL_LOCATION = ACCEL
    (clip,) = _ingest_in_process(project, tone_wav(0.5, 260))

    response = client_for(reviewer).get(f"/api/clips/{clip.pk}/audio/")

    assert response["X-Accel-Redirect"] == ACCEL + clip.canonical.name
    assert (media_root / clip.canonical.name).is_file()


# --- Staging ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staged_files_are_objects_and_are_gone_when_the_batch_is_done(
    s3_storage, project, media_root
):
    uploads = [SimpleUploadedFile("a.wav", tone_wav(0.5, 200)), SimpleUploadedFile(
        "b.wav", tone_wav(0.5, 210))]  # fmt: skip
    batch = ingest.stage_uploads(project, uploads)

    staged = s3_storage.keys(f"staging/batch-{batch.pk}/")
    assert sorted(item.staged_path for item in batch.items.all()) == staged
    assert len(staged) == 2
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)

    assert s3_storage.keys("staging/") == []
    assert len(s3_storage.keys("clips/")) == 4
    assert _files_under(media_root) == []


# --- A worker on S3 -----------------------------------------------------------------------

EMOTION_NODES = {
    "anger": "mad.angry",
    "disgust": "mad.critical",
    "fear": "scared",
    "happiness": "joyful.excited",
    "boredom": "sad.bored",
    "sadness": "sad.depressed",
    "neutral": "peaceful.content",
}
SPEAKERS = {"03", "08", "09", "10", "11"}


def _demo_rows() -> list[dict[str, str]]:
    with (DEMO_EMODB / "labels.csv").open(newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["speaker"] in SPEAKERS]


def _manifest(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.mark.celery
@pytest.mark.slow
def test_a_worker_on_s3_ingests_computes_features_and_trains_from_the_bucket(
    s3_worker, media_root, client_for, project, annotator, engineer, reviewer, project_admin
):
    from learner import tasks as learner_tasks
    from learner.models import ClipFeatures, LearnerSettings, ModelVersion, TrainingRun

    bucket = s3_worker.bucket
    rows = _demo_rows()
    files = [
        SimpleUploadedFile(row["file"], (DEMO_EMODB / "wav" / row["file"]).read_bytes())
        for row in rows
    ]
    api = client_for(engineer)
    response = api.post(
        f"/api/projects/{project.slug}/imports/",
        {"files": files, "manifest": SimpleUploadedFile("labels.csv", _manifest(rows))},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]
    wait_until(
        lambda: ImportBatch.objects.get(pk=batch_id).status == ImportBatch.Status.DONE,
        timeout=240,
        what="the S3 worker to finish the batch",
    )

    clips = list(Clip.objects.filter(project=project))
    assert len(clips) == len(rows)
    keys = set(bucket.keys())
    prefix = bucket.prefix + "/"
    for clip in clips:
        assert prefix + clip.original.name in keys
        assert prefix + clip.canonical.name in keys
    assert not [key for key in keys if key.startswith(prefix + "staging/")]
    # The worker decoded from the bucket: neither host wrote a file under its MEDIA_ROOT.
    assert _files_under(s3_worker.media_root) == []
    assert _files_under(media_root) == []

    # Features: the worker reads canonical audio from the bucket.
    learner_tasks.backfill_features.delay()
    wait_until(
        lambda: ClipFeatures.objects.filter(clip__project=project).count() == len(clips),
        timeout=240,
        what="the S3 worker to compute every clip's features",
    )
    nodes = {node.key: node for node in project.taxonomy_version.nodes.all()}
    Annotation.objects.bulk_create(
        Annotation(clip=c, annotator=annotator, node=nodes[EMOTION_NODES[c.metadata["emotion"]]])
        for c in clips
    )
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"epochs": 20, "augmentation": False, "min_labelled_clips": 10},
    )
    started = api.post(f"/api/projects/{project.slug}/training-runs")
    assert started.status_code == 202, started.content
    run_id = started.json()["run"]["id"]
    wait_until(
        lambda: TrainingRun.objects.get(pk=run_id).status not in TrainingRun.OPEN,
        timeout=300,
        what="the S3 worker to train",
    )
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.reason
    version = ModelVersion.objects.get(project=project, is_active=True)
    assert prefix + version.artifact.name in set(bucket.keys())
    # This process reads the model the worker stored in the bucket.
    with (DEMO_EMODB / "wav" / "13a01Wb.wav").open("rb") as fh:
        predicted = client_for(reviewer).post(f"/api/projects/{project.slug}/predict", {"file": fh})
    assert predicted.status_code == 200, predicted.content
    assert _files_under(s3_worker.media_root) == []
    assert _files_under(media_root) == []

    # Deleting the project deletes its objects (audio and the learner's files).
    deleted = client_for(project_admin).delete(f"/api/projects/{project.slug}/")
    assert deleted.status_code == 204, deleted.content
    assert bucket.keys() == []


@pytest.mark.django_db
def test_an_archive_expands_into_staged_objects_once(s3_storage, project, media_root):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("calls/a.wav", tone_wav(0.5, 230))
        zf.writestr("calls/b.wav", tone_wav(0.5, 240))
    batch = ingest.stage_uploads(project, [SimpleUploadedFile("calls.zip", archive.getvalue())])
    item = batch.items.get()
    stale = ImportItem.objects.select_related("batch__project").get(pk=item.pk)
    assert s3_storage.get(item.staged_path) == archive.getvalue()

    ingest.process_item(item.pk)
    assert s3_storage.keys(item.staged_path) == []  # the expanded archive's object is gone
    # A concurrent worker that fetched the archive while the item was still pending: it
    # uploads the members too, loses the compare-and-set and deletes what it uploaded.
    s3_storage.server.client().put_object(
        Bucket=s3_storage.name, Key=item.staged_path, Body=archive.getvalue()
    )
    expansion.expand_archive(stale)
    s3_storage.server.client().delete_object(Bucket=s3_storage.name, Key=item.staged_path)

    members = list(ImportItem.objects.filter(batch=batch, status="pending"))
    assert sorted(m.name for m in members) == ["calls.zip/calls/a.wav", "calls.zip/calls/b.wav"]
    # Only the winner's members are staged, as objects under one folder-like prefix.
    assert s3_storage.keys(f"staging/batch-{batch.pk}/") == sorted(m.staged_path for m in members)
    assert len({m.staged_path.rsplit("/", 1)[0] for m in members}) == 1
    for member in members:
        ingest.process_item(member.pk)
    assert batch.clips.count() == 2
    assert s3_storage.keys("staging/") == []
    assert _files_under(media_root) == []


@pytest.mark.django_db
def test_an_object_store_error_on_delete_is_logged_and_the_others_go_on(
    s3_storage, settings, caplog
):
    from labelling.services import storage
    from tests.s3server import S3Server, free_port, s3_storages

    kept = default_storage.save("clips/canonical/ff/kept.wav", ContentFile(b"x"))
    # A store that does not answer (nothing listens on the port): botocore raises its own
    # EndpointConnectionError, which is not an OSError.
    down = S3Server("127.0.0.1", free_port(), s3_storage.server.process, s3_storage.server.log)
    settings.STORAGES = s3_storages(down, s3_storage.name)

    assert storage.remove_unreferenced(["clips/a.wav", "clips/b.wav"]) == []
    storage.delete_staged("staging/batch-1/u000000.wav")

    failures = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert failures == [
        "could not delete stored file clips/a.wav",
        "could not delete stored file clips/b.wav",
        "could not delete staged file staging/batch-1/u000000.wav",
    ]
    assert s3_storage.keys() == [kept]


def _client_error(status: int, code: str) -> Exception:
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")  # type: ignore[arg-type]


def test_passing_object_store_failures_are_told_from_real_answers():
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    transient = [
        EndpointConnectionError(endpoint_url="http://s3.test"),
        ReadTimeoutError(endpoint_url="http://s3.test"),
        _client_error(503, "SlowDown"),
        _client_error(500, "InternalError"),
        _client_error(400, "RequestTimeout"),
        _client_error(429, "TooManyRequests"),
    ]
    final = [
        _client_error(404, "NoSuchKey"),
        _client_error(404, "404"),
        _client_error(403, "AccessDenied"),
        ValueError("not a storage error"),
        OSError("disk"),
    ]
    assert [emoloop_storage.is_transient_error(e) for e in transient] == [True] * len(transient)
    assert [emoloop_storage.is_transient_error(e) for e in final] == [False] * len(final)

    # boto3's upload wrapper, raised while handling the real error.
    for cause, expected in ((_client_error(503, "SlowDown"), True),
                            (_client_error(403, "AccessDenied"), False)):  # fmt: skip
        with pytest.raises(S3UploadFailedError) as wrapped:
            _raise_while_handling(cause, S3UploadFailedError(f"Failed to upload: {cause}"))
        assert emoloop_storage.is_transient_error(wrapped.value) is expected
    # An unrelated error raised while handling a passing one is not passing.
    with pytest.raises(ValueError, match="bug") as unrelated:
        _raise_while_handling(_client_error(503, "SlowDown"), ValueError("bug"))
    assert emoloop_storage.is_transient_error(unrelated.value) is False


def _raise_while_handling(first: Exception, second: Exception) -> None:
    try:
        raise first
    except Exception:
        raise second  # noqa: B904 - the implicit context is what is tested


@pytest.mark.django_db
def test_a_passing_object_store_failure_keeps_the_item_and_the_task_retries_it(
    s3_storage, project, monkeypatch, media_root
):
    from botocore.exceptions import EndpointConnectionError

    from labelling import tasks

    batch = ingest.stage_uploads(project, [SimpleUploadedFile("a.wav", tone_wav(0.5, 250))])
    item = batch.items.get()
    real_copy = emoloop_storage.local_copy
    seen: list[tuple[str, list[str]]] = []

    def download_fails_once(name: str, **kwargs):
        # What the retry finds: the item still pending, its staged object still there.
        seen.append((ImportItem.objects.get(pk=item.pk).status, s3_storage.keys(name)))
        if len(seen) == 1:
            raise EndpointConnectionError(endpoint_url=s3_storage.server.endpoint_url)
        return real_copy(name, **kwargs)

    monkeypatch.setattr(emoloop_storage, "local_copy", download_fails_once)
    result = tasks.ingest_item.apply(args=(item.pk,))

    assert seen == [("pending", [item.staged_path])] * 2
    assert result.get() == "accepted"
    item.refresh_from_db()
    assert (item.status, item.clips_created) == ("accepted", 1)
    assert s3_storage.keys("staging/") == []
    assert batch.clips.count() == 1

    # Without the task: the failure propagates as StorageUnavailable, nothing is rejected.
    again = ingest.stage_uploads(project, [SimpleUploadedFile("b.wav", tone_wav(0.5, 260))])
    pending = again.items.get()
    seen.clear()
    with pytest.raises(emoloop_storage.StorageUnavailable):
        ingest.process_item(pending.pk)
    pending.refresh_from_db()
    assert pending.status == "pending"
    assert s3_storage.keys(pending.staged_path) == [pending.staged_path]


@pytest.mark.django_db
def test_a_losing_finish_leaves_the_staged_file_to_the_winner(s3_storage, project):
    from labelling.services.ingest.records import finish_item

    batch = ingest.stage_uploads(project, [SimpleUploadedFile("a.wav", tone_wav(0.5, 270))])
    item = batch.items.get()
    ImportItem.objects.filter(pk=item.pk).update(status="accepted")

    assert finish_item(item, "rejected", code="failed", reason="late") is False
    assert s3_storage.keys(item.staged_path) == [item.staged_path]
    ImportItem.objects.filter(pk=item.pk).update(status="pending")
    assert finish_item(item, "rejected", code="failed", reason="first") is True
    assert s3_storage.keys("staging/") == []
