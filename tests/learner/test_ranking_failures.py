"""A ranking whose chunks fail ends FAILED with its error (never left running), the ML
engineer sees it, and the beat ranks the version again a bounded number of times.

The worker tests break real state (a pool clip's cached feature row cut short, as a
truncated write would leave it), not Celery: the chunk task raises in the worker.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labelling.models import QueueEntry
from labelling.services import queue
from learner import tasks
from learner.models import ClipFeatures, ModelVersion, Ranking, TrainingRun
from learner.services import rescoring, training
from tests.broker import broker_down
from tests.conftest import wait_until

SPEAKERS = ["03", "08", "09", "10", "11", "13"]  # in the whole corpus and the demo subset
OPEN = (Ranking.Status.RUNNING, Ranking.Status.SELECTING)


# --- Without a worker -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_ranking_open_too_long_is_failed_by_the_beat_with_a_reason(project):
    stuck = Ranking.objects.create(project=project, strategy="coverage")
    fresh = Ranking.objects.create(project=project, strategy="coverage")
    Ranking.objects.filter(pk=stuck.pk).update(
        created_at=timezone.now() - timedelta(seconds=rescoring.STALLED_AFTER_S + 5)
    )

    counts = tasks.dispatch_pending()

    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert counts["stalled_rankings"] == 1
    assert stuck.status == Ranking.Status.FAILED
    assert stuck.error.startswith("No progress: still open 3600 s")
    assert stuck.finished_at is not None
    assert fresh.status == Ranking.Status.RUNNING


@pytest.mark.django_db
def test_failing_keeps_the_first_error_and_never_touches_a_completed_ranking(project):
    done = Ranking.objects.create(project=project, strategy="coverage", status="complete")
    running = Ranking.objects.create(project=project, strategy="coverage")

    assert rescoring.fail(done.pk, ValueError("late duplicate")) is False
    assert rescoring.fail(running.pk, ValueError("the chunk's own error")) is True
    assert rescoring.fail(running.pk, RuntimeError("the chord's summary")) is False

    done.refresh_from_db()
    running.refresh_from_db()
    assert (done.status, done.error) == (Ranking.Status.COMPLETE, "")
    assert (running.status, running.error) == ("failed", "ValueError: the chunk's own error")


@pytest.mark.django_db
def test_the_console_shows_a_failed_ranking_above_the_one_serving_the_queue(
    project, engineer, client
):
    serving = Ranking.objects.create(project=project, strategy="coverage", status="complete")
    failed = Ranking.objects.create(
        project=project, strategy="coverage", status="failed",
        error="A chunk failed: ValueError: could not broadcast", finished_at=timezone.now(),
    )  # fmt: skip
    client.force_login(engineer)

    html = client.get(f"/projects/{project.slug}/ranking/").content.decode()

    box = html[html.index('id="ranking-failed"') : html.index("</section>")]
    assert f"Ranking #{failed.pk} failed" in box
    assert "A chunk failed: ValueError: could not broadcast" in box
    assert f"keeps the order of ranking #{serving.pk}" in box

    Ranking.objects.create(project=project, strategy="coverage", status="complete")
    html = client.get(f"/projects/{project.slug}/ranking/").content.decode()
    assert 'id="ranking-failed"' not in html  # a newer ranking completed


@pytest.mark.django_db
def test_the_api_lists_rankings_with_a_failed_ones_error_for_ml_engineers(
    project, engineer, reviewer, annotator, client_for
):
    Ranking.objects.create(project=project, strategy="coverage", status="complete")
    failed = Ranking.objects.create(
        project=project, strategy="coverage", status="failed", error="A chunk failed: boom",
        finished_at=timezone.now(),
    )  # fmt: skip
    url = f"/api/projects/{project.slug}/rankings"

    listed = client_for(engineer).get(url)

    assert listed.status_code == 200
    newest = listed.json()[0]
    assert (newest["id"], newest["status"], newest["error"]) == (
        failed.pk, "failed", "A chunk failed: boom",
    )  # fmt: skip
    assert newest["model_version"] is None
    assert [r["status"] for r in listed.json()] == ["failed", "complete"]
    assert client_for(reviewer).get(url).status_code == 403
    assert client_for(annotator).get(url).status_code == 403


# --- With a real worker ---------------------------------------------------------------------


def _trained_with_a_corrupt_pool_row(project, annotator, kit) -> tuple[ModelVersion, int, bytes]:
    """An active-learning project with a trained, active model whose rescoring was not
    queued yet (the broker was down at the activation), and one pool clip's cached feature
    row cut to 3 bytes. Returns the version, the broken row's id and its good vector."""
    project.queue_policy = "active"
    project.annotators_per_clip = 1
    project.save()
    clips = kit.clips(project, SPEAKERS, per_emotion=4)
    kit.cache(clips)
    kit.label(clips[::2], annotator)
    for clip in clips[::2]:
        queue.recount_clip(clip)
    kit.fast(project, query_batch_size=4)
    run, _ = training.open_run(project, trigger=TrainingRun.Trigger.COMMAND)
    with broker_down():  # the activation's rescoring is sent by the beat below, on our cue
        assert training.run_training(run.pk).status == TrainingRun.Status.SUCCEEDED
    version = ModelVersion.objects.get(project=project, is_active=True)
    row = ClipFeatures.objects.get(clip=clips[1], variant=0)
    good = bytes(row.vector)
    ClipFeatures.objects.filter(pk=row.pk).update(vector=b"\x00\x01\x02")
    ModelVersion.objects.filter(pk=version.pk).update(
        activated_at=timezone.now() - timedelta(seconds=rescoring.UNRANKED_GRACE_S + 5)
    )
    return version, row.pk, good


def _closed(version: ModelVersion, count: int) -> list[Ranking]:
    """Wait until `count` rankings of the version exist and none is open; newest first."""
    rankings = Ranking.objects.filter(model_version=version)
    wait_until(
        lambda: rankings.count() == count and not rankings.filter(status__in=OPEN).exists(),
        timeout=120, what=f"ranking {count} of {version} to end",
    )  # fmt: skip
    return list(rankings.order_by("-pk"))


@pytest.mark.celery
@pytest.mark.slow
def test_a_chunk_that_keeps_failing_ends_failed_with_its_error_after_bounded_retries(
    worker, project, annotator, kit, monkeypatch
):
    version, _row, _good = _trained_with_a_corrupt_pool_row(project, annotator, kit)
    monkeypatch.setattr(rescoring, "RETRY_BACKOFF_S", 0.0)  # read by the beat's sweep

    assert tasks.dispatch_pending()["rescorings"] == 1
    first = _closed(version, 1)[0]
    assert first.status == Ranking.Status.FAILED
    assert first.error.startswith("A chunk failed: ValueError"), first.error
    assert first.finished_at is not None

    for attempt in range(2, rescoring.RANKING_ATTEMPTS + 1):
        assert tasks.dispatch_pending()["ranking_retries"] == 1
        newest = _closed(version, attempt)[0]
        assert newest.status == Ranking.Status.FAILED
        assert newest.error.startswith("A chunk failed: ValueError"), newest.error

    # Attempts spent: no more retries, and nothing is left open.
    assert tasks.dispatch_pending()["ranking_retries"] == 0
    assert not Ranking.objects.filter(status__in=OPEN).exists()
    assert not QueueEntry.objects.exclude(reason={}).filter(project=project).exists(), (
        "a failed ranking never reorders the queue"
    )


@pytest.mark.celery
@pytest.mark.slow
def test_a_ranking_that_failed_on_a_passing_fault_is_retried_and_serves_the_queue(
    worker, project, annotator, kit, monkeypatch
):
    version, row, good = _trained_with_a_corrupt_pool_row(project, annotator, kit)
    assert tasks.dispatch_pending()["rescorings"] == 1
    failed = _closed(version, 1)[0]
    assert failed.status == Ranking.Status.FAILED

    ClipFeatures.objects.filter(pk=row).update(vector=good)  # the fault passes
    assert tasks.dispatch_pending()["ranking_retries"] == 0, "not before the backoff"
    monkeypatch.setattr(rescoring, "RETRY_BACKOFF_S", 0.0)
    assert tasks.dispatch_pending()["ranking_retries"] == 1

    retried = _closed(version, 2)[0]
    assert retried.status == Ranking.Status.COMPLETE, retried.error
    assert retried.selected == 4
    served = set(
        QueueEntry.objects.filter(project=project, reason__ranking=retried.pk).values_list(
            "clip_id", flat=True)
    )  # fmt: skip
    assert len(served) == retried.pool_size
    failed.refresh_from_db()
    assert failed.status == Ranking.Status.FAILED, "the failure stays on record"
    assert tasks.dispatch_pending()["ranking_retries"] == 0
