"""Quotas keep a batch from collapsing onto the majority group."""

import numpy as np
import pytest

from learner.ranking import DEFAULT_STRATEGY, Pool, Quotas, apply_quotas, select

pytestmark = []

MALE_THEN_FEMALE = np.array(["male"] * 20 + ["female"] * 20)
RANKED = np.arange(40)  # every male clip ranks above every female clip


def test_a_minimum_share_pulls_lower_ranked_female_clips_into_the_batch():
    batch = apply_quotas(
        RANKED, {"gender": MALE_THEN_FEMALE}, 10, min_share={"gender": {"female": 0.5}}
    )
    assert len(batch) == 10
    assert (MALE_THEN_FEMALE[batch] == "female").sum() >= 5
    # The males kept are the best-ranked ones, and the batch stays in ranked order.
    assert batch.tolist() == [0, 1, 2, 3, 4, 20, 21, 22, 23, 24]


def test_a_minimum_takes_what_exists_when_there_is_too_little():
    gender = np.array(["male"] * 38 + ["female"] * 2)
    batch = apply_quotas(RANKED, {"gender": gender}, 10, min_share={"gender": {"female": 0.5}})
    assert len(batch) == 10
    assert (gender[batch] == "female").sum() == 2


def test_caps_are_never_exceeded_even_if_the_batch_comes_back_short():
    batch = apply_quotas(
        RANKED, {"gender": MALE_THEN_FEMALE}, 10, max_share={"gender": {"male": 0.3}}
    )
    assert batch.tolist() == [0, 1, 2, 20, 21, 22, 23, 24, 25, 26]

    only_male = np.array(["male"] * 40)
    short = apply_quotas(RANKED, {"gender": only_male}, 10, max_share={"gender": {"male": 0.3}})
    assert short.tolist() == [0, 1, 2]


def test_per_speaker_caps_and_gender_minimums_hold_together():
    rng = np.random.default_rng(0)
    speaker = rng.choice(["s1", "s2", "s3", "s4"], size=40, p=[0.7, 0.1, 0.1, 0.1])
    groups = {"gender": MALE_THEN_FEMALE, "speaker": speaker}
    caps = {"speaker": dict.fromkeys(["s1", "s2", "s3", "s4"], 0.3)}
    batch = apply_quotas(RANKED, groups, 10, min_share={"gender": {"female": 0.4}}, max_share=caps)
    assert len(batch) == 10
    assert (MALE_THEN_FEMALE[batch] == "female").sum() >= 4
    _, per_speaker = np.unique(speaker[batch], return_counts=True)
    assert per_speaker.max() <= 3


def test_shares_count_what_is_already_labelled():
    # 90 male and 10 female labelled; at least 20 % female after a batch of 10 means
    # ceil(0.2 * 110) - 10 = 12 more female clips: the whole batch.
    quotas = Quotas(
        min_share={"gender": {"female": 0.2}},
        already_labelled_counts={"gender": {"male": 90, "female": 10}},
    )
    batch = quotas.apply(RANKED, {"gender": MALE_THEN_FEMALE}, 10)
    assert (MALE_THEN_FEMALE[batch] == "female").all()

    # A cap already used up by the labelled set admits none of that group.
    capped = Quotas(
        max_share={"gender": {"male": 0.5}},
        already_labelled_counts={"gender": {"male": 60, "female": 30}},
    )
    batch = capped.apply(RANKED, {"gender": MALE_THEN_FEMALE}, 10)
    assert (MALE_THEN_FEMALE[batch] == "female").all()


def test_integer_group_labels_match_integer_keys():
    age_band = np.array([0] * 30 + [1] * 10, dtype=np.int64)
    batch = apply_quotas(RANKED, {"age": age_band}, 4, min_share={"age": {1: 0.5}})
    assert (age_band[batch] == 1).sum() == 2


def test_select_with_quotas_balances_a_pool_where_the_majority_is_most_uncertain():
    n = 200
    rng = np.random.default_rng(0)
    gender = np.where(np.arange(n) < 160, "male", "female")
    flat, sure = np.full(5, 0.2), np.array([0.8, 0.05, 0.05, 0.05, 0.05])
    probs = np.where((gender == "male")[:, None], flat, sure) + 0.0
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    pool = Pool(probs_core=probs, probs_fine=None, embeddings=emb, groups={"gender": gender})

    unconstrained = select(DEFAULT_STRATEGY, pool, 10, seed=0)
    assert (gender[unconstrained.indices] == "female").sum() == 0

    quotas = Quotas(min_share={"gender": {"female": 0.5}})
    for strategy in (DEFAULT_STRATEGY, "entropy", "badge", "random"):
        batch = select(strategy, pool, 10, seed=0, quotas=quotas)
        assert len(batch.indices) == 10
        assert (gender[batch.indices] == "female").sum() >= 5, strategy


def test_select_refuses_quotas_over_metadata_the_pool_lacks():
    pool = Pool(np.full((4, 2), 0.5), None, np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="metadata"):
        select("entropy", pool, 2, seed=0, quotas=Quotas(min_share={"gender": {"f": 0.5}}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_share": {"gender": {"female": 1.5}}}, "not in"),
        ({"min_share": {"gender": {"female": 0.6, "male": 0.6}}}, "adds up"),
        (
            {"min_share": {"gender": {"female": 0.6}}, "max_share": {"gender": {"female": 0.5}}},
            "exceeds",
        ),
        ({"already_labelled_counts": {"gender": {"female": -1}}}, "non-negative"),
    ],
)
def test_inconsistent_quotas_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Quotas(**kwargs)


def test_apply_quotas_refuses_repeated_or_out_of_range_positions():
    groups = {"gender": MALE_THEN_FEMALE}
    with pytest.raises(ValueError, match="repeated"):
        apply_quotas(np.array([1, 1]), groups, 1, min_share={"gender": {"male": 0.5}})
    with pytest.raises(ValueError, match="outside"):
        apply_quotas(np.array([99]), groups, 1, min_share={"gender": {"male": 0.5}})
