"""The datasheet's plots as PNG, drawn from datasheet.json's figures (no Django).

Byte-identical on a rebuild: matplotlib's object API on the Agg canvas (no pyplot, no global
backend switch, safe in a worker thread), a fixed size and dpi, the bundled DejaVu font, and
no `Software` text chunk in the PNG (`metadata={"Software": None}`); matplotlib writes no
timestamp into PNGs. The same figures with the same matplotlib give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COVERAGE = ("gender", "age_band", "language", "channel")
DPI = 80
PNG_METADATA: dict[str, str | None] = {"Software": None}


# Class balance is drawn for the core ring only: the finer rings have up to 72 classes
# (Willcox), which make an unreadable bar chart and cost a second each; their counts per
# split are tables in datasheet.md.
BALANCE_RINGS = ("core",)


def names(rings: list[str]) -> list[str]:
    """The plot files a datasheet with these rings has (relative to the version folder)."""
    balance = [f"plots/class_balance_{ring}.png" for ring in rings if ring in BALANCE_RINGS]
    return sorted([*balance, "plots/coverage.png", "plots/agreement.png"])


def _figure(**options: Any) -> Figure:
    """A new figure. matplotlib (and PIL, ~30 MB) is imported here, when the datasheet is
    drawn, not when a build starts: the build's memory peak does not carry it."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _save(figure: Figure, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)


def _grouped_bars(axes: Any, categories: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (name, values) in enumerate(series.items()):
        positions = [i + index * width for i in range(len(categories))]
        axes.bar(positions, values, width=width, label=name)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(categories))])
    axes.set_xticklabels(categories, rotation=60, ha="right", fontsize=7)
    if series:
        axes.legend(fontsize=7)


def class_balance(splits: dict[str, Any], ring: str, path: Path) -> None:
    """Clips per majority label, one bar per split (as shares of the split, so a small test
    split is comparable with train)."""
    labels = sorted({label for row in splits.values() for label in row["classes"][ring]})
    series: dict[str, list[float]] = {}
    for split, row in splits.items():
        counts = row["classes"][ring]
        total = sum(counts.values()) or 1
        series[f"{split} (n={sum(counts.values())})"] = [
            counts.get(label, 0) / total for label in labels
        ]
    figure = _figure(figsize=(max(6.0, 0.35 * len(labels) + 2), 4.0))
    axes = figure.add_subplot()
    _grouped_bars(axes, labels, series)
    axes.set_ylabel("share of the split's clips")
    axes.set_title(f"Class balance per split, {ring} ring")
    figure.subplots_adjust(left=0.1, right=0.97, top=0.9, bottom=0.3)
    _save(figure, path)


def coverage(splits: dict[str, Any], path: Path) -> None:
    """Speakers per split, and clips per gender, age band, language and channel per split."""
    figure = _figure(figsize=(12.0, 7.0))
    grid = figure.subplots(2, 3)
    cells = [ax for row in grid for ax in row]
    names_ = list(splits)
    cells[0].bar(names_, [splits[s]["speakers"] for s in names_])
    cells[0].set_title("speakers", fontsize=9)
    for ax, facet in zip(cells[1:], COVERAGE, strict=False):
        values = sorted({v for row in splits.values() for v in row[facet]})
        _grouped_bars(
            ax, values, {s: [float(splits[s][facet].get(v, 0)) for v in values] for s in names_}
        )
        ax.set_title(f"clips by {facet.replace('_', ' ')}", fontsize=9)
    cells[5].bar(names_, [splits[s]["duration_s"] for s in names_])
    cells[5].set_title("duration (s)", fontsize=9)
    figure.suptitle("Coverage per split")
    figure.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.15, hspace=0.6, wspace=0.25)
    _save(figure, path)


def agreement(figures: dict[str, Any], path: Path) -> None:
    """Left: overall alpha per ring (an undefined alpha is drawn as no bar and labelled
    "n/a"). Right: alpha per class (one-vs-rest) at the core ring, overall alpha dashed.
    The finer rings' per-class alphas are in datasheet.md and agreement.json."""
    rings = list(figures)
    figure = _figure(figsize=(11.0, 4.0))
    left, right = figure.subplots(1, 2, width_ratios=[1, 3])
    overall = [figures[ring]["alpha"] for ring in rings]
    left.bar(rings, [a if a is not None else 0.0 for a in overall])
    for index, alpha in enumerate(overall):
        left.text(index, 0.02, "n/a" if alpha is None else f"{alpha:.3f}", ha="center", fontsize=8)
    left.set_ylim(-0.2, 1.0)
    left.set_title("alpha per ring", fontsize=9)
    if rings:
        core = figures[rings[0]]
        labels = sorted(core["alpha_per_class"])
        values = [core["alpha_per_class"][k] or 0.0 for k in labels]
        right.bar(range(len(labels)), values)
        right.set_xticks(range(len(labels)))
        right.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        if core["alpha"] is not None:
            right.axhline(core["alpha"], color="black", linestyle="--", linewidth=1)
        right.set_ylim(min(-0.2, *values) if values else -0.2, 1.0)
        right.set_title(f"{rings[0]} ring: alpha per class (dashed: overall)", fontsize=9)
    figure.suptitle("Krippendorff's alpha (nominal, human raters)")
    figure.subplots_adjust(left=0.06, right=0.98, top=0.85, bottom=0.25, wspace=0.2)
    _save(figure, path)


def write_all(folder: Path, data: dict[str, Any]) -> None:
    """Every plot of a datasheet (datasheet.json's content) into `folder`."""
    folder.mkdir(exist_ok=True)
    splits = data["composition"]["splits"]
    for ring in data["agreement"]:
        if ring in BALANCE_RINGS:
            class_balance(splits, ring, folder / f"class_balance_{ring}.png")
    coverage(splits, folder / "coverage.png")
    agreement(data["agreement"], folder / "agreement.png")
