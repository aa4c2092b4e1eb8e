"""A training run's rows: targets from the label snapshot, features from the cache, and the
normalisation mode the project's clips call for (learner.services.training runs it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from labelling.models import Clip, Project
from labelling.services import loop
from learner.models import LearnerSettings, SpeakerNormalisation
from learner.normalise import GLOBAL, SPEAKER
from learner.pipeline import Dataset
from learner.services import features as feature_cache
from learner.services import project_settings
from learner.targets import Judgement, Node, label_space, soft_targets

# Per-speaker normalisation in "auto" mode needs at least this share of clips with a speaker.
AUTO_SPEAKER_SHARE = 0.5


def normalisation(project: Project, row: LearnerSettings) -> str:
    if row.speaker_normalisation == SpeakerNormalisation.ON:
        return SPEAKER
    if row.speaker_normalisation == SpeakerNormalisation.OFF:
        return GLOBAL
    clips = Clip.objects.filter(project=project)
    total = clips.count()
    with_speaker = clips.exclude(speaker_id="").count()
    return SPEAKER if total and with_speaker / total >= AUTO_SPEAKER_SHARE else GLOBAL


def judgements_of(snapshot: loop.LabelSnapshot) -> list[Judgement]:
    """The snapshot's labels and skips as training judgements (clip, feeling, unsure)."""
    return [Judgement(lb.clip_id, lb.node_key, lb.unsure) for lb in snapshot.labels]


def build_dataset(
    project: Project,
    feature_set: str,
    snapshot: loop.LabelSnapshot,
    beat: Callable[[str, int, int], None],
) -> tuple[Dataset, LearnerSettings]:
    """Targets from the snapshot, features from the cache (computing what is missing);
    `beat(stage, done, total)` is called per clip whose features are computed."""
    row = project_settings.settings_for(project)
    nodes = [Node(n.key, n.name, n.level, n.parent_key) for n in loop.taxonomy_nodes(project)]
    judgements = judgements_of(snapshot)
    space = label_space(nodes, judgements)
    targets = soft_targets(space, judgements, unsure_weight=row.unsure_weight)
    ex = feature_cache.extractor(feature_set)
    all_clips = list(
        Clip.objects.filter(project=project).order_by("pk").values_list("pk", "speaker_id")
    )
    all_ids = [pk for pk, _ in all_clips]
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        beat("features", done, len(all_ids))

    feature_cache.compute(all_ids, ex.name, (0,), on_clip=tick)
    copies = feature_cache.AUGMENT.copies if row.augmentation else 0
    if copies:
        done = 0
        feature_cache.compute(targets.clip_ids, ex.name, range(1, copies + 1), on_clip=tick)
    speaker_of = dict(all_clips)
    stats_features = feature_cache.matrix(all_ids, ex)
    index = {pk: i for i, pk in enumerate(all_ids)}
    labelled = np.array([index[c] for c in targets.clip_ids], dtype=np.int64)
    dataset = Dataset(
        features=stats_features[labelled] if len(labelled) else np.zeros((0, ex.dim)),
        speakers=[speaker_of[c] for c in targets.clip_ids],
        targets=targets,
        space=space,
        extractor={"name": ex.name, "version": ex.version, "dim": ex.dim},
        stats_features=stats_features,
        stats_speakers=[speaker_of[c] for c in all_ids],
        augmented=[
            (k, feature_cache.matrix(targets.clip_ids, ex, k)) for k in range(1, copies + 1)
        ],
    )
    return dataset, row
