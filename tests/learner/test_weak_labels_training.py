"""Weak labels as a training signal (issue 12): the targets they make (learner.targets),
the merge into a training dataset (learner.services.weak_labels), the per-source agreement
with the humans and its flag (labelling.services.interop.sources) and the sources' API."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from labelling.models import Annotation, Clip, Project, TaxonomyNode, WeakLabel
from labelling.models_interop import WeakLabelSource
from labelling.services import loop
from labelling.services.interop import sources
from learner.pipeline import Dataset
from learner.services import features as feature_cache
from learner.services import weak_labels
from learner.targets import (
    Judgement,
    LabelSpace,
    Node,
    WeakJudgement,
    merge_targets,
    soft_targets,
    weak_soft_targets,
)
from tests.factories import ClipFactory

# A small wheel: two core feelings, "mad" with two children (the fine ring), "sad" a leaf.
NODES = [
    Node("mad", "Mad", 0, None),
    Node("sad", "Sad", 0, None),
    Node("mad.angry", "Angry", 1, "mad"),
    Node("mad.hurt", "Hurt", 1, "mad"),
]
SPACE = LabelSpace(NODES, fine_level=1)  # core [mad, sad]; fine [sad, mad.angry, mad.hurt]
HUMAN = [Judgement(1, "mad.angry"), Judgement(1, "mad.angry"), Judgement(3, None)]


def _human():
    return soft_targets(SPACE, HUMAN)


# --- Targets ------------------------------------------------------------------------------


def test_a_clip_with_only_a_weak_label_gets_the_sources_distribution_with_its_weight() -> None:
    weak = weak_soft_targets(SPACE, [WeakJudgement(2, {"mad.angry": 0.6, "sad": 0.4}, 0.3)])
    merged = merge_targets(_human(), weak)
    assert merged.clip_ids == [1, 2]
    assert merged.weak_rows().tolist() == [False, True]
    assert merged.core[1] == pytest.approx([0.6, 0.4])
    assert merged.core_weight[1] == pytest.approx(0.3)
    assert merged.fine is not None
    assert merged.fine_weight is not None
    assert merged.fine[1] == pytest.approx([0.4, 0.6, 0.0])  # both keys are fine classes
    assert merged.fine_weight[1] == pytest.approx(0.3)


def test_a_coarse_weak_label_teaches_the_fine_head_only_its_fine_share() -> None:
    weak = weak_soft_targets(SPACE, [WeakJudgement(2, {"mad": 0.5, "mad.hurt": 0.5}, 1.0)])
    assert weak.core[0] == pytest.approx([1.0, 0.0])
    assert weak.fine is not None
    assert weak.fine_weight is not None
    assert weak.fine[0] == pytest.approx([0.0, 0.0, 1.0])
    assert weak.fine_weight[0] == pytest.approx(0.5)


def test_human_labelled_and_skipped_clips_keep_exactly_their_human_targets() -> None:
    human = _human()
    weak = weak_soft_targets(
        SPACE,
        [
            WeakJudgement(1, {"sad": 1.0}, 1.0),  # labelled by humans: ignored
            WeakJudgement(3, {"sad": 1.0}, 1.0),  # skipped by humans: ignored
        ],
    )
    merged = merge_targets(human, weak)
    assert merged.clip_ids == [1]
    assert merged.core.tolist() == human.core.tolist()
    assert merged.core_weight.tolist() == human.core_weight.tolist()
    assert not merged.weak_rows().any()


def test_human_only_drops_the_weak_rows() -> None:
    human = _human()
    merged = merge_targets(human, weak_soft_targets(SPACE, [WeakJudgement(2, {"sad": 1.0}, 1)]))
    back = merged.human_only()
    assert back.clip_ids == [1]
    assert back.core.tolist() == human.core.tolist()
    assert human.human_only() is human


def test_weight_zero_changes_nothing() -> None:
    human = _human()
    weak = weak_soft_targets(SPACE, [WeakJudgement(2, {"sad": 1.0}, 0.0)])
    assert weak.clip_ids == []
    assert merge_targets(human, weak) is human


def test_two_sources_on_one_clip_average_by_weight_and_never_outweigh_a_human() -> None:
    weak = weak_soft_targets(
        SPACE,
        [WeakJudgement(2, {"mad": 1.0}, 0.6), WeakJudgement(2, {"sad": 1.0}, 0.2)],
    )
    assert weak.core[0] == pytest.approx([0.75, 0.25])
    assert weak.core_weight[0] == pytest.approx(0.6)


def test_keys_outside_the_label_space_are_ignored_and_the_rest_renormalised() -> None:
    weak = weak_soft_targets(SPACE, [WeakJudgement(2, {"sad": 0.2, "elsewhere": 0.8}, 0.5)])
    assert weak.core[0] == pytest.approx([0.0, 1.0])


def _dataset(copies: int = 1) -> Dataset:
    human = _human()
    x = np.array([[1.0, 1.0]], dtype=np.float32)
    return Dataset(
        features=x,
        speakers=["a"],
        targets=human,
        space=SPACE,
        extractor={"name": "acoustic", "version": "x", "dim": 2},
        augmented=[(k, x + k) for k in range(1, copies + 1)],
    )


def test_merging_appends_features_speakers_and_augmented_copies_of_weak_rows() -> None:
    weak = weak_soft_targets(
        SPACE, [WeakJudgement(1, {"sad": 1.0}, 0.3), WeakJudgement(2, {"sad": 1.0}, 0.3)]
    )
    features = np.array([[9.0, 9.0], [2.0, 3.0]])  # rows follow weak.clip_ids = [1, 2]
    merged = weak_labels.merge_weak_rows(_dataset(), weak, features, ["a", "b"])
    assert merged.targets.clip_ids == [1, 2]
    assert merged.features.tolist() == [[1.0, 1.0], [2.0, 3.0]]
    assert merged.speakers == ["a", "b"]
    assert merged.augmented[0][1].tolist() == [[2.0, 2.0], [2.0, 3.0]]


# --- Sources, agreement and what trains (database) -----------------------------------------


def _node(project: Project, key: str) -> TaxonomyNode:
    return TaxonomyNode.objects.get(version_id=project.taxonomy_version_id, key=key)


def _weak(project: Project, clip: Clip, model: str, probabilities: dict[str, float]) -> None:
    top = max(probabilities, key=lambda k: probabilities[k])
    WeakLabel.objects.create(
        clip=clip,
        model_name=model,
        model_version="1",
        taxonomy_version=project.taxonomy_version,
        probabilities=probabilities,
        top_node=_node(project, top),
        top_probability=probabilities[top],
    )


@pytest.fixture
def judged(project: Project, annotator, settings) -> list[Clip]:
    """4 clips labelled mad.angry by a human, 2 unlabelled; source "good" says mad (agrees),
    source "bad" says sad on every clip."""
    settings.EMOLOOP_WEAK_MIN_OVERLAP = 3
    clips = [ClipFactory(project=project) for _ in range(6)]
    for clip in clips[:4]:
        Annotation.objects.create(clip=clip, annotator=annotator, node=_node(project, "mad.angry"))
    for clip in clips:
        _weak(project, clip, "good", {"mad.angry": 0.7, "sad": 0.3})
        _weak(project, clip, "bad", {"mad.angry": 0.1, "sad.bored": 0.9})
    return clips


@pytest.mark.django_db
def test_a_source_that_disagrees_with_the_humans_is_flagged_and_left_out(
    project: Project, judged: list[Clip]
) -> None:
    reports = {r.model_name: r for r in sources.source_reports(project)}
    assert (reports["good"].overlap, reports["good"].agreed) == (4, 4)
    assert reports["good"].agreement == 1.0
    assert not reports["good"].flagged
    assert reports["good"].used_for_training
    assert reports["good"].weight == WeakLabelSource.DEFAULT_WEIGHT
    assert (reports["bad"].overlap, reports["bad"].agreed) == (4, 0)
    assert reports["bad"].flagged
    assert not reports["bad"].used_for_training
    trained = weak_labels.weak_judgements(project)
    assert {w.clip_id for w in trained} == {c.pk for c in judged}
    assert {w.weight for w in trained} == {0.3}


@pytest.mark.django_db
def test_too_little_overlap_flags_nobody(project: Project, judged: list[Clip], settings) -> None:
    settings.EMOLOOP_WEAK_MIN_OVERLAP = 5
    assert not any(r.flagged for r in sources.source_reports(project))


@pytest.mark.django_db
def test_a_forced_source_trains_although_flagged_and_a_disabled_one_does_not(
    project: Project, judged: list[Clip]
) -> None:
    sources.set_source(project, "bad", force=True, weight=0.8)
    sources.set_source(project, "good", enabled=False)
    trained = weak_labels.weak_judgements(project)
    assert {w.weight for w in trained} == {0.8}
    assert all(w.probabilities == {"mad.angry": 0.1, "sad.bored": 0.9} for w in trained)
    with pytest.raises(ValueError, match="not in"):
        sources.set_source(project, "good", weight=1.5)


@pytest.mark.django_db
def test_add_weak_rows_adds_only_unlabelled_clips_with_cached_features(
    project: Project, judged: list[Clip]
) -> None:
    labelled = [c.pk for c in judged[:4]]
    space = LabelSpace(
        [Node(n.key, n.name, n.level, n.parent_key) for n in loop.taxonomy_nodes(project)], 0
    )
    human = soft_targets(space, [Judgement(c, "mad") for c in labelled])
    ex = feature_cache.extractor("acoustic")
    dataset = Dataset(
        features=np.zeros((4, ex.dim), dtype=np.float32),
        speakers=[c.speaker_id for c in judged[:4]],
        targets=human,
        space=space,
        extractor={"name": ex.name, "version": ex.version, "dim": ex.dim},
    )
    merged = weak_labels.add_weak_rows(project, dataset)
    unlabelled = [c.pk for c in judged[4:]]
    assert merged.targets.clip_ids == [*labelled, *unlabelled]
    assert merged.targets.weak_rows().tolist() == [False] * 4 + [True] * 2
    mad, sad = space.core.index("mad"), space.core.index("sad")
    assert merged.targets.core[4:, mad].tolist() == pytest.approx([0.7, 0.7])  # "good"
    assert merged.targets.core[4:, sad].tolist() == pytest.approx([0.3, 0.3])
    assert merged.targets.core_weight[4:].tolist() == pytest.approx([0.3, 0.3])
    assert merged.features[4:].tolist() == feature_cache.matrix(unlabelled, ex).tolist()
    assert merged.speakers[4:] == [c.speaker_id for c in judged[4:]]


@pytest.mark.django_db
def test_the_sources_api_lists_agreement_and_flags_for_engineers_only(
    project: Project, judged: list[Clip], engineer, annotator, client_for
) -> None:
    url = f"/api/projects/{project.slug}/predictions/"
    body = client_for(engineer).get(url).json()
    by_name = {s["model_name"]: s for s in body["sources"]}
    assert by_name["bad"]["flagged"] is True
    assert by_name["bad"]["used_for_training"] is False
    assert by_name["good"]["agreement"] == 1.0
    assert body["min_overlap"] == 3
    assert client_for(annotator).get(url).status_code == 403


@pytest.mark.django_db
def test_the_weak_sources_command_sets_a_weight_and_lists_the_flag(
    project: Project, judged: list[Clip]
) -> None:
    out = io.StringIO()
    call_command("weak_sources", project.slug, "good", "--weight", "0.6", stdout=out)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert "weight=0.6" in lines["good"]
    assert "flagged=True used_for_training=False" in lines["bad"]
    assert WeakLabelSource.objects.get(project=project, model_name="good").weight == 0.6
    with pytest.raises(CommandError, match="not in"):
        call_command("weak_sources", project.slug, "good", "--weight", "2", stdout=out)
