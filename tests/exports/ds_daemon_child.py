"""What a daemonic child process runs in tests/exports/test_ds_fit.py (a module without
Django, so that a spawned interpreter can import it)."""

from __future__ import annotations

from typing import Any

from exports.core.aggregation import Rating
from exports.services import ds_fit

RATINGS = [
    Rating(item, rater, label)
    for item, labels in enumerate(
        ["mad mad sad", "sad sad sad", "joyful mad joyful", "mad sad mad", "joyful joyful sad"]
    )
    for rater, label in zip("ABC", labels.split(), strict=True)
]


def fit_one_ring(results: Any) -> None:
    with ds_fit.RingFits(100, 1e-3) as fits:
        results.put((fits.worker is not None, fits.submit(RATINGS)(), fits.answers))
