"""The feature cache: computed once per clip and extractor version, backfilled in chunks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from labelling.models import Clip
from learner.features import AcousticExtractor, acoustic
from learner.models import ClipFeatures
from learner.services import features

pytestmark = [pytest.mark.django_db]


def test_vectors_are_computed_once_and_match_the_audio(project, kit, emodb):
    clips = kit.clips(project, ["03"], per_emotion=1)
    ids = [c.pk for c in clips]

    assert features.compute(ids, "acoustic") == len(clips)
    assert features.compute(ids, "acoustic") == 0

    ex = features.extractor("acoustic")
    matrix = features.matrix(ids, ex)
    wave, rate = soundfile.read(str(emodb / "wav" / clips[0].original_name), dtype="float32")
    assert np.allclose(matrix[0], acoustic.extract(wave, rate))
    assert ClipFeatures.objects.count() == len(clips)


def test_only_a_new_extractor_version_invalidates_the_cache(project, kit, monkeypatch):
    clips = kit.clips(project, ["03"], per_emotion=1)
    ids = [c.pk for c in clips]
    features.compute(ids, "acoustic")

    monkeypatch.setattr(AcousticExtractor, "version", "999")
    assert features.compute(ids, "acoustic") == len(clips)

    versions = set(ClipFeatures.objects.values_list("version", flat=True))
    assert versions == {acoustic.VERSION, "999"}  # older vectors stay for older models


def test_the_backfill_plan_lists_clips_without_features_in_chunks(project, kit):
    clips = kit.clips(project, ["03"], per_emotion=2)
    features.compute([clips[0].pk], "acoustic")

    plan = features.backfill_plan(chunk=4, max_chunks=2)

    planned = [pk for name, ids in plan for pk in ids]
    assert {name for name, _ in plan} == {"acoustic"}
    assert all(len(ids) <= 4 for _, ids in plan)
    assert len(plan) == 2
    assert clips[0].pk not in planned
    assert planned == sorted(c.pk for c in clips[1:9])


def test_a_clip_deleted_takes_its_vectors_with_it(project, kit):
    clips = kit.clips(project, ["03"], per_emotion=1)
    features.compute([clips[0].pk], "acoustic")
    Clip.objects.filter(pk=clips[0].pk).delete()
    assert not ClipFeatures.objects.exists()
