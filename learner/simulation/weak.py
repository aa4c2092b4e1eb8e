"""Weak labels in the simulator: another model's predictions on the corpus's clips, read from
a file like the ones `manage.py import_predictions` reads, as an (N, K) array of
distributions over the corpus's classes (NaN rows where the file says nothing).

Accepted files, one row per clip, matched on the clip's `file` value as the labels CSV
writes it (or its base name):
- CSV: a `file` column, then one column per label holding its probability;
- JSON lines: {"file": "a.wav", "probabilities": {"label": p, ...}}.
Labels are corpus emotion names or node keys (`EMOTION_ALIASES` maps them); a label the
corpus has no class for, and a row whose file is not in the corpus, are counted and left
out; the rest of a row is renormalised. A probability that is not a finite number in [0, 1]
raises CorpusError naming the line.

A weak row joins the training set of every round for its clip while the clip is still
unlabelled in that run, with weight `SimulationConfig.weak_weight`; it never counts as a
label spent and never enters the test speakers' evaluation (test clips' rows are unused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from labelling.manifest import ManifestError, read_rows
from learner.pipeline import fit_predictor
from learner.simulation.config import SimulationConfig
from learner.simulation.corpus import Corpus, CorpusError, canonical_emotion
from learner.simulation.loop import Problem, pipeline_config, split_rows

FILE_COLUMNS = ("file", "file_name", "filename", "path")
IGNORED_COLUMNS = (*FILE_COLUMNS, "clip", "clip_id", "model", "model_name", "model_version")


@dataclass
class WeakLabels:
    probabilities: np.ndarray  # (N, K) over corpus.classes; NaN rows: no weak label
    path: str
    unknown_files: int = 0
    unknown_labels: dict[str, int] = field(default_factory=dict)

    @property
    def covered(self) -> int:
        return int((~np.isnan(self.probabilities).any(axis=1)).sum())

    def accuracy(self, labels: np.ndarray) -> float | None:
        """Share of covered clips whose argmax is the corpus label."""
        rows = np.flatnonzero(~np.isnan(self.probabilities).any(axis=1))
        if not len(rows):
            return None
        return float((self.probabilities[rows].argmax(axis=1) == labels[rows]).mean())


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise CorpusError(f"{where}: {value!r} is not a probability") from exc
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise CorpusError(f"{where}: {value!r} is not a probability in [0, 1]")
    return number


def load_weak_labels(path: str | Path, corpus: Corpus) -> WeakLabels:
    """The file's distributions as an (N, K) array aligned with the corpus (see above)."""
    source = Path(path)
    try:
        rows = read_rows(source)
    except ManifestError as exc:
        raise CorpusError(str(exc)) from exc
    index: dict[str, int] = {}
    for i, name in enumerate(corpus.names):
        index.setdefault(name, i)
        index.setdefault(PurePosixPath(name.replace("\\", "/")).name, i)
    class_of = {k: i for i, k in enumerate(corpus.classes)}
    out = np.full((len(corpus), len(corpus.classes)), np.nan)
    unknown_files = 0
    unknown_labels: dict[str, int] = {}
    for line, row in enumerate(rows, start=2 if source.suffix.lower() == ".csv" else 1):
        where = f"{source.name} line {line}"
        name = next((str(row[c]).strip() for c in FILE_COLUMNS if row.get(c)), "")
        probs = row.get("probabilities")
        if not isinstance(probs, dict):
            probs = {k: v for k, v in row.items() if k is not None and k not in IGNORED_COLUMNS}
        i = index.get(name, index.get(PurePosixPath(name.replace("\\", "/")).name, -1))
        if i < 0:
            unknown_files += 1
            continue
        dist = np.zeros(len(corpus.classes))
        for label, value in probs.items():
            p = _number(value, where)
            key = canonical_emotion(str(label))
            if key is None or key not in class_of:
                unknown_labels[str(label)] = unknown_labels.get(str(label), 0) + 1
                continue
            dist[class_of[key]] += p
        if dist.sum() > 0:
            out[i] = dist / dist.sum()
    return WeakLabels(out, str(source), unknown_files, unknown_labels)


# --- A weak labeller of known accuracy -----------------------------------------------------


def pick_speakers(speakers: list[str], count: int, seed: int) -> list[str]:
    """`count` speakers drawn in a seeded order (the weak labeller's training speakers)."""
    names = sorted(set(speakers))
    if not 1 <= count < len(names):
        raise CorpusError(f"pick between 1 and {len(names) - 1} of the {len(names)} speakers")
    order = np.random.default_rng(seed).permutation(len(names))
    return sorted(names[i] for i in order[:count])


def train_weak_labeller(
    problem: Problem, train_speakers: list[str], config: SimulationConfig, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train the simulator's model on every clip of `train_speakers` and predict the other
    clips: (rows predicted, (n, K) calibrated-free probabilities). The rows never include a
    training speaker, so a simulation on the other speakers only sees a labeller that never
    heard its pool or its test speakers."""
    train, rest = split_rows(problem, train_speakers)[::-1]
    predictor = fit_predictor(problem.dataset, train, pipeline_config(config, seed))
    probs, _ = predictor.probabilities(problem.x[rest], [problem.speakers[i] for i in rest])
    probs = np.asarray(probs, dtype=np.float64)
    return rest, probs / probs.sum(axis=1, keepdims=True)
