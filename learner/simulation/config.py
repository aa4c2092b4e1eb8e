"""What a simulation is asked to do: the strategies, the rotations x seeds, the label budget
and the model of every round (SimulationConfig), and the names every other module shares."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from learner.model import TrainConfig
from learner.normalise import MODES, SPEAKER
from learner.ranking import DEFAULT_STRATEGY, get_strategy

DEFAULT_ALIAS = "default"  # the strategy name that means "what a new project gets"
RANDOM = "random"
TARGET_FRACTION = 0.95

# The model of every round: the product's model family (learner.model, through
# learner.pipeline.fit_predictor) with fewer optimiser steps than a project's training
# (TrainConfig() aims at 1500 steps per member), so that a 5-rotation x 5-seed x 2-strategy
# comparison of ~30 rounds each fits in half an hour on two cores. Measured on EmoDB
# (bench/active_learning.py records it): see docs/active-learning.md.
SIMULATION_TRAIN = TrainConfig(ensemble=3, target_steps=300, min_epochs=10, max_epochs=60)


# The space diversity is measured in: "features" = what the live loop does
# (learner.ranking.space: the round's model's input space, labelled clips passed as covered;
# the cold start standardised per speaker); "raw" = the cached vectors as they are; "trunk" =
# the current model's penultimate activations (recomputed every round). The last two are
# kept for comparison only.
EMBEDDINGS = ("features", "raw", "trunk")


@dataclass(frozen=True)
class SimulationConfig:
    strategies: tuple[str, ...] = (RANDOM, DEFAULT_ALIAS)
    seeds: int = 5
    rotations: int = 5
    test_speakers: int | None = None  # per rotation; None: 20 % of the speakers
    seed_size: int = 20
    batch_size: int = 10
    budget: int = 300
    seed_set: str = "auto"  # "auto" (see the package docstring) or "random"
    embedding: str = "features"  # diversity space, one of EMBEDDINGS
    normalisation: str = SPEAKER
    augmentation: bool = False
    train: TrainConfig = SIMULATION_TRAIN
    target_fraction: float = TARGET_FRACTION
    bootstrap: int = 2000
    split_seed: int = 0
    # Weight of the weak labels (learner.simulation.weak) in every round's training set; 0:
    # they are not used. `weak_labels` names their file (for the record).
    weak_weight: float = 0.0
    weak_labels: str = ""

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
        if not 0 <= self.weak_weight <= 1:
            raise ValueError("weak_weight must lie in [0, 1]")
        if not 0 < self.target_fraction <= 1:
            raise ValueError("target_fraction must lie in (0, 1]")

    def as_dict(self) -> dict[str, Any]:
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
