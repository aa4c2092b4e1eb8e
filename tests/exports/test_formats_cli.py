"""`manage.py export --format`: a format written to --out, as a folder or a zip; what is
refused before anything is built. (Each export builds a version: seconds each.)"""

from __future__ import annotations

import json
import zipfile

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from exports.core.archive import verify_sha256sums
from exports.models import DatasetVersion
from tests.exports.native_fixture import label_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(project, annotator, second_annotator):
    label_project(project, [annotator, second_annotator])


@pytest.mark.slow
def test_the_command_writes_a_format_folder(project, labelled, tmp_path):
    call_command("export", "callcentre", "--format", "hf", "--out", str(tmp_path), verbosity=0)

    folder = tmp_path / "callcentre-v1-hf"
    assert verify_sha256sums(folder) == []
    rows = sum(pq.read_metadata(path).num_rows for path in folder.glob("*/metadata.parquet"))
    assert rows == 6
    assert DatasetVersion.objects.get(project=project).status == "ready"
    assert [p.name for p in tmp_path.iterdir()] == ["callcentre-v1-hf"]


@pytest.mark.slow
def test_the_command_zips_a_format(project, labelled, tmp_path):
    call_command("export", "callcentre", "--format", "labelstudio", "--zip", "--out",
                 str(tmp_path), verbosity=0)  # fmt: skip

    with zipfile.ZipFile(tmp_path / "callcentre-v1-labelstudio.zip") as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        tasks = json.loads(archive.read("tasks.json"))
    assert {"tasks.json", "config.xml", "SHA256SUMS", "version.json"} <= set(names)
    assert len(tasks) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["callcentre-v1-labelstudio.zip"]


def test_a_format_without_out_is_refused_before_building(project):
    with pytest.raises(CommandError, match="give --out"):
        call_command("export", "callcentre", "--format", "hf", verbosity=0)

    assert not DatasetVersion.objects.filter(project=project).exists()


def test_an_unknown_format_is_refused(project, tmp_path):
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("export", "callcentre", "--format", "csv", "--out", str(tmp_path))

    assert not DatasetVersion.objects.filter(project=project).exists()
