"""python manage.py simulate CORPUS_DIR --labels labels.csv [--strategies random,default] ...

Offline active-learning simulation against a fully labelled corpus (learner.simulation does
the work; this command parses, shows progress bars and writes the files). Needs no database.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from learner import simulation
from learner.features import DEFAULT, NAMES, ExtractorUnavailable
from learner.ranking import DEFAULT_STRATEGY, STRATEGIES
from learner.simulation.weak import load_weak_labels

# A weak label's default weight against a human label's 1: the product's default source
# weight (labelling.models_interop.WeakLabelSource.DEFAULT_WEIGHT), for the same reason.
DEFAULT_WEAK_WEIGHT = 0.3


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _weak_weight(options: dict) -> float:
    weight = options["weak_weight"]
    if weight is not None and not options["weak_labels"]:
        raise CommandError("--weak-weight needs --weak-labels")
    if not options["weak_labels"]:
        return 0.0
    return DEFAULT_WEAK_WEIGHT if weight is None else float(weight)


class Command(BaseCommand):
    help = (
        "Simulate the active-learning loop on a fully labelled corpus (an oracle annotator, "
        "held-out test speakers) and compare query strategies: learning curves, labels needed "
        "to reach 95% of the whole pool's UAR, ratio to random sampling, plot, JSON and CSV."
    )
    requires_system_checks: list[str] = []  # offline tool: no database, no settings checks

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("corpus_dir", help="Folder of the audio files.")
        parser.add_argument(
            "--labels",
            required=True,
            help="CSV (or .jsonl) with columns file, speaker, emotion (others are metadata); "
            "a relative path not found as given is looked up in CORPUS_DIR.",
        )
        parser.add_argument(
            "--strategies",
            nargs="+",
            default=[simulation.RANDOM, simulation.DEFAULT_ALIAS],
            help=f"Strategy names, separated by spaces or commas; 'default' is the project "
            f"default ({DEFAULT_STRATEGY}). Known: {', '.join(STRATEGIES)}.",
        )
        parser.add_argument("--seeds", type=_positive, default=5, help="Seeds per rotation.")
        parser.add_argument(
            "--rotations",
            type=_positive,
            default=5,
            help="Sets of held-out test speakers; each runs with every seed.",
        )
        parser.add_argument(
            "--test-speakers",
            type=_positive,
            default=None,
            help="Test speakers per rotation (default: 20%% of the speakers).",
        )
        parser.add_argument("--seed-size", type=_positive, default=20)
        parser.add_argument("--batch-size", type=_positive, default=10)
        parser.add_argument(
            "--budget",
            type=_positive,
            default=300,
            help="Labels per run at most (capped at the pool size).",
        )
        parser.add_argument(
            "--seed-set",
            choices=("auto", "random"),
            default="auto",
            help="auto: strategies that need a model start from the cold-start strategy's "
            "picks, the others from their own; random: a random seed set for every strategy.",
        )
        parser.add_argument(
            "--embedding",
            choices=simulation.EMBEDDINGS,
            default="features",
            help="Space for the diversity strategies and the cold start: features (what "
            "the live loop uses: the model's input space, learner.ranking.space), raw "
            "(cached vectors as they are) or trunk (the model's penultimate activations).",
        )
        parser.add_argument("--features", choices=NAMES, default=DEFAULT)
        parser.add_argument(
            "--augmentation",
            action="store_true",
            help="Train on the learner's augmented copies too (3x the feature extraction).",
        )
        parser.add_argument(
            "--drop-unknown",
            action="store_true",
            help="Leave out rows whose emotion has no node in the flat taxonomy.",
        )
        parser.add_argument(
            "--weak-labels",
            default=None,
            help="Another model's predictions (CSV: file + one column per label; or JSON lines "
            '{"file", "probabilities"}): weak labels that join every round\'s training set '
            "for the pool clips not labelled yet (learner.simulation.weak).",
        )
        parser.add_argument(
            "--weak-weight",
            type=float,
            default=None,
            help="Weight of a weak label against a human one (1), in [0, 1] (default 0.3 "
            "with --weak-labels).",
        )
        parser.add_argument("--workers", type=_positive, default=simulation.default_workers())
        parser.add_argument("--out", default="simulation", help="Output folder.")
        parser.add_argument(
            "--cache-dir", default=None, help="Feature cache folder (default: OUT/cache)."
        )

    def handle(self, *args, **options) -> None:
        out = Path(options["out"])
        strategies = tuple(
            name.strip() for arg in options["strategies"] for name in arg.split(",") if name.strip()
        )
        config = simulation.SimulationConfig(
            strategies=strategies,
            seeds=options["seeds"],
            rotations=options["rotations"],
            test_speakers=options["test_speakers"],
            seed_size=options["seed_size"],
            batch_size=options["batch_size"],
            budget=options["budget"],
            seed_set=options["seed_set"],
            embedding=options["embedding"],
            augmentation=options["augmentation"],
            weak_weight=_weak_weight(options),
            weak_labels=options["weak_labels"] or "",
        )
        try:
            config.validate()
            corpus = simulation.load_corpus(
                options["corpus_dir"], options["labels"], drop_unknown=options["drop_unknown"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        err = self.stderr
        dropped = sum(corpus.dropped.values())
        self.stdout.write(
            f"{len(corpus)} clips, {len(set(corpus.speakers))} speakers, classes "
            f"{', '.join(corpus.classes)}"
            + (f"; {dropped} rows with unknown emotions left out" if dropped else "")
        )

        def bar(iterable, desc: str, total: int):
            return tqdm(iterable, desc=desc, total=total, leave=False, file=err)

        try:
            features = simulation.compute_features(
                corpus,
                options["features"],
                copies=2 if config.augmentation else 0,
                cache_dir=options["cache_dir"] or out / "cache",
                progress=bar,
            )
        except (ExtractorUnavailable, simulation.CorpusError) as exc:
            raise CommandError(str(exc)) from exc
        weak = None
        if options["weak_labels"]:
            try:
                weak = load_weak_labels(options["weak_labels"], corpus)
            except simulation.CorpusError as exc:
                raise CommandError(str(exc)) from exc
            accuracy = weak.accuracy(corpus.labels)
            self.stdout.write(
                f"weak labels: {weak.covered} of {len(corpus)} clips, accuracy "
                + (f"{accuracy:.3f}" if accuracy is not None else "n/a")
                + f" against the corpus labels, weight {config.weak_weight}"
                + (f"; {weak.unknown_files} rows for unknown files" if weak.unknown_files else "")
            )
        problem = simulation.problem_from(
            corpus,
            features,
            augmentation=config.augmentation,
            weak=weak.probabilities if weak is not None else None,
        )
        progress_bar: list[tqdm] = []

        def progress(total: int, desc: str):
            progress_bar.append(tqdm(total=total, desc=desc, file=err))
            return progress_bar[-1].update

        try:
            summary = simulation.simulate(
                problem, config, workers=options["workers"], progress=progress
            )
        except (ValueError, simulation.CorpusError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            for b in progress_bar:
                b.close()
        summary.update(simulation.describe_inputs(corpus, features, problem))
        summary["corpus"]["labels"] = options["labels"]
        if weak is not None:
            summary["weak_labels"] = {
                "file": weak.path,
                "weight": config.weak_weight,
                "clips": weak.covered,
                "accuracy": weak.accuracy(corpus.labels),
                "unknown_files": weak.unknown_files,
                "unknown_labels": weak.unknown_labels,
            }
        summary["arguments"] = {
            **summary["arguments"],
            "features": options["features"],
            "workers": options["workers"],
            "out": str(out),
        }
        paths = simulation.write_outputs(summary, out)
        self.stdout.write(simulation.markdown_table(summary))
        self.stdout.write(
            f"whole-pool UAR {summary['full_pool_uar']:.3f}; target "
            f"{summary['target_fraction']:.0%} of it; {summary['wall_s']:.0f} s"
        )
        for path in paths.values():
            self.stdout.write(f"wrote {path}")
