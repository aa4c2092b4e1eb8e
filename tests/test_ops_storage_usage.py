"""Storage usage per top-level folder (ops.services.storage.measure) on each kind of
storage: a local MEDIA_ROOT, S3 (a real moto server, with and without a key prefix) and,
through `manage.py ops_status --measure-storage`, whatever default_storage is."""

from __future__ import annotations

import json

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from ops.models import StorageReport
from ops.services import celery_state, storage
from tests.s3server import S3Bucket, use_bucket

FILES = {
    "audio/p1/a.wav": 100,
    "audio/p1/b.wav": 50,
    "audio/p2/c.wav": 7,
    "models/m1/model.pt": 1000,
    "loose.txt": 3,
}
EXPECTED = [
    {"folder": "audio", "bytes": 157, "files": 3},
    {"folder": "models", "bytes": 1000, "files": 1},
    {"folder": "(top level)", "bytes": 3, "files": 1},
]


def _fill() -> None:
    for name, size in FILES.items():
        assert default_storage.save(name, ContentFile(b"x" * size)) == name


def test_a_local_media_root_is_walked_per_top_folder(db, media_root):
    _fill()
    usage = storage.measure()
    assert usage["root"] == str(media_root)
    assert usage["folders"] == EXPECTED
    assert usage["total_bytes"] == 1160


def test_an_s3_bucket_is_listed_per_top_folder_under_its_prefix(db, s3_storage, settings):
    use_bucket(settings, S3Bucket(s3_storage.server, s3_storage.name, prefix="site-a"))
    _fill()
    s3_storage.server.client().put_object(Bucket=s3_storage.name, Key="other/x.bin", Body=b"y")
    assert sorted(s3_storage.keys("site-a/")) == sorted(f"site-a/{k}" for k in FILES)

    usage = storage.measure()

    assert usage["root"] == f"s3://{s3_storage.name}/site-a/"
    assert usage["folders"] == EXPECTED  # nothing outside the prefix
    assert usage["total_bytes"] == 1160
    assert StorageReport.objects.get(pk=1).folders == EXPECTED


def test_more_than_one_page_of_keys_is_counted_and_the_bound_is_said(db, s3_storage, settings):
    client = s3_storage.server.client()
    for i in range(1005):  # list_objects_v2 answers 1,000 keys a page
        client.put_object(Bucket=s3_storage.name, Key=f"peaks/{i:05d}.json", Body=b"12")
    assert storage.measure()["folders"] == [{"folder": "peaks", "bytes": 2010, "files": 1005}]

    settings.OPS_STORAGE_MAX_OBJECTS = 10
    usage = storage.measure()
    assert usage["folders"] == [{"folder": "peaks", "bytes": 20, "files": 10}]
    assert usage["root"].endswith("(stopped after 10 files: OPS_STORAGE_MAX_OBJECTS)")


def test_ops_status_measures_the_s3_storage(db, s3_storage, capsys, settings):
    settings.OPS_READYZ_TIMEOUT_SECONDS = 30  # a loaded machine; 2 s in production
    _fill()
    celery_state.note_heartbeat("usage@host")  # ready: the command exits 0
    call_command("ops_status", "--measure-storage")
    report = json.loads(capsys.readouterr().out)
    assert report["storage"]["folders"] == EXPECTED
    assert {name: c["ok"] for name, c in report["checks"].items()} == dict.fromkeys(
        ("database", "cache", "broker", "storage", "worker"), True
    )
