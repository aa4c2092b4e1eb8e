"""Dawid-Skene of a build's rings in a worker process, while the build goes on.

crowd-kit's EM at the outer ring of the wheel (72 labels, ~190,000 ratings on the
100,000-clip bench) is the build's longest step and its largest allocation (dense
ratings x labels pandas frames, a few hundred MB at its peak). It runs in one spawned worker
process (a fresh interpreter: numpy, pandas and crowd-kit, no Django, none of the build's
memory) that fits the rings one after the other, while the build process computes majority
votes, agreement, splits and the clip table on the other core. The worker gets the coded
ratings (three int32 arrays per ring) and sends back two arrays per ring (label code and its
posterior), so neither side copies the other's data. The fit is the same computation as in
process (`aggregation.fit_coded_top`): the same floats, the same bytes.

Where no worker can be started (a platform without `spawn`, a daemonic process such as a
Celery prefork child, which may not have children), the fits run in this process when their
result is asked for; the log says so.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from exports.core import aggregation as agg

log = logging.getLogger(__name__)

Fit = Callable[[], dict[agg.Item, tuple[str, float]]]


class RingFits:
    """Submit each ring's ratings (`submit`); call the returned function for its labels.
    Use as a context manager: the worker is shut down at the end, pending fits cancelled."""

    def __init__(self, n_iter: int, tol: float) -> None:
        self.n_iter, self.tol = n_iter, tol
        self.pool: ProcessPoolExecutor | None = None
        if multiprocessing.current_process().daemon:  # a Celery prefork child: no children
            log.info("Dawid-Skene runs in the build process (a daemonic process)")
            return
        try:
            self.pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        except (OSError, ValueError, AssertionError) as exc:  # no spawn, or no children here
            log.warning("Dawid-Skene runs in the build process: no worker (%s)", exc)

    def __enter__(self) -> RingFits:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, ratings: list[agg.Rating]) -> Fit:
        by_item = agg.labels_by_item(ratings)
        if not by_item:
            return dict
        coded = agg.code_ratings(by_item)
        del by_item
        args = (coded.tasks, coded.workers, coded.labels, self.n_iter, self.tol)
        future: Future[tuple[np.ndarray, np.ndarray]] | None = None
        if self.pool is not None:
            try:
                future = self.pool.submit(agg.fit_coded_top, *args)
            except (RuntimeError, AssertionError, OSError) as exc:  # the worker did not start
                log.warning("Dawid-Skene runs in the build process: %s", exc)
                self.pool = None

        def result() -> dict[agg.Item, tuple[str, float]]:
            best, top = future.result() if future is not None else agg.fit_coded_top(*args)
            return agg.top_labels(coded, best, top)

        return result
