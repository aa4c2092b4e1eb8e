"""One selection path for the live loop and the simulator (learner.ranking.space)."""

from __future__ import annotations

import numpy as np
import pytest

from learner.normalise import SPEAKER, fit_normaliser
from learner.ranking import select, space


def _clips(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 10.0, 100.0, 0.1] + shift
    return x, [f"s{i % 3}" for i in range(n)]


def test_with_a_model_the_rows_are_the_models_input():
    x, speakers = _clips(30, 0)
    normaliser = fit_normaliser(x, speakers, mode=SPEAKER)
    done_x, done_speakers = _clips(6, 1)

    pool = space.selection_pool(
        probs_core=None, probs_fine=None, x=x, speakers=speakers, normaliser=normaliser,
        labelled_x=done_x, labelled_speakers=done_speakers,
    )  # fmt: skip

    np.testing.assert_allclose(pool.embeddings, normaliser.transform(x, speakers), rtol=1e-6)
    assert pool.labelled_embeddings is not None
    np.testing.assert_allclose(
        pool.labelled_embeddings, normaliser.transform(done_x, done_speakers), rtol=1e-6
    )


def test_without_a_model_the_clips_at_hand_are_standardised_per_speaker():
    x, speakers = _clips(60, 2)
    x[np.array(speakers) == "s1"] += 1000.0  # a speaker recorded on another channel

    pool = space.selection_pool(
        probs_core=None, probs_fine=None, x=x, speakers=speakers, normaliser=None
    )

    assert pool.labelled_embeddings is None
    emb = np.asarray(pool.embeddings)
    expected = fit_normaliser(x, speakers, mode=SPEAKER).transform(x, speakers)
    np.testing.assert_allclose(emb, expected, rtol=1e-6)
    global_only = fit_normaliser(x, speakers, mode="global").transform(x, speakers)
    assert not np.allclose(emb, global_only, atol=1e-3), "per speaker, not one global scaling"


def test_the_labelled_clips_steer_the_batch_away_from_what_is_covered():
    rng = np.random.default_rng(3)
    near = rng.normal(size=(20, 4))
    far = rng.normal(size=(20, 4)) + 50.0
    x = np.concatenate([near, far])
    speakers = ["a"] * 40
    normaliser = fit_normaliser(x, speakers, mode=SPEAKER)
    probs = np.full((40, 2), 0.5)

    def batch(labelled: np.ndarray | None) -> np.ndarray:
        pool = space.selection_pool(
            probs_core=probs, probs_fine=None, x=x, speakers=speakers, normaliser=normaliser,
            labelled_x=labelled, labelled_speakers=["a"] * (0 if labelled is None else 5),
        )  # fmt: skip
        # every clip a candidate (the top candidate_factor x batch by equal uncertainty)
        return select("uncertain_kcenter", pool, 1, seed=0, params={"candidate_factor": 40}).indices

    assert batch(None)[0] == 0  # equal uncertainty, nothing labelled: the first candidate
    covered = near[:5] + 0.01
    assert batch(covered)[0] >= 20, "with the near cluster labelled, the pick is a far clip"


@pytest.mark.parametrize(("count", "limit"), [(5, 10), (50, 10)])
def test_a_large_labelled_set_is_sampled_reproducibly(count, limit):
    first = space.labelled_sample(count, seed=7, limit=limit)
    assert np.array_equal(first, space.labelled_sample(count, seed=7, limit=limit))
    assert len(first) == min(count, limit)
    assert len(set(first.tolist())) == len(first)
    assert (np.diff(first) > 0).all()
