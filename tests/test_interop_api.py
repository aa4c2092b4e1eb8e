"""The interop API doors (ML engineer): corpus import through the worker, predictions and a
Label Studio export; refusals answer 400 with every problem and write nothing; annotators
and reviewers 403 (the access matrix covers every role and non-members)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labelling.models import Annotation, Clip, ImportBatch, LabelSource, WeakLabel
from tests.conftest import wait_until
from tests.factories import ClipFactory, tone_wav

LABELS = b"file,speaker,gender,age,emotion\na.wav,s1,f,41,W\nb.wav,s2,m,29,happiness\n"


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("wav/a.wav", tone_wav(0.6, 230))
        zf.writestr("wav/b.wav", tone_wav(0.6, 330))
    return buffer.getvalue()


def _corpus_body(labels: bytes = LABELS) -> dict:
    return {
        "audio": SimpleUploadedFile("corpus.zip", _archive()),
        "labels": SimpleUploadedFile("labels.csv", labels),
        "preset": "emodb",
    }


@pytest.mark.celery
def test_a_corpus_uploaded_by_an_engineer_is_ingested_by_the_worker_with_its_labels(
    worker, client_for, project, engineer
):
    url = f"/api/projects/{project.slug}/corpus-imports/"
    response = client_for(engineer).post(url, _corpus_body(), format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["labels"], body["new_files"], body["dropped"]) == (2, 2, 0)
    batch_id = body["batch"]["id"]
    wait_until(
        lambda: ImportBatch.objects.get(pk=batch_id).status == ImportBatch.Status.DONE,
        timeout=120,
        what="the worker to finish the corpus batch",
    )
    got = {
        (a.clip.original_name, a.node.key, a.annotator.username, a.label_source)
        for a in Annotation.objects.select_related("clip", "node", "annotator")
    }
    assert got == {
        ("a.wav", "mad.angry", "corpus:emodb", LabelSource.CORPUS),
        ("b.wav", "joyful", "corpus:emodb", LabelSource.CORPUS),
    }
    assert Clip.objects.get(original_name="a.wav").speaker_id == "s1"


@pytest.mark.django_db
def test_a_refused_corpus_answers_400_with_the_problems_and_writes_nothing(
    client_for, project, engineer
):
    labels = LABELS + b"c.wav,s3,f,30,contempt\n"
    response = client_for(engineer).post(
        f"/api/projects/{project.slug}/corpus-imports/", _corpus_body(labels), format="multipart"
    )
    assert response.status_code == 400
    problems = " ".join(response.json()["errors"]["problems"])
    assert "'contempt'" in problems
    assert not Clip.objects.exists()
    assert not ImportBatch.objects.exists()


@pytest.mark.django_db
def test_predictions_and_a_labelstudio_export_through_the_api(client_for, project, engineer):
    ClipFactory(project=project, original_name="a.wav")
    api = client_for(engineer)
    predictions = SimpleUploadedFile("p.csv", b"file,mad,sad\na.wav,0.9,0.1\n")
    response = api.post(
        f"/api/projects/{project.slug}/predictions/",
        {"file": predictions, "model": "m", "model_version": "2"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"rows": 1, "created": 1, "unchanged": 0}
    weak = WeakLabel.objects.get()
    assert weak.imported_by == engineer
    assert weak.source_file == "p.csv"

    export = [{"data": {"audio": "/data/upload/1/a.wav"},
               "annotations": [{"completed_by": 3, "result": [
                   {"type": "choices", "value": {"choices": ["Joyful"]}}]}]}]  # fmt: skip
    response = api.post(
        f"/api/projects/{project.slug}/labelstudio-imports/",
        {"file": SimpleUploadedFile("ls.json", json.dumps(export).encode())},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"tasks": 1, "labels": 1, "annotations_written": 1}
    assert Annotation.objects.get().annotator.username == "labelstudio:3"


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_annotators_and_reviewers_may_not_import(client_for, project, who, request):
    api = client_for(request.getfixturevalue(who))
    for path in ("corpus-imports", "predictions", "labelstudio-imports"):
        response = api.post(f"/api/projects/{project.slug}/{path}/", {}, format="multipart")
        assert response.status_code == 403, path
