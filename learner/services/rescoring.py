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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from labelling.models import Clip, Project
from labelling.services import loop
from learner import ranking as strategies
from learner.models import ClipScore, ModelVersion, Ranking
from learner.services import features as feature_cache
from learner.services import predict, project_settings

log = logging.getLogger(__name__)

CHUNK_SIZE = 2000
# Priorities: the selected batch first (in pick order), then the rest of the pool by score.
BATCH_BASE = -1_000_000.0


# An activation queues its rescoring at once; the beat only steps in for a version whose
# rescoring has not started this long after its activation (its publish failed).
UNRANKED_GRACE_S = 60


def unranked_active_versions(grace_seconds: float = UNRANKED_GRACE_S) -> list[ModelVersion]:
    """Active versions activated more than `grace_seconds` ago with no ranking since then:
    their rescoring was never started (the broker was down after the activation committed,
    or the chord could not be sent). learner.tasks.dispatch_pending queues them again.

    A ranking that started and failed counts as started (its error is on the row); a
    rollback re-activates an older version, which then needs a ranking again.
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


def already_ranked(version: ModelVersion) -> bool:
    """Whether a ranking of this version was opened since its (latest) activation: a second
    message for the same activation (a beat resend racing the first) then does nothing."""
    if version.activated_at is None:
        return False
    return Ranking.objects.filter(
        model_version=version, created_at__gte=version.activated_at
    ).exists()


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
    ranking = Ranking.objects.create(
        project=project, model_version=version, strategy=strategy,
        params=strategies.resolve_params(strategy, row.query_params or None),
        batch_size=row.query_batch_size, pool_size=len(ids),
        chunks_total=(len(ids) + CHUNK_SIZE - 1) // CHUNK_SIZE,
    )  # fmt: skip
    chunks = [ids[i : i + CHUNK_SIZE] for i in range(0, len(ids), CHUNK_SIZE)]
    return Plan(ranking=ranking, chunks=chunks)


def record_failed_start(project: Project, version: ModelVersion | None, exc: BaseException) -> None:
    """Record a rescoring that could not even open its ranking (`start` raised) as a failed
    ranking: the version then counts as ranked, and the error is kept on the row."""
    Ranking.objects.create(
        project=project,
        model_version=version,
        strategy=project_settings.settings_for(project).query_strategy[:40],
        status=Ranking.Status.FAILED,
        error=f"{type(exc).__name__}: {exc}"[:2000],
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
        Ranking.objects.filter(pk=ranking_id).update(
            status=Ranking.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )  # fmt: skip
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
    pool = strategies.Pool(probs_core=core, probs_fine=fine, embeddings=vectors, groups=groups)
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
