"""Active learning on EmoDB: does the project's default query strategy save labels?

Runs the simulator (learner.simulation, the same code as `manage.py simulate`) on
../shared/data/emodb: 5 rotations of 2 held-out test speakers (every speaker is tested once)
x 5 seeds, seed set 20, batches of 10, budget 300 labels, the acoustic features with
per-speaker normalisation and the learner's ensemble MLP (learner.simulation.SIMULATION_TRAIN).
Strategies: `random` and `default` (learner.ranking.DEFAULT_STRATEGY), plus any named with
--strategies.

Writes bench/results/active_learning.json (the simulator's summary plus machine and timing),
active_learning.png (learning curves), active_learning_curves.csv (every run's curve) and
active_learning_strategies.csv (the per-strategy table). Features are cached in
var/simulation-cache. The last line printed is

    labels_ratio_default_vs_random=... ratio_interval=LOW-HIGH auc_gain=... seeds=...
    rotations=... full_pool_uar=...

(on one line) where the ratio is mean labels to reach 95 % of the whole pool's UAR, default
over random (runs that never reach it count as budget + one batch), the interval is a 90 %
bootstrap over rotations then seeds, and auc_gain is the difference in mean UAR over the
curve.

    python bench/active_learning.py [--strategies random,default,least_confidence]
        [--seeds 5] [--rotations 5] [--budget 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from learner import simulation  # noqa: E402

EMODB = REPO.parent / "shared" / "data" / "emodb"
RESULTS = REPO / "bench" / "results"
CACHE = REPO / "var" / "simulation-cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default="random,default")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--workers", type=int, default=simulation.default_workers())
    parser.add_argument("--augmentation", action="store_true")
    parser.add_argument("--features", default="acoustic")
    args = parser.parse_args()
    if not (EMODB / "labels.csv").exists():
        sys.exit(f"EmoDB is not at {EMODB}")
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    for needed in (simulation.RANDOM, simulation.DEFAULT_ALIAS):
        if needed not in strategies:
            strategies = (needed, *strategies)

    config = simulation.SimulationConfig(
        strategies=strategies,
        seeds=args.seeds,
        rotations=args.rotations,
        seed_size=args.seed_size,
        batch_size=args.batch_size,
        budget=args.budget,
        augmentation=args.augmentation,
    )
    corpus = simulation.load_corpus(EMODB, "labels.csv")

    def bar(iterable, desc: str, total: int):
        return tqdm(iterable, desc=desc, total=total, leave=False)

    features = simulation.compute_features(
        corpus,
        args.features,
        copies=2 if args.augmentation else 0,
        cache_dir=CACHE,
        progress=bar,
    )
    problem = simulation.problem_from(corpus, features, augmentation=args.augmentation)
    bars: list[tqdm] = []

    def progress(total: int, desc: str):
        bars.append(tqdm(total=total, desc=desc, smoothing=0.05))
        return bars[-1].update

    try:
        summary = simulation.simulate(problem, config, workers=args.workers, progress=progress)
    finally:
        for b in bars:
            b.close()

    summary["benchmark"] = "active learning on EmoDB (learner.simulation)"
    summary["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary.update(simulation.describe_inputs(corpus, features, problem))
    summary["corpus"]["dir"] = "../shared/data/emodb"
    summary["arguments"]["features"] = args.features
    summary["machine"] = {
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "torch_threads_per_worker": 1,
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "active_learning.json").write_text(json.dumps(summary, indent=1) + "\n")
    simulation.write_csvs(
        summary,
        RESULTS / "active_learning_curves.csv",
        RESULTS / "active_learning_strategies.csv",
    )
    default = summary["strategies"][simulation.DEFAULT_ALIAS]
    ratio = default["ratio_to_random"]
    simulation.plot_curves(
        summary,
        RESULTS / "active_learning.png",
        f"EmoDB, {config.rotations} rotations x {config.seeds} seeds, batch "
        f"{config.batch_size}: mean UAR ± std",
    )

    print()
    print(simulation.markdown_table(summary))
    print()
    rounds = sum(len(run["curve"]) for key, run in summary["runs"].items() if "curve" in run)
    print(
        f"{rounds} training rounds in {summary['wall_s']:.0f} s with {args.workers} workers "
        f"({summary['wall_s'] * args.workers / rounds:.2f} s per round per worker); "
        f"test speakers per rotation: {summary['test_speakers']}"
    )
    print(
        f"labels_ratio_default_vs_random={ratio['mean']:.3f} "
        f"ratio_interval={ratio['low']:.3f}-{ratio['high']:.3f} "
        f"auc_gain={default['auc_gain_over_random']:.4f} seeds={config.seeds} "
        f"rotations={config.rotations} full_pool_uar={summary['full_pool_uar']:.4f}"
    )


if __name__ == "__main__":
    main()
