"""`manage.py backup` and `restore` on PostgreSQL: a project with ingested EmoDB clips,
annotations and a model artifact is backed up, then restored by a separate process into a
different, freshly created database and a different media folder; the test compares every
table's row count and every file's SHA-256 itself (not through the code under test).

The target database is named after this run's test database (`<test db>_restore`), so two
checkouts testing on one server do not meet; it is dropped before and after each test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection

from labelling.models import Clip, Role, TaxonomyNode
from learner.models import ModelVersion
from tests.conftest import REPO, make_user
from tests.factories import AnnotationFactory
from tests.s3server import S3Bucket

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIPS = 6


# --- Reading databases and folders independently of the code under test -----------------


def _connect(name: str) -> Any:
    s = connection.settings_dict
    return psycopg2.connect(
        dbname=name, host=s["HOST"] or None, port=s["PORT"] or None,
        user=s["USER"] or None, password=s["PASSWORD"] or None,
    )  # fmt: skip


def row_counts(name: str) -> dict[str, int]:
    with _connect(name) as db, db.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = sorted(row[0] for row in cur.fetchall())
        counts = {}
        for table in tables:
            cur.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - names from pg_tables
            counts[table] = cur.fetchone()[0]
    db.close()
    return counts


def column(name: str, sql: str) -> list[Any]:
    with _connect(name) as db, db.cursor() as cur:
        cur.execute(sql)
        rows = [tuple(row) for row in cur.fetchall()]
    db.close()
    return rows


def checksums(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- The target database and the restoring process --------------------------------------


def _admin(sql: str) -> None:
    db = _connect("postgres")
    db.autocommit = True
    try:
        with db.cursor() as cur:
            cur.execute(sql)
    finally:
        db.close()


@pytest.fixture
def target(tmp_path) -> Iterator[dict[str, Any]]:
    """A fresh, empty database of our own and an empty media folder, and how to run
    `manage.py` on them in a process of its own."""
    name = f"{connection.settings_dict['NAME']}_restore"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    media = tmp_path / "restored-media"
    media.mkdir()
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    env = {  # the test may add to it (another bucket) before it runs `manage`
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}@{s['HOST']}:{s['PORT'] or 5432}/{name}",
        "MEDIA_ROOT": str(media),
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    yield {"name": name, "media": media, "manage": manage, "env": env}
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- A project worth backing up ---------------------------------------------------------


@pytest.fixture
def world(project, emodb, tmp_path) -> dict[str, Any]:
    """EmoDB clips ingested through the ingest command, two annotators' labels, and a model
    version with its artifact."""
    rows = list(csv.DictReader((emodb / "labels.csv").open()))[:CLIPS]
    folder = tmp_path / "upload"
    (folder / "wav").mkdir(parents=True)
    for row in rows:
        shutil.copyfile(emodb / "wav" / row["file"], folder / "wav" / row["file"])
    with (folder / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    call_command(
        "ingest", project.slug, str(folder / "wav"), manifest=str(folder / "labels.csv"),
        in_process=True, source="corpus", verbosity=0, stdout=io.StringIO(),
    )  # fmt: skip
    clips = list(Clip.objects.filter(project=project))
    assert len(clips) == CLIPS
    nodes = list(TaxonomyNode.objects.filter(version=project.taxonomy_version, level=0))
    for i, username in enumerate(["ann-a", "ann-b"]):
        user = make_user(username)
        project.memberships.create(user=user, role=Role.ANNOTATOR)
        for j, clip in enumerate(clips):
            AnnotationFactory(clip=clip, annotator=user, node=nodes[(i + j) % len(nodes)])
    artifact = default_storage.save("learner/models/backup-test.pt", ContentFile(b"\x00w" * 999))
    ModelVersion.objects.create(
        project=project, number=1, extractor="acoustic", extractor_version="1",
        artifact=artifact, artifact_sha256=hashlib.sha256(b"\x00w" * 999).hexdigest(),
    )  # fmt: skip
    return {"clips": clips}


def backup(out: Path, *extra: str) -> str:
    stdout = io.StringIO()
    call_command("backup", "--out", str(out), *extra, verbosity=0, stdout=stdout)
    return stdout.getvalue()


def source_db() -> str:
    return str(connection.settings_dict["NAME"])


def assert_same(
    target: dict[str, Any],
    media_root: Path | None,
    files: tuple[dict[str, str], dict[str, str]] | None = None,
) -> None:
    """Every table's rows and every file's SHA-256 equal the source's (the files of the two
    media folders, or the `files` given: source, restored)."""
    source_counts, restored_counts = row_counts(source_db()), row_counts(target["name"])
    assert restored_counts == source_counts
    assert source_counts["labelling_clip"] == CLIPS
    assert source_counts["labelling_annotation"] == 2 * CLIPS
    assert source_counts["learner_modelversion"] == 1
    clip_files = "SELECT sha256, original, canonical FROM labelling_clip ORDER BY sha256"
    assert column(target["name"], clip_files) == column(source_db(), clip_files)
    source_files, restored_files = files or (checksums(media_root), checksums(target["media"]))
    assert len(source_files) >= 2 * CLIPS + 1  # originals, canonical audio, the artifact
    assert restored_files == source_files


# --- Tests ------------------------------------------------------------------------------


def test_a_backup_restores_into_a_fresh_database_and_store_with_every_row_and_file(
    world, target, media_root, tmp_path
):
    out = tmp_path / "backups" / "nightly"
    said = backup(out)

    assert "Backup complete" in said
    assert sorted(p.name for p in out.parent.iterdir()) == ["nightly"]  # no .partial left
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tables"] == row_counts(source_db())
    assert manifest["migrations"]["labelling"].startswith("00")
    assert manifest["objects"]["count"] == len(checksums(media_root))

    done = target["manage"]("restore", str(out))
    assert done.returncode == 0, done.stderr
    assert "Verified" in done.stdout
    assert_same(target, media_root)

    refused = target["manage"]("restore", str(out))
    assert refused.returncode == 1
    assert "target database is not empty" in refused.stderr
    assert "nothing was changed" in refused.stderr

    again = target["manage"]("restore", str(out), "--force")
    assert again.returncode == 0, again.stderr
    assert f"0 written, {manifest['objects']['count']} already there" in again.stdout
    assert_same(target, media_root)


def test_a_tar_backup_restores_the_same(world, target, media_root, tmp_path):
    archive = tmp_path / "nightly.tar"
    backup(archive)
    assert sorted(p.name for p in tmp_path.iterdir() if "nightly" in p.name) == ["nightly.tar"]
    assert archive.stat().st_mode & 0o077 == 0  # the owner's alone: it holds password hashes

    done = target["manage"]("restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert_same(target, media_root)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".restore-")]


def test_a_corrupted_file_in_the_backup_is_named_and_nothing_is_restored(world, target, tmp_path):
    out = tmp_path / "nightly"
    backup(out)
    victim = world["clips"][0].canonical.name
    damaged = out / "media" / victim
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x01")

    done = target["manage"]("restore", str(out))

    assert done.returncode == 1
    assert "the backup is damaged" in done.stderr
    assert victim in done.stderr
    assert row_counts(target["name"]) == {}  # not a table created
    assert checksums(target["media"]) == {}


def test_a_truncated_dump_or_an_interrupted_backup_is_refused(world, tmp_path):
    before = row_counts(source_db())
    out = tmp_path / "nightly"
    backup(out)
    dump = out / "database.dump"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    with pytest.raises(CommandError, match=r"database dump .*database\.dump .*truncated"):
        call_command("restore", str(out), "--force", verbosity=0)

    interrupted = tmp_path / "other"
    backup(interrupted)
    (interrupted / "COMPLETE").unlink()  # what a backup killed before its end leaves
    with pytest.raises(CommandError, match="not a complete backup"):
        call_command("restore", str(interrupted), "--force", verbosity=0)
    assert row_counts(source_db()) == before


def test_a_backup_from_newer_code_is_refused(world, tmp_path):
    out = tmp_path / "nightly"
    backup(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["migrations"]["labelling"] = "9999_from_the_future"
    raw = (json.dumps(manifest) + "\n").encode()
    (out / "manifest.json").write_bytes(raw)
    (out / "COMPLETE").write_text(
        json.dumps({"format": "emoloop-backup", "manifest_sha256": hashlib.sha256(raw).hexdigest()})
    )

    with pytest.raises(CommandError, match=r"labelling\.9999_from_the_future.*newer code"):
        call_command("restore", str(out), "--force", verbosity=0)


def test_a_target_with_tables_the_backup_does_not_hold_is_refused(world, tmp_path):
    # As after `migrate` by newer code: the restore would leave that table behind and the
    # next `migrate` would fail on it.
    out = tmp_path / "nightly"
    backup(out)
    assert out.stat().st_mode & 0o077 == 0  # the owner's alone: it holds password hashes
    clips = Clip.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE newer_code_table (id integer)")
    try:
        with pytest.raises(CommandError, match=r"tables the backup does not hold \(newer_code_"):
            call_command("restore", str(out), "--force", verbosity=0)
        assert Clip.objects.count() == clips
    finally:  # the world is committed (a transactional test): leave no table behind
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS newer_code_table")


def test_a_backup_target_that_exists_is_refused(world, tmp_path):
    (tmp_path / "nightly").mkdir()
    (tmp_path / "other.partial").mkdir()
    with pytest.raises(CommandError, match="exists: choose another target"):
        backup(tmp_path / "nightly")
    with pytest.raises(CommandError, match=r"other\.partial exists.*interrupted backup"):
        backup(tmp_path / "other")


def test_a_manifest_only_backup_checks_the_store_it_did_not_copy(
    world, target, media_root, tmp_path
):
    out = tmp_path / "nightly"
    said = backup(out, "--manifest-only")
    assert "listed only" in said
    assert not (out / "media").exists()

    missing = target["manage"]("restore", str(out))  # an empty store: every object missing
    assert missing.returncode == 1
    assert f"{world['clips'][0].canonical.name}: missing from the store" in missing.stderr
    assert "Verification failed" in missing.stderr

    shutil.copytree(media_root, target["media"], dirs_exist_ok=True)  # the replica
    done = target["manage"]("restore", str(out), "--force")
    assert done.returncode == 0, done.stderr
    assert_same(target, media_root)


def bucket_checksums(bucket: S3Bucket) -> dict[str, str]:
    listed = bucket.keys()  # S3Bucket.keys(): every key in the bucket
    return {key: hashlib.sha256(bucket.get(key)).hexdigest() for key in listed}


def test_an_s3_store_is_backed_up_and_restored_into_another_bucket(
    s3_storage, world, target, tmp_path
):
    server = s3_storage.server
    other = S3Bucket(server, server.create_bucket())
    target["env"].update(other.env())
    try:
        out = tmp_path / "nightly"
        backup(out)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["storage"]["backend"] == "storages.backends.s3.S3Storage"
        assert manifest["objects"]["count"] == len(s3_storage.keys())

        done = target["manage"]("restore", str(out))
        assert done.returncode == 0, done.stderr
        assert_same(target, None, (bucket_checksums(s3_storage), bucket_checksums(other)))
        assert checksums(target["media"]) == {}  # all of it went to the bucket

        other.server.client().put_object(
            Bucket=other.name, Key=world["clips"][1].original.name, Body=b"bit rot"
        )
        again = target["manage"]("restore", str(out), "--force")
        assert again.returncode == 0, again.stderr
        assert f"1 written, {manifest['objects']['count'] - 1} already there" in again.stdout
        assert bucket_checksums(other) == bucket_checksums(s3_storage)
    finally:
        server.empty(other.name)


def sqlite_counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # noqa: S608
    finally:
        db.close()


def test_an_sqlite_instance_is_backed_up_and_restored_as_make_run_keeps_it(tmp_path):
    """`make run`'s embedded database: SQLite's backup API on both sides, in processes of
    their own (this suite's own database is PostgreSQL)."""

    def manage(db: Path, media: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "MEDIA_ROOT": str(media)}
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    source, media = tmp_path / "source.sqlite3", tmp_path / "media"
    assert manage(source, media, "migrate", "-v", "0").returncode == 0
    seeded = manage(source, media, "shell", "-c", (
        "from django.contrib.auth.models import User; "
        "from django.core.files.base import ContentFile; "
        "from django.core.files.storage import default_storage as s; "
        "User.objects.create_user('keeper', password='pw-keeper'); "
        "s.save('learner/models/a.pt', ContentFile(b'weights' * 5000)); "
        "s.save('clips/canonical/ab/ab12.wav', ContentFile(b'RIFF' * 999))"
    ))  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    made = manage(source, media, "backup", "--out", str(tmp_path / "nightly"), "-v", "0")
    assert made.returncode == 0, made.stderr

    restored, restored_media = tmp_path / "restored.sqlite3", tmp_path / "restored-media"
    done = manage(restored, restored_media, "restore", str(tmp_path / "nightly"), "-v", "0")

    assert done.returncode == 0, done.stderr
    counts = sqlite_counts(source)
    assert counts["auth_user"] == 1
    assert sqlite_counts(restored) == counts
    assert len(checksums(media)) == 2
    assert checksums(restored_media) == checksums(media)
    refused = manage(restored, restored_media, "restore", str(tmp_path / "nightly"))
    assert refused.returncode == 1
    assert "auth_user" in refused.stderr


def _fake_tool(folder: Path, name: str, version_line: str) -> None:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    tool.chmod(0o755)


def test_a_missing_or_mismatched_pg_dump_is_refused_and_leaves_nothing(
    world, tmp_path, monkeypatch
):
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    empty, other = tmp_path / "empty-bin", tmp_path / "other-bin"
    empty.mkdir()
    _fake_tool(other, "pg_dump", f"pg_dump (PostgreSQL) {major - 1}.4")

    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CommandError, match=f"pg_dump was not found.*postgresql-client-{major}"):
        backup(tmp_path / "out" / "nightly")
    monkeypatch.setenv("PATH", str(other))
    with pytest.raises(CommandError, match=f"{major - 1}.4.*the server is PostgreSQL {major}"):
        backup(tmp_path / "out" / "nightly")
    assert list((tmp_path / "out").iterdir()) == []  # no .partial left behind


def test_a_backup_inside_the_media_folder_is_refused(world, media_root):
    with pytest.raises(CommandError, match="inside the media folder"):
        backup(media_root / "backups" / "nightly")
