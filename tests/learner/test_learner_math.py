"""The framework-free pieces: metrics, calibration, normalisation, targets, split, model."""

from __future__ import annotations

import numpy as np
import pytest

from learner import calibration, metrics
from learner.model import TrainConfig, fit, predict_logits
from learner.normalise import GLOBAL, SPEAKER, fit_normaliser
from learner.pipeline import Dataset, InsufficientData, PipelineConfig, Predictor, speaker_split
from learner.pipeline import train_and_evaluate as train_and_evaluate_arrays
from learner.targets import (
    Judgement,
    LabelSpace,
    Node,
    label_space,
    node_probabilities,
    soft_targets,
)

# A small wheel: two core feelings, each with two secondary ones, one of which has two
# tertiary ones; "calm" has no children at all.
NODES = [
    Node("mad", "Mad", 0, None),
    Node("sad", "Sad", 0, None),
    Node("calm", "Calm", 0, None),
    Node("mad.angry", "Angry", 1, "mad"),
    Node("mad.hurt", "Hurt", 1, "mad"),
    Node("sad.bored", "Bored", 1, "sad"),
    Node("sad.lonely", "Lonely", 1, "sad"),
    Node("mad.angry.furious", "Furious", 2, "mad.angry"),
    Node("mad.angry.irritated", "Irritated", 2, "mad.angry"),
]


# --- metrics ------------------------------------------------------------------------------


def test_uar_is_the_mean_of_per_class_recalls_and_ignores_absent_classes():
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 0])
    assert metrics.uar(y_true, y_pred, 3) == pytest.approx((0.75 + 0.5) / 2)
    report = metrics.classification_report(y_true, np.eye(3)[y_pred], ["a", "b", "c"])
    assert report["per_class_recall"] == {"a": 0.75, "b": 0.5, "c": None}
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert report["macro_f1"] == pytest.approx((0.75 + 0.5) / 2)


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    probs = np.array([[0.75, 0.25]] * 4)
    assert metrics.expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0)
    assert metrics.expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


# --- calibration -------------------------------------------------------------------------


def test_temperature_scaling_recovers_the_temperature_that_made_logits_overconfident():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    labels = np.array([rng.choice(5, p=p) for p in calibration.softmax(true_logits)])
    overconfident = true_logits * 3.0
    temperature = calibration.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = metrics.expected_calibration_error(calibration.softmax(overconfident), labels)
    after = metrics.expected_calibration_error(
        calibration.softmax(overconfident, temperature), labels
    )
    assert after < before / 2


def test_temperature_is_one_without_validation_rows():
    assert calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0


# --- normalisation -----------------------------------------------------------------------


def test_per_speaker_normalisation_removes_each_speakers_offset_and_falls_back_to_global():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(10, 1, (50, 3))])
    speakers = ["a"] * 50 + ["b"] * 50
    norm = fit_normaliser(x, speakers, mode=SPEAKER)
    out = norm.transform(x, speakers)
    # Each speaker ends up near 0 (not exactly: shrinkage towards the global statistics).
    assert abs(out[:50].mean()) < 0.5
    assert abs(out[50:].mean()) < 0.5
    # An unknown speaker and a clip without speaker use the global statistics.
    assert np.allclose(norm.transform(x[:1], ["zz"]), norm.transform(x[:1], [""]))
    strict = fit_normaliser(x, speakers, mode=GLOBAL)
    assert strict.speakers == {}
    assert strict.transform(x, speakers)[:50].mean() < -0.5  # the offset stays


def test_speakers_with_few_clips_are_pulled_towards_the_global_statistics():
    x = np.concatenate([np.zeros((40, 1)), np.full((1, 1), 5.0), np.full((2, 1), 5.0)])
    speakers = ["a"] * 40 + ["one"] + ["two"] * 2
    norm = fit_normaliser(x, speakers, mode=SPEAKER, prior_clips=3, min_clips=2)
    assert "one" not in norm.speakers  # below min_clips: global statistics
    two = norm.speakers["two"].mean[0]
    assert norm.mean[0] < two < 5.0  # shrunk from 5 towards the global mean


def test_normaliser_state_round_trips():
    x = np.random.default_rng(2).normal(size=(20, 4))
    norm = fit_normaliser(x, ["a"] * 10 + ["b"] * 10, mode=SPEAKER)
    again = type(norm).from_state(norm.to_state())
    assert np.allclose(again.transform(x, ["a"] * 20), norm.transform(x, ["a"] * 20))


# --- targets -----------------------------------------------------------------------------


def test_the_fine_ring_is_the_deepest_labelled_one_and_covers_the_wheel_with_leaves():
    space = label_space(NODES, [Judgement(1, "mad.angry"), Judgement(2, "sad")])
    assert space.fine_level == 1
    assert space.core == ["mad", "sad", "calm"]
    assert space.fine == ["calm", "mad.angry", "mad.hurt", "sad.bored", "sad.lonely"]
    assert label_space(NODES, [Judgement(1, "mad")]).fine == []


def test_soft_targets_share_annotators_weigh_unsure_and_leave_out_skips():
    space = label_space(NODES, [Judgement(0, "mad.angry")])
    judgements = [
        Judgement(1, "mad.angry"),
        Judgement(1, "sad.bored", unsure=True),
        Judgement(1, None),  # a skip beside two labels: not a target
        Judgement(2, None),  # only skips: not an example
        Judgement(3, "mad"),  # core only: no fine target
        Judgement(3, "mad.hurt"),
    ]
    t = soft_targets(space, judgements, unsure_weight=0.5)
    assert t.clip_ids == [1, 3]
    assert t.skipped_only == [2]
    core = dict(zip(space.core, t.core[0], strict=True))
    assert core == pytest.approx({"mad": 2 / 3, "sad": 1 / 3, "calm": 0})
    assert t.core_weight[0] == pytest.approx(0.75)  # (1 + 0.5) / 2
    assert t.fine_weight[1] == pytest.approx(0.5)  # one of two labels reached the fine ring
    assert t.fine[1][space.fine.index("mad.hurt")] == pytest.approx(1.0)


def test_node_probabilities_agree_across_rings_and_sum_to_one_per_complete_ring():
    space = label_space(NODES, [Judgement(0, "mad.angry")])
    core = np.array([0.6, 0.3, 0.1])
    fine = np.array([0.5, 0.3, 0.1, 0.05, 0.05])  # calm, angry, hurt, bored, lonely
    levels = node_probabilities(space, core, fine)
    assert sum(levels[0].values()) == pytest.approx(1)
    assert levels[0]["mad"] == pytest.approx(0.6)
    assert levels[1]["mad.angry"] + levels[1]["mad.hurt"] == pytest.approx(0.6)
    assert levels[1]["mad.angry"] == pytest.approx(0.6 * 0.75)
    # Tertiary ring, never labelled: the parent's probability split evenly.
    assert levels[2]["mad.angry.furious"] == pytest.approx(levels[1]["mad.angry"] / 2)


def test_label_space_round_trips():
    space = label_space(NODES, [Judgement(0, "mad.angry.furious")])
    again = LabelSpace.from_state(space.to_state())
    assert again.fine == space.fine
    assert again.fine_level == 2


# --- split and training ------------------------------------------------------------------


def test_the_split_keeps_every_speaker_in_one_part_and_falls_back_to_clips():
    speakers = [f"s{i % 7}" for i in range(70)]
    split = speaker_split(speakers, list(range(70)), test_fraction=0.2, val_fraction=0.15, seed=3)
    parts = [{speakers[i] for i in idx} for idx in (split.train, split.val, split.test)]
    assert all(parts)
    assert not (parts[0] & parts[1])
    assert not (parts[0] & parts[2])
    assert not (parts[1] & parts[2])
    assert split.speaker_independent
    few = speaker_split(
        ["a", "b"] * 10, list(range(20)), test_fraction=0.2, val_fraction=0.15, seed=0
    )
    assert few.by == "clip"
    assert not few.speaker_independent
    assert len(few.test) >= 1


def _blobs(n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 8)) + np.eye(3, 8)[y] * 3
    return x, y


def test_training_is_reproducible_with_a_seed_and_differs_with_another():
    x, y = _blobs()
    args = (x, np.eye(3)[y], np.ones(len(y)), None, None)
    a = predict_logits(fit(*args, TrainConfig(epochs=5, ensemble=2, seed=1)), x)[0]
    b = predict_logits(fit(*args, TrainConfig(epochs=5, ensemble=2, seed=1)), x)[0]
    c = predict_logits(fit(*args, TrainConfig(epochs=5, ensemble=2, seed=2)), x)[0]
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def _dataset(n_speakers: int = 6, classes: int = 3) -> Dataset:
    x, y = _blobs(n_speakers * 30)
    y = y % classes
    nodes = [Node(f"c{k}", f"C{k}", 0, None) for k in range(3)]
    judgements = [Judgement(i, f"c{k}") for i, k in enumerate(y)]
    space = label_space(nodes, judgements)
    targets = soft_targets(space, judgements)
    return Dataset(
        features=x,
        speakers=[f"s{(i // 3) % n_speakers}" for i in range(len(y))],
        targets=targets,
        space=space,
        extractor={"name": "test", "version": "1", "dim": 8},
    )


def test_the_pipeline_evaluates_calibrates_and_its_artifact_predicts_the_same():
    data = _dataset()
    result = train_and_evaluate_arrays(data, PipelineConfig(train=TrainConfig(epochs=10)))
    assert result.metrics["uar"] > 0.9
    assert result.metrics["heads"]["core"]["temperature"] > 0
    loaded = Predictor.from_bytes(result.predictor.to_bytes())
    a, _ = result.predictor.probabilities(data.features, data.speakers)
    b, _ = loaded.probabilities(data.features, data.speakers)
    assert np.allclose(a, b)


def test_one_class_only_is_a_clear_insufficient_data_error():
    with pytest.raises(InsufficientData) as caught:
        train_and_evaluate_arrays(_dataset(classes=1), PipelineConfig())
    assert caught.value.code == "single_class"
