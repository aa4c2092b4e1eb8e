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
   With weak labels (`weak_weight` > 0), every round also trains on the weak labels of the
   pool clips not labelled yet, with that weight; they are not labels spent, and the test
   speakers' weak labels are never used (learner.simulation.weak).
6. Per strategy: the mean curve with its spread, labels_to_target (mean and std over runs),
   its ratio to random with a bootstrap interval (rotations resampled, then seeds within
   them), the area under the curve (mean UAR over the curve) and the final UAR.

Per-speaker statistics use all of a speaker's clips, labelled or not, test speakers too: it
is unsupervised and fair whenever the speaker is known at prediction time, and it is what
the learner does by default (learner.normalise).

The diversity strategies select exactly as the live loop does (learner.ranking.space, the
one code path with learner.services.rescoring): distances in the round's model's input space
(its per-speaker normaliser), the labelled clips passed as already covered; the cold start
standardises the pool per speaker. `embedding="raw"` (the cached vectors) and
`embedding="trunk"` (the ensemble's penultimate activations) are kept for comparison
(measured no better on EmoDB: docs/active-learning.md).

The package, one module per job; each imports only the modules above it:

| module | job |
|---|---|
| `corpus` | the labels file (read by `labelling.manifest`), emotion names, speaker rotations |
| `features` | feature vectors of every clip and augmented copy, the .npz cache |
| `config` | SimulationConfig, strategy names, the model of every round |
| `loop` | Problem (the arrays of a simulation), one run, the full-pool reference |
| `metrics` | labels to target, censoring, bootstrap ratio to random, the summary |
| `weak` | weak labels from a file (`--weak-labels`); a weak labeller of other speakers |
| `jobs` | every (rotation, seed, strategy) job in forked worker processes: `simulate` |
| `report` | the strategy table, CSVs, the curves plot, summary.json |

Callers import the package (`from learner import simulation`): the names re-exported here
are its public interface; anything else is reached through its module.
"""

from __future__ import annotations

from learner.simulation.config import (
    DEFAULT_ALIAS,
    EMBEDDINGS,
    RANDOM,
    SIMULATION_TRAIN,
    TARGET_FRACTION,
    SimulationConfig,
    label_steps,
)
from learner.simulation.corpus import (
    EMOTION_ALIASES,
    Corpus,
    CorpusError,
    canonical_emotion,
    load_corpus,
    speaker_rotations,
)
from learner.simulation.features import Features, compute_features
from learner.simulation.jobs import default_workers, simulate
from learner.simulation.loop import Problem, problem_from, run_strategy
from learner.simulation.metrics import bootstrap_ratio, censored, labels_to_target
from learner.simulation.report import (
    describe_inputs,
    markdown_table,
    plot_curves,
    write_csvs,
    write_outputs,
)

__all__ = [
    "DEFAULT_ALIAS",
    "EMBEDDINGS",
    "EMOTION_ALIASES",
    "RANDOM",
    "SIMULATION_TRAIN",
    "TARGET_FRACTION",
    "Corpus",
    "CorpusError",
    "Features",
    "Problem",
    "SimulationConfig",
    "bootstrap_ratio",
    "canonical_emotion",
    "censored",
    "compute_features",
    "default_workers",
    "describe_inputs",
    "label_steps",
    "labels_to_target",
    "load_corpus",
    "markdown_table",
    "plot_curves",
    "problem_from",
    "run_strategy",
    "simulate",
    "speaker_rotations",
    "write_csvs",
    "write_outputs",
]
