"""exports.core.dawid_skene: crowd-kit's DawidSkene with its steps run on blocks of the data
gives crowd-kit's own fit, to the bit (posteriors, error matrices, priors), with the loss
history equal up to the order of its float additions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation.classification.dawid_skene import DawidSkene

from exports.core import dawid_skene as blocked
from exports.core.dawid_skene import BlockedDawidSkene


def coded_frame(seed: int, tasks: int, workers: int, labels: int) -> pd.DataFrame:
    """Ratings sorted by (task, worker), int32 codes as aggregation.fit_coded hands them over:
    1 to 4 raters per task, raters of varying skill, a skewed class balance."""
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.3, 0.95, workers)
    prior = rng.dirichlet(np.full(labels, 0.7))
    rows = []
    for task in range(tasks):
        truth = rng.choice(labels, p=prior)
        for worker in np.sort(rng.choice(workers, rng.integers(1, 5), replace=False)):
            label = truth if rng.random() < skill[worker] else rng.integers(labels)
            rows.append((task, worker, label))
    codes = np.array(rows, dtype=np.int32)
    return pd.DataFrame({"task": codes[:, 0], "worker": codes[:, 1], "label": codes[:, 2]})


def fitted(model: DawidSkene, data: pd.DataFrame) -> DawidSkene:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(data)


def assert_same_fit(ours: DawidSkene, theirs: DawidSkene) -> None:
    for name in ("probas_", "errors_", "priors_"):
        mine, reference = getattr(ours, name), getattr(theirs, name)
        assert mine.index.equals(reference.index), name
        assert mine.index.dtype == reference.index.dtype, name
        if name != "priors_":
            assert mine.columns.equals(reference.columns), name
            assert mine.columns.dtype == reference.columns.dtype, name
        assert np.array_equal(mine.to_numpy(), reference.to_numpy()), name
    assert ours.labels_ is not None
    assert ours.labels_.equals(theirs.labels_)
    assert len(ours.loss_history_) == len(theirs.loss_history_)
    assert np.allclose(ours.loss_history_, theirs.loss_history_, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("seed", "tasks", "workers", "labels", "cells"),
    [
        (0, 3000, 20, 12, 4000),  # many blocks of every kind
        (1, 600, 15, 36, 997),  # blocks of a few tasks, one label column at a time
        (2, 1500, 8, 6, 50_000),  # one block in each step: crowd-kit's methods unchanged
        (3, 60, 12, 8, 1),  # two tasks and one label column per block
    ],
)
def test_the_blocked_fit_is_crowd_kits_fit_to_the_bit(seed, tasks, workers, labels, cells):
    data = coded_frame(seed, tasks, workers, labels)
    model = BlockedDawidSkene(n_iter=100, tol=1e-5)
    model.block_cells = cells
    assert_same_fit(fitted(model, data), fitted(DawidSkene(n_iter=100, tol=1e-5), data))


def test_with_the_bench_settings_and_default_blocks(monkeypatch):
    # The build's settings (tol 1e-3); blocks small enough that every step is blocked.
    monkeypatch.setattr(blocked, "BLOCK_CELLS", 20_000)
    monkeypatch.setattr(BlockedDawidSkene, "block_cells", blocked.BLOCK_CELLS)
    data = coded_frame(4, 5000, 30, 40)
    model = fitted(BlockedDawidSkene(n_iter=100, tol=1e-3), data)
    assert_same_fit(model, fitted(DawidSkene(n_iter=100, tol=1e-3), data))


def test_unsorted_ratings_take_crowd_kits_whole_frame_steps():
    data = coded_frame(5, 500, 10, 8).sample(frac=1.0, random_state=0)
    model = BlockedDawidSkene(n_iter=100, tol=1e-5)
    model.block_cells = 100
    assert_same_fit(fitted(model, data), fitted(DawidSkene(n_iter=100, tol=1e-5), data))
    assert model._sorted is False


def test_row_blocks_never_split_a_task():
    keys = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4])
    blocks = list(blocked._row_blocks(keys, 2))
    assert [keys[b].tolist() for b in blocks] == [[0, 0, 0, 1], [2, 2, 3, 3, 3, 3, 4]]
    assert [keys[b].tolist() for b in blocked._row_blocks(keys, 100)] == [keys.tolist()]
    assert list(blocked._row_blocks(np.zeros(5, int), 1)) == [slice(0, 5)]


def test_workers_whose_matrices_come_one_after_the_other():
    # Each worker rates a run of tasks of its own: the (worker, label) rows of the error
    # matrices are then grouped by worker, which pandas sums by another path (reduceat).
    rng = np.random.default_rng(6)
    rows = [(task, task // 100, rng.integers(10)) for task in range(1000)]
    rows += [(task, 10 + task % 3, rng.integers(10)) for task in range(1000)]
    codes = np.array(sorted(rows), dtype=np.int32)
    data = pd.DataFrame({"task": codes[:, 0], "worker": codes[:, 1], "label": codes[:, 2]})
    model = BlockedDawidSkene(n_iter=100, tol=1e-5)
    model.block_cells = 3000
    assert_same_fit(fitted(model, data), fitted(DawidSkene(n_iter=100, tol=1e-5), data))
