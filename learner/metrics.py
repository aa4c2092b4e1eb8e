"""Classification metrics for speaker-independent evaluation. Arrays in, numbers out.

UAR (unweighted average recall, the mean of per-class recalls) is the field's headline
figure for emotion recognition because corpora are unbalanced; accuracy is reported beside
it. Classes absent from the true labels are left out of UAR and macro-F1 (their recall is
undefined) and reported as None.
"""

from __future__ import annotations

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
