"""Weak-label sources (external models whose predictions were imported as `WeakLabel`s): their
per-project settings (`WeakLabelSource`: weight, enabled, force) and how well each agrees
with the humans, so that a model that contradicts the project's own labels is flagged.

Agreement, per source (model name, every version; per clip the most recently imported
prediction counts): on the clips that have both its prediction and a human majority, the
share where the prediction's most probable core feeling (its probabilities summed onto the
core ring) is the humans' majority core feeling. The human majority is over the clip's
current labels (skips left out, unsure labels counted like the others) mapped onto the
active taxonomy version; a tie is no majority and the clip is not counted.

A source is *flagged* when it overlaps the humans on at least `MIN_OVERLAP` clips and agrees
on fewer than `MIN_AGREEMENT` of them (settings EMOLOOP_WEAK_MIN_OVERLAP, _MIN_AGREEMENT
override the defaults). It trains the model (`used_for_training`) when it is enabled, its
weight is above 0 and it is not flagged, or it is flagged and forced.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction

from audit import services as audit
from labelling.models import Project, WeakLabel
from labelling.models_interop import WeakLabelSource
from labelling.services import loop
from labelling.services.interop.predictions import node_ancestors

MIN_AGREEMENT = 0.5
MIN_OVERLAP = 20


def thresholds() -> tuple[float, int]:
    """(minimum agreement, minimum overlapping clips) in force."""
    agreement = float(getattr(settings, "EMOLOOP_WEAK_MIN_AGREEMENT", MIN_AGREEMENT))
    overlap = int(getattr(settings, "EMOLOOP_WEAK_MIN_OVERLAP", MIN_OVERLAP))
    return agreement, overlap


@dataclass(frozen=True)
class SourceReport:
    model_name: str
    versions: list[str]
    clips: int  # clips with a prediction of this source
    weight: float
    enabled: bool
    force: bool
    overlap: int  # clips with both a prediction and a human majority
    agreed: int
    agreement: float | None  # agreed / overlap, None without overlap
    flagged: bool
    used_for_training: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class LatestWeakLabel:
    clip_id: int
    model_name: str
    model_version: str
    probabilities: dict[str, float]


def latest_weak_labels(project: Project) -> list[LatestWeakLabel]:
    """Per (clip, model name) the most recently imported prediction on the active taxonomy
    version, by clip then model name."""
    rows = (
        WeakLabel.objects.filter(
            clip__project=project, taxonomy_version_id=project.taxonomy_version_id
        )
        .order_by("pk")
        .values_list("clip_id", "model_name", "model_version", "probabilities")
    )
    latest: dict[tuple[int, str], LatestWeakLabel] = {}
    for clip_id, name, version, probabilities in rows:
        latest[(clip_id, name)] = LatestWeakLabel(clip_id, name, version, probabilities)
    return [latest[k] for k in sorted(latest)]


def human_majority(project: Project, core_of: dict[str, str]) -> dict[int, str]:
    """Clip -> the core feeling most of its current labels name (ties: no entry)."""
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    for label in loop.label_snapshot(project).labels:
        if label.node_key is not None and label.node_key in core_of:
            votes[label.clip_id][core_of[label.node_key]] += 1
    out = {}
    for clip_id, counts in votes.items():
        top = counts.most_common(2)
        if len(top) == 1 or top[0][1] > top[1][1]:
            out[clip_id] = top[0][0]
    return out


def _predicted_core(probabilities: dict[str, float], core_of: dict[str, str]) -> str | None:
    mass: dict[str, float] = defaultdict(float)
    for key, p in probabilities.items():
        if key in core_of:
            mass[core_of[key]] += float(p)
    return max(sorted(mass), key=lambda k: mass[k]) if mass else None


def source_reports(project: Project) -> list[SourceReport]:
    """Every source with weak labels in the project (or settings), with its agreement."""
    min_agreement, min_overlap = thresholds()
    rows = {s.model_name: s for s in WeakLabelSource.objects.filter(project=project)}
    core_of = node_ancestors(project.taxonomy_version_id)  # node key -> its core key
    majority = human_majority(project, core_of)
    clips: Counter[str] = Counter()
    overlap: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for weak in latest_weak_labels(project):
        clips[weak.model_name] += 1
        truth = majority.get(weak.clip_id)
        if truth is None:
            continue
        overlap[weak.model_name] += 1
        agreed[weak.model_name] += _predicted_core(weak.probabilities, core_of) == truth
    versions: dict[str, set[str]] = defaultdict(set)
    for name, version in (
        WeakLabel.objects.filter(clip__project=project)
        .values_list("model_name", "model_version")
        .distinct()
    ):
        versions[name].add(version)
    reports = []
    for name in sorted(set(versions) | set(rows)):
        row = rows.get(name)
        weight = row.weight if row else WeakLabelSource.DEFAULT_WEIGHT
        enabled = row.enabled if row else True
        force = row.force if row else False
        n = overlap[name]
        agreement = agreed[name] / n if n else None
        flagged = agreement is not None and n >= min_overlap and agreement < min_agreement
        reports.append(
            SourceReport(
                model_name=name,
                versions=sorted(versions[name]),
                clips=clips[name],
                weight=weight,
                enabled=enabled,
                force=force,
                overlap=n,
                agreed=agreed[name],
                agreement=agreement,
                flagged=flagged,
                used_for_training=enabled and weight > 0 and (not flagged or force),
            )
        )
    return reports


def set_source(
    project: Project,
    model_name: str,
    *,
    weight: float | None = None,
    enabled: bool | None = None,
    force: bool | None = None,
) -> WeakLabelSource:
    """Create or change a source's settings (a source may be set up before its predictions
    are imported); a weight outside [0, 1] is a ValueError. A change is recorded in the
    audit log (`weak_source.changed`, each field's old and new value) in its transaction;
    setting what is already there records nothing."""
    if weight is not None and not (math.isfinite(weight) and 0 <= weight <= 1):
        raise ValueError(f"weight {weight} is not in [0, 1]")
    wanted = {"weight": weight, "enabled": enabled, "force": force}
    with transaction.atomic():
        row, created = WeakLabelSource.objects.select_for_update().get_or_create(
            project=project, model_name=model_name
        )
        changes = {
            field: [getattr(row, field), value]
            for field, value in wanted.items()
            if value is not None and getattr(row, field) != value
        }
        for field, (_old, value) in changes.items():
            setattr(row, field, value)
        if changes or created:
            row.save()
        if changes:
            audit.record(
                None, "weak_source.changed", project=project, target=row,
                details={"model": model_name, "changes": changes},
            )  # fmt: skip
    return row
