"""How much a training costs as the labelled set grows (learner.model.TrainConfig): small
sets train exactly as they always did; past the epoch floor the batch grows and the examples
seen per member are capped, so a retrain on 10,000 clips does not cost ten epochs of
batches of 64 (docs/learner.md, "Latency")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learner.model import TrainConfig, fit


def steps(config: TrainConfig, n: int) -> int:
    return config.epochs_for(n) * math.ceil(n / config.batch_size_for(n))


def before(n: int) -> tuple[int, int]:
    """(epochs, batch) as the rule was before the large-set budget."""
    per_epoch = math.ceil(n / 64)
    return int(min(200, max(10, math.ceil(1500 / per_epoch)))), 64


@pytest.mark.parametrize("n", [1, 20, 100, 480, 1444, 1605, 5000, 9600])
def test_small_sets_train_exactly_as_before(n):
    config = TrainConfig()
    assert (config.epochs_for(n), config.batch_size_for(n)) == before(n)


@pytest.mark.parametrize("n", [9601, 19_500, 30_000, 100_000, 1_000_000])
def test_large_sets_grow_the_batch_and_cap_the_examples_seen(n):
    config = TrainConfig()
    epochs, batch = config.epochs_for(n), config.batch_size_for(n)
    assert 64 <= batch <= config.max_batch_size
    if batch < config.max_batch_size:  # about target_steps, give or take an epoch's steps
        assert steps(config, n) <= config.target_steps + math.ceil(n / batch)
    assert epochs >= config.min_large_epochs
    if n * config.min_large_epochs <= config.max_samples:
        assert n * epochs <= config.max_samples + n  # at most one epoch over the cap
    old_epochs, _ = before(n)
    assert n * epochs <= n * old_epochs
    assert steps(config, n) < steps(TrainConfig(max_batch_size=64, max_samples=0), n)


def test_the_cap_can_be_lifted_and_fixed_epochs_are_left_alone():
    lifted = TrainConfig(max_batch_size=64, max_samples=0)
    assert (lifted.epochs_for(30_000), lifted.batch_size_for(30_000)) == before(30_000)
    fixed = TrainConfig(epochs=7)
    assert (fixed.epochs_for(30_000), fixed.batch_size_for(30_000)) == (7, 64)


def test_fit_reports_the_epochs_it_ran_with_the_grown_batch():
    rng = np.random.default_rng(0)
    n = 12_000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    targets = np.eye(2)[y]
    config = TrainConfig(hidden=8, ensemble=1, max_samples=24_000)
    seen: list[tuple[int, int]] = []
    members = fit(x, targets, np.ones(n), None, None, config, lambda e, t, _l: seen.append((e, t)))
    assert config.batch_size_for(n) == 80  # 12,000 x 10 epochs / 1,500 steps
    assert config.epochs_for(n) == 3  # 24,000 / 12,000 = 2, but never under 3
    assert seen == [(1, 3), (2, 3), (3, 3)]
    logits = members[0](__import__("torch").as_tensor(x[:500]))[0].detach().numpy()
    assert (logits.argmax(axis=1) == y[:500]).mean() > 0.9, "it still learns"
