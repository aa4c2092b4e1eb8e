"""The annotator page's assisted mode: the active model's suggestion for one clip.

`labelling.queue_api.suggestion_for` calls `suggest(project, clip_id)` in assisted mode and
shows the result beside the wheel. It goes through the same prediction service as the
predict API (learner.services.predict), so both always agree.
"""

from __future__ import annotations

import logging

from labelling.models import Clip, Project
from learner.features import ExtractorUnavailable
from learner.services import predict

log = logging.getLogger(__name__)


def suggest(project: Project, clip_id: int) -> dict | None:
    """{"model_version", "top", "probabilities": {"core": {key: p}, "fine": {key: p}}},
    or None when there is nothing to suggest (no active model yet) or nothing may be shown
    (a blind project, a gold clip).

    "top" is the most probable feeling at the finest ring the model was trained on; "fine"
    holds that ring's probabilities (empty when the model only knows the core ring).
    """
    if not project.assisted:
        # labelling.services.suggestions asks only in assisted mode; the provider refuses
        # too, so that no other caller can take a prediction to an annotator of a blind
        # project.
        return None
    clip = (
        Clip.objects.filter(pk=clip_id, project=project, gold__isnull=True)  # never the answer
        .only("pk", "speaker_id")
        .first()
    )
    if clip is None:
        return None
    try:
        prediction = predict.predict_clips(project, [clip])[0]
    except predict.NoActiveModel:
        return None
    except (predict.FeatureMismatch, ExtractorUnavailable) as exc:
        # The annotator can label without a suggestion; the admin sees the same error on
        # the predict API and in the model's training status.
        log.warning("no suggestion for clip %s of %s: %s", clip_id, project.slug, exc)
        return None
    fine_level = prediction.space.fine_level
    finest = prediction.levels[fine_level]
    return {
        "model_version": prediction.model_version,
        "top": max(finest, key=finest.__getitem__),
        "probabilities": {
            "core": {k: round(p, 4) for k, p in prediction.levels[0].items()},
            "fine": {k: round(p, 4) for k, p in finest.items()} if fine_level else {},
        },
    }
