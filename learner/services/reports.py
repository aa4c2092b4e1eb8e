"""What the workspace's training and ranking pages show (console.views): the learning
curve, a version's figures and whether its test split can be trusted, two versions side by
side, the current batch with the reason each clip was chosen, and the pool's uncertainty.

Read-only: every figure comes from what training (ModelVersion.metrics) and rescoring
(Ranking, ClipScore, the queue's reasons) recorded; nothing is recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, FloatField, Value
from django.db.models.functions import Cast, Floor, Least

from labelling.models import Project, QueueEntry
from learner import conf
from learner.features import describe
from learner.models import ClipScore, GateDecision, ModelVersion, Ranking, TrainingRun
from learner.ranking import STRATEGIES

# A version's figures are "not yet meaningful" below either (the API's metrics_meaningful,
# the models page's warning; docs/learner.md). Generic sample sizes, not tuned to a corpus:
# under 30 clips a 95% interval of a recall spans about +-0.15 or more, and with fewer than
# 3 speakers the figures describe those voices rather than the model.
TRUST_MIN_CLIPS = 30
TRUST_MIN_SPEAKERS = 3
# Strategies the live loop can run: rescoring hands the strategies point probabilities,
# never MC-dropout passes, so a strategy that needs them (bald) runs only in the simulator.
LIVE_STRATEGIES = tuple(sorted(name for name, spec in STRATEGIES.items() if not spec.needs_mc))
HISTOGRAM_BINS = 10
# The metrics compared side by side, in order: (key in ModelVersion.metrics, label).
HEADLINE = (
    ("uar", "UAR (core ring)"),
    ("macro_f1", "Macro-F1 (core ring)"),
    ("accuracy", "Accuracy (core ring)"),
    ("ece_before", "ECE before calibration"),
    ("ece_after", "ECE after calibration"),
)


def feature_sets() -> list[dict[str, object]]:
    """Every feature set with whether it can run on this server and why not."""
    return describe(conf.extractor_options())


def unavailable_reason(name: str) -> str | None:
    """Why a feature set cannot run here (None when it can): the rule the training API, the
    settings API and the pages share."""
    for entry in feature_sets():
        if entry["name"] == name:
            return None if entry["available"] else str(entry.get("reason") or "unavailable")
    return f"unknown feature set {name!r}"


@dataclass
class VersionFacts:
    number: int
    is_active: bool
    label_count: int
    extractor: str
    created_at: Any
    metrics: dict[str, Any]
    test_clips: int | None
    test_speakers: int | None
    speaker_independent: bool
    intervals: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    meaningful: bool = False
    evaluated_on: str = ""
    deployed_fit: dict[str, Any] = field(default_factory=dict)
    gate_decision: str = ""
    gate_reason: str = ""
    is_candidate: bool = False
    per_class: list[tuple[str, float | None]] = field(default_factory=list)
    has_confusion: bool = False
    has_reliability: bool = False

    def value(self, key: str) -> float | None:
        found = self.metrics.get(key)
        return float(found) if isinstance(found, int | float) else None


def facts(version: ModelVersion) -> VersionFacts:
    metrics = version.metrics or {}
    split = metrics.get("split") or {}
    core = (metrics.get("heads") or {}).get("core") or {}
    test_clips = core.get("n", (split.get("sizes") or {}).get("test"))
    speakers = (split.get("speakers") or {}).get("test") if split.get("by") == "speaker" else None
    test_speakers = len(speakers) if isinstance(speakers, list) else None
    warnings = []
    if test_clips is not None and test_clips < TRUST_MIN_CLIPS:
        warnings.append(
            f"The test split has only {test_clips} clips (fewer than {TRUST_MIN_CLIPS}): "
            "these figures are too noisy to trust."
        )
    if test_speakers is None:
        warnings.append(
            "The test split is not speaker-independent (clips carry no speaker ids): the "
            "figures may flatter the model."
        )
    elif test_speakers < TRUST_MIN_SPEAKERS:
        warnings.append(
            f"The test split has only {test_speakers} speaker(s) (fewer than "
            f"{TRUST_MIN_SPEAKERS}): the figures say more about those speakers than the model."
        )
    meaningful = (
        test_clips is not None
        and test_clips >= TRUST_MIN_CLIPS
        and (split.get("by") != "speaker" or (test_speakers or 0) >= TRUST_MIN_SPEAKERS)
    )
    if not meaningful:
        warnings.insert(
            0,
            f"Not yet meaningful: a test split needs at least {TRUST_MIN_CLIPS} clips and "
            f"{TRUST_MIN_SPEAKERS} speakers before its figures say much.",
        )
    recalls = core.get("per_class_recall") or {}
    return VersionFacts(
        number=version.number,
        is_active=version.is_active,
        label_count=version.label_count,
        extractor=version.extractor,
        created_at=version.created_at,
        metrics=metrics,
        test_clips=test_clips,
        test_speakers=test_speakers,
        speaker_independent=bool(split.get("speaker_independent")),
        intervals=metrics.get("intervals") or {},
        warnings=warnings,
        meaningful=meaningful,
        evaluated_on=str(metrics.get("evaluated_on") or ""),
        deployed_fit=metrics.get("deployed_fit") or {},
        gate_decision=version.gate_decision,
        gate_reason=version.gate_reason,
        is_candidate=version.gate_decision == GateDecision.REFUSED and not version.is_active,
        per_class=[(str(k), v) for k, v in recalls.items()],
        has_confusion=bool(version.confusion_image),
        has_reliability=bool(version.calibration_image),
    )


def versions(project: Project) -> list[VersionFacts]:
    """Every model version, newest first."""
    rows = ModelVersion.objects.filter(project=project).defer("held_out").order_by("-number")
    return [facts(v) for v in rows]


def learning_curve(project: Project) -> list[tuple[int, int, dict[str, float | None]]]:
    """(labels, version number, {uar, macro_f1, ece_after}) per version, in training order."""
    rows = ModelVersion.objects.filter(project=project).defer("held_out").order_by("number")
    return [
        (v.label_count, v.number, {k: facts(v).value(k) for k in ("uar", "macro_f1", "ece_after")})
        for v in rows
    ]


def compare(a: VersionFacts, b: VersionFacts) -> list[tuple[str, float | None, float | None]]:
    """The headline metrics and each class's recall of two versions, side by side."""
    rows: list[tuple[str, float | None, float | None]] = [
        (label, a.value(key), b.value(key)) for key, label in HEADLINE
    ]
    rows.append(("Labels", float(a.label_count), float(b.label_count)))
    rows.append(("Test clips", _num(a.test_clips), _num(b.test_clips)))
    a_recall, b_recall = dict(a.per_class), dict(b.per_class)
    for name in sorted(set(a_recall) | set(b_recall)):
        rows.append((f"Recall: {name}", a_recall.get(name), b_recall.get(name)))
    return rows


def _num(value: int | None) -> float | None:
    return None if value is None else float(value)


def runs(project: Project, limit: int = 20) -> list[TrainingRun]:
    return list(
        TrainingRun.objects.filter(project=project)
        .select_related("requested_by", "model_version")
        .order_by("-created_at")[:limit]
    )


# --- The ranking ---------------------------------------------------------------------------


@dataclass
class BatchClip:
    rank: int
    clip_id: int
    name: str
    speaker: str
    gender: str
    score: float
    top_core: str
    top_probability: float | None
    why: str


@dataclass
class RankingReport:
    ranking: Ranking
    description: str
    params: dict[str, Any]
    batch: list[BatchClip]
    # {dimension: [(value, batch count, batch share, pool share)]}: the batch against the
    # scored pool (what a random batch would hold, on average).
    composition: dict[str, list[tuple[str, int, float, float]]]
    histogram: list[tuple[float, float, int]]  # (low, high, clips) of 1 - top probability
    pool_size: int


def current_ranking(project: Project) -> Ranking | None:
    """The ranking serving the queue (the newest complete one), else the newest one."""
    rankings = Ranking.objects.filter(project=project).select_related("model_version")
    return (
        rankings.filter(status=Ranking.Status.COMPLETE).order_by("-pk").first()
        or rankings.order_by("-pk").first()
    )


def _why(ranking: Ranking, score: float, rank: int, params: dict[str, Any]) -> str:
    """The reason a strategy records, in words: the strategy, its score, the pick."""
    parts = [f"{ranking.strategy}: score {score:.3f}"]
    if "measure" in params:
        parts.append(f"uncertainty by {params['measure']}")
    if "alpha" in params:
        parts.append(f"core/fine weight alpha={params['alpha']}")
    if "candidate_factor" in params:
        parts.append(
            f"picked #{rank + 1} for diversity among the top "
            f"{int(params['candidate_factor']) * ranking.batch_size} candidates"
        )
    else:
        parts.append(f"picked #{rank + 1} by score")
    if ranking.model_version is not None:
        parts.append(f"model v{ranking.model_version.number}")
    else:
        parts.append("cold start (no model)")
    return "; ".join(parts)


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: (v / total if total else 0.0) for k, v in counts.items()}


def ranking_report(project: Project) -> RankingReport | None:
    ranking = current_ranking(project)
    if ranking is None:
        return None
    spec = STRATEGIES.get(ranking.strategy)
    params = dict(ranking.params or {})
    scores = ClipScore.objects.filter(ranking=ranking)
    picked = list(scores.filter(selected=True).select_related("clip").order_by("-score", "clip_id"))
    # The queue holds each pick's rank in the batch (rescoring's reasons).
    reasons = dict(
        QueueEntry.objects.filter(clip_id__in=[s.clip_id for s in picked]).values_list(
            "clip_id", "reason"
        )
    )

    def rank_of(s: ClipScore, fallback: int) -> int:
        reason = reasons.get(s.clip_id) or {}
        rank = reason.get("rank") if reason.get("ranking") == ranking.pk else None
        return int(rank) if isinstance(rank, int) else fallback

    ordered = sorted(((rank_of(s, i), s) for i, s in enumerate(picked)), key=lambda pair: pair[0])
    batch = [
        BatchClip(
            rank=rank + 1,
            clip_id=s.clip_id,
            name=s.clip.original_name,
            speaker=s.clip.speaker_id,
            gender=s.clip.gender,
            score=s.score,
            top_core=s.top_core,
            top_probability=s.top_probability,
            why=_why(ranking, s.score, rank, params),
        )
        for rank, s in ordered
    ]
    composition: dict[str, list[tuple[str, int, float, float]]] = {}
    dimensions = (
        ("Predicted feeling", "top_core"),
        ("Speaker", "clip__speaker_id"),
        ("Gender", "clip__gender"),
    )
    for label, path in dimensions:
        pool = dict(scores.values_list(path).annotate(n=Count("pk")).values_list(path, "n"))
        chosen = dict(
            scores.filter(selected=True)
            .values_list(path)
            .annotate(n=Count("pk"))
            .values_list(path, "n")
        )
        pool_share, chosen_share = _shares(pool), _shares(chosen)
        composition[label] = sorted(
            (
                (
                    str(value or "—"),
                    chosen.get(value, 0),
                    chosen_share.get(value, 0.0),
                    pool_share.get(value, 0.0),
                )
                for value in set(pool) | set(chosen)
            ),
            key=lambda row: (-row[1], -row[3], row[0]),
        )[:12]
    return RankingReport(
        ranking=ranking,
        description=spec.description if spec else "",
        params=params,
        batch=batch,
        composition=composition,
        histogram=uncertainty_histogram(ranking),
        pool_size=scores.count(),
    )


def uncertainty_histogram(ranking: Ranking) -> list[tuple[float, float, int]]:
    """Clips of the scored pool by the model's uncertainty, 1 - top_probability, in
    HISTOGRAM_BINS equal bins over [0, 1] (one GROUP BY; cold-start rankings have none)."""
    bins = HISTOGRAM_BINS
    rows = (
        ClipScore.objects.filter(ranking=ranking, top_probability__isnull=False)
        .annotate(
            bin=Least(
                Floor((1.0 - Cast(F("top_probability"), FloatField())) * bins),
                Value(float(bins - 1)),
                output_field=FloatField(),
            )
        )
        .values("bin")
        .annotate(n=Count("pk"))
        .values_list("bin", "n")
    )
    counts = {int(b): n for b, n in rows}
    return [(i / bins, (i + 1) / bins, counts.get(i, 0)) for i in range(bins)]
