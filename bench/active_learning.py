"""Active learning on EmoDB: does the project's default query strategy save labels?

Runs the simulator (learner.simulation, the same code as `manage.py simulate`) on
../shared/data/emodb: 5 rotations of 2 held-out test speakers (every speaker is tested once)
x 5 seeds, seed set 20, batches of 20 (the live loop's default query_batch_size), budget
200 labels (runs that need more count as 220), the acoustic features with
per-speaker normalisation and the learner's ensemble MLP (learner.simulation.SIMULATION_TRAIN).
Strategies: `random` and `default` (learner.ranking.DEFAULT_STRATEGY), plus any named with
--strategies.

Writes bench/results/active_learning.json (the simulator's summary plus machine and timing),
active_learning.png (learning curves), active_learning_curves.csv (every run's curve) and
active_learning_strategies.csv (the per-strategy table); `--name` changes their stem.
Features are cached in var/simulation-cache. The last line printed is

    labels_ratio_default_vs_random=... ratio_interval=LOW-HIGH auc_gain=... seeds=...
    rotations=... full_pool_uar=...

(on one line) where the ratio is mean labels to reach 95 % of the whole pool's UAR, default
over random (runs that never reach it count as budget + one batch), the interval is a 90 %
bootstrap over rotations then seeds, and auc_gain is the difference in mean UAR over the
curve.

Weak labels (`--weak-labels FILE [--weak-weight W]`, as `manage.py simulate` takes them; W
default 0.3): the same runs are made a second time with the weak labels in every round's
training set, written to active_learning_weak.json, and the last line gains

    weak_ratio=... weak_ratio_interval=LOW-HIGH weak_final_uar_diff=... weak_weight=...
    weak_accuracy=...

(the default strategy's labels to target with weak labels over without, paired bootstrap
as above, and the final UAR difference). The weak labeller must never have heard the
corpus's speakers: make one with `manage.py make_weak_labeller` and pass its
`labels_rest.csv` as `--labels`.

    python -m bench.active_learning [--strategies random,default,least_confidence]
        [--seeds 5] [--rotations 5] [--budget 200] [--batch-size 20] [--workers 2]
        [--labels labels.csv] [--weak-labels FILE --weak-weight 0.3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from learner import simulation  # noqa: E402
from learner.simulation.weak import load_weak_labels  # noqa: E402

EMODB = REPO.parent / "shared" / "data" / "emodb"
RESULTS = REPO / "bench" / "results"
CACHE = REPO / "var" / "simulation-cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default="random,default")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--workers", type=int, default=simulation.default_workers())
    parser.add_argument("--augmentation", action="store_true")
    parser.add_argument("--features", default="acoustic")
    parser.add_argument("--labels", default="labels.csv", help="labels file (in EmoDB's folder)")
    parser.add_argument("--weak-labels", default="", help="weak labels file (CSV or JSON lines)")
    parser.add_argument("--weak-weight", type=float, default=None)
    parser.add_argument(
        "--name", default="active_learning", help="stem of the files in bench/results/"
    )
    args = parser.parse_args()
    if not (EMODB / "labels.csv").exists():
        sys.exit(f"EmoDB is not at {EMODB}")
    if args.weak_weight is not None and not args.weak_labels:
        sys.exit("--weak-weight needs --weak-labels")
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
    corpus = simulation.load_corpus(EMODB, args.labels)

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
        weak_summary = None
        if args.weak_labels:
            weak_summary = _weak_run(args, corpus, features, config, progress)
    finally:
        for b in bars:
            b.close()

    summary["benchmark"] = "active learning on EmoDB (learner.simulation)"
    summary["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary.update(simulation.describe_inputs(corpus, features, problem))
    summary["corpus"]["dir"] = "../shared/data/emodb"
    summary["corpus"]["labels"] = args.labels
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
    (RESULTS / f"{args.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    simulation.write_csvs(
        summary,
        RESULTS / f"{args.name}_curves.csv",
        RESULTS / f"{args.name}_strategies.csv",
    )
    default = summary["strategies"][simulation.DEFAULT_ALIAS]
    ratio = default["ratio_to_random"]
    simulation.plot_curves(
        summary,
        RESULTS / f"{args.name}.png",
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
    weak_pairs = ""
    if weak_summary is not None:
        weak_summary["machine"] = summary["machine"]
        text = json.dumps(weak_summary, indent=1) + "\n"
        (RESULTS / f"{args.name}_weak.json").write_text(text)
        weak_pairs = " " + _weak_effect(summary, weak_summary)
    print(
        f"labels_ratio_default_vs_random={ratio['mean']:.3f} "
        f"ratio_interval={ratio['low']:.3f}-{ratio['high']:.3f} "
        f"auc_gain={default['auc_gain_over_random']:.4f} seeds={config.seeds} "
        f"rotations={config.rotations} full_pool_uar={summary['full_pool_uar']:.4f}" + weak_pairs
    )


def _weak_run(args, corpus, features, config, progress) -> dict:
    """The same runs with the weak labels of `args.weak_labels` in every round's training set."""
    weak = load_weak_labels(args.weak_labels, corpus)
    weight = 0.3 if args.weak_weight is None else args.weak_weight
    config = dataclasses.replace(config, weak_weight=weight, weak_labels=args.weak_labels)
    config.validate()
    problem = simulation.problem_from(
        corpus, features, augmentation=args.augmentation, weak=weak.probabilities
    )
    summary = simulation.simulate(problem, config, workers=args.workers, progress=progress)
    summary["weak_labels"] = {
        "file": weak.path,
        "weight": weight,
        "clips": weak.covered,
        "accuracy": weak.accuracy(corpus.labels),
        "unknown_files": weak.unknown_files,
        "unknown_labels": weak.unknown_labels,
    }
    return summary


def _censored_runs(row: dict) -> np.ndarray:
    """(rotations, seeds) labels to target; a run that never got there counts as censored_as."""
    ltt = row["labels_to_target"]
    return np.asarray(
        [
            [ltt["censored_as"][r] if v is None else v for v in runs]
            for r, runs in enumerate(ltt["per_run"])
        ],
        dtype=np.float64,
    )


def _weak_effect(base: dict, weak: dict) -> str:
    """`name=value` pairs: the default strategy with weak labels against without."""
    name = simulation.DEFAULT_ALIAS
    weak_row, base_row = weak["strategies"][name], base["strategies"][name]
    with_weak, without = _censored_runs(weak_row), _censored_runs(base_row)
    ratio, low, high = simulation.bootstrap_ratio(with_weak, without)
    diff = weak_row["final_uar"]["mean"] - base_row["final_uar"]["mean"]
    accuracy = weak["weak_labels"]["accuracy"]
    return (
        f"weak_ratio={ratio:.3f} weak_ratio_interval={low:.3f}-{high:.3f} "
        f"weak_final_uar_diff={diff:+.4f} weak_weight={weak['weak_labels']['weight']} "
        f"weak_accuracy={'n/a' if accuracy is None else f'{accuracy:.3f}'}"
    )


if __name__ == "__main__":
    main()
