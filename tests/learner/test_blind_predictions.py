"""Blind labelling stays blind: model output reaches an annotator only as the queue's
suggestion, in an assisted project, on a non-gold clip leased to them."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from labelling import queue_api
from labelling.models import Clip, Lease
from labelling.services import queue
from learner.services import training

pytestmark = pytest.mark.django_db


class _AlwaysGold:
    """An rng whose draw always falls under the project's gold rate."""

    @staticmethod
    def random() -> float:
        return 0.0


def _trained(project) -> None:
    run, _ = training.open_run(project, trigger="manual")
    assert training.run_training(run.pk).model_version is not None


def _wav() -> io.BytesIO:
    t = np.arange(16000) / 16000
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 180 * t)).astype("float32"), 16000,
                    format="WAV")  # fmt: skip
    buffer.seek(0)
    buffer.name = "probe.wav"
    return buffer


@pytest.fixture
def model_project(labelled_project):
    _trained(labelled_project)
    return labelled_project


def test_a_blind_project_shows_annotators_no_prediction_through_any_door(
    model_project, second_annotator, reviewer, client_for
):
    project = model_project
    assert not project.assisted
    annotator = client_for(second_annotator)
    leased = annotator.post(f"/api/projects/{project.slug}/next/").json()
    clip_id = leased["clip"]["id"]

    assert leased["suggestion"] is None
    refused = annotator.get(f"/api/clips/{clip_id}/prediction")
    assert refused.status_code == 403
    assert refused.json()["code"] == "role_required"
    assert "probability" not in refused.content.decode()
    upload = annotator.post(
        f"/api/projects/{project.slug}/predict", {"file": _wav()}, format="multipart"
    )
    assert upload.status_code == 403
    # Reviewers read model output.
    assert client_for(reviewer).get(f"/api/clips/{clip_id}/prediction").status_code == 200


def test_an_assisted_project_suggests_only_on_the_clip_being_labelled(
    model_project, second_annotator, client_for
):
    project = model_project
    project.assisted = True
    project.save(update_fields=["assisted"])
    annotator = client_for(second_annotator)
    leased = annotator.post(f"/api/projects/{project.slug}/next/").json()
    other = Clip.objects.filter(project=project).exclude(pk=leased["clip"]["id"]).first()

    assert leased["suggestion"] is not None
    assert annotator.get(f"/api/clips/{leased['clip']['id']}/prediction").status_code == 200
    assert annotator.get(f"/api/clips/{other.pk}/prediction").status_code == 403
    assert (
        annotator.post(
            f"/api/projects/{project.slug}/predict", {"file": _wav()}, format="multipart"
        ).status_code
        == 403
    )


def test_a_gold_clip_never_shows_a_suggestion(
    model_project, second_annotator, reviewer, client_for
):
    project = model_project
    project.assisted = True
    project.gold_rate = 0.5
    project.save(update_fields=["assisted", "gold_rate"])
    gold_clip = Clip.objects.filter(project=project).first()
    marked = client_for(reviewer).post(f"/api/clips/{gold_clip.pk}/gold/", {"node": "mad"})
    assert marked.status_code == 201

    leased = queue.next_clip(project, second_annotator, rng=_AlwaysGold())
    payload = queue_api.leased_payload(project, leased)

    assert leased.clip.pk == gold_clip.pk
    assert Lease.objects.get(pk=leased.lease.pk).is_gold
    assert payload["suggestion"] is None
    response = client_for(second_annotator).get(f"/api/clips/{gold_clip.pk}/prediction")
    assert response.status_code == 403


def test_deleting_the_project_removes_its_models_and_plots(
    model_project, project_admin, client_for, django_capture_on_commit_callbacks
):
    from django.core.files.storage import default_storage

    from learner.models import ModelVersion

    version = ModelVersion.objects.get(project=model_project)
    names = [version.artifact.name, version.confusion_image.name, version.calibration_image.name]
    assert all(default_storage.exists(name) for name in names)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(project_admin).delete(f"/api/projects/{model_project.slug}/")

    assert response.status_code == 204
    assert not any(default_storage.exists(name) for name in names)
