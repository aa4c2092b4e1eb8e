"""Blind mode at every door that can carry a model's output, for every role.

In a blind project (assisted off) nobody labelling gets a suggestion (the next-clip and undo
responses), and an annotator gets no prediction from the clip prediction API, the upload
predict API, the clip detail or the ML engineer's ranking page (which lists the model's top
feeling per clip). Reviewers and above read model output where their role allows it. In an
assisted project an annotator gets the suggestion and the prediction of the clip leased to
them, and nothing else. tests/learner/test_blind_predictions.py has the gold-clip cases.
"""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
import soundfile

from labelling.models import Clip
from learner.models import ClipScore, ModelVersion, Ranking
from learner.services import suggest, training

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# What each role gets at the doors of a blind project: (clip prediction, upload predict,
# clip detail, console ranking page). An outsider does not see the project at all.
BLIND = {
    "second_annotator": (403, 403, 403, 403),
    "reviewer": (200, 200, 200, 403),
    "engineer": (200, 200, 200, 200),
    "project_admin": (200, 200, 200, 200),
    "outsider": (404, 404, 404, 404),
}
PREDICTION_WORDS = ("probabilit", "model_version", "top_core")


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
    """The labelled project with an active model and a complete ranking by it."""
    run, _ = training.open_run(labelled_project, trigger="manual")
    assert training.run_training(run.pk).model_version is not None
    version = ModelVersion.objects.get(project=labelled_project, is_active=True)
    ranking = Ranking.objects.create(
        project=labelled_project, model_version=version, strategy="uncertain_kcenter",
        status=Ranking.Status.COMPLETE, pool_size=1, selected=1,
    )  # fmt: skip
    clip = Clip.objects.filter(project=labelled_project).first()
    ClipScore.objects.create(ranking=ranking, clip=clip, score=0.9, top_core="sad",
                             top_probability=0.61, selected=True)  # fmt: skip
    return labelled_project


def _no_prediction(payload: dict) -> None:
    assert payload["suggestion"] is None
    text = json.dumps(payload)
    assert not any(word in text for word in PREDICTION_WORDS), text


@pytest.mark.parametrize("who", ["second_annotator", "reviewer", "engineer", "project_admin"])
def test_nobody_labelling_a_blind_project_gets_a_suggestion(
    request, model_project, who, client_for
):
    project = model_project
    assert not project.assisted
    user = request.getfixturevalue(who)
    client = client_for(user)

    leased = client.post(f"/api/projects/{project.slug}/next/")
    assert leased.status_code == 200
    _no_prediction(leased.json())
    submitted = client.post(f"/api/projects/{project.slug}/annotations/", {
        "lease": leased.json()["lease"]["id"], "client_id": str(uuid.uuid4()), "node": "mad",
    }, format="json")  # fmt: skip
    assert submitted.status_code in (200, 201), submitted.content
    revising = client.post(f"/api/projects/{project.slug}/undo/")
    assert revising.status_code == 200
    _no_prediction(revising.json())
    # The provider itself refuses too, whoever calls it (defence in depth).
    assert suggest.suggest(project, leased.json()["clip"]["id"]) is None


@pytest.mark.parametrize("who", sorted(BLIND))
def test_the_prediction_doors_of_a_blind_project_by_role(
    request, model_project, who, client_for, client
):
    project = model_project
    prediction, upload, detail, page = BLIND[who]
    user = request.getfixturevalue(who)
    api = client_for(user)
    clip = Clip.objects.filter(project=project).first()
    if who == "second_annotator":  # even the clip leased to them
        leased = api.post(f"/api/projects/{project.slug}/next/").json()
        clip = Clip.objects.get(pk=leased["clip"]["id"])

    got = api.get(f"/api/clips/{clip.pk}/prediction")
    assert got.status_code == prediction
    posted = api.post(f"/api/projects/{project.slug}/predict", {"file": _wav()}, format="multipart")
    assert posted.status_code == upload
    shown = api.get(f"/api/clips/{clip.pk}/")
    assert shown.status_code == detail
    client.force_login(user)
    html = client.get(f"/projects/{project.slug}/ranking/")
    assert html.status_code == page
    for response, status in ((got, prediction), (posted, upload), (shown, detail)):
        if status != 200:
            body = response.content.decode()
            assert not any(word in body for word in PREDICTION_WORDS), body
    if page != 200:
        assert "sad (0.61)" not in html.content.decode()
    else:
        assert "sad (0.61)" in html.content.decode()


def test_an_assisted_annotator_gets_the_suggestion_and_prediction_of_their_clip_only(
    model_project, second_annotator, client_for
):
    project = model_project
    project.assisted = True
    project.save(update_fields=["assisted"])
    api = client_for(second_annotator)

    leased = api.post(f"/api/projects/{project.slug}/next/").json()
    mine = leased["clip"]["id"]
    other = Clip.objects.filter(project=project).exclude(pk=mine).first()

    assert leased["suggestion"]["model_version"] == 1
    assert suggest.suggest(project, mine) == leased["suggestion"]
    assert api.get(f"/api/clips/{mine}/prediction").status_code == 200
    assert api.get(f"/api/clips/{other.pk}/prediction").status_code == 403
    assert api.get(f"/api/clips/{mine}/").status_code == 403
