"""Many runs: every (rotation, seed, strategy) job and every full-pool model, here or in a pool
of forked worker processes, then the summary.

The workers are forked, not spawned: the problem's arrays reach them through the
module-level `_WORK`, set before the fork and read-only there, and `_job` is pickled by its
module path (`learner.simulation.jobs._job`). Only the job tuples and the results travel.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from typing import Any

from learner.simulation.config import SimulationConfig, label_steps
from learner.simulation.corpus import default_test_speakers, speaker_rotations
from learner.simulation.loop import (
    Problem,
    pool_embeddings,
    run_full_pool,
    run_strategy,
    split_rows,
)
from learner.simulation.metrics import summarise
from learner.threads import torch_threads

# Set in the parent before the workers fork; read-only in them (the tick queue aside).
_WORK: dict[str, Any] = {}


def _tick() -> None:
    _WORK["tick"]()


def _job(job: tuple[int, int, str]) -> dict[str, Any]:
    rotation, seed, strategy = job
    problem: Problem = _WORK["problem"]
    config: SimulationConfig = _WORK["config"]
    test = _WORK["rotations"][rotation]
    with torch_threads(1):
        if strategy == "":
            result = run_full_pool(problem, test, seed, config)
            _tick()
            return result
        return run_strategy(
            problem, test, strategy, seed, config, _WORK["embeddings"][rotation], _tick
        )


def _job_rounds(job: tuple[int, int, str], config: SimulationConfig, pool_size: int) -> int:
    if job[2] == "":
        return 1
    budget = min(config.budget, pool_size)
    return len(label_steps(min(config.seed_size, budget), config.batch_size, budget))


def _run_jobs(
    jobs: list[tuple[int, int, str]], workers: int, update: Callable[[int], None]
) -> dict[tuple[int, int, str], dict[str, Any]]:
    """Run every job (here, or in `workers` forked processes); `update(1)` per round."""
    if workers <= 1:
        _WORK["tick"] = lambda: update(1)
        return {job: _job(job) for job in jobs}
    context = multiprocessing.get_context("fork")
    ticks = context.Queue()
    _WORK["tick"] = lambda: ticks.put(1)  # inherited by the forked workers, never pickled
    with context.Pool(workers) as pool:
        pending = {job: pool.apply_async(_job, (job,)) for job in jobs}
        while not all(r.ready() for r in pending.values()):
            with contextlib.suppress(queue.Empty):
                update(ticks.get(timeout=0.5))
            for r in pending.values():
                if r.ready() and not r.successful():
                    r.get()  # re-raises the worker's exception here
        while not ticks.empty():
            update(ticks.get())
        return {job: r.get() for job, r in pending.items()}


def simulate(
    problem: Problem,
    config: SimulationConfig,
    *,
    workers: int = 1,
    progress: Callable[[int, str], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Every (rotation, seed, strategy) run and every full-pool model; returns the summary.

    progress(total rounds, description) -> update(n): a progress bar in the caller's terms.
    With workers > 1 the runs go to forked processes, one torch thread each.
    """
    config.validate()
    if config.weak_weight > 0 and problem.weak is None:
        raise ValueError("weak_weight is set but the problem has no weak labels")
    problem.set_weak_weight(config.weak_weight)
    n_test = config.test_speakers or default_test_speakers(len(set(problem.speakers)))
    rotations = speaker_rotations(
        problem.speakers, config.rotations, n_test, seed=config.split_seed
    )
    embeddings = []
    pool_sizes = []
    for test in rotations:
        pool, _ = split_rows(problem, test)
        pool_sizes.append(len(pool))
        embeddings.append(pool_embeddings(problem, pool, config))
    jobs: list[tuple[int, int, str]] = [
        (r, s, name)
        for r in range(len(rotations))
        for s in range(config.seeds)
        for name in ("", *config.strategies)  # "": the full-pool model
    ]
    # Longest jobs first keeps every worker busy to the end.
    jobs.sort(key=lambda j: -_job_rounds(j, config, pool_sizes[j[0]]))
    total = sum(_job_rounds(j, config, pool_sizes[j[0]]) for j in jobs)
    update = progress(total, "simulated rounds") if progress else (lambda n: None)
    _WORK.update(problem=problem, config=config, rotations=rotations, embeddings=embeddings)
    started = time.perf_counter()
    try:
        results = _run_jobs(jobs, workers, update)
    finally:
        _WORK.clear()
    wall_s = time.perf_counter() - started
    return summarise(results, rotations, pool_sizes, config, wall_s=wall_s, workers=workers)


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
