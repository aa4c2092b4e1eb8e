"""Offline active-learning simulation: which query strategy saves labels on *this* corpus?

Framework-free (no Django): `learner/management/commands/simulate.py` and
`bench/active_learning.py` are thin callers. Arrays in, numbers out, every random choice
seeded.

The loop, for a fully labelled corpus (a folder of audio and a labels CSV with `file`,
`speaker`, `emotion` and optional metadata columns):

1. Corpus emotion names are mapped onto the flat `basic` taxonomy preset (`anger`/`angry`/
   `ang` are one node, see `EMOTION_ALIASES`); the classes are the nodes the corpus uses.
2. Features are computed once per corpus (and cached in an .npz keyed by extractor name,
   version and the files' sha256), for the clips and, when augmentation is on, for the
   learner's augmented training copies.
3. A *rotation* holds out a set of test speakers; the *pool* is every clip of the other
   speakers. Rotations take disjoint speaker groups while there are speakers left, so five
   rotations of two speakers cover a ten-speaker corpus once (speaker-level 5-fold).
4. For each rotation, seed and strategy: label a seed set, then per round train the
   learner's own model (`learner.pipeline.fit_predictor`: per-speaker normalisation, the
   ensemble MLP, label smoothing, class weights; `SIMULATION_TRAIN` keeps it fast), measure
   UAR on the test speakers, let the strategy (`learner.ranking.select`) pick the next batch
   from the unlabelled pool, and reveal the corpus labels of that batch (the oracle).
   Seed set: strategies that need no model (random, kcenter, coverage) run their own pick
   from the first label on; strategies that need one start from the cold-start strategy's
   pick (`learner.ranking.COLD_START_STRATEGY`), as a new project's queue would before its
   first model. `seed_set="random"` starts every strategy from the same random sample.
5. The reference: a model trained on the whole pool, per rotation (mean over seeds).
   labels_to_target of a run is the first number of labels at which its UAR reaches
   `target_fraction` x that reference, or None when the budget ran out first.
6. Per strategy: the mean curve with its spread, labels_to_target (mean and std over runs),
   its ratio to random with a bootstrap interval (rotations resampled, then seeds within
   them), the area under the curve (mean UAR over the curve) and the final UAR.

Per-speaker statistics use all of a speaker's clips, labelled or not, test speakers too: it
is unsupervised and fair whenever the speaker is known at prediction time, and it is what
the learner does by default (learner.normalise).

The diversity strategies measure distances between per-speaker-standardised feature vectors
(computed once per rotation from every clip, no labels): the space is fixed for the whole
run, so a batch's spread does not depend on a retrain. `embedding="trunk"` uses the
ensemble's penultimate activations instead (measured no better on EmoDB:
docs/active-learning.md).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import queue
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Both are framework-free (labelling.audio imports torch lazily; taxonomy_schema is stdlib).
from labelling.audio import decode, to_mono_16k
from labelling.taxonomy_schema import load_preset
from learner import augment, metrics
from learner.features import DEFAULT as DEFAULT_FEATURES
from learner.features import Extractor, ExtractorOptions, get_extractor
from learner.model import TrainConfig
from learner.normalise import MODES, SPEAKER, fit_normaliser
from learner.pipeline import Dataset, PipelineConfig, Predictor, fit_predictor
from learner.ranking import (
    COLD_START_STRATEGY,
    DEFAULT_STRATEGY,
    Pool,
    get_strategy,
    predict_pool_mc,
    select,
)
from learner.targets import Judgement, LabelSpace, Node, label_space, soft_targets
from learner.threads import torch_threads

TAXONOMY_PRESET = "basic"
DEFAULT_ALIAS = "default"  # the strategy name that means "what a new project gets"
RANDOM = "random"
TARGET_FRACTION = 0.95
CACHE_FORMAT = "emoloop-simulation-features/1"

# The model of every round: the product's model family (learner.model, through
# learner.pipeline.fit_predictor) with fewer optimiser steps than a project's training
# (TrainConfig() aims at 1500 steps per member), so that a 5-rotation x 5-seed x 2-strategy
# comparison of ~30 rounds each fits in half an hour on two cores. Measured on EmoDB
# (bench/active_learning.py records it): see docs/active-learning.md.
SIMULATION_TRAIN = TrainConfig(ensemble=3, target_steps=300, min_epochs=10, max_epochs=60)
# MC-dropout passes per ensemble member for strategies that need them (bald).
MC_PASSES = 4


# --- Emotion names -------------------------------------------------------------------------

# Spellings in common corpora (EmoDB, RAVDESS, CREMA-D, TESS, IEMOCAP, SAVEE, ...) for each
# node of the flat `basic` preset. Single letters are left out on purpose: "a" is anger in
# SAVEE and Angst (fear) in EmoDB's file names.
EMOTION_ALIASES: Mapping[str, tuple[str, ...]] = {
    "anger": ("anger", "angry", "ang", "mad", "rage", "furious"),
    "boredom": ("boredom", "bored", "bor"),
    "disgust": ("disgust", "disgusted", "dis", "disgusting"),
    "fear": ("fear", "fearful", "fea", "afraid", "scared", "frightened"),
    "happiness": ("happiness", "happy", "hap", "joy", "joyful", "glad"),
    "sadness": ("sadness", "sad", "unhappy", "sorrow"),
    "surprise": (
        "surprise",
        "surprised",
        "sur",
        "ps",
        "pleasant_surprise",
        "pleasant_surprised",
    ),
    "calm": ("calm", "calmness", "relaxed"),
    "neutral": ("neutral", "neu", "neutrality"),
}


def _spelling(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def flat_taxonomy() -> list[Node]:
    """The `basic` preset's nodes as learner label-space nodes (one flat ring)."""
    doc = load_preset(TAXONOMY_PRESET)
    return [Node(n.key, n.name, n.level, n.parent_key) for n in doc.nodes]


def emotion_lookup(nodes: Sequence[Node] | None = None) -> dict[str, str]:
    """Spelling (lower case, spaces and hyphens as "_") -> node key of the flat taxonomy."""
    nodes = list(nodes) if nodes is not None else flat_taxonomy()
    lookup: dict[str, str] = {}
    for node in nodes:
        lookup[_spelling(node.key)] = node.key
        lookup[_spelling(node.name)] = node.key
        for alias in EMOTION_ALIASES.get(node.key, ()):
            lookup[_spelling(alias)] = node.key
    return lookup


def canonical_emotion(name: str, lookup: Mapping[str, str] | None = None) -> str | None:
    """The taxonomy node a corpus emotion name stands for, or None when it has none."""
    return (lookup if lookup is not None else emotion_lookup()).get(_spelling(name))


# --- Corpus --------------------------------------------------------------------------------


class CorpusError(ValueError):
    """The corpus or its labels cannot be simulated; the message says what to fix."""


@dataclass
class Corpus:
    """A fully labelled corpus, one row per clip (N clips, K classes in taxonomy order)."""

    root: Path
    files: list[Path]  # N audio paths
    names: list[str]  # N `file` values as written in the CSV
    speakers: list[str]  # N speaker ids
    labels: np.ndarray  # (N,) int class indices into `classes`
    classes: list[str]  # K node keys of the flat taxonomy, in taxonomy order
    spellings: dict[str, str]  # corpus emotion name -> node key, as mapped
    metadata: dict[str, list[str]]  # optional columns (gender, age, ...) -> N values
    dropped: dict[str, int] = field(default_factory=dict)  # unmapped name -> rows dropped

    def __len__(self) -> int:
        return len(self.files)


def _resolve_audio(root: Path, names: Sequence[str]) -> list[Path]:
    """`file` values relative to the corpus folder, or found by name anywhere below it."""
    index: dict[str, list[Path]] | None = None
    out: list[Path] = []
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            out.append(direct)
            continue
        if index is None:
            index = {}
            for path in root.rglob("*"):
                if path.is_file():
                    index.setdefault(path.name, []).append(path)
        found = index.get(Path(name).name, [])
        if len(found) == 1:
            out.append(found[0])
        elif len(found) > 1:
            raise CorpusError(
                f"{name!r} matches {len(found)} files below {root}; write its path relative "
                "to the corpus folder in the labels CSV"
            )
        else:
            missing.append(name)
    if missing:
        raise CorpusError(
            f"{len(missing)} file(s) of the labels CSV are not below {root}, e.g. {missing[:3]}"
        )
    return out


def load_corpus(
    corpus_dir: str | Path,
    labels_csv: str | Path,
    *,
    drop_unknown: bool = False,
    nodes: Sequence[Node] | None = None,
) -> Corpus:
    """Read the labels CSV (columns file, speaker, emotion; any others are metadata).

    A relative `labels_csv` that does not exist as given is looked up in the corpus folder.
    Emotion names without a taxonomy node raise CorpusError, listing them, unless
    `drop_unknown` (their rows are then left out and counted in `Corpus.dropped`).
    """
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist")
    labels_path = Path(labels_csv)
    if not labels_path.is_file() and not labels_path.is_absolute():
        labels_path = root / labels_path
    if not labels_path.is_file():
        raise CorpusError(f"labels CSV {labels_csv} not found (also looked in {root})")
    with labels_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    required = {"file", "speaker", "emotion"}
    if not required <= set(columns):
        raise CorpusError(f"{labels_path} needs the columns {sorted(required)}; it has {columns}")
    nodes = list(nodes) if nodes is not None else flat_taxonomy()
    lookup = emotion_lookup(nodes)
    unknown: dict[str, int] = {}
    kept: list[dict[str, str]] = []
    for row in rows:
        if not row["file"]:
            continue
        if canonical_emotion(row["emotion"], lookup) is None:
            unknown[row["emotion"]] = unknown.get(row["emotion"], 0) + 1
        else:
            kept.append(row)
    if unknown and not drop_unknown:
        known = ", ".join(n.key for n in nodes)
        raise CorpusError(
            f"emotion name(s) with no node in the {TAXONOMY_PRESET!r} taxonomy ({known}): "
            + ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unknown.items()))
            + "; rename them in the CSV or pass --drop-unknown to leave those rows out"
        )
    if any(not row["speaker"] for row in kept):
        raise CorpusError("every row needs a speaker id (the test splits are by speaker)")
    spellings = {row["emotion"]: canonical_emotion(row["emotion"], lookup) for row in kept}
    used = set(spellings.values())
    classes = [n.key for n in nodes if n.key in used]
    if len(classes) < 2:
        raise CorpusError(f"the corpus has {len(classes)} emotion class(es); at least 2 needed")
    index = {k: i for i, k in enumerate(classes)}
    names = [row["file"] for row in kept]
    meta_columns = [c for c in columns if c not in required]
    return Corpus(
        root=root,
        files=_resolve_audio(root, names),
        names=names,
        speakers=[row["speaker"] for row in kept],
        labels=np.array([index[spellings[row["emotion"]]] for row in kept], dtype=np.int64),
        classes=classes,
        spellings={k: str(v) for k, v in sorted(spellings.items())},
        metadata={c: [row.get(c, "") for row in kept] for c in meta_columns},
        dropped=unknown if drop_unknown else {},
    )


# --- Features ------------------------------------------------------------------------------


@dataclass
class Features:
    """Per-clip vectors: (N, D) plain, and (N, D) per augmented copy (copy numbers from 1)."""

    plain: np.ndarray
    augmented: list[np.ndarray]
    extractor: dict  # {"name", "version", "dim"}
    seconds: float  # extraction time (0 when read from the cache)
    cache_file: Path | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_wave(path: Path) -> np.ndarray:
    """Any audio file the platform ingests -> (samples,) float32 16 kHz mono."""
    samples, info = decode(path, max_bytes=2**40, max_seconds=24 * 3600.0)
    return to_mono_16k(samples, info.sample_rate)


def compute_features(
    corpus: Corpus,
    extractor: str | Extractor = DEFAULT_FEATURES,
    *,
    copies: int = 0,
    cache_dir: str | Path | None = None,
    progress: Callable[[Iterable, str, int], Iterable] | None = None,
    options: ExtractorOptions | None = None,
) -> Features:
    """Vectors of every clip (and of `copies` augmented copies), cached when `cache_dir`.

    The cache file name carries the extractor's name and version, the augmentation version
    and a digest of every file's sha256 in corpus order, so a changed file, extractor or
    augmentation recomputes. `progress(iterable, description, total)` wraps the loops
    (tqdm in the command).
    """
    ex = get_extractor(extractor, options) if isinstance(extractor, str) else extractor
    info = {"name": ex.name, "version": ex.version, "dim": int(ex.dim)}
    wrap = progress or (lambda it, desc, total: it)
    hashes = [_sha256(p) for p in wrap(corpus.files, "hashing audio", len(corpus))]
    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]
    aug_tag = f"-aug{augment.VERSION}x{copies}" if copies else ""
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"{ex.name}-v{ex.version}{aug_tag}-{digest}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as data:
                if str(data["format"]) == CACHE_FORMAT and list(data["hashes"]) == hashes:
                    return Features(
                        plain=data["plain"],
                        augmented=[data[f"copy{k}"] for k in range(1, copies + 1)],
                        extractor=info,
                        seconds=0.0,
                        cache_file=cache_file,
                    )
    config = augment.AugmentConfig(copies=copies) if copies else None
    plain = np.zeros((len(corpus), ex.dim), dtype=np.float32)
    copies_x = [np.zeros_like(plain) for _ in range(copies)]
    started = time.perf_counter()
    with torch_threads(1):
        for i in wrap(range(len(corpus)), f"{ex.name} features", len(corpus)):
            wave = read_wave(corpus.files[i])
            plain[i] = ex.extract(wave)
            if config is not None:
                # Seeded by content as in learner.services.features: the same copy every run.
                seed = int(hashes[i][:8], 16)
                for k in range(1, copies + 1):
                    copies_x[k - 1][i] = ex.extract(augment.augment(wave, k, config, seed))
    seconds = time.perf_counter() - started
    if not np.isfinite(plain).all() or any(not np.isfinite(c).all() for c in copies_x):
        raise CorpusError(f"{ex.name} returned NaN or infinite values for some clips")
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            format=np.array(CACHE_FORMAT),
            hashes=np.array(hashes),
            plain=plain,
            **{f"copy{k}": copies_x[k - 1] for k in range(1, copies + 1)},
        )
        tmp.replace(cache_file)  # atomic: a half-written cache is never read
    return Features(plain, copies_x, info, seconds, cache_file)


# --- Splits --------------------------------------------------------------------------------


def speaker_rotations(
    speakers: Sequence[str], rotations: int, per_rotation: int, seed: int = 0
) -> list[list[str]]:
    """`rotations` sets of `per_rotation` held-out speakers each.

    Walks a seeded permutation of the speakers in consecutive groups, so the sets are
    disjoint while speakers last (5 x 2 of 10 speakers: every speaker is tested once); then
    a new permutation starts. Within a set no speaker repeats.
    """
    names = sorted(set(speakers))
    if per_rotation < 1 or per_rotation > len(names) - 2:
        raise CorpusError(
            f"{per_rotation} test speaker(s) per rotation leaves too few of the {len(names)} "
            "speakers for the pool (need at least 2 in the pool and 1 to test)"
        )
    rng = np.random.default_rng(seed)
    order: list[str] = []
    out: list[list[str]] = []
    while len(out) < rotations:
        if len(order) < per_rotation:
            fresh = [names[i] for i in rng.permutation(len(names))]
            order += [s for s in fresh if s not in order]
        group, order = order[:per_rotation], order[per_rotation:]
        out.append(sorted(group))
    return out


def default_test_speakers(n_speakers: int, fraction: float = 0.2) -> int:
    return max(1, min(n_speakers - 2, round(fraction * n_speakers)))


# --- Configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = (RANDOM, DEFAULT_ALIAS)
    seeds: int = 5
    rotations: int = 5
    test_speakers: int | None = None  # per rotation; None: 20 % of the speakers
    seed_size: int = 20
    batch_size: int = 10
    budget: int = 300
    seed_set: str = "auto"  # "auto" (see the module docstring) or "random"
    embedding: str = "features"  # diversity space, one of EMBEDDINGS
    normalisation: str = SPEAKER
    augmentation: bool = False
    train: TrainConfig = SIMULATION_TRAIN
    target_fraction: float = TARGET_FRACTION
    bootstrap: int = 2000
    split_seed: int = 0

    def validate(self) -> None:
        for name in self.strategies:
            resolve_strategy(name)
        if self.seeds < 1 or self.rotations < 1:
            raise ValueError("seeds and rotations must be at least 1")
        if self.seed_size < 2:
            raise ValueError("the seed set needs at least 2 clips")
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if self.budget < self.seed_size:
            raise ValueError(f"budget {self.budget} is smaller than the seed set {self.seed_size}")
        if self.seed_set not in ("auto", "random"):
            raise ValueError("seed_set must be 'auto' or 'random'")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}")
        if self.normalisation not in MODES:
            raise ValueError(f"normalisation must be one of {MODES}")
        if not 0 < self.target_fraction <= 1:
            raise ValueError("target_fraction must lie in (0, 1]")

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["strategies"] = list(self.strategies)
        out["resolved_strategies"] = {s: resolve_strategy(s) for s in self.strategies}
        return out


def resolve_strategy(name: str) -> str:
    """`default` -> the project default (learner.ranking.DEFAULT_STRATEGY); others as named."""
    resolved = DEFAULT_STRATEGY if name == DEFAULT_ALIAS else name
    get_strategy(resolved)  # ValueError naming the known ones
    return resolved


def label_steps(seed_size: int, batch_size: int, budget: int) -> list[int]:
    """Labelled-set sizes at which a run measures UAR: seed, seed + batch, ..., budget."""
    steps = list(range(seed_size, budget, batch_size))
    return [*steps, budget] if not steps or steps[-1] != budget else steps


# --- One run -------------------------------------------------------------------------------


@dataclass
class Problem:
    """Everything a run needs, as arrays; shared read-only with forked workers."""

    x: np.ndarray  # (N, D)
    augmented: list[np.ndarray]  # per copy (N, D)
    speakers: list[str]
    labels: np.ndarray  # (N,)
    classes: list[str]
    extractor: dict
    space: LabelSpace = field(init=False)
    dataset: Dataset = field(init=False)

    def __post_init__(self) -> None:
        nodes = [Node(k, k, 0, None) for k in self.classes]
        judgements = [Judgement(i, self.classes[y]) for i, y in enumerate(self.labels)]
        self.space = label_space(nodes, judgements)
        targets = soft_targets(self.space, judgements)
        # Every clip is in the dataset; a round trains on the rows it has labelled. Stats
        # come from every clip (labelled or not, pool and test): see the module docstring.
        self.dataset = Dataset(
            features=self.x,
            speakers=list(self.speakers),
            targets=targets,
            space=self.space,
            extractor=dict(self.extractor),
            stats_features=self.x,
            stats_speakers=list(self.speakers),
            augmented=list(enumerate(self.augmented, start=1)),
        )


def _uar(problem: Problem, predictor: Predictor, test: np.ndarray) -> float:
    probs, _ = predictor.probabilities(problem.x[test], [problem.speakers[i] for i in test])
    return metrics.uar(problem.labels[test], probs.argmax(axis=1), len(problem.classes))


def _pipeline(config: SimulationConfig, seed: int) -> PipelineConfig:
    return PipelineConfig(
        normalisation=config.normalisation,
        train=dataclasses.replace(config.train, seed=seed, threads=1),
        seed=seed,
    )


def split_rows(problem: Problem, test_speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    held = np.isin(np.asarray(problem.speakers, dtype=object), list(test_speakers))
    return np.flatnonzero(~held), np.flatnonzero(held)


# The space diversity is measured in: "features" = the pool's feature vectors standardised
# as the learner normalises them (per speaker by default, statistics of every clip, no
# labels); "raw" = the cached vectors as they are (what learner.services.rescoring passes
# today); "trunk" = the current model's penultimate activations (recomputed every round).
EMBEDDINGS = ("features", "raw", "trunk")


def pool_embeddings(problem: Problem, pool: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """(P, D) vectors of the pool rows for the cold start and the diversity strategies
    (for "trunk", the cold start's: the standardised features)."""
    if config.embedding == "raw":
        return np.asarray(problem.x[pool], dtype=np.float32)
    speakers = [problem.speakers[i] for i in pool]
    normaliser = fit_normaliser(
        problem.x[pool],
        speakers,
        mode=config.normalisation,
        stats_x=problem.x,
        stats_speakers=problem.speakers,
    )
    return normaliser.transform(problem.x[pool], speakers)


def trunk_embeddings(predictor: Predictor, x: np.ndarray, speakers: list[str]) -> np.ndarray:
    """(n, D) features -> (n, members x hidden) penultimate activations of the ensemble,
    each member's block L2-normalised (members' units are not aligned, so they are
    concatenated, not averaged)."""
    z = torch.as_tensor(predictor.normaliser.transform(x, speakers))
    blocks = []
    with torch.inference_mode():
        for net in predictor.members:
            h = net.trunk(z).numpy()
            blocks.append(h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _mc_probabilities(
    predictor: Predictor, x: np.ndarray, speakers: list[str], seed: int
) -> np.ndarray:
    """(T, n, K) probabilities with dropout on: MC_PASSES per ensemble member (for bald)."""
    z = predictor.normaliser.transform(x, speakers)
    passes = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for net in predictor.members:
            net.train()
            try:

                def predict(block: np.ndarray, net=net) -> tuple[np.ndarray, None]:
                    with torch.inference_mode():
                        logits, _ = net(torch.as_tensor(block))
                    return torch.softmax(logits, dim=1).numpy(), None

                mc, _ = predict_pool_mc(predict, [z], MC_PASSES)
            finally:
                net.eval()
            passes.append(mc)
    return np.concatenate(passes, axis=0)


def run_strategy(
    problem: Problem,
    test_speakers: Sequence[str],
    strategy: str,
    seed: int,
    config: SimulationConfig,
    embeddings: np.ndarray | None = None,
    on_round: Callable[[], None] | None = None,
) -> dict:
    """One learning curve: [(labels, UAR), ...] plus timings.

    The rng of the seed set and of the strategy is derived from (split_seed, seed), so every
    strategy of one seed starts from the same random state (and `random` runs share their
    seed set with every other strategy that starts from a random one).
    """
    name = resolve_strategy(strategy)
    spec = get_strategy(name)
    pool, test = split_rows(problem, test_speakers)
    budget = min(config.budget, len(pool))
    if embeddings is None:
        embeddings = pool_embeddings(problem, pool, config)
    rng = np.random.default_rng([config.split_seed, seed])
    unlabelled = np.ones(len(pool), dtype=bool)  # positions in `pool`
    seed_size = min(config.seed_size, budget)
    if config.seed_set == "random":
        first = RANDOM
    elif spec.needs_model:
        first = COLD_START_STRATEGY
    else:
        first = name  # random, kcenter, coverage: their own pick from the first label on
    picks = select(
        first,
        Pool(probs_core=None, probs_fine=None, embeddings=embeddings),
        seed_size,
        seed=int(rng.integers(2**31)),
    ).indices
    unlabelled[picks] = False
    curve: list[list[float]] = []
    train_s = select_s = 0.0
    round_no = 0
    while True:
        labelled = np.flatnonzero(~unlabelled)
        started = time.perf_counter()
        predictor = fit_predictor(
            problem.dataset, pool[labelled], _pipeline(config, seed * 1000 + round_no)
        )
        train_s += time.perf_counter() - started
        curve.append([len(labelled), _uar(problem, predictor, test)])
        if on_round is not None:
            on_round()
        remaining = np.flatnonzero(unlabelled)
        size = min(config.batch_size, budget - len(labelled), len(remaining))
        if size <= 0:
            break
        started = time.perf_counter()
        rows = pool[remaining]
        speakers = [problem.speakers[i] for i in rows]
        probs = mc = None
        if spec.needs_model:
            probs, _ = predictor.probabilities(problem.x[rows], speakers)
            probs = probs.astype(np.float64)
            probs /= probs.sum(axis=1, keepdims=True)
        if spec.needs_mc:
            mc = _mc_probabilities(predictor, problem.x[rows], speakers, seed * 1000 + round_no)
        space = embeddings
        if config.embedding == "trunk":
            space = trunk_embeddings(
                predictor, problem.x[pool], [problem.speakers[i] for i in pool]
            )
        selection = select(
            name,
            Pool(
                probs_core=probs,
                probs_fine=None,
                embeddings=space[remaining],
                mc_probs_core=mc,
                labelled_embeddings=space[labelled],
            ),
            size,
            seed=int(rng.integers(2**31)),
        )
        unlabelled[remaining[selection.indices]] = False
        select_s += time.perf_counter() - started
        round_no += 1
    return {
        "curve": curve,
        "rounds": len(curve),
        "train_s": train_s,
        "select_s": select_s,
    }


def run_full_pool(
    problem: Problem, test_speakers: Sequence[str], seed: int, config: SimulationConfig
) -> dict:
    """UAR of the model trained on every pool clip (the reference the target is cut from)."""
    pool, test = split_rows(problem, test_speakers)
    started = time.perf_counter()
    predictor = fit_predictor(problem.dataset, pool, _pipeline(config, seed * 1000 + 999))
    train_s = time.perf_counter() - started
    return {"uar": _uar(problem, predictor, test), "labels": len(pool), "train_s": train_s}


# --- Many runs -----------------------------------------------------------------------------

# Set in the parent before the workers fork; read-only in them (the tick queue aside).
_WORK: dict[str, Any] = {}


def _tick() -> None:
    _WORK["tick"]()


def _job(job: tuple[int, int, str]) -> dict:
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
) -> dict[tuple[int, int, str], dict]:
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
) -> dict:
    """Every (rotation, seed, strategy) run and every full-pool model; returns the summary.

    progress(total rounds, description) -> update(n): a progress bar in the caller's terms.
    With workers > 1 the runs go to forked processes, one torch thread each.
    """
    config.validate()
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


# --- Statistics ----------------------------------------------------------------------------


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
    results: Mapping[tuple[int, int, str], dict],
    rotations: Sequence[Sequence[str]],
    pool_sizes: Sequence[int],
    config: SimulationConfig,
    *,
    wall_s: float = 0.0,
    workers: int = 1,
) -> dict:
    """The summary.json structure (see docs/active-learning.md) from raw run results."""
    n_rot, n_seed = len(rotations), config.seeds
    full = np.array([[results[(r, s, "")]["uar"] for s in range(n_seed)] for r in range(n_rot)])
    full_rot = full.mean(axis=1)
    targets = config.target_fraction * full_rot
    # A run that never reaches the target counts as its rotation's budget + one batch.
    fill = np.array([[min(config.budget, p) + config.batch_size] for p in pool_sizes], float)
    ltt: dict[str, np.ndarray] = {}
    out: dict[str, dict] = {}
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


# --- Output --------------------------------------------------------------------------------


def strategy_table(summary: dict) -> list[dict]:
    """One row per strategy: the figures the README and the command print."""
    rows = []
    for name, s in summary["strategies"].items():
        ltt = s["labels_to_target"]
        ratio = s.get("ratio_to_random") or {}
        rows.append(
            {
                "strategy": name,
                "resolved": s["resolved"],
                "labels_to_target_mean": ltt["mean"],
                "labels_to_target_std": ltt["std"],
                "reached": f"{ltt['reached']}/{ltt['runs']}",
                "ratio_to_random": ratio.get("mean"),
                "ratio_low": ratio.get("low"),
                "ratio_high": ratio.get("high"),
                "auc": s["auc"],
                "final_uar": s["final_uar"]["mean"],
                "final_uar_std": s["final_uar"]["std"],
            }
        )
    return rows


def markdown_table(summary: dict) -> str:
    lines = [
        "| strategy | labels to 95 % of full-pool UAR (mean ± std) | reached | ratio to random "
        "(90 % interval) | AUC | final UAR |",
        "|---|---|---|---|---|---|",
    ]
    for row in strategy_table(summary):
        ratio = (
            f"{row['ratio_to_random']:.2f} ({row['ratio_low']:.2f}-{row['ratio_high']:.2f})"
            if row["ratio_to_random"] is not None
            else "-"
        )
        name = row["strategy"]
        if row["resolved"] != name:
            name = f"{name} ({row['resolved']})"
        lines.append(
            f"| {name} | {row['labels_to_target_mean']:.0f} ± {row['labels_to_target_std']:.0f} "
            f"| {row['reached']} | {ratio} | {row['auc']:.3f} "
            f"| {row['final_uar']:.3f} ± {row['final_uar_std']:.3f} |"
        )
    return "\n".join(lines)


def write_csvs(summary: dict, curves_path: Path, table_path: Path) -> None:
    """Per-run curves (long format) and the per-strategy table."""
    with curves_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["strategy", "rotation", "seed", "labels", "uar"])
        for key, run in summary["runs"].items():
            name, rotation, seed = key.rsplit("/", 2)
            if name == "full_pool":
                writer.writerow([name, rotation, seed, run["labels"], f"{run['uar']:.6f}"])
                continue
            for labels, uar in run["curve"]:
                writer.writerow([name, rotation, seed, int(labels), f"{uar:.6f}"])
    rows = strategy_table(summary)
    with table_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(summary: dict, path: Path, title: str = "") -> None:
    """Mean UAR per strategy against labels, ±1 std band, with the full-pool reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (name, s) in enumerate(summary["strategies"].items()):
        curve = np.asarray(s["curve"])
        colour = f"C{i}"
        label = name if s["resolved"] == name else f"{name} ({s['resolved']})"
        ratio = s.get("ratio_to_random")
        if ratio and name != RANDOM and ratio["mean"] is not None:
            label += f": {ratio['mean']:.2f}x random's labels"
        ax.plot(curve[:, 0], curve[:, 1], color=colour, label=label, linewidth=1.6)
        ax.fill_between(
            curve[:, 0],
            curve[:, 1] - curve[:, 2],
            curve[:, 1] + curve[:, 2],
            color=colour,
            alpha=0.15,
            linewidth=0,
        )
    full = summary["full_pool_uar"]
    ax.axhline(full, color="black", linewidth=1, label=f"whole pool ({full:.3f})")
    ax.axhline(
        summary["target_fraction"] * full,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"{summary['target_fraction']:.0%} of whole pool",
    )
    ax.set_xlabel("labelled clips")
    ax.set_ylabel("UAR on held-out speakers")
    ax.set_title(title or "Active learning, mean ± std over rotations and seeds", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_outputs(summary: dict, out_dir: Path, title: str = "") -> dict[str, Path]:
    """summary.json, curves.csv, strategies.csv and curves.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "summary.json",
        "curves_csv": out_dir / "curves.csv",
        "table_csv": out_dir / "strategies.csv",
        "png": out_dir / "curves.png",
    }
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    write_csvs(summary, paths["curves_csv"], paths["table_csv"])
    plot_curves(summary, paths["png"], title)
    return paths


def problem_from(corpus: Corpus, features: Features, *, augmentation: bool = False) -> Problem:
    """The arrays of a simulation; augmented copies only when `augmentation`."""
    return Problem(
        x=features.plain,
        augmented=list(features.augmented) if augmentation else [],
        speakers=list(corpus.speakers),
        labels=corpus.labels,
        classes=list(corpus.classes),
        extractor=features.extractor,
    )


def describe_inputs(corpus: Corpus, features: Features, problem: Problem) -> dict:
    """The `corpus` and `features` entries of summary.json."""
    return {
        "corpus": {
            "dir": str(corpus.root),
            "clips": len(corpus),
            "speakers": len(set(corpus.speakers)),
            "classes": corpus.classes,
            "emotion_names": corpus.spellings,
            "dropped": corpus.dropped,
        },
        "features": {
            **features.extractor,
            "augmented_copies": len(problem.augmented),
            "extraction_s": features.seconds,
        },
    }


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
