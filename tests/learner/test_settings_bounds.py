"""Every learner setting is bounded: the API answers 400, the admin form refuses, the
database refuses a row written past both, and the rules between fields hold."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from learner.models import (
    CANDIDATES_MAX,
    EPOCHS_MAX,
    RETRAIN_INTERVAL_HOURS_MAX,
    SEED_MAX,
    LearnerSettings,
)
from learner.serializers import LearnerSettingsSerializer
from learner.services import project_settings
from tests.conftest import make_user

pytestmark = [pytest.mark.django_db]
URL = "/api/projects/callcentre/learner-settings"

# (field, a value the API must refuse with a 400 naming the field)
OUT_OF_RANGE = [
    ("retrain_after_labels", -1),
    ("retrain_after_labels", 100_001),
    ("retrain_interval_hours", 134_377_414),  # once overflowed the beat for every project
    ("retrain_interval_hours", RETRAIN_INTERVAL_HOURS_MAX + 1),
    ("min_labelled_clips", 1),
    ("min_labelled_clips", 100_001),
    ("unsure_weight", -0.1),
    ("unsure_weight", 1.5),
    ("unsure_weight", "nan"),
    ("epochs", 0),
    ("epochs", EPOCHS_MAX + 1),
    ("epochs", 2_000_000_000),  # once held the training worker for hours
    ("seed", -1),
    ("seed", SEED_MAX + 1),
    ("seed", 10**40),
    ("query_batch_size", 0),
    ("query_batch_size", 10_001),
    ("feature_set", "nonsense"),
    ("query_strategy", "best_guess"),
    ("speaker_normalisation", "sometimes"),
    ("query_params", {"temperature": 2}),
    ("query_params", {"alpha": 7}),
    ("query_params", {"alpha": True}),
    ("query_params", {"candidate_factor": 101}),
    ("query_params", {"measure": "vibes"}),
    ("query_params", ["alpha", 0.3]),
    ("coverage_min_share", {"gender": {"female": 1.2}}),
    ("coverage_min_share", {"gender": {"female": 0.6, "male": 0.6}}),
    ("coverage_min_share", {"shoe_size": {"42": 0.5}}),
    ("coverage_min_share", {"gender": 0.5}),
    ("coverage_min_share", "female"),
    ("coverage_max_share", {"speaker_id": {"s1": -0.5}}),
    ("coverage_max_share", {"speaker_id": {f"s{i}": 0.1 for i in range(1001)}}),
]

WRONG_TYPE = [
    ("retrain_after_labels", "fifty"),
    ("retrain_after_labels", 2.5),
    ("retrain_after_labels", True),
    ("unsure_weight", True),
    ("unsure_weight", [0.5]),
    ("epochs", {"n": 5}),
    ("seed", "0x10"),
    ("augmentation", "perhaps"),
    ("feature_set", 7),
    ("query_batch_size", None),
]


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE + WRONG_TYPE)
def test_the_api_refuses_a_value_out_of_bounds_or_of_the_wrong_type(
    project, engineer, client_for, field, value
):
    before = project_settings.settings_for(project)

    response = client_for(engineer).patch(URL, {field: value}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    after = project_settings.settings_for(project)
    assert getattr(after, field) == getattr(before, field)


@pytest.mark.parametrize(
    "body",
    [
        {"retrain_every": 5},
        {"project": "gamechat"},
        {"epochs": 5, "learning_rate": 0.1},
    ],
)
def test_the_api_refuses_keys_it_does_not_take(project, engineer, client_for, body):
    response = client_for(engineer).patch(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) == set(body) - {"epochs"}
    assert project_settings.settings_for(project).epochs is None


def test_the_query_strategy_settings_can_be_changed_through_the_api(project, engineer, client_for):
    body = {
        "query_strategy": "margin",
        "query_params": {"alpha": 0.3},
        "query_batch_size": 50,
        "coverage_min_share": {"gender": {"female": 0.4, "male": 0.4}},
        "coverage_max_share": {"speaker_id": {"03": 0.1}},
        "retrain_interval_hours": RETRAIN_INTERVAL_HOURS_MAX,
        "epochs": EPOCHS_MAX,
        "seed": SEED_MAX,
    }

    response = client_for(engineer).patch(URL, body, format="json")

    assert response.status_code == 200, response.content
    assert {key: response.json()[key] for key in body} == body
    row = LearnerSettings.objects.get(project=project)
    assert {key: getattr(row, key) for key in body} == body


def test_parameters_the_chosen_strategy_does_not_take_are_refused(project, engineer, client_for):
    client = client_for(engineer)

    both = client.patch(
        URL, {"query_strategy": "random", "query_params": {"alpha": 0.3}}, format="json"
    )
    too_many = client.patch(
        URL,
        {"query_strategy": "kcenter", "query_params": {"candidate_factor": 100},
         "query_batch_size": 10_000},
        format="json",
    )  # fmt: skip
    above_cap = client.patch(
        URL,
        {"coverage_min_share": {"gender": {"female": 0.5}},
         "coverage_max_share": {"gender": {"female": 0.3}}},
        format="json",
    )  # fmt: skip

    assert both.status_code == 400
    assert "takes no parameter" in both.json()["errors"]["query_params"][0]
    assert too_many.status_code == 400
    assert f"{CANDIDATES_MAX:,}" in too_many.json()["errors"]["query_batch_size"][0]
    assert above_cap.status_code == 400
    assert "exceeds its max_share" in above_cap.json()["errors"]["coverage_min_share"][0]


def test_rules_between_fields_are_checked_against_the_saved_row(project):
    row = project_settings.update_settings(
        project, {"query_strategy": "random", "query_params": {}}
    )

    alone = LearnerSettingsSerializer(
        instance=row, data={"query_params": {"alpha": 0.3}}, partial=True
    )
    switch = LearnerSettingsSerializer(
        instance=project_settings.update_settings(
            project, {"query_strategy": "margin", "query_params": {"alpha": 0.3}}
        ),
        data={"query_strategy": "random"},
        partial=True,
    )

    assert not alone.is_valid()
    assert "query_params" in alone.errors
    assert not switch.is_valid()
    assert "query_params" in switch.errors


def test_a_rule_between_a_sent_field_and_a_saved_one_is_a_400_at_the_api(
    project, engineer, client_for
):
    client = client_for(engineer)
    assert client.patch(URL, {"query_strategy": "random"}, format="json").status_code == 200

    alone = client.patch(URL, {"query_params": {"alpha": 0.3}}, format="json")

    assert alone.status_code == 400, alone.content
    assert "query_params" in alone.json()["errors"]


def test_the_service_checks_the_whole_row_before_saving(project):
    project_settings.update_settings(project, {"query_strategy": "random"})

    with pytest.raises(ValidationError) as caught:
        project_settings.update_settings(project, {"query_params": {"alpha": 0.3}})

    assert "query_params" in caught.value.message_dict
    assert LearnerSettings.objects.get(project=project).query_params == {}


@pytest.fixture
def admin_client(client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def _admin_form(row: LearnerSettings, **changes) -> dict:
    data = {
        "project": row.project_id,
        "feature_set": row.feature_set,
        "speaker_normalisation": row.speaker_normalisation,
        "augmentation": "on" if row.augmentation else "",
        "retrain_after_labels": row.retrain_after_labels,
        "retrain_interval_hours": row.retrain_interval_hours,
        "min_labelled_clips": row.min_labelled_clips,
        "unsure_weight": row.unsure_weight,
        "epochs": row.epochs or "",
        "seed": row.seed,
        "query_strategy": row.query_strategy,
        "query_params": "{}",
        "query_batch_size": row.query_batch_size,
        "coverage_min_share": "{}",
        "coverage_max_share": "{}",
        "quality_gate": "on" if row.quality_gate else "",
        "quality_gate_margin": row.quality_gate_margin,
    }
    return {**data, **changes}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retrain_interval_hours", 134_377_414),
        ("epochs", 2_000_000_000),
        ("seed", -3),
        ("query_params", '{"alpha": 7}'),
        ("coverage_min_share", '{"gender": {"female": 0.7, "male": 0.7}}'),
    ],
)
def test_the_admin_form_refuses_what_the_api_refuses(project, admin_client, field, value):
    row = project_settings.settings_for(project)
    before = getattr(row, field)
    url = f"/admin/learner/learnersettings/{row.pk}/change/"

    page = admin_client.post(url, _admin_form(row, **{field: value}))

    assert page.status_code == 200  # the form again, with its errors, not a redirect
    assert field in page.context["adminform"].form.errors
    row.refresh_from_db()
    assert getattr(row, field) == before


def test_the_admin_form_saves_values_within_bounds(project, admin_client):
    row = project_settings.settings_for(project)
    url = f"/admin/learner/learnersettings/{row.pk}/change/"

    page = admin_client.post(url, _admin_form(row, epochs=40, query_strategy="entropy"))

    assert page.status_code == 302, page.context["adminform"].form.errors
    row.refresh_from_db()
    assert (row.epochs, row.query_strategy) == (40, "entropy")


@pytest.mark.parametrize(
    "changes",
    [
        {"retrain_interval_hours": 134_377_414},
        {"retrain_after_labels": 10**6},
        {"min_labelled_clips": 0},
        {"unsure_weight": float("nan")},
        {"epochs": 2_000_000_000},
        {"epochs": 0},
        {"seed": -1},
        {"query_batch_size": 0},
        {"feature_set": "nonsense"},
        {"query_strategy": "nonsense"},
        {"speaker_normalisation": "odd"},
    ],
)
def test_the_database_refuses_a_row_written_past_the_validators(project, changes):
    project_settings.settings_for(project)

    with pytest.raises(IntegrityError), transaction.atomic():
        LearnerSettings.objects.filter(project=project).update(**changes)
