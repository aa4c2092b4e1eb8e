"""The learner API: predict, models, training runs, settings; permissions by project role
(docs/security.md: predictions are for reviewers; an annotator sees one only as the assisted
mode's suggestion on the clip they hold)."""

from __future__ import annotations

import json

import pytest

from labelling.models import Clip
from learner.models import ModelVersion, TrainingRun
from learner.services import training

pytestmark = [pytest.mark.django_db]


def trained(project) -> ModelVersion:
    run, _ = training.open_run(project, trigger="manual")
    return training.run_training(run.pk).model_version


def upload(emodb, name: str = "03a01Fa.wav"):
    return (emodb / "wav" / name).open("rb")


def test_predict_returns_every_node_at_every_level(labelled_project, reviewer, client_for, emodb):
    trained(labelled_project)

    with upload(emodb) as fh:
        response = client_for(reviewer).post(
            "/api/projects/callcentre/predict", {"file": fh, "speaker_id": "03"}
        )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == 1
    assert body["feature_set"] == "acoustic"
    assert body["normalisation"] == "speaker"
    assert [level["level"] for level in body["levels"]] == [0, 1, 2]
    assert [len(level["nodes"]) for level in body["levels"]] == [6, 36, 72]
    for level in body["levels"]:
        assert sum(n["probability"] for n in level["nodes"]) == pytest.approx(1, abs=1e-4)
        probs = [n["probability"] for n in level["nodes"]]
        assert probs == sorted(probs, reverse=True)
    assert {"key", "name", "probability"} == set(body["levels"][0]["nodes"][0])


def test_an_unknown_speaker_is_normalised_with_global_statistics(
    labelled_project, reviewer, client_for, emodb
):
    trained(labelled_project)
    with upload(emodb) as fh:
        body = client_for(reviewer).post(
            "/api/projects/callcentre/predict", {"file": fh, "speaker_id": "nobody"}
        )
    assert body.json()["normalisation"] == "global"


def test_predict_without_a_model_says_so(project, reviewer, client_for, emodb):
    with upload(emodb) as fh:
        response = client_for(reviewer).post("/api/projects/callcentre/predict", {"file": fh})
    assert response.status_code == 409
    assert "no trained model" in response.json()["detail"]


def test_predict_refuses_a_file_that_is_not_audio(project, reviewer, client_for, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("hello, this is not audio")
    with bad.open("rb") as fh:
        response = client_for(reviewer).post("/api/projects/callcentre/predict", {"file": fh})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["errors"]["file"]


def test_annotators_may_not_predict_uploads(labelled_project, annotator, client_for, emodb):
    trained(labelled_project)
    with upload(emodb) as fh:
        response = client_for(annotator).post("/api/projects/callcentre/predict", {"file": fh})
    assert response.status_code == 403
    assert response.json()["code"] == "role_required"


def test_outsiders_cannot_see_the_project(project, outsider, client_for, emodb):
    client = client_for(outsider)
    with upload(emodb) as fh:
        assert client.post("/api/projects/callcentre/predict", {"file": fh}).status_code == 404
    assert client.get("/api/projects/callcentre/models").status_code == 404
    assert client.post("/api/projects/callcentre/training-runs").status_code == 404


def test_only_ml_engineers_start_trainings_and_a_second_request_gets_the_same_run(
    project, annotator, engineer, client_for
):
    assert client_for(annotator).post("/api/projects/callcentre/training-runs").status_code == 403

    first = client_for(engineer).post("/api/projects/callcentre/training-runs", {}, format="json")
    second = client_for(engineer).post(
        "/api/projects/callcentre/training-runs", {"feature_set": "acoustic"}, format="json"
    )

    assert first.status_code == second.status_code == 202
    assert first.json()["created"] is True
    assert second.json()["created"] is False
    assert first.json()["run"]["id"] == second.json()["run"]["id"]
    assert first.json()["run"]["requested_by"] == "emil"
    assert TrainingRun.objects.count() == 1


def test_starting_a_training_queues_its_task_after_commit(
    project, engineer, client_for, django_capture_on_commit_callbacks, monkeypatch
):
    from learner import tasks

    sent = []
    monkeypatch.setattr(
        tasks.train_model, "apply_async", lambda args=(), kwargs=None, **_: sent.append(args)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(engineer).post("/api/projects/callcentre/training-runs")

    assert response.status_code == 202
    assert sent == [], "nothing is published before the run is committed"
    for callback in callbacks:
        callback()
    run_id = response.json()["run"]["id"]
    assert sent == [(run_id,)]
    assert json.loads(json.dumps(sent[0])) == [run_id]  # the payload survives JSON
    assert TrainingRun.objects.get(pk=run_id).dispatched_at is not None


def test_models_and_runs_are_listed_for_reviewers_and_can_be_rolled_back(
    labelled_project, reviewer, engineer, annotator, client_for
):
    first = trained(labelled_project)
    trained(labelled_project)

    listing = client_for(reviewer).get("/api/projects/callcentre/models").json()
    assert [v["number"] for v in listing] == [2, 1]
    assert listing[0]["is_active"]
    assert listing[0]["metrics"]["uar"] is not None
    runs = client_for(reviewer).get("/api/projects/callcentre/training-runs").json()
    assert [r["model_version"] for r in runs] == [2, 1]
    assert client_for(annotator).get("/api/projects/callcentre/models").status_code == 403
    assert (
        client_for(reviewer).post("/api/projects/callcentre/models/1/activate").status_code == 403
    )

    response = client_for(engineer).post("/api/projects/callcentre/models/1/activate")

    assert response.status_code == 200
    assert response.json()["is_active"]
    first.refresh_from_db()
    assert first.is_active
    assert client_for(reviewer).get("/api/projects/callcentre/models/9").status_code == 404


def test_learner_settings_are_read_by_reviewers_and_changed_by_engineers(
    project, reviewer, engineer, client_for
):
    url = "/api/projects/callcentre/learner-settings"
    assert client_for(reviewer).get(url).json()["feature_set"] == "acoustic"
    assert client_for(reviewer).patch(url, {"epochs": 5}, format="json").status_code == 403

    bad = client_for(engineer).patch(url, {"feature_set": "nonsense"}, format="json")
    good = client_for(engineer).patch(
        url, {"speaker_normalisation": "off", "retrain_after_labels": 200}, format="json"
    )

    assert bad.status_code == 400
    assert good.status_code == 200
    assert good.json()["speaker_normalisation"] == "off"
    assert project.learner_settings.retrain_after_labels == 200


def test_the_feature_sets_say_which_can_run_here(annotator, client_for):
    body = client_for(annotator).get("/api/learner/feature-sets").json()
    by_name = {row["name"]: row for row in body}
    assert by_name["acoustic"]["available"]
    assert by_name["acoustic"]["dim"] > 100
    assert not by_name["ssl"]["available"]


def test_a_reviewer_gets_a_clips_prediction_in_few_queries(
    labelled_project, reviewer, client_for, django_assert_max_num_queries
):
    trained(labelled_project)
    clip = Clip.objects.filter(project=labelled_project).first()
    client = client_for(reviewer)
    client.get(f"/api/clips/{clip.pk}/prediction")  # loads the model into the process cache

    with django_assert_max_num_queries(8):
        response = client.get(f"/api/clips/{clip.pk}/prediction")

    assert response.status_code == 200
    assert response.json()["normalisation"] == "speaker"


def test_an_annotator_sees_a_prediction_only_for_the_clip_they_hold_in_an_assisted_project(
    labelled_project, second_annotator, client_for
):
    trained(labelled_project)
    client = client_for(second_annotator)
    held_id = client.post("/api/projects/callcentre/next/").json()["clip"]["id"]
    other = Clip.objects.filter(project=labelled_project).exclude(pk=held_id).first()

    blind = client.get(f"/api/clips/{held_id}/prediction")
    labelled_project.assisted = True
    labelled_project.save(update_fields=["assisted"])
    held = client.get(f"/api/clips/{held_id}/prediction")
    not_held = client.get(f"/api/clips/{other.pk}/prediction")

    assert blind.status_code == 403, "a blind project shows annotators no prediction"
    assert held.status_code == 200
    assert held.json()["model_version"] == 1
    assert not_held.status_code == 403


def test_assisted_mode_hides_other_projects_clips(labelled_project, outsider, client_for):
    clip = Clip.objects.filter(project=labelled_project).first()
    assert client_for(outsider).get(f"/api/clips/{clip.pk}/prediction").status_code == 404


def test_assisted_mode_offers_the_active_models_suggestion_with_the_next_clip(
    labelled_project, second_annotator, client_for
):
    from learner.services.suggest import suggest

    clip = Clip.objects.filter(project=labelled_project).first()
    assert suggest(labelled_project, clip.pk) is None  # no model yet
    trained(labelled_project)
    labelled_project.assisted = True
    labelled_project.save(update_fields=["assisted"])

    leased = client_for(second_annotator).post("/api/projects/callcentre/next/").json()

    suggestion = leased["suggestion"]
    assert suggestion["model_version"] == 1
    assert suggestion["top"] in suggestion["probabilities"]["fine"]
    assert "." in suggestion["top"]  # the secondary ring, the finest one labelled
    assert sum(suggestion["probabilities"]["core"].values()) == pytest.approx(1, abs=1e-3)
