"""The outputs of a simulation: the strategy table (markdown and CSV), every run's curve as
CSV, the learning-curve plot, summary.json, and the summary's corpus and features entries."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from learner.simulation.config import RANDOM
from learner.simulation.corpus import Corpus
from learner.simulation.features import Features
from learner.simulation.loop import Problem


def strategy_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
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


def markdown_table(summary: dict[str, Any]) -> str:
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


def write_csvs(summary: dict[str, Any], curves_path: Path, table_path: Path) -> None:
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
        table = csv.DictWriter(fh, fieldnames=list(rows[0]))
        table.writeheader()
        table.writerows(rows)


def plot_curves(summary: dict[str, Any], path: Path, title: str = "") -> None:
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


def write_outputs(summary: dict[str, Any], out_dir: Path, title: str = "") -> dict[str, Path]:
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


def describe_inputs(corpus: Corpus, features: Features, problem: Problem) -> dict[str, Any]:
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
