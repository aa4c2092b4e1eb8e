"""The admin pages of the learner and its management commands."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from learner.models import ClipFeatures, ModelVersion, TrainingRun
from learner.services import project_settings, training

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


def test_the_train_command_trains_and_reports_speaker_independent_figures(labelled_project):
    out = io.StringIO()
    call_command("train", "callcentre", stdout=out)

    version = ModelVersion.objects.get(is_active=True)
    assert f"Model v{version.number} active: UAR {version.metrics['uar']:.3f}" in out.getvalue()
    assert "split by speaker" in out.getvalue()


def test_the_train_command_refuses_unknown_projects_and_a_second_training(labelled_project):
    with pytest.raises(CommandError, match="No project"):
        call_command("train", "nope")
    training.open_run(labelled_project, trigger="manual")
    with pytest.raises(CommandError, match="already queued"):
        call_command("train", "callcentre")


def test_the_compute_features_command_fills_the_cache(project, kit):
    clips = kit.clips(project, ["03"], per_emotion=1)
    out = io.StringIO()
    call_command("compute_features", "callcentre", stdout=out, stderr=io.StringIO())
    assert f"{len(clips)} feature vector(s) computed." in out.getvalue()
    assert ClipFeatures.objects.count() == len(clips)


def test_a_model_versions_admin_page_shows_its_confusion_matrix_and_reliability_plot(
    labelled_project, staff_client
):
    call_command("train", "callcentre", stdout=io.StringIO())
    version = ModelVersion.objects.get()

    page = staff_client.get(f"/admin/learner/modelversion/{version.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('src="data:image/png;base64,') == 2
    assert "confusion matrix" in html
    assert "reliability diagram" in html
    listing = staff_client.get("/admin/learner/modelversion/").content.decode()
    assert f"{version.metrics['uar']:.3f}" in listing


def test_train_now_from_the_admin_queues_one_run(project, staff_client):
    settings_row = project_settings.settings_for(project)
    for _ in range(2):
        staff_client.post(
            "/admin/learner/learnersettings/",
            {"action": "train_now", "_selected_action": [settings_row.pk]},
        )
    assert TrainingRun.objects.filter(project=project, status="queued").count() == 1
