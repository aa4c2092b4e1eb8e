"""Training in-process on EmoDB clips: the registry, activation rules and failure cases."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from labelling.models import Annotation, Clip
from learner.models import ClipFeatures, ModelVersion, TrainingRun
from learner.pipeline import Predictor
from learner.services import predict, project_settings, training

pytestmark = [pytest.mark.django_db]
Status = TrainingRun.Status


def train(project, **kwargs) -> TrainingRun:
    run, created = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND, **kwargs)
    assert created
    return training.run_training(run.pk)


def test_a_run_records_an_active_version_evaluated_on_unseen_speakers(labelled_project):
    run = train(labelled_project)

    assert run.status == Status.SUCCEEDED, run.reason
    version = ModelVersion.objects.get(project=labelled_project)
    assert version.is_active
    assert version.number == 1
    assert version.run == run
    m = version.metrics
    split = m["split"]
    assert split["by"] == "speaker"
    assert split["speaker_independent"]
    train_s, val_s, test_s = (set(split["speakers"][k]) for k in ("train", "val", "test"))
    assert train_s
    assert val_s
    assert test_s
    assert not (train_s & test_s)
    assert not (train_s & val_s)
    assert not (val_s & test_s)
    assert m["normalisation"] == "speaker"
    assert m["fine_level"] == 1
    core = m["heads"]["core"]
    assert set(core) >= {"uar", "macro_f1", "accuracy", "per_class_recall", "confusion_matrix"}
    assert core["labels"] == ["mad", "scared", "joyful", "powerful", "peaceful", "sad"]
    assert sum(map(sum, core["confusion_matrix"])) == split["sizes"]["test"]
    assert m["uar"] > 0.4  # 5 feelings present; chance is 0.2
    assert 0 <= m["ece_after"] <= 1
    assert 0 <= m["ece_before"] <= 1
    assert "fine" in m["heads"]  # the secondary ring has its own head
    for image in (version.confusion_image, version.calibration_image):
        assert default_storage.open(image.name).read(8) == b"\x89PNG\r\n\x1a\n"
    snapshot = json.loads(default_storage.open(run.labels_snapshot.name).read())
    assert len(snapshot["rows"]) == run.label_count == Annotation.objects.count()
    artifact = Predictor.from_bytes(default_storage.open(version.artifact.name).read())
    assert artifact.extractor["name"] == "acoustic"
    assert artifact.space.fine_level == 1
    assert set(artifact.normaliser.speakers) == set(
        Clip.objects.values_list("speaker_id", flat=True)
    )


def test_runs_are_seeded_and_reproducible(labelled_project):
    first = train(labelled_project).model_version
    second = train(labelled_project).model_version

    # Everything but the wall and CPU seconds each stage took (recorded beside the figures).
    def figures(metrics: dict) -> dict:
        return {key: value for key, value in metrics.items() if key != "timings"}

    assert set(first.metrics["timings"]) == set(second.metrics["timings"])
    assert figures(first.metrics) == figures(second.metrics)
    a = Predictor.from_bytes(default_storage.open(first.artifact.name).read())
    b = Predictor.from_bytes(default_storage.open(second.artifact.name).read())
    for net_a, net_b in zip(a.members, b.members, strict=True):
        for (name, pa), (_, pb) in zip(
            net_a.state_dict().items(), net_b.state_dict().items(), strict=True
        ):
            assert pa.equal(pb), name
    assert second.is_active
    assert not ModelVersion.objects.get(pk=first.pk).is_active


def test_too_few_labels_end_with_a_clear_status_not_a_crash(project, annotator, kit):
    clips = kit.clips(project, ["03"], per_emotion=1)
    kit.label(clips[:5], annotator)
    kit.fast(project)

    run = train(project)

    assert run.status == Status.INSUFFICIENT
    assert run.reason_code == "too_few_labels"
    assert "5 labelled clip(s)" in run.reason
    assert "at least 10" in run.reason
    assert not ModelVersion.objects.exists()


def test_a_single_feeling_ends_with_a_clear_status(project, annotator, kit):
    clips = kit.clips(project, ["03", "08", "09"], per_emotion=2)
    kit.label(clips, annotator, nodes=dict.fromkeys(kit_emotions(), "mad.angry"))
    kit.cache(clips)
    kit.fast(project)

    run = train(project)

    assert (run.status, run.reason_code) == (Status.INSUFFICIENT, "single_class")
    assert "at least two different feelings" in run.reason


def kit_emotions() -> list[str]:
    return ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]


def test_clips_with_only_skips_are_not_training_examples(labelled_project, second_annotator):
    clip = Clip.objects.filter(project=labelled_project).first()
    Annotation.objects.filter(clip=clip).delete()
    Annotation.objects.create(clip=clip, annotator=second_annotator, skip_reason="noise")

    run = train(labelled_project)

    assert run.status == Status.SUCCEEDED
    sizes = run.model_version.metrics["split"]["sizes"]
    assert sum(sizes.values()) == Clip.objects.count() - 1


def test_two_triggers_at_once_open_one_run(transactional_db, labelled_project):
    barrier = threading.Barrier(2)
    results: list[tuple[int, bool]] = []

    def trigger() -> None:
        try:
            barrier.wait()
            run, created = training.open_run(labelled_project, trigger="labels")
            results.append((run.pk, created))
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(created for _, created in results) == [False, True]
    assert len({pk for pk, _ in results}) == 1
    assert TrainingRun.objects.count() == 1


def test_a_failing_run_is_marked_failed_and_the_previous_version_stays_active(
    labelled_project, monkeypatch
):
    previous = train(labelled_project).model_version

    def explode(*args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(training, "_train_and_evaluate", explode)
    run, _ = training.open_run(labelled_project, trigger="manual")
    with pytest.raises(RuntimeError):
        training.run_training(run.pk)

    run.refresh_from_db()
    assert (run.status, run.reason_code) == (Status.FAILED, "error")
    assert "the GPU caught fire" in run.reason
    assert ModelVersion.objects.get(is_active=True) == previous


def test_a_version_whose_artifact_does_not_load_is_never_activated(labelled_project, monkeypatch):
    previous = train(labelled_project).model_version

    def broken(data: bytes):
        raise ValueError("truncated file")

    monkeypatch.setattr(Predictor, "from_bytes", staticmethod(broken))
    run, _ = training.open_run(labelled_project, trigger="manual")
    with pytest.raises(training.ArtifactError):
        training.run_training(run.pk)

    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert "does not load" in run.reason
    assert list(ModelVersion.objects.filter(is_active=True)) == [previous]
    assert ModelVersion.objects.count() == 1


def test_a_run_reaped_while_it_trains_drops_its_result(labelled_project, monkeypatch):
    previous = train(labelled_project).model_version
    real = training._train_and_evaluate

    def reaped_midway(*args, **kwargs):
        TrainingRun.objects.filter(status=Status.RUNNING).update(
            heartbeat_at=timezone.now() - timedelta(hours=1)
        )
        assert training.reap_stale_runs(60) == 1
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_train_and_evaluate", reaped_midway)
    run, _ = training.open_run(labelled_project, trigger="manual")
    training.run_training(run.pk)

    run.refresh_from_db()
    assert (run.status, run.reason_code) == (Status.FAILED, "stale")
    assert list(ModelVersion.objects.filter(is_active=True)) == [previous]
    # Its artifact and plots were stored, then removed when it could not register.
    assert default_storage.listdir("learner/models")[1] == [Path(previous.artifact.name).name]
    assert len(default_storage.listdir("learner/plots")[1]) == 2


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_redelivered_task_fails_the_run_whose_worker_process_died(labelled_project):
    run, _ = training.open_run(labelled_project, trigger="manual")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING,
        heartbeat_at=timezone.now(),
        worker=f"{socket.gethostname()}:{_dead_pid()}",
    )

    assert training.run_training(run.pk) is None

    run.refresh_from_db()
    assert (run.status, run.reason_code) == (Status.FAILED, "worker_lost")


def test_a_duplicate_message_leaves_a_live_run_alone(labelled_project):
    run, _ = training.open_run(labelled_project, trigger="manual")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now(), worker="elsewhere:1234"
    )

    assert training.run_training(run.pk) is None

    run.refresh_from_db()
    assert run.status == Status.RUNNING


def test_the_reaper_fails_runs_whose_heartbeat_stopped(labelled_project):
    run, _ = training.open_run(labelled_project, trigger="manual")
    TrainingRun.objects.filter(pk=run.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )

    assert training.reap_stale_runs(300) == 1

    run.refresh_from_db()
    assert (run.status, run.reason_code) == (Status.FAILED, "stale")


def test_n_new_labels_since_the_last_run_make_the_project_due(labelled_project, second_annotator):
    row = project_settings.settings_for(labelled_project)
    row.retrain_after_labels = 5
    row.save()
    assert training.due_trigger(labelled_project) == "labels"  # never trained, enough labels
    train(labelled_project)
    assert training.due_trigger(labelled_project) is None

    clips = list(Clip.objects.filter(project=labelled_project)[:6])
    mad = labelled_project.taxonomy_version.nodes.get(key="mad")
    for clip in clips[:4]:
        Annotation.objects.create(clip=clip, annotator=second_annotator, node=mad)
    Annotation.objects.create(clip=clips[4], annotator=second_annotator, skip_reason="noise")
    assert training.due_trigger(labelled_project) is None  # 4 labels (a skip is no label)

    Annotation.objects.create(clip=clips[5], annotator=second_annotator, node=mad)
    assert training.due_trigger(labelled_project) == "labels"


def test_an_older_version_can_be_made_active_again(labelled_project):
    first = train(labelled_project).model_version
    train(labelled_project)

    training.activate(first)

    assert list(ModelVersion.objects.filter(is_active=True)) == [first]


@pytest.mark.slow
def test_augmented_copies_are_cached_and_used(labelled_project):
    project_settings.settings_for(labelled_project)
    labelled_project.learner_settings.augmentation = True
    labelled_project.learner_settings.save()

    run = train(labelled_project)

    assert run.status == Status.SUCCEEDED
    assert run.params["augmentation"] is True
    assert run.model_version.metrics["augmented_copies"] == 2
    n = Clip.objects.count()
    for variant in (1, 2):
        assert ClipFeatures.objects.filter(variant=variant).count() == n


def test_predictions_cover_every_node_and_the_rings_agree(labelled_project):
    train(labelled_project)
    clip = Clip.objects.filter(project=labelled_project).first()

    prediction = predict.predict_clips(labelled_project, [clip])[0]

    assert prediction.normalisation == "speaker"
    nodes = labelled_project.taxonomy_version.nodes
    assert [len(level) for level in prediction.levels] == [
        nodes.filter(level=k).count() for k in range(3)
    ]
    for level in prediction.levels:
        assert sum(level.values()) == pytest.approx(1.0, abs=1e-6)
    mad = prediction.levels[0]["mad"]
    assert sum(p for k, p in prediction.levels[1].items() if k.startswith("mad.")) == pytest.approx(
        mad, abs=1e-6
    )
    wave = np.zeros(16000, dtype=np.float32)
    assert predict.predict_waveform(labelled_project, wave).normalisation == "global"
