"""Bad input fails loudly with a ValueError that says what is wrong."""

import numpy as np
import pytest

from learner.ranking import Pool, score, select
from learner.ranking import diversity as dv

pytestmark = []

EMB = np.zeros((4, 3), dtype=np.float32)
GOOD = np.full((4, 2), 0.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs_core": np.full((4, 2), 2.0)}, "sum to 1"),  # logits, not probabilities
        ({"probs_core": np.full((4, 2), 0.4)}, "sum to 1"),
        ({"probs_core": np.full((3, 2), 0.5)}, "shape"),
        ({"probs_core": np.ones((4, 1))}, "2 classes"),
        ({"probs_core": np.array([[0.5, 0.5]] * 3 + [[np.nan, 0.5]])}, "NaN"),
        ({"probs_core": np.array([[1.5, -0.5]] * 4)}, "negative"),
        ({"probs_fine": np.array([[0.5, 0.5]] * 3 + [[np.nan, 1.0]])}, "some NaN"),
        ({"probs_fine": np.full((5, 3), 1 / 3)}, "shape"),
        ({"probs_core": None, "probs_fine": GOOD}, "without core"),
        ({"mc_probs_core": np.full((4, 2), 0.5)}, "T >= 2"),
        ({"mc_probs_core": np.full((3, 4, 3), 1 / 3)}, "class counts"),
        ({"groups": {"gender": np.array(["f", "m"])}}, "groups"),
        ({"embeddings": np.zeros(4, dtype=np.float32)}, "2-D"),
        ({"embeddings": np.zeros((4, 3), dtype=np.int64)}, "floating"),
        ({"embeddings": np.zeros((0, 3), dtype=np.float32), "probs_core": None}, "empty"),
        ({"labelled_embeddings": np.zeros((2, 5))}, "labelled_embeddings"),
    ],
)
def test_a_malformed_pool_is_refused(kwargs, message):
    args = {"probs_core": GOOD, "probs_fine": None, "embeddings": EMB, **kwargs}
    with pytest.raises(ValueError, match=message):
        Pool(**args)


def pool() -> Pool:
    return Pool(probs_core=GOOD, probs_fine=None, embeddings=EMB)


def test_unknown_strategy_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown query strategy 'smart'.*entropy"):
        select("smart", pool(), 1, seed=0)
    with pytest.raises(ValueError, match="unknown"):
        score("smart", pool())


@pytest.mark.parametrize("batch_size", [0, -1, 5, 2.5, True])
def test_a_batch_must_fit_the_pool(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        select("entropy", pool(), batch_size, seed=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"alpah": 0.5}, "takes no parameter"),
        ({"alpha": 2}, "alpha"),
        ({"measure": "vibes"}, "measure"),
        ({"candidate_factor": 0}, "candidate_factor"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        select("uncertain_kcenter", pool(), 1, seed=0, params=params)


def test_bald_without_mc_passes_is_refused():
    with pytest.raises(ValueError, match="MC-dropout"):
        select("bald", pool(), 1, seed=0)


def test_non_finite_embeddings_are_refused_when_the_diversity_step_reads_them():
    emb = EMB.copy()
    emb[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select("kcenter", Pool(None, None, emb), 2, seed=0)


def test_diversity_functions_refuse_more_picks_than_candidates():
    with pytest.raises(ValueError, match="cannot pick"):
        dv.k_center_greedy(EMB, 5, seed=0)
    with pytest.raises(ValueError, match="cannot pick"):
        dv.kmeans_pp(EMB, 5, seed=0)


class ForeignTensor:
    """Shaped like `EmbeddingRows`, but with a dtype numpy cannot read (another library's)."""

    shape = (4, 3)
    ndim = 2
    dtype = "torch.float32"

    def __getitem__(self, positions):
        return EMB[positions]


def test_embeddings_with_a_dtype_numpy_cannot_read_are_refused_with_a_value_error():
    with pytest.raises(ValueError, match="floating"):
        Pool(probs_core=GOOD, probs_fine=None, embeddings=ForeignTensor())
