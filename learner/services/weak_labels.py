"""Weak labels (imported external models' predictions) as a training signal.

- `weak_judgements(project)`: the weak labels of the sources that train
  (`labelling.services.interop.sources`: enabled, weight > 0, not flagged for disagreeing
  with the humans unless forced), each with its source's weight.
- `merge_weak_rows(dataset, weak, features, speakers)`: the dataset with weak rows appended
  for the clips no human judged (learner.targets.merge_targets: a clip with human labels, or
  only human skips, keeps exactly its human targets; W = 0 adds nothing). Pure: dataset in,
  dataset out. The weak rows' augmented copies are their plain features (augmentation is
  computed for labelled clips only), so a weak row keeps weight W relative to a human row.
  `targets.weak` marks them: an evaluation must leave them out of validation and test.
- `add_weak_rows(project, dataset)`: what the training service calls after building its
  dataset (features of the weak clips from the feature cache).

Agreement and flags are computed in labelling (the sources' API lists them); this module
only decides what trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelling.models import Clip, Project
from labelling.services.interop import sources
from learner.pipeline import Dataset
from learner.services import features as feature_cache
from learner.targets import Targets, WeakJudgement, merge_targets, weak_soft_targets


def weak_judgements(project: Project) -> list[WeakJudgement]:
    """The weak labels that may train, with their sources' weights."""
    weights = {
        r.model_name: r.weight for r in sources.source_reports(project) if r.used_for_training
    }
    return [
        WeakJudgement(w.clip_id, w.probabilities, weights[w.model_name])
        for w in sources.latest_weak_labels(project)
        if w.model_name in weights
    ]


def merge_weak_rows(
    dataset: Dataset, weak: Targets, features: np.ndarray, speakers: Sequence[str]
) -> Dataset:
    """`dataset` with the rows of `weak` (features and speakers aligned with `weak.clip_ids`)
    whose clips no human judged appended after the human rows."""
    merged = merge_targets(dataset.targets, weak)
    if merged is dataset.targets:
        return dataset
    position = {c: i for i, c in enumerate(weak.clip_ids)}
    added = [position[c] for c in merged.clip_ids[len(dataset.targets.clip_ids) :]]
    extra = np.asarray(features, dtype=dataset.features.dtype)[added]
    return Dataset(
        features=np.concatenate([dataset.features, extra]),
        speakers=[*dataset.speakers, *(speakers[i] for i in added)],
        targets=merged,
        space=dataset.space,
        extractor=dict(dataset.extractor),
        stats_features=dataset.stats_features,
        stats_speakers=dataset.stats_speakers,
        augmented=[(k, np.concatenate([copy, extra])) for k, copy in dataset.augmented],
    )


def add_weak_rows(project: Project, dataset: Dataset) -> Dataset:
    """The training dataset plus the project's usable weak labels (see the module docstring);
    the dataset unchanged when there are none."""
    weak = weak_soft_targets(dataset.space, weak_judgements(project))
    if not weak.clip_ids:
        return dataset
    ex = feature_cache.extractor(dataset.extractor["name"])
    speaker_of = dict(Clip.objects.filter(pk__in=weak.clip_ids).values_list("pk", "speaker_id"))
    judged = set(dataset.targets.clip_ids) | set(dataset.targets.skipped_only)
    needed = [c for c in weak.clip_ids if c not in judged]
    if not needed:
        return dataset
    feature_cache.compute(needed, ex.name, (0,))
    rows = feature_cache.matrix(needed, ex)
    position = {c: i for i, c in enumerate(needed)}
    features = np.zeros((len(weak.clip_ids), rows.shape[1]), dtype=rows.dtype)
    for i, c in enumerate(weak.clip_ids):
        if c in position:
            features[i] = rows[position[c]]
    return merge_weak_rows(dataset, weak, features, [speaker_of[c] for c in weak.clip_ids])
