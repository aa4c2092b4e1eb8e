"""Confusion-matrix and reliability (calibration) plots as PNG bytes, from a run's metrics.

No Django; matplotlib's Agg backend (no display). Plots are drawn from the recorded metrics
alone, so they can be redrawn for any stored version.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(cm: list[list[int]], labels: list[str], title: str) -> bytes:
    """Rows are true classes, normalised to recall; each cell shows its count too."""
    counts = np.asarray(cm, dtype=np.float64)
    support = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    k = len(labels)
    size = max(4.0, 0.45 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(
                        j,
                        i,
                        str(int(counts[i, j])),
                        ha="center",
                        va="center",
                        color=colour,
                        fontsize=7,
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    return _png(fig)


def reliability_png(
    before: dict[str, list[Any]], after: dict[str, list[Any]], ece_before: float, ece_after: float
) -> bytes:
    """Accuracy against confidence per bin, before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for bins, name, colour in (
        (before, f"before (ECE {ece_before:.3f})", "tab:red"),
        (after, f"after (ECE {ece_after:.3f})", "tab:blue"),
    ):
        points = [
            (c, a)
            for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"], strict=True)
            if n
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", color=colour, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability, core ring, test speakers", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def _empty(message: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return _png(fig)


def for_metrics(metrics: dict[str, Any]) -> dict[str, bytes]:
    """{"confusion": png, "calibration": png} for a version's recorded metrics."""
    core = metrics.get("heads", {}).get("core", {})
    if not core.get("n"):
        blank = _empty("no test clips to evaluate on")
        return {"confusion": blank, "calibration": blank}
    return {
        "confusion": confusion_png(
            core["confusion_matrix"],
            core["labels"],
            f"Core ring, test speakers (UAR {core['uar']:.3f})",
        ),
        "calibration": reliability_png(
            core["reliability_before"],
            core["reliability_after"],
            core["ece_before"],
            core["ece_after"],
        ),
    }
