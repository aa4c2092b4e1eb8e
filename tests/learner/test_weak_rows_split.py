"""Weak rows in the pipeline's split (learner.pipeline._split_with_weak_rows): they only ever
train, never from a held-out speaker, never in validation or test; without weak rows the
split is exactly the human rows' speaker split."""

from __future__ import annotations

import numpy as np

from learner.model import TrainConfig
from learner.pipeline import Dataset, PipelineConfig, speaker_split, train_and_evaluate
from learner.services import weak_labels
from learner.targets import (
    Judgement,
    LabelSpace,
    Node,
    WeakJudgement,
    soft_targets,
    weak_soft_targets,
)

SPACE = LabelSpace([Node("mad", "Mad", 0, None), Node("sad", "Sad", 0, None)], fine_level=0)
SPEAKERS = [f"s{k}" for k in range(6)]
CONFIG = PipelineConfig(train=TrainConfig(epochs=2, ensemble=1), min_examples=4, seed=3)


def _human_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    judgements, features, speakers = [], [], []
    for s, speaker in enumerate(SPEAKERS):
        for k in range(8):
            clip = 100 * s + k
            feeling = "mad" if k % 2 else "sad"
            judgements.append(Judgement(clip, feeling))
            features.append(rng.normal(1.0 if k % 2 else -1.0, 0.3, size=4))
            speakers.append(speaker)
    return Dataset(
        features=np.asarray(features, dtype=np.float32),
        speakers=speakers,
        targets=soft_targets(SPACE, judgements),
        space=SPACE,
        extractor={"name": "acoustic", "version": "x", "dim": 4},
        augmented=[],
    )


def _with_weak(dataset: Dataset) -> Dataset:
    """Three unlabelled clips per speaker with a weak label each."""
    clips = [100 * s + 50 + k for s in range(len(SPEAKERS)) for k in range(3)]
    weak = weak_soft_targets(
        SPACE, [WeakJudgement(c, {"mad": 0.8, "sad": 0.2}, 0.3) for c in clips]
    )
    features = np.zeros((len(clips), 4), dtype=np.float32)
    speakers = [SPEAKERS[c // 100] for c in clips]
    return weak_labels.merge_weak_rows(dataset, weak, features, speakers)


def test_without_weak_rows_the_split_is_the_human_speaker_split() -> None:
    data = _human_dataset()
    result = train_and_evaluate(data, CONFIG)
    expected = speaker_split(
        data.speakers, data.targets.clip_ids, test_fraction=CONFIG.test_fraction,
        val_fraction=CONFIG.val_fraction, seed=CONFIG.seed,
    )  # fmt: skip
    for part in ("train", "val", "test"):
        assert getattr(result.split, part).tolist() == getattr(expected, part).tolist()
    assert result.metrics["deployed_fit"]["weak_rows"] == 0


def test_weak_rows_train_only_and_never_from_a_held_out_speaker() -> None:
    human = _human_dataset()
    data = _with_weak(human)
    weak = data.targets.weak_rows()
    assert weak.sum() == 18
    assert not weak[: len(human.targets.clip_ids)].any()
    result = train_and_evaluate(data, CONFIG)
    split = result.split
    held = {data.speakers[i] for i in np.concatenate([split.val, split.test])}
    assert held, "the constructed data must hold some speakers out"
    assert not weak[split.val].any()
    assert not weak[split.test].any()
    trained_weak = [i for i in split.train if weak[i]]
    assert trained_weak, "weak rows of training speakers train"
    assert all(data.speakers[i] not in held for i in trained_weak)
    expected = [i for i in np.flatnonzero(weak) if data.speakers[i] not in held]
    assert sorted(trained_weak) == expected
    # The human rows are split exactly as without weak labels.
    alone = train_and_evaluate(human, CONFIG).split
    assert split.test.tolist() == alone.test.tolist()
    assert split.val.tolist() == alone.val.tolist()
    assert result.metrics["deployed_fit"]["weak_rows"] == 18
