"""Dawid-Skene of a build's rings in a worker process, while the build goes on.

crowd-kit's EM at the outer ring of the wheel (72 labels, ~190,000 ratings on the
100,000-clip bench) is the build's longest step and, even in blocks
(`exports.core.dawid_skene`), its largest allocation (~150 MB of pandas frames besides
~75 MB of imports, against ~425 MB for crowd-kit's whole-ring frames). It runs in one worker
process (`python -m exports.core.ds_worker`: a fresh interpreter with numpy, pandas and
crowd-kit, no Django, none of the build's memory) that fits the rings one after the other,
while the build process computes majority votes, agreement, splits and the clip table on the
other core. The worker is started with `subprocess`, not `multiprocessing`, so that it runs
under a Celery prefork worker too (a daemonic process, which `multiprocessing` forbids to
have children). Each ring's coded ratings (three int32 arrays) go to it in a temporary
`.npz` file and two arrays per ring (label code and its posterior) come back the same way.
The fit is the same computation as in process (`aggregation.fit_coded_top`): the same
floats, the same bytes.

Where the worker cannot be started, or dies, or fails a job, that ring is fitted in this
process when its result is asked for (a failure of the data then raises here); the log says
so.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exports.core import aggregation as agg

log = logging.getLogger(__name__)

Fit = Callable[[], dict[agg.Item, tuple[str, float]]]
REPOSITORY = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 10


class RingFits:
    """Submit each ring's ratings (`submit`); call the returned function for its labels.
    Use as a context manager: the worker is stopped at the end, pending fits abandoned."""

    def __init__(self, n_iter: int, tol: float) -> None:
        self.n_iter, self.tol = n_iter, tol
        self.folder = tempfile.TemporaryDirectory(prefix="emoloop-ds-")
        self.sent = 0  # jobs written to the worker
        self.answers: list[str] = []  # its answers so far, in job order
        self.worker: subprocess.Popen[str] | None = None
        try:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "exports.core.ds_worker"],
                cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        except OSError as exc:
            log.warning("Dawid-Skene runs in the build process: no worker (%s)", exc)

    def __enter__(self) -> RingFits:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (its memory goes with it) and remove the job files; once every
        result was asked for, or when the fits are abandoned. Again: nothing to do."""
        worker, self.worker = self.worker, None
        if worker is not None:
            if len(self.answers) < self.sent:
                worker.kill()  # jobs nobody will ask for
            else:
                assert worker.stdin is not None
                worker.stdin.close()
            try:
                worker.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()
        self.folder.cleanup()

    def _send(self, coded: agg.CodedRatings) -> int | None:
        """The job's number, or None when the worker is gone."""
        if self.worker is None or self.worker.stdin is None:
            return None
        job = self.sent
        source = Path(self.folder.name) / f"ring{job}.npz"
        np.savez(source, tasks=coded.tasks, workers=coded.workers, labels=coded.labels,
                 n_iter=self.n_iter, tol=self.tol)  # fmt: skip
        try:
            self.worker.stdin.write(f"{source} {source.with_suffix('.out.npz')}\n")
            self.worker.stdin.flush()
        except OSError as exc:  # BrokenPipeError: the worker died
            log.warning("Dawid-Skene runs in the build process: the worker is gone (%s)", exc)
            self.worker = None
            return None
        self.sent += 1
        return job

    def _receive(self, job: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The worker's arrays for this job, or None (it failed it, or died)."""
        worker = self.worker
        while len(self.answers) <= job and worker is not None and worker.stdout is not None:
            line = worker.stdout.readline()
            if not line:
                log.warning("Dawid-Skene: the worker ended early (exit %s)", worker.poll())
                self.worker = None
                break
            self.answers.append(line.strip())
        if len(self.answers) <= job or self.answers[job] != "ok":
            reason = self.answers[job] if len(self.answers) > job else "no answer"
            log.warning("Dawid-Skene of ring job %d runs in the build process: %s", job, reason)
            return None
        with np.load(Path(self.folder.name) / f"ring{job}.out.npz") as answer:
            return answer["best"], answer["top"]

    def submit(self, ratings: list[agg.Rating]) -> Fit:
        by_item = agg.labels_by_item(ratings)
        if not by_item:
            return dict
        coded = agg.code_ratings(by_item)
        del by_item
        return self.submit_coded(coded)

    def submit_coded(self, coded: agg.CodedRatings) -> PendingFit:
        """`submit` for ratings already coded (exports.core.coded.CodedRing)."""
        return PendingFit(self, coded, self._send(coded) if coded.items else None)

    def fitted(self, coded: agg.CodedRatings, job: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The worker's arrays for the job, or the same fit in this process."""
        fitted = self._receive(job) if job is not None else None
        if fitted is None:
            fitted = agg.fit_coded_top(
                coded.tasks, coded.workers, coded.labels, self.n_iter, self.tol
            )
        return fitted


class PendingFit:
    """One ring's Dawid-Skene, submitted: call it for {item: (label, posterior)}, or ask
    `arrays` for the label codes and posteriors in item order (what the build writes, without
    a dict of 100,000 tuples)."""

    def __init__(self, fits: RingFits, coded: agg.CodedRatings, job: int | None) -> None:
        self.fits, self.coded, self.job = fits, coded, job

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.coded.items:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return self.fits.fitted(self.coded, self.job)

    def __call__(self) -> dict[agg.Item, tuple[str, float]]:
        if not self.coded.items:
            return {}
        return agg.top_labels(self.coded, *self.arrays())
