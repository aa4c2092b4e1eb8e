"""One learning curve: a seed set, then per round train, measure UAR on the test speakers, let
the strategy pick the next batch and reveal its labels (steps 3 to 5 of the package
docstring). Arrays in, curves out; the process pool (`jobs`) runs many of these."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learner import metrics
from learner.normalise import fit_normaliser
from learner.pipeline import Dataset, PipelineConfig, Predictor, fit_predictor
from learner.ranking import COLD_START_STRATEGY, Pool, get_strategy, predict_pool_mc, select
from learner.ranking.space import selection_pool
from learner.simulation.config import RANDOM, SimulationConfig, resolve_strategy
from learner.simulation.corpus import Corpus
from learner.simulation.features import Features
from learner.targets import (
    Judgement,
    LabelSpace,
    Node,
    Targets,
    WeakJudgement,
    label_space,
    soft_targets,
    weak_soft_targets,
)

# MC-dropout passes per ensemble member for strategies that need them (bald).
MC_PASSES = 4


@dataclass
class Problem:
    """Everything a run needs, as arrays; shared read-only with forked workers."""

    x: np.ndarray  # (N, D)
    augmented: list[np.ndarray]  # per copy (N, D)
    speakers: list[str]
    labels: np.ndarray  # (N,)
    classes: list[str]
    extractor: dict[str, Any]
    # (N, K) another model's distributions over `classes`, NaN rows where it has none
    # (learner.simulation.weak); None: no weak labels.
    weak: np.ndarray | None = None
    space: LabelSpace = field(init=False)
    dataset: Dataset = field(init=False)
    # (N,) the dataset row of each clip's weak label, -1 where it has none.
    weak_row: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        nodes = [Node(k, k, 0, None) for k in self.classes]
        judgements = [Judgement(i, self.classes[y]) for i, y in enumerate(self.labels)]
        self.space = label_space(nodes, judgements)
        targets = soft_targets(self.space, judgements)
        n = len(self.labels)
        x, speakers, augmented = self.x, list(self.speakers), list(self.augmented)
        self.weak_row = np.full(n, -1, dtype=np.int64)
        if self.weak is not None:
            # Weak rows follow the N clip rows: row N + j is the weak label of clip have[j],
            # with weight 0 until `set_weak_weight`.
            have = np.flatnonzero(~np.isnan(self.weak).any(axis=1))
            self.weak_row[have] = n + np.arange(len(have))
            weak = weak_soft_targets(
                self.space,
                [
                    WeakJudgement(int(i), dict(zip(self.classes, self.weak[i], strict=True)), 1.0)
                    for i in have
                ],
            )
            targets = Targets(
                clip_ids=[*targets.clip_ids, *(n + j for j in range(len(have)))],
                core=np.concatenate([targets.core, weak.core]),
                core_weight=np.concatenate([targets.core_weight, np.zeros(len(have))]),
                fine=None,
                fine_weight=None,
                skipped_only=[],
                weak=np.concatenate([np.zeros(n, dtype=bool), np.ones(len(have), dtype=bool)]),
            )
            x = np.concatenate([x, x[have]])
            speakers += [speakers[i] for i in have]
            augmented = [np.concatenate([a, a[have]]) for a in augmented]
        # Every clip is in the dataset; a round trains on the rows it has labelled. Stats
        # come from every clip (labelled or not, pool and test): see the package docstring.
        self.dataset = Dataset(
            features=x,
            speakers=speakers,
            targets=targets,
            space=self.space,
            extractor=dict(self.extractor),
            stats_features=self.x,
            stats_speakers=list(self.speakers),
            augmented=list(enumerate(augmented, start=1)),
        )

    def set_weak_weight(self, weight: float) -> None:
        """Every weak row's example weight (0: weak labels teach nothing)."""
        self.dataset.targets.core_weight[self.dataset.targets.weak_rows()] = weight

    def weak_rows_for(self, clips: np.ndarray) -> np.ndarray:
        """The dataset rows of the weak labels of `clips` (those that have one)."""
        rows: np.ndarray = self.weak_row[clips]
        return np.asarray(rows[rows >= 0])


def _uar(problem: Problem, predictor: Predictor, test: np.ndarray) -> float:
    probs, _ = predictor.probabilities(problem.x[test], [problem.speakers[i] for i in test])
    return metrics.uar(problem.labels[test], probs.argmax(axis=1), len(problem.classes))


def pipeline_config(config: SimulationConfig, seed: int) -> PipelineConfig:
    return PipelineConfig(
        normalisation=config.normalisation,
        train=dataclasses.replace(config.train, seed=seed, threads=1),
        seed=seed,
    )


def split_rows(problem: Problem, test_speakers: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    held = np.isin(np.asarray(problem.speakers, dtype=object), list(test_speakers))
    return np.flatnonzero(~held), np.flatnonzero(held)


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

                def predict(
                    block: np.ndarray, net: torch.nn.Module = net
                ) -> tuple[np.ndarray, None]:
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
) -> dict[str, Any]:
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
    if config.embedding == "features":
        # The live loop's cold start: no model, a per-speaker normaliser of the clips at hand.
        cold = selection_pool(
            probs_core=None,
            probs_fine=None,
            x=problem.x[pool],
            speakers=[problem.speakers[i] for i in pool],
            normaliser=None,
        )
    else:
        cold = Pool(probs_core=None, probs_fine=None, embeddings=embeddings)
    picks = select(first, cold, seed_size, seed=int(rng.integers(2**31))).indices
    unlabelled[picks] = False
    curve: list[list[float]] = []
    train_s = select_s = 0.0
    round_no = 0
    while True:
        labelled = np.flatnonzero(~unlabelled)
        train_rows = pool[labelled]
        if config.weak_weight > 0:
            # Weak labels of the pool clips not labelled yet (never the test speakers').
            train_rows = np.concatenate([train_rows, problem.weak_rows_for(pool[unlabelled])])
        started = time.perf_counter()
        predictor = fit_predictor(
            problem.dataset, train_rows, pipeline_config(config, seed * 1000 + round_no)
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
        if config.embedding == "features":
            # Exactly what learner.services.rescoring builds: the model's input space, the
            # labelled clips passed as already covered (learner.ranking.space).
            done = pool[labelled]
            candidates = selection_pool(
                probs_core=probs,
                probs_fine=None,
                x=problem.x[rows],
                speakers=speakers,
                normaliser=predictor.normaliser,
                labelled_x=problem.x[done],
                labelled_speakers=[problem.speakers[i] for i in done],
                mc_probs_core=mc,
            )
        else:
            space = embeddings
            if config.embedding == "trunk":
                space = trunk_embeddings(
                    predictor, problem.x[pool], [problem.speakers[i] for i in pool]
                )
            candidates = Pool(
                probs_core=probs,
                probs_fine=None,
                embeddings=space[remaining],
                mc_probs_core=mc,
                labelled_embeddings=space[labelled],
            )
        selection = select(name, candidates, size, seed=int(rng.integers(2**31)))
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
) -> dict[str, Any]:
    """UAR of the model trained on every pool clip (the reference the target is cut from)."""
    pool, test = split_rows(problem, test_speakers)
    started = time.perf_counter()
    predictor = fit_predictor(problem.dataset, pool, pipeline_config(config, seed * 1000 + 999))
    train_s = time.perf_counter() - started
    return {"uar": _uar(problem, predictor, test), "labels": len(pool), "train_s": train_s}


def problem_from(
    corpus: Corpus,
    features: Features,
    *,
    augmentation: bool = False,
    weak: np.ndarray | None = None,
) -> Problem:
    """The arrays of a simulation; augmented copies only when `augmentation`; `weak`: the
    (N, K) weak labels (learner.simulation.weak), if any."""
    return Problem(
        weak=weak,
        x=features.plain,
        augmented=list(features.augmented) if augmentation else [],
        speakers=list(corpus.speakers),
        labels=corpus.labels,
        classes=list(corpus.classes),
        extractor=features.extractor,
    )
