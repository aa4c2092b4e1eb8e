"""python manage.py make_weak_labeller CORPUS_DIR --labels labels.csv --train-speakers 3 --out DIR

A weak labeller of known accuracy for the simulator's `--weak-labels`: the simulator's model
trained on every clip of a few speakers (drawn with --seed, or named with --speakers), which
predicts the clips of all the other speakers. Writes

- DIR/weak_labels.jsonl: {"file", "probabilities"} per predicted clip (what
  `simulate --weak-labels` and `import_predictions` read);
- DIR/labels_rest.csv: the labels of the other speakers only, so that the simulation runs on
  speakers the labeller never heard (neither its pool nor its test speakers leak);
- DIR/weak_labeller.json: its training speakers, accuracy and UAR on the predicted clips.

Needs no database.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learner import metrics, simulation
from learner.features import DEFAULT, NAMES, ExtractorUnavailable
from learner.simulation.weak import pick_speakers, train_weak_labeller


class Command(BaseCommand):
    help = (
        "Train a weak labeller on a few speakers of a labelled corpus and predict the others: "
        "predictions for simulate --weak-labels, the other speakers' labels, its accuracy."
    )
    requires_system_checks: list[str] = []  # offline tool

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("corpus_dir")
        parser.add_argument("--labels", required=True)
        parser.add_argument("--train-speakers", type=int, default=3)
        parser.add_argument(
            "--speakers", default="", help="Comma-separated speaker ids (instead of a draw)."
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--features", choices=NAMES, default=DEFAULT)
        parser.add_argument("--out", required=True)
        parser.add_argument("--cache-dir", default=None)

    def handle(self, *args, **options) -> None:
        out = Path(options["out"])
        try:
            corpus = simulation.load_corpus(options["corpus_dir"], options["labels"])
            speakers = (
                sorted(s.strip() for s in options["speakers"].split(",") if s.strip())
                if options["speakers"]
                else pick_speakers(corpus.speakers, options["train_speakers"], options["seed"])
            )
            unknown = set(speakers) - set(corpus.speakers)
            if unknown:
                raise CommandError(f"unknown speakers: {', '.join(sorted(unknown))}")
            features = simulation.compute_features(
                corpus, options["features"], cache_dir=options["cache_dir"] or out / "cache"
            )
        except (ExtractorUnavailable, simulation.CorpusError) as exc:
            raise CommandError(str(exc)) from exc
        problem = simulation.problem_from(corpus, features)
        rows, probs = train_weak_labeller(
            problem, speakers, simulation.SimulationConfig(), seed=options["seed"]
        )
        predicted = probs.argmax(axis=1)
        truth = corpus.labels[rows]
        report = {
            "corpus": str(corpus.root),
            "features": options["features"],
            "train_speakers": speakers,
            "train_clips": len(corpus) - len(rows),
            "predicted_clips": len(rows),
            "accuracy": float((predicted == truth).mean()),
            "uar": float(metrics.uar(truth, predicted, len(corpus.classes))),
        }
        out.mkdir(parents=True, exist_ok=True)
        with (out / "weak_labels.jsonl").open("w", encoding="utf-8") as fh:
            for i, dist in zip(rows, probs, strict=True):
                row = {
                    "file": corpus.names[i],
                    "probabilities": dict(zip(corpus.classes, map(float, dist), strict=True)),
                }
                fh.write(json.dumps(row) + "\n")
        with (out / "labels_rest.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "speaker", "emotion"])
            for i in rows:
                writer.writerow(
                    [corpus.names[i], corpus.speakers[i], corpus.classes[corpus.labels[i]]]
                )
        (out / "weak_labeller.json").write_text(json.dumps(report, indent=2) + "\n")
        self.stdout.write(
            f"weak labeller trained on speakers {', '.join(speakers)} "
            f"({report['train_clips']} clips); on the other {len(rows)} clips: accuracy "
            f"{report['accuracy']:.3f}, UAR {report['uar']:.3f}; wrote {out}"
        )
