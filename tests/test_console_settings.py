"""Project and learner settings through every door that writes them: the API (unknown and
read-only fields and out-of-range values are 400s, never silently ignored), the settings
page's forms (the same serializers), and training with a feature set this server cannot run.
"""

from __future__ import annotations

import pytest
from django.test import Client

from labelling.models import Project
from learner.models import LearnerSettings, TrainingRun
from learner.services import project_settings

pytestmark = [pytest.mark.django_db]

PROJECT_API = "/api/projects/callcentre/"
LEARNER_API = "/api/projects/callcentre/learner-settings"
RUNS_API = "/api/projects/callcentre/training-runs"
PAGE = "/projects/callcentre/settings/"


def fresh(project: Project) -> Project:
    return Project.objects.get(pk=project.pk)


# --- The project's labelling settings through the API --------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quotas": {"gender": {"female": 0.5}}}, "quotas"),  # unknown
        ({"overlap": 3}, "overlap"),  # unknown (the field is annotators_per_clip)
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),  # read-only
        ({"taxonomy_version": 1}, "taxonomy_version"),  # read-only (POST …/taxonomy/)
        ({"my_role": "admin"}, "my_role"),  # read-only
        ({"gold_rate": 0.9}, "gold_rate"),  # at most 0.5
        ({"lease_seconds": 5}, "lease_seconds"),  # at least 30
        ({"annotators_per_clip": 0}, "annotators_per_clip"),
        ({"annotators_per_clip": 21}, "annotators_per_clip"),
        ({"agreement_target": 0.2}, "agreement_target"),
        ({"queue_policy": "fastest"}, "queue_policy"),
        ({"annotators_per_clip": 6, "max_annotators_per_clip": 5}, "max_annotators_per_clip"),
    ],
)
def test_a_bad_project_setting_is_a_400_naming_the_field_and_nothing_changes(
    client_for, project, project_admin, body, field
):
    before = {f: getattr(project, f) for f in ("gold_rate", "lease_seconds", "annotators_per_clip")}
    response = client_for(project_admin).patch(PROJECT_API, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    after = fresh(project)
    assert {f: getattr(after, f) for f in before} == before


def test_project_settings_change_through_the_api_and_are_read_back(
    client_for, project, project_admin
):
    body = {"gold_rate": 0.1, "lease_seconds": 120, "assisted": True, "dimensional_labels": True}
    response = client_for(project_admin).patch(PROJECT_API, body, format="json")
    assert response.status_code == 200
    assert {k: response.json()[k] for k in body} == body
    after = fresh(project)
    assert (after.gold_rate, after.lease_seconds, after.assisted) == (0.1, 120, True)


def test_an_ml_engineer_may_not_change_labelling_settings(client_for, project, engineer):
    response = client_for(engineer).patch(PROJECT_API, {"gold_rate": 0.1}, format="json")
    assert response.status_code == 403


# --- Learner settings through the API --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"learning_rate": 0.1}, "learning_rate"),  # unknown
        ({"project": 5}, "project"),  # not a setting
        ({"epochs": 501}, "epochs"),
        ({"unsure_weight": 1.5}, "unsure_weight"),
        ({"query_strategy": "bald"}, "query_strategy"),  # needs MC passes: not in the live loop
        ({"feature_set": "ssl"}, "feature_set"),  # no checkpoint configured here
        ({"feature_set": "nonsense"}, "feature_set"),
        ({"coverage_min_share": {"gender": {"female": 1.5}}}, "coverage_min_share"),
        ({"coverage_min_share": {"mood": {"x": 0.1}}}, "coverage_min_share"),
    ],
)
def test_a_bad_learner_setting_is_a_400_naming_the_field(
    client_for, project, engineer, body, field
):
    response = client_for(engineer).patch(LEARNER_API, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    row = project_settings.settings_for(project)
    assert (row.epochs, row.query_strategy, row.feature_set) == (
        None,
        "uncertain_kcenter",
        "acoustic",
    )


def test_the_ssl_refusal_says_what_is_missing(client_for, project, engineer):
    response = client_for(engineer).patch(LEARNER_API, {"feature_set": "ssl"}, format="json")
    assert "EMOLOOP_SSL_CHECKPOINT" in str(response.json()["errors"]["feature_set"])


def test_learner_settings_change_through_the_api(client_for, project, engineer):
    body = {
        "epochs": 30,
        "query_strategy": "margin",
        "coverage_min_share": {"gender": {"female": 0.4}},
    }
    response = client_for(engineer).patch(LEARNER_API, body, format="json")
    assert response.status_code == 200
    row = project_settings.settings_for(project)
    assert (row.epochs, row.query_strategy, row.coverage_min_share) == (
        30,
        "margin",
        {"gender": {"female": 0.4}},
    )


def test_a_reviewer_reads_but_does_not_change_learner_settings(client_for, project, reviewer):
    assert client_for(reviewer).get(LEARNER_API).status_code == 200
    assert client_for(reviewer).patch(LEARNER_API, {"epochs": 3}, format="json").status_code == 403


# --- Training with a feature set this server cannot run ------------------------------------


def test_training_with_an_unavailable_feature_set_is_refused(client_for, project, engineer):
    response = client_for(engineer).post(RUNS_API, {"feature_set": "ssl"}, format="json")
    assert response.status_code == 400
    assert "feature_set" in response.json()["errors"]
    assert not TrainingRun.objects.exists()


def test_training_on_a_project_setting_that_cannot_run_here_is_refused(
    client_for, project, engineer
):
    LearnerSettings.objects.update_or_create(project=project, defaults={"feature_set": "ssl"})
    response = client_for(engineer).post(RUNS_API, {}, format="json")
    assert response.status_code == 400
    assert "ssl cannot run on this server" in str(response.json()["errors"]["feature_set"])
    assert not TrainingRun.objects.exists()


def test_a_training_request_with_an_unknown_field_is_refused(client_for, project, engineer):
    response = client_for(engineer).post(RUNS_API, {"epochs": 3}, format="json")
    assert response.status_code == 400
    assert "epochs" in response.json()["errors"]


# --- The settings page's forms -----------------------------------------------------------


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def project_form(project: Project, **changes: str) -> dict[str, str]:
    """The labelling form as the page renders it (checked boxes are sent as "on")."""
    data = {
        "form": "project",
        "queue_policy": project.queue_policy,
        "annotators_per_clip": str(project.annotators_per_clip),
        "max_annotators_per_clip": str(project.max_annotators_per_clip),
        "lease_seconds": str(project.lease_seconds),
        "gold_rate": str(project.gold_rate),
        "agreement_target": str(project.agreement_target),
    }
    for flag in ("is_active", "agreement_routing", "assisted", "autoplay",
                 "require_full_listen", "dimensional_labels"):  # fmt: skip
        if getattr(project, flag):
            data[flag] = "on"
    data.update(changes)
    return data


def test_an_admin_changes_labelling_settings_in_the_page(project, project_admin):
    data = project_form(project, gold_rate="0.2", lease_seconds="300", assisted="on")
    data.pop("autoplay", None)  # unticked
    response = client_of(project_admin).post(PAGE, data)
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}?saved=project"
    after = fresh(project)
    assert (after.gold_rate, after.lease_seconds, after.assisted, after.autoplay) == (
        0.2,
        300,
        True,
        False,
    )


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"gold_rate": "0.9"}, "gold_rate", "less than or equal to 0.5"),
        ({"lease_seconds": "abc"}, "lease_seconds", "A valid integer is required"),
        ({"annotators_per_clip": "9", "max_annotators_per_clip": "3"}, "max_annotators_per_clip",
         "Must be at least annotators_per_clip"),
        ({"quotas": "{}"}, "quotas", "Unknown field"),
    ],
)  # fmt: skip
def test_a_bad_labelling_setting_in_the_page_is_a_400_with_its_error_and_saves_nothing(
    project, project_admin, change, field, message
):
    before = (project.gold_rate, project.lease_seconds, project.annotators_per_clip)
    response = client_of(project_admin).post(PAGE, project_form(project, **change))
    assert response.status_code == 400
    html = response.content.decode()
    assert f"<code>{field}</code>" in html
    assert message in html
    after = fresh(project)
    assert (after.gold_rate, after.lease_seconds, after.annotators_per_clip) == before


def test_an_ml_engineer_sees_labelling_settings_read_only_and_may_not_post_them(project, engineer):
    client = client_of(engineer)
    html = client.get(PAGE).content.decode()
    form = html[html.index('id="project-form"') :]
    assert 'id="project-gold_rate"' in form
    assert 'name="gold_rate" value="0.0" step="any" min="0" max="0.5" disabled' in form
    assert 'id="save-project"' not in form
    assert client.post(PAGE, project_form(project, gold_rate="0.2")).status_code == 403
    assert fresh(project).gold_rate == 0.0


def learner_form(**changes: str) -> dict[str, str]:
    data = {
        "form": "learner",
        "feature_set": "acoustic",
        "speaker_normalisation": "auto",
        "augmentation": "on",
        "retrain_after_labels": "50",
        "retrain_interval_hours": "0",
        "min_labelled_clips": "20",
        "unsure_weight": "0.5",
        "epochs": "",
        "seed": "0",
        "query_strategy": "uncertain_kcenter",
        "query_params": "{}",
        "query_batch_size": "20",
        "coverage_min_share": "{}",
        "coverage_max_share": "{}",
        "quality_gate": "on",
        "quality_gate_margin": "0.02",
    }
    data.update(changes)
    return data


def test_an_ml_engineer_changes_learner_settings_in_the_page(project, engineer):
    data = learner_form(
        epochs="40", query_strategy="entropy", query_params='{"alpha": 0.3}',
        coverage_max_share='{"speaker_id": {"s01": 0.2}}', quality_gate_margin="0.05",
    )  # fmt: skip
    del data["augmentation"]
    response = client_of(engineer).post(PAGE, data)
    assert response.status_code == 302
    row = project_settings.settings_for(project)
    assert (row.quality_gate, row.quality_gate_margin) == (True, 0.05)
    assert (row.epochs, row.query_strategy, row.query_params, row.augmentation) == (
        40,
        "entropy",
        {"alpha": 0.3},
        False,
    )
    assert row.coverage_max_share == {"speaker_id": {"s01": 0.2}}
    # An empty epochs field is "automatic" again.
    assert client_of(engineer).post(PAGE, learner_form(epochs="")).status_code == 302
    assert project_settings.settings_for(project).epochs is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"epochs": "501"}, "epochs", "less than or equal to 500"),
        ({"query_strategy": "bald"}, "query_strategy", "not a valid choice"),
        ({"feature_set": "ssl"}, "feature_set", "ssl cannot run on this server"),
        ({"query_params": "{alpha: 1"}, "query_params", "Not valid JSON"),
        ({"query_params": '{"alpha": 3}'}, "query_params", "alpha"),
        ({"coverage_min_share": '{"gender": {"female": 0.7, "male": 0.6}}'}, "coverage_min_share",
         "more than the whole batch"),
        ({"learning_rate": "0.1"}, "learning_rate", "Unknown field"),
    ],
)  # fmt: skip
def test_a_bad_learner_setting_in_the_page_is_a_400_with_its_error(
    project, engineer, change, field, message
):
    response = client_of(engineer).post(PAGE, learner_form(**change))
    assert response.status_code == 400
    html = response.content.decode()
    assert f"<code>{field}</code>" in html
    assert message in html
    row = project_settings.settings_for(project)
    assert (row.epochs, row.query_strategy, row.feature_set) == (
        None,
        "uncertain_kcenter",
        "acoustic",
    )


def test_the_page_offers_only_strategies_the_live_loop_runs_and_feature_sets_that_run_here(
    project, engineer
):
    html = client_of(engineer).get(PAGE).content.decode()
    strategies = html[html.index('id="learner-query_strategy"') :]
    strategies = strategies[: strategies.index("</select>")]
    assert 'value="uncertain_kcenter"' in strategies
    assert 'value="bald"' not in strategies
    features = html[html.index('id="learner-feature_set"') :]
    features = features[: features.index("</select>")]
    assert 'value="acoustic"' in features
    assert 'value="ssl"' not in features


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_annotators_and_reviewers_may_not_post_the_forms(request, project, who):
    client = client_of(request.getfixturevalue(who))
    assert client.post(PAGE, learner_form(epochs="3")).status_code == 403
    assert project_settings.settings_for(project).epochs is None
