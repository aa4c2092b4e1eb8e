"""Shared by the exports core's tests: ratings written as {item: {rater: label}} tables,
and the hypothesis settings they use (derandomised, so CI runs the same examples)."""

from __future__ import annotations

from hypothesis import settings

from exports.core.aggregation import Rating

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


def ratings_of(table: dict[str | int, dict[str, str]]) -> list[Rating]:
    """{item: {rater: label}} -> ratings."""
    return [
        Rating(item=item, rater=rater, label=label)
        for item, raters in table.items()
        for rater, label in raters.items()
    ]
