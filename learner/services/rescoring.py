"""Closing the loop: rescore the unlabelled pool with the active model and refill the queue.

When a model version becomes active (or by hand, or at cold start with no model), a
`Ranking` is opened and the pool (clips that still want labels) is split into chunks that
any number of Celery workers score in parallel (a chord: `learner.tasks.score_chunk` for
each chunk, then `learner.tasks.finish_ranking`). Scores are stored per clip and ranking
(so per model version). The finishing step selects the next batch with the project's query
strategy (uncertainty with diversity, quotas over metadata) and swaps the queue's order in
one transaction: until then the queue keeps serving the previous ranking.

Every step is idempotent: a chunk's scores are upserted (a worker dying mid-chunk only
repeats that chunk), and finishing claims the ranking with a compare-and-set, so running
the chord again changes nothing.

No ranking stays open: a chunk that raises (after its transient-error retries), a finishing
step that raises, and the chord's error callback all mark the ranking FAILED with the error
(`fail`, a compare-and-set that keeps the first error); the beat fails a ranking still open
STALLED_AFTER_S after it opened (`fail_stalled`) and retries a failed ranking of an active
version as a new ranking, up to RANKING_ATTEMPTS per activation with a doubling backoff
(`versions_to_retry`). Until a ranking completes, the queue keeps its previous order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from labelling.models import Clip, Project
from labelling.services import loop
from learner import ranking as strategies
from learner.models import ClipScore, ModelVersion, Ranking
from learner.ranking import space
from learner.services import features as feature_cache
from learner.services import predict, project_settings

log = logging.getLogger(__name__)

# Clips per chunk task: settings.EMOLOOP_RESCORE_CHUNK (2000; smaller spreads a small pool).
# Priorities: the selected batch first (in pick order), then the rest of the pool by score.
BATCH_BASE = -1_000_000.0


# An activation queues its rescoring at once; the beat only steps in for a version whose
# rescoring has not started this long after its activation (its publish failed).
UNRANKED_GRACE_S = 60


# A ranking that fails (a chunk raised, finishing raised, or it made no progress for
# STALLED_AFTER_S) is retried by the beat as a new ranking of the same activation, at most
# RANKING_ATTEMPTS rankings per activation, the n-th retry RETRY_BACKOFF_S * 2**(n-1) seconds
# after the failure before it. The failed rankings keep their error on the row.
RANKING_ATTEMPTS = 3
RETRY_BACKOFF_S = 30.0
# A chunk task has a hard limit of 30 minutes (learner.tasks.score_chunk); a ranking still
# open twice that long after it opened is not coming back (its worker died, or the chord's
# callback was lost), and is failed so that it is retried.
STALLED_AFTER_S = 3600.0
OPEN = (Ranking.Status.RUNNING, Ranking.Status.SELECTING)


def _since_activation(version: ModelVersion) -> QuerySet[Ranking]:
    return Ranking.objects.filter(model_version=version, created_at__gte=version.activated_at)


def unranked_active_versions(grace_seconds: float = UNRANKED_GRACE_S) -> list[ModelVersion]:
    """Active versions activated more than `grace_seconds` ago with no ranking since then:
    their rescoring was never started (the broker was down after the activation committed,
    or the chord could not be sent). learner.tasks.dispatch_pending queues them again.

    A ranking that started and failed counts as started (its error is on the row; the retry
    is `versions_to_retry`'s); a rollback re-activates an older version, which then needs a
    ranking again.
    """
    since = Ranking.objects.filter(
        model_version=OuterRef("pk"), created_at__gte=OuterRef("activated_at")
    )
    limit = timezone.now() - timedelta(seconds=grace_seconds)
    return list(
        ModelVersion.objects.filter(is_active=True, activated_at__lte=limit)
        .filter(~Exists(since))
        .select_related("project")
        .order_by("project_id")
    )


def wants_ranking(version: ModelVersion, *, retry: bool = False) -> bool:
    """Whether a rescoring message for this version should open a ranking.

    First attempt (`retry` false): only if no ranking of it was opened since its (latest)
    activation, so a second message for the same activation (a beat resend racing the
    first) does nothing. Retry: only if the newest ranking since the activation failed and
    fewer than RANKING_ATTEMPTS were opened. The caller holds the version's row lock.
    """
    if version.activated_at is None:
        return False
    rankings = _since_activation(version)
    if not retry:
        return not rankings.exists()
    newest = rankings.order_by("-pk").first()
    return (
        newest is not None
        and newest.status == Ranking.Status.FAILED
        and rankings.count() < RANKING_ATTEMPTS
    )


def already_ranked(version: ModelVersion) -> bool:
    """Whether a ranking of this version was opened since its (latest) activation."""
    return version.activated_at is not None and _since_activation(version).exists()


def versions_to_retry(
    backoff_seconds: float | None = None, attempts: int | None = None
) -> list[ModelVersion]:
    """Active versions whose newest ranking since activation failed, with attempts left and
    the backoff after that failure passed (learner.tasks.dispatch_pending retries them).
    Defaults: RETRY_BACKOFF_S and RANKING_ATTEMPTS, read at the call."""
    backoff_seconds = RETRY_BACKOFF_S if backoff_seconds is None else backoff_seconds
    attempts = RANKING_ATTEMPTS if attempts is None else attempts
    now = timezone.now()
    due = []
    versions = ModelVersion.objects.filter(is_active=True, activated_at__isnull=False)
    for version in versions.select_related("project").order_by("project_id"):
        rankings = list(_since_activation(version).order_by("-pk")[:attempts])
        if not rankings or rankings[0].status != Ranking.Status.FAILED:
            continue
        if len(rankings) >= attempts:
            continue
        wait = backoff_seconds * 2 ** (len(rankings) - 1)
        failed_at = rankings[0].finished_at or rankings[0].created_at
        if failed_at <= now - timedelta(seconds=wait):
            due.append(version)
    return due


def error_text(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return text[:2000]


def fail(ranking_id: int, exc: BaseException | str) -> bool:
    """Mark an open ranking failed with the error; returns whether it was open.

    A compare-and-set on the open states: the first error recorded stays (a chunk's own
    error, not the chord's summary of it that follows), and a ranking that completed is
    never marked failed by a late duplicate.
    """
    return bool(
        Ranking.objects.filter(pk=ranking_id, status__in=OPEN).update(
            status=Ranking.Status.FAILED, error=error_text(exc), finished_at=timezone.now()
        )
    )


def newest_failure(project: Project) -> Ranking | None:
    """The project's newest ranking if it failed (the console shows it and its error above
    the ranking still serving the queue); None when the newest one did not fail."""
    newest = (
        Ranking.objects.filter(project=project).select_related("model_version").order_by("-pk")
    ).first()
    return newest if newest is not None and newest.status == Ranking.Status.FAILED else None


def fail_stalled(after_seconds: float = STALLED_AFTER_S) -> int:
    """Fail the rankings still open `after_seconds` after they opened; returns how many."""
    limit = timezone.now() - timedelta(seconds=after_seconds)
    return Ranking.objects.filter(status__in=OPEN, created_at__lt=limit).update(
        status=Ranking.Status.FAILED,
        error=f"No progress: still open {after_seconds:.0f} s after it started (a worker "
        "died or the chord's last step was lost).",
        finished_at=timezone.now(),
    )


@dataclass(frozen=True)
class Plan:
    ranking: Ranking
    chunks: list[list[int]]


def start(project: Project, version: ModelVersion | None = None) -> Plan:
    """Open a ranking for the project's active model (or a cold-start one without)."""
    version = version or ModelVersion.objects.filter(project=project, is_active=True).first()
    row = project_settings.settings_for(project)
    strategy = row.query_strategy if version else strategies.COLD_START_STRATEGY
    ids = loop.unlabelled_pool(project)
    size = int(settings.EMOLOOP_RESCORE_CHUNK)  # clips per chunk task
    ranking = Ranking.objects.create(
        project=project, model_version=version, strategy=strategy,
        params=strategies.resolve_params(strategy, row.query_params or None),
        batch_size=row.query_batch_size, pool_size=len(ids),
        chunks_total=(len(ids) + size - 1) // size,
    )  # fmt: skip
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
    return Plan(ranking=ranking, chunks=chunks)


def record_failed_start(project: Project, version: ModelVersion | None, exc: BaseException) -> None:
    """Record a rescoring that could not even open its ranking (`start` raised) as a failed
    ranking: the version then counts as ranked, and the error is kept on the row."""
    Ranking.objects.create(
        project=project,
        model_version=version,
        strategy=project_settings.settings_for(project).query_strategy[:40],
        status=Ranking.Status.FAILED,
        error=error_text(exc),
        finished_at=timezone.now(),
    )


def _vectors(project: Project, version: ModelVersion | None, clip_ids: list[int]):
    """Feature vectors (computed where missing) and the speakers of the clips."""
    name = version.extractor if version else project_settings.settings_for(project).feature_set
    ex = feature_cache.extractor(name)
    feature_cache.compute(clip_ids, ex.name)
    vectors = feature_cache.matrix(clip_ids, ex)
    speakers = dict(Clip.objects.filter(pk__in=clip_ids).values_list("pk", "speaker_id"))
    return vectors, [speakers.get(cid, "") for cid in clip_ids]


def _probabilities(ranking: Ranking, vectors: np.ndarray, speakers: list[str]):
    if ranking.model_version is None:
        return None, None
    return predict.ring_probabilities(ranking.model_version, vectors, speakers)


def score_chunk(ranking_id: int, clip_ids: list[int]) -> int:
    """Score one chunk of the pool and store the scores (upsert: safe to repeat)."""
    ranking = (
        Ranking.objects.select_related("project", "model_version").filter(pk=ranking_id).first()
    )
    if ranking is None or ranking.status != Ranking.Status.RUNNING:
        return 0
    done = set(ClipScore.objects.filter(ranking=ranking, clip_id__in=clip_ids).values_list(
        "clip_id", flat=True))  # fmt: skip
    todo = [cid for cid in clip_ids if cid not in done]
    if not todo:
        return 0
    vectors, speakers = _vectors(ranking.project, ranking.model_version, todo)
    core, fine = _probabilities(ranking, vectors, speakers)
    pool = strategies.Pool(probs_core=core, probs_fine=fine, embeddings=vectors)
    scores = strategies.score(ranking.strategy, pool, params=ranking.params,
                              seed=ranking.pk * 7919 + todo[0])  # fmt: skip
    top_core: list[str] = [""] * len(todo)
    top_probability: list[float | None] = [None] * len(todo)
    if core is not None and ranking.model_version is not None:
        keys = predict.core_keys(ranking.model_version)
        top = core.argmax(axis=1)
        top_core = [keys[t] for t in top]
        top_probability = [float(core[i, t]) for i, t in enumerate(top)]
    ClipScore.objects.bulk_create(
        [
            ClipScore(
                ranking=ranking, clip_id=cid, score=float(scores[i]),
                top_core=top_core[i], top_probability=top_probability[i],
            )
            for i, cid in enumerate(todo)
        ],
        ignore_conflicts=True,
    )  # fmt: skip
    return len(todo)


def finish(ranking_id: int) -> int:
    """Select the batch and swap the queue's order; returns the batch size (0 if claimed)."""
    claimed = Ranking.objects.filter(pk=ranking_id, status=Ranking.Status.RUNNING).update(
        status=Ranking.Status.SELECTING
    )
    if not claimed:
        return 0
    ranking = Ranking.objects.select_related("project", "model_version").get(pk=ranking_id)
    try:
        picked = _select_and_apply(ranking)
    except Exception as exc:
        fail(ranking_id, exc)
        raise
    return picked


def _select_and_apply(ranking: Ranking) -> int:
    project = ranking.project
    rows = list(ClipScore.objects.filter(ranking=ranking).values_list("clip_id", "score"))
    if not rows:
        _complete(ranking, 0)
        return 0
    clip_ids = np.array([r[0] for r in rows])
    scores = np.array([r[1] for r in rows], dtype=np.float64)
    batch = min(ranking.batch_size, len(clip_ids))
    # Diversity works on the most wanted candidates only (never an n x n problem).
    factor = int(ranking.params.get("candidate_factor", 10)) if ranking.params else 10
    order = np.argsort(-scores, kind="stable")
    candidates = clip_ids[order[: max(batch * factor, batch)]].tolist()
    vectors, speakers = _vectors(project, ranking.model_version, candidates)
    core, fine = _probabilities(ranking, vectors, speakers)
    groups = _groups(candidates)
    # The simulator's code path (learner.ranking.space): the model's input space, and the
    # labelled clips passed as already covered.
    done_x, done_speakers = _labelled_vectors(project, ranking)
    version = ranking.model_version
    normaliser = predict.load_predictor(version).normaliser if version else None
    pool = space.selection_pool(probs_core=core, probs_fine=fine, x=vectors, speakers=speakers,
                                normaliser=normaliser, labelled_x=done_x,
                                labelled_speakers=done_speakers, groups=groups)  # fmt: skip
    quotas = _quotas(project)
    selection = strategies.select(ranking.strategy, pool, batch, seed=ranking.pk,
                                  params=ranking.params, quotas=quotas)  # fmt: skip
    picks = [candidates[i] for i in selection.indices]
    pick_rank = {cid: rank for rank, cid in enumerate(picks)}
    base = {"strategy": ranking.strategy, "model_version": ranking.model_version.number
            if ranking.model_version else None, "ranking": ranking.pk}  # fmt: skip
    priorities, reasons = [], []
    for cid, score in zip(clip_ids.tolist(), scores.tolist(), strict=True):
        if cid in pick_rank:
            priorities.append(BATCH_BASE + pick_rank[cid])
            reasons.append({**base, "score": round(score, 6), "batch": True,
                            "rank": pick_rank[cid]})  # fmt: skip
        else:
            priorities.append(-score)
            reasons.append({**base, "score": round(score, 6), "batch": False})
    with transaction.atomic():
        # Only a project on the active-learning policy takes its order from the ranking
        # (loop.apply_ranking decides); the others keep theirs (the scores stay for reports
        # and the next switch).
        loop.apply_ranking(project, clip_ids.tolist(), priorities, reasons)
        ClipScore.objects.filter(ranking=ranking, clip_id__in=picks).update(selected=True)
        _complete(ranking, len(picks))
        # Older rankings are superseded; their per-clip scores are no longer needed.
        older = Ranking.objects.filter(project=project, pk__lt=ranking.pk).exclude(
            status=Ranking.Status.SUPERSEDED
        )
        ClipScore.objects.filter(ranking__in=older, selected=False).delete()
        older.filter(status=Ranking.Status.COMPLETE).update(status=Ranking.Status.SUPERSEDED)
    return len(picks)


def _labelled_vectors(project: Project, ranking: Ranking) -> tuple[np.ndarray | None, list[str]]:
    """Feature vectors and speakers of the clips with a label (a seeded sample of at most
    space.LABELLED_MAX), for the diversity step; (None, []) when nothing is labelled."""
    ids = sorted({lab.clip_id for lab in loop.label_snapshot(project).labels if lab.node_key})
    if not ids:
        return None, []
    ids = [ids[i] for i in space.labelled_sample(len(ids), seed=ranking.pk)]
    return _vectors(project, ranking.model_version, ids)


def _complete(ranking: Ranking, picked: int) -> None:
    Ranking.objects.filter(pk=ranking.pk).update(
        status=Ranking.Status.COMPLETE, selected=picked, finished_at=timezone.now()
    )


def _groups(clip_ids: list[int]) -> dict[str, np.ndarray]:
    fields = ("speaker_id", "gender", "age_band", "language", "channel")
    rows = {r[0]: r[1:] for r in Clip.objects.filter(pk__in=clip_ids).values_list("pk", *fields)}
    return {name: np.array([rows[cid][i] for cid in clip_ids], dtype=object)
            for i, name in enumerate(fields)}  # fmt: skip


def _quotas(project: Project) -> strategies.Quotas | None:
    row = project_settings.settings_for(project)
    if not row.coverage_min_share and not row.coverage_max_share:
        return None
    return strategies.Quotas(min_share=row.coverage_min_share or {},
                             max_share=row.coverage_max_share or {})  # fmt: skip
