"""Dawid-Skene as a dataset build runs it: the lean fit (label and its posterior only), in a
worker process or in process, with the settings recorded on the version."""

from __future__ import annotations

import io
import multiprocessing
import random
from pathlib import Path

import numpy as np
import pytest

from exports.core import aggregation as agg
from exports.core import ds_worker
from exports.core.aggregation import Rating, dawid_skene, dawid_skene_labels
from exports.models import DatasetVersion, default_aggregation
from exports.services import ds_fit
from exports.services.build import ds_parameters
from exports.services.versions import aggregation_policy
from tests.exports import ds_daemon_child
from tests.exports.rating_tables import ratings_of

SWAP = {"mad": "sad", "sad": "mad", "joyful": "joyful"}


def swapper_case() -> tuple[list[Rating], dict[str, str]]:
    """Three good raters (A, B, C) and two (D, E) who always swap mad and sad; on c12-c15
    only A of the good raters took part, so the majority follows the swappers there."""
    truth: dict[str, str] = {}
    table: dict[str | int, dict[str, str]] = {}
    for i in range(16):
        item = f"c{i:02d}"
        label = ["mad", "sad", "joyful"][i % 3] if i < 12 else ["mad", "sad"][i % 2]
        truth[item] = label
        good = "ABC" if i < 12 else "A"
        table[item] = dict.fromkeys(good, label) | dict.fromkeys("DE", SWAP[label])
    return ratings_of(table), truth


def noisy_case(seed: int) -> list[Rating]:
    """60 clips (ids mixed int and str), 8 raters of varying skill, 5 labels, 1-4 raters."""
    rng = random.Random(seed)
    labels = ["joyful", "mad", "mad.angry", "sad", "scared"]
    ratings = []
    for i in range(60):
        item: int | str = i if i % 3 else f"c{i}"
        truth = rng.choice(labels)
        for rater in rng.sample(range(8), rng.randint(1, 4)):
            given = truth if rng.random() < 0.5 + rater / 20 else rng.choice(labels)
            ratings.append(Rating(item, f"r{rater}", given))
    return ratings


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_lean_fit_gives_the_full_fits_label_and_its_posterior(seed):
    ratings = noisy_case(seed)
    full = dawid_skene(ratings, n_iter=100, tol=1e-3)
    lean = dawid_skene_labels(ratings, n_iter=100, tol=1e-3)
    assert list(lean) == list(full)
    assert lean == {item: (r.label, r.posterior[r.label]) for item, r in full.items()}


def test_the_recorded_tolerance_still_recovers_the_constructed_truth():
    ratings, truth = swapper_case()
    n_iter, tol = agg.DS_N_ITER, agg.DS_TOL
    result = dawid_skene_labels(ratings, n_iter=n_iter, tol=tol)
    assert {item: label for item, (label, _p) in result.items()} == truth
    assert all(p > 0.99 for _label, p in result.values())


def test_an_empty_ring_has_no_labels():
    assert dawid_skene_labels([]) == {}
    with ds_fit.RingFits(10, 1e-3) as fits:
        assert fits.submit([])() == {}


def test_the_worker_process_gives_the_same_labels_as_the_build_process():
    rings = [noisy_case(3), swapper_case()[0], noisy_case(4)]
    with ds_fit.RingFits(100, 1e-3) as fits:
        worker = fits.worker
        assert worker is not None  # a real worker process here
        pending = [fits.submit(ratings) for ratings in rings]
        results = [fit() for fit in pending]
        assert fits.answers == ["ok", "ok", "ok"]
    assert worker.returncode == 0  # stopped when the build ended
    for ratings, result in zip(rings, results, strict=True):
        expected = dawid_skene_labels(ratings, n_iter=100, tol=1e-3)
        assert list(result) == list(expected)
        assert result == expected  # the same floats, not merely close ones


def test_without_a_worker_the_fit_runs_when_asked(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(ds_fit.subprocess, "Popen", refuse)
    ratings = noisy_case(5)
    with ds_fit.RingFits(100, 1e-3) as fits:
        assert fits.worker is None
        assert fits.submit(ratings)() == dawid_skene_labels(ratings, n_iter=100, tol=1e-3)


def test_a_worker_that_dies_leaves_the_fit_to_the_build_process():
    ratings = noisy_case(7)
    with ds_fit.RingFits(100, 1e-3) as fits:
        assert fits.worker is not None
        fits.worker.kill()
        fits.worker.wait()
        fit = fits.submit(ratings)  # the pipe may or may not be seen broken yet
        assert fit() == dawid_skene_labels(ratings, n_iter=100, tol=1e-3)
        assert fits.worker is None


def test_a_job_the_worker_fails_is_fitted_in_the_build_process(monkeypatch):
    def corrupt(path, **arrays):  # what the worker is sent is not an .npz file
        Path(path).write_bytes(b"not an npz file")

    monkeypatch.setattr(ds_fit.np, "savez", corrupt)
    with ds_fit.RingFits(100, 1e-3) as fits:
        first, second = fits.submit(noisy_case(8)), fits.submit(noisy_case(9))
        assert first() == dawid_skene_labels(noisy_case(8), n_iter=100, tol=1e-3)
        assert second() == dawid_skene_labels(noisy_case(9), n_iter=100, tol=1e-3)
        assert len(fits.answers) == 2  # the worker answered both, and went on after the first
        assert all(answer.startswith("error ") for answer in fits.answers)


def test_the_worker_answers_every_job_in_order_and_survives_a_bad_one(tmp_path):
    coded = agg.code_ratings(agg.labels_by_item(noisy_case(10)))
    good = tmp_path / "good.npz"
    np.savez(good, tasks=coded.tasks, workers=coded.workers, labels=coded.labels,
             n_iter=100, tol=1e-3)  # fmt: skip
    jobs = io.StringIO(
        f"{tmp_path / 'missing.npz'} {tmp_path / 'a.npz'}\n\n{good} {tmp_path / 'b.npz'}\n"
    )
    answers = io.StringIO()
    ds_worker.serve(jobs, answers)
    lines = answers.getvalue().splitlines()
    assert lines[0].startswith("error FileNotFoundError")
    assert lines[1:] == ["ok"]
    with np.load(tmp_path / "b.npz") as out:
        best, top = out["best"], out["top"]
    expected = agg.fit_coded_top(coded.tasks, coded.workers, coded.labels, 100, 1e-3)
    assert best.tolist() == expected[0].tolist()
    assert top.tolist() == expected[1].tolist()


def test_a_daemonic_process_such_as_a_celery_prefork_child_still_has_the_worker():
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=ds_daemon_child.fit_one_ring, args=(results,), daemon=True)
    child.start()
    had_worker, labels, answers = results.get(timeout=120)
    child.join(timeout=30)
    assert had_worker
    assert answers == ["ok"]
    assert labels == dawid_skene_labels(ds_daemon_child.RATINGS, n_iter=100, tol=1e-3)


def test_a_version_records_the_settings_it_is_built_with():
    policy = aggregation_policy()
    assert policy["dawid_skene"] == {"n_iter": agg.DS_N_ITER, "tol": agg.DS_TOL}
    assert ds_parameters(DatasetVersion(aggregation=policy)) == (agg.DS_N_ITER, agg.DS_TOL)
    # A version recorded with other settings (the model's default: run to 1e-5) keeps them.
    older = DatasetVersion(aggregation=default_aggregation())
    assert ds_parameters(older) == (100, 1e-5)
