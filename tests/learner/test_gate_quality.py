"""Trustworthy versions: intervals, the small-test-set warning, the quality gate (refuses a
model trained on shuffled labels, accepts a better one, can be overridden by hand and is
audited), and the refit of the deployed model on every label.

The training tests use constructed, learnable data: clips of six speakers whose cached
acoustic vectors carry a class-dependent shift (plus a per-speaker offset and noise), so
that a model trained on the true labels scores near 1 and one trained on shuffled labels
near chance.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent
from labelling.models import Annotation, Clip, ClipSource
from learner import metrics, pipeline
from learner.features import acoustic
from learner.models import ClipFeatures, GateDecision, LearnerSettings, ModelVersion, TrainingRun
from learner.pipeline import speaker_split
from learner.services import gate, training

pytestmark = [pytest.mark.django_db]
Status = TrainingRun.Status
CORE = ["mad", "scared", "joyful"]  # three core feelings of the Willcox wheel
SPEAKERS = [f"s{k}" for k in range(6)]
PER_CLASS = 8  # clips per speaker and feeling: 144 clips


def _learnable(project, annotator, seed: int = 0) -> list[Clip]:
    """Clips with cached vectors that separate the three feelings, each labelled once."""
    rng = np.random.default_rng(seed)
    rows = [(s, k) for s in SPEAKERS for k in range(len(CORE)) for _ in range(PER_CLASS)]
    clips = Clip.objects.bulk_create(
        [
            Clip(
                project=project,
                original=f"clips/original/synthetic-{i}.wav",
                original_name=f"synthetic-{i}.wav",
                original_format="WAV",
                canonical=f"clips/canonical/synthetic-{i}.wav",
                sha256=f"{i:064x}",
                duration_s=1.0,
                sample_rate=16000,
                channels=1,
                source=ClipSource.CORPUS,
                speaker_id=speaker,
            )
            for i, (speaker, _k) in enumerate(rows)
        ]
    )
    centres = rng.normal(size=(len(CORE), acoustic.DIM)) * 1.5
    offsets = {s: rng.normal(size=acoustic.DIM) for s in SPEAKERS}
    ClipFeatures.objects.bulk_create(
        [
            ClipFeatures(
                clip=clip,
                extractor=acoustic.NAME,
                version=acoustic.VERSION,
                dim=acoustic.DIM,
                vector=(centres[k] + offsets[s] + rng.normal(size=acoustic.DIM))
                .astype("<f4")
                .tobytes(),
            )
            for clip, (s, k) in zip(clips, rows, strict=True)
        ]
    )
    nodes = {n.key: n for n in project.taxonomy_version.nodes.filter(key__in=CORE)}
    Annotation.objects.bulk_create(
        [
            Annotation(clip=clip, annotator=annotator, node=nodes[CORE[k]])
            for clip, (_s, k) in zip(clips, rows, strict=True)
        ]
    )
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"epochs": 15, "augmentation": False, "min_labelled_clips": 10},
    )
    return clips


def _train(project) -> TrainingRun:
    run, created = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    assert created
    finished = training.run_training(run.pk)
    assert finished is not None
    return finished


@pytest.fixture
def shuffled_training(monkeypatch):
    """While active, every fit (held-out and refit) learns from shuffled core targets; the
    evaluation still reads the true labels."""
    real = pipeline.fit_predictor

    def on_shuffled(data, rows, config, on_epoch=None):
        order = np.random.default_rng(7).permutation(len(data.targets.clip_ids))
        targets = dataclasses.replace(
            data.targets,
            core=data.targets.core[order],
            core_weight=data.targets.core_weight[order],
        )
        return real(dataclasses.replace(data, targets=targets), rows, config, on_epoch)

    def switch(on: bool) -> None:
        monkeypatch.setattr(pipeline, "fit_predictor", on_shuffled if on else real)

    return switch


# --- Intervals and the small-test-set warning ----------------------------------------------


def _predictions(n: int, accuracy: float, speakers: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    wrong = rng.random(n) > accuracy
    pred = np.where(wrong, (y + 1) % 3, y)
    return y, pred, [f"s{i % speakers}" for i in range(n)]


def test_intervals_hold_the_figure_and_narrow_as_the_test_set_grows():
    small = metrics.bootstrap_intervals(*_predictions(18, 0.7, 3), 3)
    large = metrics.bootstrap_intervals(*_predictions(600, 0.7, 20), 3)
    for found, (y, p, _g) in (
        (small, _predictions(18, 0.7, 3)),
        (large, _predictions(600, 0.7, 20)),
    ):
        low, high = found["uar"]
        assert low <= metrics.uar(y, p, 3) <= high
        assert found["by"] == "speaker"
    assert large["uar"][1] - large["uar"][0] < 0.5 * (small["uar"][1] - small["uar"][0])
    # Fewer than three speakers: single clips are resampled, and the interval says so.
    assert metrics.bootstrap_intervals(*_predictions(18, 0.7, 2), 3)["by"] == "clip"


def _version(project, number: int, *, test_n: int, speakers: list[str], **fields) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        extractor="acoustic",
        extractor_version="1",
        artifact_sha256="0" * 64,
        metrics={
            "uar": 0.6,
            "split": {"by": "speaker", "sizes": {"test": test_n}, "speakers": {"test": speakers}},
            "heads": {"core": {"n": test_n}},
            "intervals": {"uar": [0.4, 0.8]},
            "evaluated_on": f"held-out speakers {', '.join(speakers)} ({test_n} clips)",
            "deployed_fit": {"rows": 200, "labelled_rows": 200, "all_labels": True},
        },
        **fields,
    )


def test_the_api_says_when_a_version_is_not_yet_meaningful(project, reviewer):
    _version(project, 1, test_n=12, speakers=["a", "b"])
    _version(project, 2, test_n=45, speakers=["a", "b", "c"], is_active=True)
    _version(project, 3, test_n=90, speakers=["a", "b"])
    client = APIClient()
    client.force_authenticate(reviewer)

    body = client.get(f"/api/projects/{project.slug}/models").json()

    by_number = {v["number"]: v for v in body}
    assert [(v["test_clips"], v["test_speakers"], v["metrics_meaningful"]) for v in body] == [
        (90, 2, False),
        (45, 3, True),
        (12, 2, False),
    ]
    assert by_number[1]["warnings"][0].startswith("Not yet meaningful")
    assert by_number[2]["warnings"] == []
    assert by_number[2]["intervals"] == {"uar": [0.4, 0.8]}
    assert by_number[2]["evaluated_on"].startswith("held-out speakers a, b, c")
    assert by_number[2]["deployed_fit"]["all_labels"] is True
    assert "held_out" not in by_number[2]


# --- The quality gate on constructed predictions -----------------------------------------


def _held_out(truth: list[str], predicted: list[str], speakers: int = 6) -> dict[str, list]:
    n = len(truth)
    return {
        "clip_ids": list(range(n)),
        "groups": [f"s{i % speakers}" for i in range(n)],
        "truth": truth,
        "predicted": predicted,
    }


def test_the_gate_refuses_beyond_the_noise_and_accepts_within_it(project):
    row = LearnerSettings.objects.create(project=project)
    truth = [CORE[i % 3] for i in range(60)]
    good = _version(project, 1, test_n=60, speakers=SPEAKERS, is_active=True)
    good.held_out = _held_out(truth, truth)
    noisy = [CORE[(i // 3) % 3] for i in range(60)]  # about chance

    refused = gate.judge(_held_out(truth, noisy), good, row)
    assert refused.decision == GateDecision.REFUSED
    assert refused.details["high"] < 0
    assert "stays a candidate" in refused.reason
    slightly_worse = [*truth[:-1], CORE[(CORE.index(truth[-1]) + 1) % 3]]
    assert gate.judge(_held_out(truth, slightly_worse), good, row).activate
    # 30% of the clips wrong: refused without a margin, tolerated by a margin of 0.5 UAR.
    worse = [CORE[(CORE.index(t) + 1) % 3] if i % 10 < 3 else t for i, t in enumerate(truth)]
    assert gate.judge(_held_out(truth, worse), good, row).decision == GateDecision.REFUSED
    row.quality_gate_margin = 0.5
    assert gate.judge(_held_out(truth, worse), good, row).decision == GateDecision.ACCEPTED
    row.quality_gate = False
    assert gate.judge(_held_out(truth, noisy), good, row).decision == GateDecision.OFF
    row.quality_gate = True
    # Nothing in common with the active version's held-out clips: not comparable.
    other = _held_out(truth, noisy)
    other["clip_ids"] = [i + 1000 for i in range(60)]
    assert gate.judge(other, good, row).decision == GateDecision.NOT_COMPARABLE


def test_pinned_test_groups_stay_held_out_and_pinning_the_seeded_choice_changes_nothing():
    speakers = [f"s{i % 10}" for i in range(100)]
    seeded = speaker_split(speakers, range(100), test_fraction=0.2, val_fraction=0.15, seed=3)
    test_groups = sorted({speakers[i] for i in seeded.test})
    again = speaker_split(
        speakers, range(100), test_fraction=0.2, val_fraction=0.15, seed=3, pinned=test_groups
    )
    assert np.array_equal(seeded.test, again.test)
    assert np.array_equal(seeded.train, again.train)
    other = sorted({speakers[i] for i in seeded.train})[:2]
    pinned = speaker_split(
        speakers, range(100), test_fraction=0.2, val_fraction=0.15, seed=3, pinned=other
    )
    assert set(other) <= {speakers[i] for i in pinned.test}


# --- The gate in a project's training -----------------------------------------------------


def test_the_gate_refuses_a_model_trained_on_shuffled_labels_and_an_engineer_can_override_it(
    project, annotator, engineer, shuffled_training
):
    _learnable(project, annotator)
    first = _train(project)
    v1 = first.model_version
    assert (v1.is_active, v1.gate_decision) == (True, GateDecision.FIRST)
    assert v1.metrics["uar"] > 0.9

    shuffled_training(True)
    second = _train(project)
    shuffled_training(False)

    v2 = second.model_version
    v1.refresh_from_db()
    assert second.status == Status.SUCCEEDED
    assert second.reason_code == "gate_refused"
    assert (v1.is_active, v2.is_active) == (True, False)
    assert v2.gate_decision == GateDecision.REFUSED
    assert v2.gate_details["high"] < 0 < v2.gate_details["uar_old"] - v2.gate_details["uar_new"]
    # The same evaluation: v2 held out v1's test speakers again.
    held = set(v1.metrics["split"]["speakers"]["test"])
    assert held <= set(v2.metrics["split"]["speakers"]["test"])
    assert v2.gate_details["rows"] == v1.metrics["heads"]["core"]["n"]

    client = APIClient()
    client.force_authenticate(engineer)
    listed = {v["number"]: v for v in client.get(f"/api/projects/{project.slug}/models").json()}
    assert listed[2]["is_candidate"] is True
    assert listed[2]["gate_decision"] == "refused"
    assert "Refused by the quality gate" in listed[2]["gate_reason"]
    browser = Client()
    browser.force_login(engineer)
    page = browser.get(f"/projects/{project.slug}/models/?version=2")
    assert page.status_code == 200
    html = page.content.decode()
    assert "candidate: refused by the quality gate" in html
    assert "Activate anyway" in html

    response = client.post(f"/api/projects/{project.slug}/models/2/activate")

    assert response.status_code == 200, response.content
    assert response.json()["is_active"] is True
    assert response.json()["is_candidate"] is False
    event = AuditEvent.objects.filter(action="model.activated").order_by("-pk").first()
    assert event is not None
    assert event.actor == engineer
    assert event.details["number"] == 2
    assert event.details["previous"] == 1
    assert event.details["manual"] is True
    assert event.details["gate_overridden"] is True
    assert "Refused by the quality gate" in event.details["gate_reason"]


def test_the_gate_accepts_a_better_model_and_activates_it(project, annotator, shuffled_training):
    _learnable(project, annotator)
    shuffled_training(True)
    first = _train(project)  # the first version is active whatever it scores
    shuffled_training(False)
    assert first.model_version.is_active

    second = _train(project)

    v2 = second.model_version
    assert (second.status, second.reason_code) == (Status.SUCCEEDED, "")
    assert v2.is_active
    assert v2.gate_decision == GateDecision.ACCEPTED
    assert v2.gate_details["difference"] > 0.3
    assert v2.gate_details["low"] > 0
    event = AuditEvent.objects.filter(action="model.activated").order_by("-pk").first()
    assert event is not None
    assert event.details == {"number": 2, "previous": 1, "gate": "accepted"}


def test_the_deployed_model_is_refit_on_every_label(project, annotator, monkeypatch):
    clips = _learnable(project, annotator)
    rows_fitted: list[int] = []
    real_fit = pipeline.fit

    def counting(x, *args, **kwargs):
        rows_fitted.append(int(x.shape[0]))
        return real_fit(x, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit", counting)

    version = _train(project).model_version

    split = version.metrics["split"]["sizes"]
    assert rows_fitted == [split["train"], len(clips)]  # the held-out fit, then the refit
    assert split["train"] < len(clips)
    fitted = version.metrics["deployed_fit"]
    assert {k: v for k, v in fitted.items() if k not in ("epochs", "batch_size")} == {
        "rows": len(clips),
        "labelled_rows": len(clips),
        "weak_rows": 0,
        "all_labels": True,
        "temperatures_from": "validation rows of the held-out run",
    }
    assert fitted["batch_size"] == 64  # a small set: the budget for large ones does not apply
    assert fitted["epochs"] >= 10
    timings = version.metrics["timings"]
    assert timings["refit_cpu_s"] > 0
    assert timings["dataset_s"] >= 0
    assert version.metrics["evaluated_on"].startswith("held-out speakers ")
    low, high = version.metrics["intervals"]["uar"]
    assert low <= version.metrics["uar"] <= high
    assert len(version.held_out["clip_ids"]) == split["test"]


def test_the_gate_settings_are_bounded_in_the_api(project, engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    url = f"/api/projects/{project.slug}/learner-settings"
    assert client.get(url).json()["quality_gate"] is True
    assert client.patch(url, {"quality_gate_margin": 0.6}, format="json").status_code == 400
    assert client.patch(url, {"quality_gate_margin": -0.1}, format="json").status_code == 400
    changed = client.patch(url, {"quality_gate": False, "quality_gate_margin": 0.05}, format="json")
    assert changed.status_code == 200, changed.content
    row = LearnerSettings.objects.get(project=project)
    assert (row.quality_gate, row.quality_gate_margin) == (False, 0.05)
