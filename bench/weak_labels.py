"""Weak labels in the simulator: compare runs with weak labels against the same runs without.

Reads the summary.json of `manage.py simulate` runs that share everything (corpus, rotations,
seeds, strategies, budget) but `--weak-labels/--weak-weight`, and prints per strategy and
weak run: mean labels to target (censored runs count as budget + one batch) and its ratio to
the run without weak labels with a 90 % bootstrap interval (rotations, then seeds within
them, paired), and the final UAR with the paired difference and its interval.

    python -m bench.weak_labels --base OUT_WITHOUT OUT_WEAK_1 [OUT_WEAK_2 ...]

(folders, or their summary.json; bench/results/weak_labels/ keeps the measured ones)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from learner.simulation import bootstrap_ratio  # noqa: E402


def _summary(path: str) -> dict:
    """A simulate --out folder's summary.json, or such a file itself."""
    file = Path(path)
    return json.loads((file if file.is_file() else file / "summary.json").read_text())


def _labels_to_target(row: dict) -> np.ndarray:
    """(rotations, seeds); a run that never reached the target counts as censored_as."""
    ltt = row["labels_to_target"]
    return np.asarray(
        [
            [ltt["censored_as"][r] if v is None else v for v in runs]
            for r, runs in enumerate(ltt["per_run"])
        ],
        dtype=np.float64,
    )


def _final_uar(summary: dict, strategy: str, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape)
    for r in range(shape[0]):
        for s in range(shape[1]):
            out[r, s] = summary["runs"][f"{strategy}/{r}/{s}"]["curve"][-1][1]
    return out


def _paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000) -> tuple[float, ...]:
    rng = np.random.default_rng(0)
    r, s = a.shape
    rows = rng.integers(0, r, size=(n_boot, r))[:, :, None]
    seeds = rng.integers(0, s, size=(n_boot, r, s))
    diffs = (a - b)[rows, seeds].mean(axis=(1, 2))
    low, high = np.quantile(diffs, [0.05, 0.95])
    return float((a - b).mean()), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="simulate --out folder without weak labels")
    parser.add_argument("weak", nargs="+", help="simulate --out folders with weak labels")
    args = parser.parse_args()
    base = _summary(args.base)
    for strategy, row in base["strategies"].items():
        base_ltt = _labels_to_target(row)
        base_uar = _final_uar(base, strategy, base_ltt.shape)
        print(
            f"{strategy} without weak labels: labels to target {base_ltt.mean():.1f}, "
            f"final UAR {base_uar.mean():.3f} ({base_ltt.size} runs)"
        )
        for folder in args.weak:
            summary = _summary(folder)
            weak = summary.get("weak_labels", {})
            ltt = _labels_to_target(summary["strategies"][strategy])
            uar = _final_uar(summary, strategy, ltt.shape)
            ratio, low, high = bootstrap_ratio(ltt, base_ltt)
            diff, dlow, dhigh = _paired_difference(uar, base_uar)
            accuracy = weak.get("accuracy")
            print(
                f"{strategy} weak={Path(folder).stem} accuracy="
                + (f"{accuracy:.3f}" if accuracy is not None else "n/a")
                + f" weight={weak.get('weight')}: labels to target {ltt.mean():.1f} "
                f"(ratio {ratio:.2f}, 90% {low:.2f}-{high:.2f}); final UAR {uar.mean():.3f} "
                f"(difference {diff:+.3f}, 90% {dlow:+.3f} to {dhigh:+.3f})"
            )


if __name__ == "__main__":
    main()
