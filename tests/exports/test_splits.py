"""Speaker-disjoint splits: disjoint, deterministic, stable across versions, stratified."""

import hashlib
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exports.core.splits import (
    NO_LABEL,
    SplitClip,
    assign_splits,
    group_of,
    split_moves,
)

TARGETS = {"train": 0.8, "dev": 0.1, "test": 0.1}
LABELS = ["anger", "joy", "neutral", "sadness"]
GENDERS = ["female", "male", "unknown"]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def datasets(draw, first_id=0, prefix="g"):
    """A random dataset: 1-25 groups of 1-8 clips, labels (or none) and genders per clip."""
    clips = []
    for g in range(draw(st.integers(1, 25))):
        gender = draw(st.sampled_from(GENDERS))
        for _ in range(draw(st.integers(1, 8))):
            label = draw(st.sampled_from([*LABELS, None]))
            clips.append(SplitClip(first_id + len(clips), f"{prefix}{g}", label, gender))
    return clips


def groups_per_split(clips, by_clip):
    """split -> groups that have a clip in it, read from the per-clip answer."""
    seen = {}
    for clip in clips:
        seen.setdefault(by_clip[clip.clip_id], set()).add(clip.group)
    return seen


# (a) speaker-disjoint, and the counts add up ------------------------------------------


@PROPERTY
@given(datasets(), st.integers(0, 2**32))
def test_every_group_lands_in_exactly_one_split(clips, seed):
    result = assign_splits(clips, TARGETS, seed)

    per_split = groups_per_split(clips, result.by_clip)
    all_groups = [g for groups in per_split.values() for g in groups]
    assert len(all_groups) == len(set(all_groups))  # no group in two splits
    assert set(result.by_clip) == {c.clip_id for c in clips}
    for clip in clips:
        assert result.by_clip[clip.clip_id] == result.assignment[clip.group]
    assert set(result.assignment.values()) <= set(TARGETS)


@PROPERTY
@given(datasets(), st.integers(0, 2**32))
def test_counts_describe_the_assignment(clips, seed):
    result = assign_splits(clips, TARGETS, seed)

    assert list(result.counts) == ["train", "dev", "test"]  # split order: share, then name
    for split, counts in result.counts.items():
        mine = [c for c in clips if result.by_clip[c.clip_id] == split]
        assert counts.clips == len(mine)
        assert counts.groups == len({c.group for c in mine})
        labels = Counter(NO_LABEL if c.label is None else c.label for c in mine)
        assert {k: v for k, v in counts.labels.items() if v} == dict(labels)
        assert {k: v for k, v in counts.genders.items() if v} == dict(
            Counter(c.gender for c in mine)
        )
        assert list(counts.labels) == sorted(counts.labels)
    assert list(result.by_clip) == sorted(result.by_clip)
    assert list(result.assignment) == sorted(result.assignment)


# (b) deterministic and independent of input order -------------------------------------


@PROPERTY
@given(datasets(), st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_shuffled_clips_and_reordered_targets_give_the_same_result(clips, seed, rng):
    shuffled = list(clips)
    rng.shuffle(shuffled)
    reordered = dict(reversed(list(TARGETS.items())))

    assert assign_splits(shuffled, reordered, seed) == assign_splits(clips, TARGETS, seed)


# (c) stable across versions ------------------------------------------------------------


@PROPERTY
@given(
    datasets(),
    datasets(first_id=10_000, prefix="new"),
    st.lists(st.sampled_from(LABELS), max_size=12),
    st.integers(0, 2**32),
    st.randoms(use_true_random=False),
)
def test_old_groups_keep_their_split_when_groups_and_clips_are_added(
    v1, new_groups, more_labels, seed, rng
):
    first = assign_splits(v1, TARGETS, seed)
    old_groups = sorted(first.assignment)
    more_clips = [
        SplitClip(20_000 + i, rng.choice(old_groups), label, rng.choice(GENDERS))
        for i, label in enumerate(more_labels)
    ]
    v2 = v1 + new_groups + more_clips

    second = assign_splits(v2, TARGETS, seed, previous=first.history)

    assert split_moves(first.assignment, second.assignment) == {}
    assert {g: second.assignment[g] for g in old_groups} == first.assignment
    assert {c.group for c in new_groups} <= set(second.assignment)
    assert set(second.assignment.values()) <= set(TARGETS)


@PROPERTY
@given(datasets(), datasets(first_id=10_000, prefix="new"), st.integers(0, 2**32))
def test_a_group_absent_from_one_version_gets_its_split_back_through_history(v1, extra, seed):
    first = assign_splits(v1, TARGETS, seed)
    gone = v1[0].group
    second = assign_splits(
        [c for c in v1 if c.group != gone] + extra, TARGETS, seed, previous=first.history
    )
    assert gone not in second.assignment
    assert second.history[gone] == first.assignment[gone]
    third = assign_splits(v1 + extra, TARGETS, seed, previous=second.history)

    assert split_moves(first.assignment, third.assignment) == {}
    assert split_moves(second.assignment, third.assignment) == {}


def test_old_groups_stay_put_even_when_the_balance_has_drifted():
    # Every old speaker sits in test: far from 80/10/10, and still none of them moves; the
    # new speakers go where the deficit is, train and dev.
    old = [SplitClip(i, f"old{i}", "joy", "female") for i in range(6)]
    new = [SplitClip(100 + i, f"new{i}", "joy", "female") for i in range(30)]
    previous = {f"old{i}": "test" for i in range(6)}

    result = assign_splits(old + new, TARGETS, seed=3, previous=previous)

    assert all(result.assignment[f"old{i}"] == "test" for i in range(6))
    assert {result.assignment[f"new{i}"] for i in range(30)} == {"train", "dev"}


def test_a_new_group_fills_the_split_that_lacks_its_stratum():
    # Half/half targets; the old female speaker sits in "a", so the new female one goes to
    # "b" and the two new male speakers are shared out, whatever the seed orders first.
    targets = {"a": 0.5, "b": 0.5}
    clips = [
        SplitClip(10 * g + i, f"s{g}", "joy", "female" if g < 2 else "male")
        for g in range(4)
        for i in range(10)
    ]
    for seed in range(10):
        result = assign_splits(clips, targets, seed, previous={"s0": "a"})
        assert result.assignment["s1"] == "b"
        assert {result.assignment["s2"], result.assignment["s3"]} == {"a", "b"}


def test_split_moves_names_each_group_whose_split_changed():
    previous = {"speaker:1": "train", "speaker:2": "dev", "speaker:3": "test"}
    current = {"speaker:1": "train", "speaker:2": "test", "speaker:4": "dev"}

    assert split_moves(previous, current) == {"speaker:2": ("dev", "test")}


# (d) the seed matters ------------------------------------------------------------------


def sixty_speakers():
    """60 speakers (30 female, 30 male), 8-16 clips each, each with its own skew over 4 labels."""
    rng = random.Random(10)
    clips = []
    for s in range(60):
        gender = "female" if s % 2 else "male"
        weights = [rng.uniform(0.5, 2.0) for _ in LABELS]
        for _ in range(rng.randint(8, 16)):
            label = rng.choices(LABELS, weights)[0]
            clips.append(SplitClip(len(clips), f"speaker:{s:02d}", label, gender))
    return clips


def test_a_different_seed_gives_a_different_assignment():
    clips = sixty_speakers()
    by_seed = {seed: assign_splits(clips, TARGETS, seed).assignment for seed in range(5)}

    assert by_seed[0] != by_seed[1]
    assert by_seed[0] == assign_splits(clips, TARGETS, 0).assignment
    # Not one lucky pair: the test speakers differ across most seeds.
    test_sets = {frozenset(g for g, s in a.items() if s == "test") for a in by_seed.values()}
    assert len(test_sets) >= 4


# (e) stratification --------------------------------------------------------------------

# Tolerances, as absolute differences of shares. Clip shares: 0.03, because splits are made of
# whole speakers and one speaker is up to 16 of 724 clips (0.022 of the dataset). Label and
# gender shares: 0.10, because dev and test hold about 72 clips from 6-7 speakers; a label
# that is 25% of the data has a sampling SD of sqrt(0.25 * 0.75 / 72) = 0.05 in 72 clips drawn
# one by one, and drawing whole speakers is coarser still, so 0.10 is two such SDs. A split that
# ignores the strata (`hash_order_split`) misses the gender tolerance on most seeds.
CLIP_SHARE_TOLERANCE = 0.03
STRATUM_SHARE_TOLERANCE = 0.10


def worst_deviations(clips, assignment):
    """(clip share vs target, label share vs overall, gender share vs overall), worst split."""
    total = len(clips)
    labels = Counter(c.label for c in clips)
    genders = Counter(c.gender for c in clips)
    worst = [0.0, 0.0, 0.0]
    for split, target in TARGETS.items():
        mine = [c for c in clips if assignment[c.group] == split]
        n = len(mine)
        mine_labels = Counter(c.label for c in mine)
        mine_genders = Counter(c.gender for c in mine)
        worst[0] = max(worst[0], abs(n / total - target))
        worst[1] = max(worst[1], *(abs(mine_labels[k] / n - labels[k] / total) for k in labels))
        worst[2] = max(worst[2], *(abs(mine_genders[k] / n - genders[k] / total) for k in genders))
    return worst


def hash_order_split(clips, seed):
    """The baseline without strata: speakers in a seeded order, cut at 48/6/6."""
    groups = sorted({c.group for c in clips})
    groups.sort(key=lambda g: hashlib.blake2b(f"{seed}:{g}".encode()).digest())
    return {g: "train" if i < 48 else "dev" if i < 54 else "test" for i, g in enumerate(groups)}


@pytest.mark.parametrize("seed", range(10))
def test_splits_keep_label_and_gender_shares_and_hit_the_clip_targets(seed):
    clips = sixty_speakers()
    result = assign_splits(clips, TARGETS, seed)

    clip_share, label_share, gender_share = worst_deviations(clips, result.assignment)
    assert clip_share <= CLIP_SHARE_TOLERANCE
    assert label_share <= STRATUM_SHARE_TOLERANCE
    assert gender_share <= STRATUM_SHARE_TOLERANCE


def test_the_stratum_tolerance_is_one_an_unstratified_split_misses():
    clips = sixty_speakers()
    misses = sum(
        worst_deviations(clips, hash_order_split(clips, seed))[2] > STRATUM_SHARE_TOLERANCE
        for seed in range(10)
    )
    assert misses >= 5


# Small datasets and real metadata shape ------------------------------------------------

# EmoDB's 535 utterances: speaker -> clips per emotion (from the corpus' file names).
EMODB = {
    "03": {
        "anger": 14,
        "boredom": 5,
        "disgust": 1,
        "fear": 4,
        "happiness": 7,
        "neutral": 11,
        "sadness": 7,
    },
    "08": {"anger": 12, "boredom": 10, "fear": 6, "happiness": 11, "neutral": 10, "sadness": 9},
    "09": {
        "anger": 13,
        "boredom": 4,
        "disgust": 8,
        "fear": 1,
        "happiness": 4,
        "neutral": 9,
        "sadness": 4,
    },
    "10": {
        "anger": 10,
        "boredom": 8,
        "disgust": 1,
        "fear": 8,
        "happiness": 4,
        "neutral": 4,
        "sadness": 3,
    },
    "11": {
        "anger": 11,
        "boredom": 8,
        "disgust": 2,
        "fear": 10,
        "happiness": 8,
        "neutral": 9,
        "sadness": 7,
    },
    "12": {
        "anger": 12,
        "boredom": 5,
        "disgust": 2,
        "fear": 6,
        "happiness": 2,
        "neutral": 4,
        "sadness": 4,
    },
    "13": {
        "anger": 12,
        "boredom": 10,
        "disgust": 8,
        "fear": 7,
        "happiness": 10,
        "neutral": 9,
        "sadness": 5,
    },
    "14": {
        "anger": 16,
        "boredom": 8,
        "disgust": 8,
        "fear": 12,
        "happiness": 8,
        "neutral": 7,
        "sadness": 10,
    },
    "15": {
        "anger": 13,
        "boredom": 9,
        "disgust": 5,
        "fear": 8,
        "happiness": 6,
        "neutral": 11,
        "sadness": 4,
    },
    "16": {
        "anger": 14,
        "boredom": 14,
        "disgust": 11,
        "fear": 7,
        "happiness": 11,
        "neutral": 5,
        "sadness": 9,
    },
}
EMODB_FEMALE = {"08", "09", "13", "14", "16"}


def emodb_clips():
    clips = []
    for speaker, emotions in EMODB.items():
        gender = "female" if speaker in EMODB_FEMALE else "male"
        for emotion, n in emotions.items():
            for _ in range(n):
                clips.append(
                    SplitClip(len(clips), group_of(speaker, None, len(clips)), emotion, gender)
                )
    return clips


@pytest.mark.parametrize("seed", range(20))
def test_emodb_speakers_fill_every_split_with_different_people(seed):
    clips = emodb_clips()
    assert len(clips) == 535
    result = assign_splits(clips, TARGETS, seed)

    speakers = {s: {g for g, split in result.assignment.items() if split == s} for s in TARGETS}
    assert all(len(speakers[s]) >= 1 for s in TARGETS)
    assert not speakers["dev"] & speakers["test"]
    assert len(speakers["train"]) == 10 - len(speakers["dev"]) - len(speakers["test"])
    assert result.counts["train"].clips > result.counts["dev"].clips + result.counts["test"].clips


@pytest.mark.parametrize("seed", range(10))
def test_three_groups_give_each_split_one(seed):
    clips = [SplitClip(i, f"g{i // 5}", "joy", "female") for i in range(15)]
    result = assign_splits(clips, TARGETS, seed)
    assert sorted(result.assignment.values()) == ["dev", "test", "train"]


def test_new_groups_fill_the_splits_old_ones_left_empty():
    clips = [SplitClip(i, f"g{i}", "joy", "male") for i in range(6)]
    previous = {"g0": "train", "g1": "train", "g2": "train", "g3": "train"}
    result = assign_splits(clips, TARGETS, seed=0, previous=previous)
    assert {result.assignment["g4"], result.assignment["g5"]} == {"dev", "test"}


def test_fewer_groups_than_splits_leave_a_split_empty_without_error():
    clips = [SplitClip(i, f"g{i}", "joy", "male") for i in range(2)]
    result = assign_splits(clips, TARGETS, seed=0)
    assert sum(c.groups for c in result.counts.values()) == 2
    assert [s for s, c in result.counts.items() if c.groups == 0] != []


def test_group_of_prefers_speaker_then_recording_then_the_clip():
    assert group_of("07", 3, 11) == "speaker:07"
    assert group_of(None, 3, 11) == "recording:3"
    assert group_of("  ", 3, 11) == "recording:3"
    assert group_of(None, None, 11) == "clip:11"
    assert group_of("3", None, 1) != group_of(None, 3, 1)


# (f) clear errors ----------------------------------------------------------------------

ONE_CLIP = [SplitClip(1, "speaker:1", "joy", "female")]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({}, "targets are empty"),
        ({"train": 0.9, "dev": 0.0, "test": 0.1}, "'dev' is 0.0"),
        ({"train": 1.1, "dev": -0.1}, "'dev' is -0.1"),
        ({"train": float("nan"), "dev": 0.5}, "finite number > 0"),
        ({"train": 0.8, "dev": 0.1}, "sum to 0.9"),
        ({"train": 0.5, "dev": 0.5, "test": 0.5}, "sum to 1.5"),
        ({"": 1.0}, "non-empty strings"),
        ({f"s{i}": 1 / 17 for i in range(17)}, "at most 16"),
    ],
)
def test_invalid_targets_are_refused_with_a_reason(targets, message):
    with pytest.raises(ValueError, match=message):
        assign_splits(ONE_CLIP, targets, seed=0)


def test_no_clips_is_an_error():
    with pytest.raises(ValueError, match="no clips to split"):
        assign_splits([], TARGETS, seed=0)


@pytest.mark.parametrize(
    ("clips", "message"),
    [
        ([*ONE_CLIP, SplitClip(1, "speaker:2", "joy", "male")], "clip 1 appears twice"),
        ([SplitClip(1, "", "joy", "male")], "empty group"),
        ([SplitClip(1, "speaker:1", "", "male")], "empty label"),
    ],
)
def test_bad_clips_are_refused(clips, message):
    with pytest.raises(ValueError, match=message):
        assign_splits(clips, TARGETS, seed=0)


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, True])
def test_a_seed_outside_64_bits_is_refused(seed):
    with pytest.raises(ValueError, match="signed 64-bit"):
        assign_splits(ONE_CLIP, TARGETS, seed=seed)


def test_a_previous_split_that_is_no_longer_a_target_is_refused():
    with pytest.raises(ValueError, match="'holdout' is not among the targets"):
        assign_splits(ONE_CLIP, TARGETS, seed=0, previous={"speaker:1": "holdout"})
