"""Training and honest evaluation, end to end, on arrays. No Django: the training service
gathers rows into a `Dataset` and stores what comes back; bench/learner_loso.py calls the same
functions for its leave-one-speaker-out folds.

One run:
1. Split the labelled clips by speaker into train / validation / test groups: no speaker is
   in two of them, so the test figures say how the model does on voices it never heard.
   With fewer than three known speakers the split falls back to clips (and says so).
2. Fit the normaliser (per speaker or global) and the ensemble on the training rows, plus
   their augmented copies when there are any.
3. Fit a temperature per head on the validation rows.
4. Report UAR, macro-F1, accuracy, per-class recall, the confusion matrix and the expected
   calibration error before and after temperature scaling, on the test rows, with bootstrap
   intervals over the test speakers (learner.metrics.bootstrap_intervals), and keep each
   test clip's prediction (`TrainResult.held_out`, what the quality gate compares).
5. With `refit_all`, fit the deployed model once more on every labelled row, with the
   temperatures of step 3. The figures stay those of the held-out run (`evaluated_on`,
   `deployed_fit` in the metrics say so); without it the returned `Predictor` is exactly the
   model that was evaluated.
The `Predictor` serialises to a self-contained artifact (weights, label map, extractor
name/version, normalisation statistics, temperatures).
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from learner import calibration, metrics
from learner.model import (
    EmotionMLP,
    EpochCallback,
    TrainConfig,
    fit,
    load_members,
    members_state,
)
from learner.model import predict_logits as _predict_logits
from learner.normalise import SPEAKER, Normaliser, SpeakerStats, fit_normaliser
from learner.targets import LabelSpace, Targets, node_probabilities

ARTIFACT_FORMAT = "emoloop-model/1"
MIN_SPEAKERS_FOR_SPLIT = 3


class InsufficientData(Exception):
    """The labels cannot train a model yet; `code` names why, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PipelineConfig:
    normalisation: str = SPEAKER
    train: TrainConfig = field(default_factory=TrainConfig)
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    min_examples: int = 20
    prior_clips: float = 3.0
    min_speaker_clips: int = 2
    seed: int = 0
    # Groups (speakers, or "clip:<id>") held out for testing whatever the seeded order says:
    # the active version's test groups, so that a new version is judged on the same ones.
    test_groups: tuple[str, ...] = ()
    # Refit the deployed model on all labelled rows after the held-out evaluation.
    refit_all: bool = False


@dataclass
class Dataset:
    """Labelled rows (aligned with `targets.clip_ids`) and what normalisation may look at."""

    features: np.ndarray  # (N, D)
    speakers: list[str]  # N ids, "" when unknown
    targets: Targets
    space: LabelSpace
    extractor: dict[str, Any]  # {"name", "version", "dim"}
    # All of the project's clips (labelled or not) for per-speaker statistics.
    stats_features: np.ndarray | None = None  # (M, D)
    stats_speakers: list[str] | None = None
    # Augmented copies of the labelled rows: (copy number, (N, D) features).
    augmented: list[tuple[int, np.ndarray]] = field(default_factory=list)


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    speaker_independent: bool
    by: str  # "speaker" or "clip"
    groups: dict[str, list[str]]  # part -> group names (speakers, or clip ids)

    def summary(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "speaker_independent": self.speaker_independent,
            "sizes": {
                "train": len(self.train),
                "val": len(self.val),
                "test": len(self.test),
            },
            "speakers": self.groups if self.by == "speaker" else {},
        }


def check_trainable(targets: Targets, min_examples: int) -> None:
    n = len(targets.clip_ids)
    if n < min_examples:
        raise InsufficientData(
            "too_few_labels",
            f"{n} labelled clip(s); training needs at least {min_examples}. Label more clips "
            "(skipped clips do not count).",
        )
    classes = int((targets.core * targets.core_weight[:, None]).sum(axis=0).astype(bool).sum())
    if classes < 2:
        raise InsufficientData(
            "single_class",
            "Every labelled clip has the same core feeling; a classifier needs at least two "
            "different feelings among the labels.",
        )


def speaker_split(
    speakers: Sequence[str],
    clip_ids: Sequence[int],
    *,
    test_fraction: float,
    val_fraction: float,
    seed: int,
    pinned: Sequence[str] = (),
) -> Split:
    """Assign whole groups to test, then validation, then training, in a seeded order.

    Groups are speakers; clips without a speaker id are groups of their own. With fewer than
    three known speakers every clip is its own group (not speaker-independent, and marked
    so). Every part gets at least one group. `pinned` groups that are present go to test
    first (while validation and training keep a group each); more follow in the seeded
    order until the test fraction is reached. Pinning the groups the seeded order would
    have chosen changes nothing.
    """
    groups = split_groups(speakers, clip_ids)
    by_speaker = len({s for s in speakers if s}) >= MIN_SPEAKERS_FOR_SPLIT
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    keep = set(pinned)
    order = [g for g in order if g in keep] + [g for g in order if g not in keep]
    rows = np.asarray(groups, dtype=object)
    sizes = {g: int((rows == g).sum()) for g in names}
    n = len(groups)
    parts: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    taken = {"test": 0, "val": 0}
    for i, g in enumerate(order):
        remaining_after = len(order) - i - 1
        if (g in keep or taken["test"] < test_fraction * n) and remaining_after >= 2:
            part = "test"
        elif taken["val"] < val_fraction * n and remaining_after >= 1:
            part = "val"
        else:
            part = "train"
        parts[part].append(g)
        if part in taken:
            taken[part] += sizes[g]

    def index(part: str) -> np.ndarray:
        return np.flatnonzero(np.isin(rows, parts[part]))

    return Split(
        train=index("train"),
        val=index("val"),
        test=index("test"),
        speaker_independent=by_speaker and all(speakers),
        by="speaker" if by_speaker else "clip",
        groups={k: sorted(v) for k, v in parts.items()} if by_speaker else {},
    )


def split_groups(speakers: Sequence[str], clip_ids: Sequence[int]) -> list[str]:
    """Each row's group for the split: its speaker, or "clip:<id>" (a clip without a
    speaker id, or every clip when fewer than three speakers are known)."""
    by_speaker = len({s for s in speakers if s}) >= MIN_SPEAKERS_FOR_SPLIT
    return [
        s if (by_speaker and s) else f"clip:{c}" for s, c in zip(speakers, clip_ids, strict=True)
    ]


def _aug_speaker(speaker: str, copy: int) -> str:
    """Augmented copies are normalised as a speaker of their own (their voice was changed)."""
    return f"{speaker}#aug{copy}" if speaker else ""


def _hard(targets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(weights > 0)
    return rows, targets[rows].argmax(axis=1)


@dataclass
class Predictor:
    """The deployable model: everything needed to go from a feature vector to probabilities."""

    extractor: dict[str, Any]
    space: LabelSpace
    normaliser: Normaliser
    members: list[EmotionMLP]
    config: TrainConfig
    temperature_core: float = 1.0
    temperature_fine: float = 1.0

    def logits(
        self,
        x: np.ndarray,
        speakers: Sequence[str] | None = None,
        extra_speakers: dict[str, SpeakerStats] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return _predict_logits(self.members, self.normaliser.transform(x, speakers, extra_speakers))

    def probabilities(
        self,
        x: np.ndarray,
        speakers: Sequence[str] | None = None,
        extra_speakers: dict[str, SpeakerStats] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, D) -> calibrated core (N, Kc) and fine (N, Kf) probabilities (or None)."""
        core, fine = self.logits(x, speakers, extra_speakers)
        return (
            calibration.softmax(core, self.temperature_core),
            None if fine is None else calibration.softmax(fine, self.temperature_fine),
        )

    def node_probabilities(
        self,
        x: np.ndarray,
        speakers: Sequence[str] | None = None,
        extra_speakers: dict[str, SpeakerStats] | None = None,
    ) -> list[list[dict[str, float]]]:
        """Per row: one {node key: probability} dict per wheel level."""
        core, fine = self.probabilities(x, speakers, extra_speakers)
        return [
            node_probabilities(self.space, core[i], None if fine is None else fine[i])
            for i in range(core.shape[0])
        ]

    # --- artifact -----------------------------------------------------------------------

    def to_artifact(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "extractor": dict(self.extractor),
            "space": self.space.to_state(),
            "config": self.config.as_dict(),
            "normaliser": _arrays_to_tensors(self.normaliser.to_state()),
            "temperature": {"core": self.temperature_core, "fine": self.temperature_fine},
            "members": members_state(self.members),
        }

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.to_artifact(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_artifact(cls, artifact: dict[str, Any]) -> Predictor:
        if artifact.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"not an {ARTIFACT_FORMAT} artifact: {artifact.get('format')!r}")
        space = LabelSpace.from_state(artifact["space"])
        normaliser = Normaliser.from_state(_tensors_to_arrays(artifact["normaliser"]))
        config = TrainConfig.from_dict(artifact["config"])
        members = load_members(
            artifact["members"],
            int(normaliser.mean.shape[0]),
            len(space.core),
            len(space.fine),
            config,
        )
        return cls(
            extractor=dict(artifact["extractor"]),
            space=space,
            normaliser=normaliser,
            members=members,
            config=config,
            temperature_core=float(artifact["temperature"]["core"]),
            temperature_fine=float(artifact["temperature"]["fine"]),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Predictor:
        # weights_only: an artifact is data, never code (a tampered file cannot run anything).
        return cls.from_artifact(torch.load(io.BytesIO(data), weights_only=True))


def _arrays_to_tensors(obj: Any) -> Any:
    """The same nested dicts with every array as a tensor (a tensor-only artifact)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: _arrays_to_tensors(v) for k, v in obj.items()}
    return obj


def _tensors_to_arrays(obj: Any) -> Any:
    """The same nested dicts with every tensor as an array."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _tensors_to_arrays(v) for k, v in obj.items()}
    return obj


@dataclass
class TrainResult:
    predictor: Predictor  # the deployed model (refit on all rows with `refit_all`)
    metrics: dict[str, Any]
    split: Split
    train_seconds: float
    # Per test row (core head): clip id, split group, true and predicted core label names.
    held_out: dict[str, list[Any]] = field(default_factory=dict)
    # Rows the deployed model was fitted on (before augmented copies).
    deployed_rows: int = 0


def _head_report(
    name: str,
    labels: list[str],
    logits_val: np.ndarray | None,
    targets_val: np.ndarray | None,
    weights_val: np.ndarray | None,
    logits_test: np.ndarray,
    targets_test: np.ndarray,
    weights_test: np.ndarray,
) -> tuple[float, dict[str, object]]:
    """Fit this head's temperature on validation rows, then report on the test rows."""
    temperature = 1.0
    if logits_val is not None and targets_val is not None and weights_val is not None:
        rows = weights_val > 0
        if rows.any():
            temperature = calibration.fit_temperature(
                logits_val[rows], targets_val[rows], weights_val[rows]
            )
    rows, y = _hard(targets_test, weights_test)
    before = calibration.softmax(logits_test[rows], 1.0) if len(rows) else np.zeros((0, 1))
    after = calibration.softmax(logits_test[rows], temperature) if len(rows) else before
    report: dict[str, object] = (
        metrics.classification_report(y, after, labels) if len(rows) else {"n": 0}
    )
    if len(rows):
        report["ece_before"] = metrics.expected_calibration_error(before, y)
        report["ece_after"] = metrics.expected_calibration_error(after, y)
        report["reliability_before"] = metrics.reliability_bins(before, y)
        report["reliability_after"] = metrics.reliability_bins(after, y)
    report["temperature"] = temperature
    report["head"] = name
    return temperature, report


def train_and_evaluate(
    data: Dataset, config: PipelineConfig, on_epoch: EpochCallback | None = None
) -> TrainResult:
    """Split, normalise, train, calibrate and evaluate (see the module docstring)."""
    targets = data.targets
    check_trainable(targets.human_only(), config.min_examples)
    split = _split_with_weak_rows(data, config)
    train = split.train
    train_core = targets.core[train]
    if int((train_core * targets.core_weight[train][:, None]).sum(axis=0).astype(bool).sum()) < 2:
        raise InsufficientData(
            "single_class",
            "The training speakers' clips carry a single core feeling; label more varied "
            "clips so that every group of speakers shows at least two feelings.",
        )
    started = time.perf_counter()
    cpu_started = time.process_time()
    predictor = fit_predictor(data, train, config, on_epoch)
    fit_done = (time.perf_counter(), time.process_time())

    core_val = fine_val = None
    if len(split.val):
        core_val, fine_val = predictor.logits(
            data.features[split.val], [data.speakers[i] for i in split.val], None
        )
    core_test, fine_test = predictor.logits(
        data.features[split.test], [data.speakers[i] for i in split.test], None
    )
    reports: dict[str, dict[str, object]] = {}
    predictor.temperature_core, reports["core"] = _head_report(
        "core",
        data.space.core,
        core_val,
        targets.core[split.val] if len(split.val) else None,
        targets.core_weight[split.val] if len(split.val) else None,
        core_test,
        targets.core[split.test],
        targets.core_weight[split.test],
    )
    if fine_test is not None and targets.fine is not None and targets.fine_weight is not None:
        predictor.temperature_fine, reports["fine"] = _head_report(
            "fine",
            data.space.fine,
            fine_val,
            targets.fine[split.val] if len(split.val) else None,
            targets.fine_weight[split.val] if len(split.val) else None,
            fine_test,
            targets.fine[split.test],
            targets.fine_weight[split.test],
        )
    rows, y_true = _hard(targets.core[split.test], targets.core_weight[split.test])
    y_pred = core_test[rows].argmax(axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    test_rows = split.test[rows]
    groups = split_groups(data.speakers, targets.clip_ids)
    test_speakers = [data.speakers[i] if split.by == "speaker" else "" for i in test_rows]
    intervals = metrics.bootstrap_intervals(
        y_true, y_pred, test_speakers, len(data.space.core), seed=config.seed
    )
    held_out: dict[str, list[Any]] = {
        "clip_ids": [int(targets.clip_ids[i]) for i in test_rows],
        "groups": [groups[i] for i in test_rows],
        "truth": [data.space.core[k] for k in y_true],
        "predicted": [data.space.core[k] for k in y_pred],
    }
    evaluated = predictor
    deployed_rows = len(train)
    evaluated_at = (time.perf_counter(), time.process_time())
    if config.refit_all:
        deployed_rows = len(targets.clip_ids)
        predictor = fit_predictor(data, np.arange(deployed_rows), config, on_epoch)
        predictor.temperature_core = evaluated.temperature_core
        predictor.temperature_fine = evaluated.temperature_fine
    ended = (time.perf_counter(), time.process_time())
    elapsed = ended[0] - started
    # Wall and CPU seconds of this process (CPU is what a shared machine cannot distort).
    timings = {
        "fit_s": fit_done[0] - started,
        "fit_cpu_s": fit_done[1] - cpu_started,
        "evaluate_s": evaluated_at[0] - fit_done[0],
        "evaluate_cpu_s": evaluated_at[1] - fit_done[1],
        "refit_s": ended[0] - evaluated_at[0],
        "refit_cpu_s": ended[1] - evaluated_at[1],
    }
    result_metrics = {
        "split": split.summary(),
        "normalisation": predictor.normaliser.mode,
        "fine_level": data.space.fine_level,
        "augmented_copies": len(data.augmented),
        "heads": reports,
        # Headline figures: the core ring's, which every label teaches.
        "uar": reports["core"].get("uar"),
        "macro_f1": reports["core"].get("macro_f1"),
        "accuracy": reports["core"].get("accuracy"),
        "ece_before": reports["core"].get("ece_before"),
        "ece_after": reports["core"].get("ece_after"),
        "intervals": {k: intervals[k] for k in ("uar", "macro_f1", "accuracy") if k in intervals},
        "interval_method": {k: v for k, v in intervals.items() if not isinstance(v, list)},
        "evaluated_on": _evaluated_on(split, data.speakers, len(rows)),
        "deployed_fit": {
            "rows": deployed_rows,
            "labelled_rows": int((~targets.weak_rows()).sum()),  # human-labelled
            "weak_rows": int(targets.weak_rows().sum()),
            "all_labels": deployed_rows == len(targets.clip_ids),
            "temperatures_from": "validation rows of the held-out run",
            "epochs": config.train.epochs_for(_rows_trained(data, deployed_rows)),
            "batch_size": config.train.batch_size_for(_rows_trained(data, deployed_rows)),
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    return TrainResult(predictor, result_metrics, split, elapsed, held_out, deployed_rows)


def _rows_trained(data: Dataset, rows: int) -> int:
    """Rows a fit on `rows` labelled rows trains on (their augmented copies included)."""
    return rows * (1 + len(data.augmented))


def _split_with_weak_rows(data: Dataset, config: PipelineConfig) -> Split:
    """The split of the human-labelled rows; weak rows (imported models' predictions,
    learner.services.weak_labels) only ever train, and only when their group (speaker, or
    clip) is not held out: they are never validated or tested on, nor leak a held-out
    speaker into training. Without weak rows this is exactly `speaker_split` of the data."""
    targets = data.targets
    weak = targets.weak_rows()
    human = np.flatnonzero(~weak)
    split = speaker_split(
        [data.speakers[i] for i in human],
        [targets.clip_ids[i] for i in human],
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        seed=config.seed,
        pinned=config.test_groups,
    )
    if not weak.any():
        return split
    groups = split_groups(data.speakers, targets.clip_ids)
    held = {groups[i] for i in human[np.concatenate([split.val, split.test])]}
    weak_train = np.asarray(
        [i for i in np.flatnonzero(weak) if groups[i] not in held], dtype=np.int64
    )
    return dataclasses.replace(
        split,
        train=np.concatenate([human[split.train], weak_train]),
        val=human[split.val],
        test=human[split.test],
    )


def _evaluated_on(split: Split, speakers: Sequence[str], n: int) -> str:
    if split.by == "speaker":
        held = sorted({speakers[i] for i in split.test if speakers[i]})
        return f"held-out speakers {', '.join(held)} ({n} clips, none of them in training)"
    return f"held-out clips ({n}; split by clip: fewer than {MIN_SPEAKERS_FOR_SPLIT} speakers)"


def fit_predictor(
    data: Dataset,
    rows: np.ndarray,
    config: PipelineConfig,
    on_epoch: EpochCallback | None = None,
) -> Predictor:
    """Normalise and train on `rows` of the dataset (plus their augmented copies); the
    returned predictor is not calibrated yet (temperatures 1)."""
    targets = data.targets
    speakers = [data.speakers[i] for i in rows]
    x_parts = [data.features[rows]]
    s_parts: list[list[str]] = [speakers]
    core_t = [targets.core[rows]]
    core_w = [targets.core_weight[rows]]
    fine, fine_weight = targets.fine, targets.fine_weight
    fine_t = [fine[rows]] if fine is not None else None
    fine_w = [fine_weight[rows]] if fine_weight is not None else None
    for copy, features in data.augmented:
        x_parts.append(features[rows])
        s_parts.append([_aug_speaker(s, copy) for s in speakers])
        core_t.append(targets.core[rows])
        core_w.append(targets.core_weight[rows])
        # fine_t / fine_w exist exactly when fine / fine_weight do (named for mypy's sake).
        if (
            fine is not None
            and fine_weight is not None
            and fine_t is not None
            and fine_w is not None
        ):
            fine_t.append(fine[rows])
            fine_w.append(fine_weight[rows])
    x_train = np.concatenate(x_parts)
    s_train = [s for part in s_parts for s in part]
    stats_x = data.stats_features if data.stats_features is not None else data.features
    stats_s = data.stats_speakers if data.stats_speakers is not None else data.speakers
    if data.augmented:
        stats_x = np.concatenate([stats_x, *x_parts[1:]])
        stats_s = list(stats_s) + [s for part in s_parts[1:] for s in part]
    normaliser = fit_normaliser(
        x_train,
        s_train,
        mode=config.normalisation,
        stats_x=stats_x,
        stats_speakers=stats_s,
        prior_clips=config.prior_clips,
        min_clips=config.min_speaker_clips,
    )
    x_norm = normaliser.transform(x_train, s_train)
    # The pseudo-speakers of augmented copies are only needed for the training rows.
    normaliser.speakers = {k: v for k, v in normaliser.speakers.items() if "#aug" not in k}
    members = fit(
        x_norm,
        np.concatenate(core_t),
        np.concatenate(core_w),
        None if fine_t is None else np.concatenate(fine_t),
        None if fine_w is None else np.concatenate(fine_w),
        config.train,
        on_epoch,
    )
    predictor = Predictor(
        extractor=dict(data.extractor),
        space=data.space,
        normaliser=normaliser,
        members=members,
        config=config.train,
    )
    return predictor
