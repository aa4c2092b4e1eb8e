"""Every epochs setting the bounds allow trains (the one-cycle schedule needs some steps)."""

from __future__ import annotations

import numpy as np
import pytest

from learner.model import TrainConfig, fit


@pytest.mark.parametrize(("rows", "epochs"), [(8, 1), (8, 2), (8, 3), (64, 10), (100, 5), (8, 11)])
def test_short_runs_train_whatever_the_step_count(rows, epochs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 6)).astype(np.float32)
    core = np.eye(3, dtype=np.float32)[rng.integers(0, 3, rows)]
    members = fit(
        x, core, np.ones(rows, np.float32), None, None,
        TrainConfig(epochs=epochs, ensemble=1, hidden=8),
    )  # fmt: skip
    assert len(members) == 1
