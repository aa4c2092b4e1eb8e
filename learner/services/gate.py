"""The quality gate: a new model version becomes active only if it is not worse than the
active one beyond the noise, measured on the same evaluation.

The same evaluation: while the gate is on, a run holds out the active version's test groups
again (its speakers, or its clips when the split was by clip; `pinned_test_groups` ->
learner.pipeline.speaker_split), so both versions' held-out predictions exist for the clips
the active version was tested on. Each was made by a model that never trained on those
speakers. The gate compares them clip by clip, on the clips both held out, against the
labels as they are now:

    d = UAR(new) - UAR(active), with a paired percentile-bootstrap 95 % interval [low, high]
    over the common clips' speakers (over clips with fewer than 3 speakers; learner.metrics).

The new version is refused when high < -margin (LearnerSettings.quality_gate_margin,
default 0): it is worse beyond the noise. Otherwise, or with no common evaluation (no active
version, an active version from before the gate, no clip in common), it is activated as
before. A refused version stays a candidate with the reason recorded on it (and on its run);
an ML engineer can still activate it by hand (the audit event says the gate was overridden).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelling.models import Project
from learner import metrics
from learner.models import GateDecision, LearnerSettings, ModelVersion


@dataclass
class Verdict:
    decision: str  # a GateDecision value
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def activate(self) -> bool:
        return self.decision != GateDecision.REFUSED


def active_version(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, is_active=True).first()


def pinned_test_groups(project: Project, row: LearnerSettings) -> tuple[str, ...]:
    """The groups a new run must hold out to be comparable with the active version."""
    if not row.quality_gate:
        return ()
    active = active_version(project)
    if active is None:
        return ()
    return tuple(sorted(set(active.held_out.get("groups") or ())))


def judge(
    held_out: dict[str, list[Any]],
    active: ModelVersion | None,
    row: LearnerSettings,
    *,
    seed: int = 0,
) -> Verdict:
    """The gate's verdict on a new version whose held-out predictions are `held_out`
    (learner.pipeline.TrainResult.held_out), against the active version."""
    if not row.quality_gate:
        return Verdict(GateDecision.OFF, "The quality gate is off for this project.")
    if active is None:
        return Verdict(GateDecision.FIRST, "No active version to compare with.")
    theirs = dict(
        zip(
            active.held_out.get("clip_ids") or [],
            active.held_out.get("predicted") or [],
            strict=False,
        )
    )
    ours = [
        (clip, group, truth, predicted, theirs[clip])
        for clip, group, truth, predicted in zip(
            held_out.get("clip_ids", []),
            held_out.get("groups", []),
            held_out.get("truth", []),
            held_out.get("predicted", []),
            strict=True,
        )
        if clip in theirs
    ]
    if not ours:
        why = (
            "it stores no held-out predictions (trained before the gate)"
            if not theirs
            else "none of its held-out clips is held out and labelled in this run"
        )
        return Verdict(
            GateDecision.NOT_COMPARABLE,
            f"Not compared with v{active.number}: {why}; activated as without the gate.",
            {"compared_with": active.number},
        )
    labels = sorted({name for _, _, t, p, o in ours for name in (t, p, o)})
    index = {name: k for k, name in enumerate(labels)}
    groups = [group if not group.startswith("clip:") else "" for _, group, *_ in ours]
    diff = metrics.paired_uar_difference(
        np.array([index[t] for _, _, t, _, _ in ours]),
        np.array([index[p] for _, _, _, p, _ in ours]),
        np.array([index[o] for _, _, _, _, o in ours]),
        groups,
        len(labels),
        seed=seed,
    )
    margin = float(row.quality_gate_margin)
    details = {"compared_with": active.number, "margin": margin, **diff}
    where = (
        f"the same {diff['rows']} held-out clips ({diff['units']} speakers)"
        if diff["by"] == "speaker"
        else f"the same {diff['rows']} held-out clips (resampled by clip)"
    )
    figures = (
        f"UAR {diff['uar_new']:.3f} against v{active.number}'s {diff['uar_old']:.3f} on {where}: "
        f"difference {diff['difference']:+.3f}, 95% interval {diff['low']:+.3f} to "
        f"{diff['high']:+.3f}"
    )
    if diff["high"] < -margin:
        return Verdict(
            GateDecision.REFUSED,
            f"Refused by the quality gate: {figures}, entirely below -{margin:.3f}. It stays a "
            "candidate; an ML engineer can activate it by hand.",
            details,
        )
    return Verdict(GateDecision.ACCEPTED, f"Not worse beyond the noise: {figures}.", details)
