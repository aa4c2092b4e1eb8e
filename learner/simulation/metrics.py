"""The statistics of a simulation: labels to target, censoring of runs that miss it, the ratio
to random with its two-level bootstrap interval, and the summary (steps 5 and 6 of the
package docstring). Numbers in, numbers out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from learner.ranking import COLD_START_STRATEGY, DEFAULT_STRATEGY
from learner.simulation.config import RANDOM, SimulationConfig, resolve_strategy


def labels_to_target(curve: Sequence[Sequence[float]], target: float) -> int | None:
    """First number of labels whose UAR reaches `target`; None if none does."""
    for labels, uar in curve:
        if uar >= target:
            return int(labels)
    return None


def censored(values: np.ndarray, fill: float | np.ndarray) -> np.ndarray:
    """Runs that never reached the target (NaN) count as `fill` (budget + one batch; a
    scalar, or (R, 1) per rotation): a lower bound of what they would have needed, so means
    are optimistic for strategies that often miss; the summary says how many runs missed."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(values), fill, values)


def ratio_of_means(a: np.ndarray, b: np.ndarray) -> float:
    mean_b = float(np.mean(b))
    return float(np.mean(a)) / mean_b if mean_b > 0 else math.nan


def bootstrap_ratio(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.90,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio mean(a) / mean(b) with a two-level bootstrap interval.

    a, b: (R, S) values per rotation and seed (no NaN: censor first), paired by position.
    Each replicate draws R rotations with replacement, then S seeds with replacement within
    each drawn rotation, and takes the same draws from a and b (the two strategies share
    test speakers and targets). Returns (point estimate, low, high) at `level`.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must be (rotations, seeds) of one shape: {a.shape}, {b.shape}")
    point = ratio_of_means(a, b)
    r, s = a.shape
    rng = np.random.default_rng(seed)
    rot = rng.integers(0, r, size=(n_boot, r))
    seeds = rng.integers(0, s, size=(n_boot, r, s))
    rows = rot[:, :, None]
    num = a[rows, seeds].mean(axis=(1, 2))
    den = b[rows, seeds].mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(den > 0, num / den, np.nan)
    tail = (1 - level) / 2
    low, high = np.nanquantile(ratios, [tail, 1 - tail])
    return point, float(low), float(high)


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarise(
    results: Mapping[tuple[int, int, str], dict[str, Any]],
    rotations: Sequence[Sequence[str]],
    pool_sizes: Sequence[int],
    config: SimulationConfig,
    *,
    wall_s: float = 0.0,
    workers: int = 1,
) -> dict[str, Any]:
    """The summary.json structure (see docs/active-learning.md) from raw run results."""
    n_rot, n_seed = len(rotations), config.seeds
    full = np.array([[results[(r, s, "")]["uar"] for s in range(n_seed)] for r in range(n_rot)])
    full_rot = full.mean(axis=1)
    targets = config.target_fraction * full_rot
    # A run that never reaches the target counts as its rotation's budget + one batch.
    fill = np.array([[min(config.budget, p) + config.batch_size] for p in pool_sizes], float)
    ltt: dict[str, np.ndarray] = {}
    out: dict[str, dict[str, Any]] = {}
    for name in config.strategies:
        runs = [[results[(r, s, name)] for s in range(n_seed)] for r in range(n_rot)]
        values = np.full((n_rot, n_seed), np.nan)
        for r in range(n_rot):
            for s in range(n_seed):
                hit = labels_to_target(runs[r][s]["curve"], float(targets[r]))
                values[r, s] = np.nan if hit is None else hit
        ltt[name] = values
        grid: dict[int, list[float]] = {}
        for row in runs:
            for run in row:
                for labels, uar in run["curve"]:
                    grid.setdefault(int(labels), []).append(float(uar))
        curve = [
            [labels, float(np.mean(v)), float(np.std(v))] for labels, v in sorted(grid.items())
        ]
        final = [run["curve"][-1][1] for row in runs for run in row]
        reached = ~np.isnan(values)
        cens = censored(values, fill)
        rounds = sum(run["rounds"] for row in runs for run in row)
        out[name] = {
            "resolved": resolve_strategy(name),
            "labels_to_target": {
                "mean": float(cens.mean()),
                "std": float(cens.std()),
                "mean_of_reached": float(values[reached].mean()) if reached.any() else None,
                "reached": int(reached.sum()),
                "runs": int(values.size),
                "censored_as": [int(f) for f in fill[:, 0]],
                "per_run": [[_finite(v) for v in row] for row in values.tolist()],
            },
            "auc": float(np.mean([p[1] for p in curve])),
            "final_uar": {"mean": float(np.mean(final)), "std": float(np.std(final))},
            "curve": curve,
            "seconds_per_round": {
                "train": sum(run["train_s"] for row in runs for run in row) / max(rounds, 1),
                "select": sum(run["select_s"] for row in runs for run in row) / max(rounds, 1),
            },
        }
    if RANDOM in config.strategies:
        base = censored(ltt[RANDOM], fill)
        for name in config.strategies:
            point, low, high = bootstrap_ratio(
                censored(ltt[name], fill),
                base,
                n_boot=config.bootstrap,
                seed=config.split_seed,
            )
            out[name]["ratio_to_random"] = {
                "mean": _finite(point),
                "low": _finite(low),
                "high": _finite(high),
                "level": 0.90,
            }
            out[name]["auc_gain_over_random"] = out[name]["auc"] - out[RANDOM]["auc"]
    full_train = [results[(r, s, "")]["train_s"] for r in range(n_rot) for s in range(n_seed)]
    return {
        "strategies": out,
        "full_pool_uar": float(full_rot.mean()),
        "full_pool_uar_per_rotation": [float(v) for v in full_rot],
        "full_pool_uar_std": float(full.std()),
        "full_pool_train_s": float(np.mean(full_train)),
        "target_fraction": config.target_fraction,
        "target_uar_per_rotation": [float(v) for v in targets],
        "test_speakers": [list(t) for t in rotations],
        "pool_sizes": list(pool_sizes),
        "default_strategy": DEFAULT_STRATEGY,
        "cold_start_strategy": COLD_START_STRATEGY,
        "arguments": config.as_dict(),
        "wall_s": wall_s,
        "workers": workers,
        "runs": {
            f"{name or 'full_pool'}/{r}/{s}": results[(r, s, name)]
            for (r, s, name) in sorted(results)
        },
    }
