"""Classification metrics for speaker-independent evaluation. Arrays in, numbers out.

UAR (unweighted average recall, the mean of per-class recalls) is the field's headline
figure for emotion recognition because corpora are unbalanced; accuracy is reported beside
it. Classes absent from the true labels are left out of UAR and macro-F1 (their recall is
undefined) and reported as None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(N,), (N,) class indices -> (K, K) counts, rows true, columns predicted."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> list[float | None]:
    support = cm.sum(axis=1)
    return [float(cm[k, k] / support[k]) if support[k] else None for k in range(cm.shape[0])]


def uar(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> float:
    k = int(n_classes if n_classes is not None else max(np.max(y_true), np.max(y_pred)) + 1)
    recalls = [r for r in per_class_recall(confusion_matrix(y_true, y_pred, k)) if r is not None]
    return float(np.mean(recalls)) if recalls else 0.0


def macro_f1(cm: np.ndarray) -> float:
    scores = []
    for k in range(cm.shape[0]):
        support = cm[k].sum()
        if support == 0:
            continue
        predicted = cm[:, k].sum()
        tp = cm[k, k]
        precision = tp / predicted if predicted else 0.0
        recall = tp / support
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores)) if scores else 0.0


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins,
    weighted by the bins' shares of the rows. probs: (N, K) rows summing to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[0] == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def reliability_bins(
    probs: np.ndarray, y_true: np.ndarray, bins: int = 15
) -> dict[str, list[float | int | None]]:
    """Per confidence bin: mean confidence, accuracy and row count (for reliability plots)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1) if probs.size else np.zeros(0)
    correct = (
        (probs.argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
        if probs.size
        else np.zeros(0)
    )
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out: dict[str, list[float | int | None]] = {
        "edges": edges.tolist(),
        "confidence": [],
        "accuracy": [],
        "count": [],
    }
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        out["count"].append(n)
        out["confidence"].append(float(confidence[mask].mean()) if n else None)
        out["accuracy"].append(float(correct[mask].mean()) if n else None)
    return out


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str]
) -> dict[str, object]:
    """Every figure a ModelVersion records for one head, as JSON-ready values."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(probs).argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    recalls = per_class_recall(cm)
    present = [r for r in recalls if r is not None]
    return {
        "n": len(y_true),
        "labels": list(labels),
        "uar": float(np.mean(present)) if present else 0.0,
        "macro_f1": macro_f1(cm),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "per_class_recall": dict(zip(labels, recalls, strict=True)),
        "confusion_matrix": cm.tolist(),
    }


# --- Intervals: bootstrap over speakers (or clips) ----------------------------------------
# A figure measured on few clips, or on few speakers, is mostly noise: each version's
# figures carry a percentile-bootstrap interval. Whole speakers are resampled (a speaker's
# clips are not independent of each other) when the test rows hold at least
# MIN_GROUPS_TO_RESAMPLE of them; otherwise single clips are, and the interval says so.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
MIN_GROUPS_TO_RESAMPLE = 3


def resampling_units(groups: Sequence[str]) -> tuple[np.ndarray, str]:
    """Per row, the index of the unit a bootstrap draws (its speaker, or itself), and
    "speaker" or "clip". Rows without a speaker ("") are units of their own."""
    named = [g if g else f"\x00row{i}" for i, g in enumerate(groups)]
    names, index = np.unique(np.asarray(named, dtype=object), return_inverse=True)
    speakers = {g for g in groups if g}
    if len(speakers) >= MIN_GROUPS_TO_RESAMPLE and len(names) < len(named):
        return index.astype(np.int64), "speaker"
    return np.arange(len(named), dtype=np.int64), "clip"


def _multiplicities(units: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(B, N): how often each row is drawn in each resample (whole units with replacement)."""
    n_units = int(units.max()) + 1 if len(units) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(resamples, n_units))
    counts = np.zeros((resamples, n_units))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts[:, units]


def _resampled(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, np.ndarray]:
    """UAR, macro-F1 and accuracy of every resample (rows of `weights`)."""
    truth = np.eye(n_classes)[y_true]
    guessed = np.eye(n_classes)[y_pred]
    correct = (y_true == y_pred).astype(np.float64)
    support = weights @ truth
    hits = weights @ (truth * correct[:, None])
    predicted = weights @ guessed
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, hits / support, np.nan)
        f1 = np.where(present, 2 * hits / (support + predicted), np.nan)
        accuracy = (weights @ correct) / weights.sum(axis=1)
    return {
        "uar": np.nanmean(recall, axis=1),
        "macro_f1": np.nanmean(f1, axis=1),
        "accuracy": accuracy,
    }


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[str],
    n_classes: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile intervals of UAR, macro-F1 and accuracy: {"uar": [low, high], …, "by":
    "speaker" | "clip", "units": n, "resamples": B, "level": level}. {} without rows."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {}
    units, by = resampling_units(groups)
    values = _resampled(_multiplicities(units, resamples, seed), y_true, y_pred, n_classes)
    tail = (1.0 - level) / 2
    out: dict[str, Any] = {
        key: [float(v) for v in np.nanquantile(draws, [tail, 1.0 - tail])]
        for key, draws in values.items()
    }
    out.update(by=by, units=int(units.max()) + 1, resamples=resamples, level=level)
    return out


def paired_uar_difference(
    y_true: np.ndarray,
    pred_new: np.ndarray,
    pred_old: np.ndarray,
    groups: Sequence[str],
    n_classes: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """UAR(new) - UAR(old) on the same rows, with a paired bootstrap interval: each resample
    draws the same speakers (or clips) for both models, so what the two share (the test
    rows' difficulty) cancels out of the difference."""
    y_true = np.asarray(y_true, dtype=np.int64)
    pred_new = np.asarray(pred_new, dtype=np.int64)
    pred_old = np.asarray(pred_old, dtype=np.int64)
    units, by = resampling_units(groups)
    weights = _multiplicities(units, resamples, seed)
    new = _resampled(weights, y_true, pred_new, n_classes)["uar"]
    old = _resampled(weights, y_true, pred_old, n_classes)["uar"]
    tail = (1.0 - level) / 2
    low, high = np.nanquantile(new - old, [tail, 1.0 - tail])
    uar_new = uar(y_true, pred_new, n_classes)
    uar_old = uar(y_true, pred_old, n_classes)
    return {
        "uar_new": uar_new,
        "uar_old": uar_old,
        "difference": uar_new - uar_old,
        "low": float(low),
        "high": float(high),
        "by": by,
        "units": int(units.max()) + 1,
        "rows": len(y_true),
        "resamples": resamples,
        "level": level,
    }
