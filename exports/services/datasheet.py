"""The datasheet of a version ("Datasheets for Datasets", Gebru et al.): composition,
collection process, agreement and known limitations, computed from what the build already
holds, with plots (`exports.core.plots`).

`datasheet.json` has the figures; `datasheet.md` states the same figures in prose and tables
and shows the plots (`plots/*.png`). All three depend only on the version's rows, so a
rebuild gives the same bytes. Every figure about labels counts **human** labels only; corpus
labels are counted as a label source and nowhere else.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exports.core import plots
from exports.core.aggregation import Item
from exports.services.labels import Collected

# clip -> (duration_s, gender, speaker id, age band, language, channel)
ClipFacts = tuple[float, str, str, str, str, str]
COVERAGE = ("gender", "age_band", "language", "channel")
UNKNOWN = "unknown"
# Thresholds of the computed limitations.
LOW_ALPHA = 0.4
FEW_SPEAKERS = 10
FEW_CLIPS_PER_CLASS = 20
SPLIT_ORDER = {"train": 0, "dev": 1, "test": 2}


@dataclass(frozen=True)
class SheetInput:
    meta: dict[str, Any]
    split_of: dict[int, str]
    clips: dict[int, ClipFacts]
    consensus: dict[str, dict[Item, str]]
    collected: Collected
    annotations: int
    agreement: dict[str, Any]
    project: dict[str, Any]
    lineage: dict[str, Any]
    mapping: dict[str, str | None]


def _counts(values: Any) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _splits(split_of: dict[int, str]) -> list[str]:
    return sorted(set(split_of.values()), key=lambda s: (SPLIT_ORDER.get(s, 9), s))


def _composition(data: SheetInput) -> dict[str, Any]:
    by_split: dict[str, list[int]] = {split: [] for split in _splits(data.split_of)}
    for clip, split in sorted(data.split_of.items()):
        by_split[split].append(clip)
    per_split: dict[str, Any] = {}
    for split, ids in by_split.items():
        facts = [data.clips[c] for c in ids]
        per_split[split] = {
            "clips": len(ids),
            "duration_s": round(sum(f[0] for f in facts), 3),
            "speakers": len({f[2] for f in facts if f[2]}),
            "gender": _counts(f[1] or UNKNOWN for f in facts),
            "age_band": _counts(f[3] or UNKNOWN for f in facts),
            "language": _counts(f[4] or UNKNOWN for f in facts),
            "channel": _counts(f[5] or UNKNOWN for f in facts),
            "classes": {
                ring: _counts(labels[c] for c in ids if c in labels)
                for ring, labels in data.consensus.items()
            },
            "without_human_label": sum(1 for c in ids if c not in data.consensus["core"]),
        }
    speakers = {f[2] for f in data.clips.values() if f[2]}
    return {
        "clips": len(data.clips),
        "duration_s": round(sum(f[0] for f in data.clips.values()), 3),
        "speakers": len(speakers),
        "clips_without_speaker": sum(1 for f in data.clips.values() if not f[2]),
        "splits": per_split,
    }


def _collection(data: SheetInput) -> dict[str, Any]:
    got = data.collected
    per_clip = [got.raters_per_clip.get(clip, 0) for clip in data.clips]
    human = [n for n in per_clip if n > 0]
    gold_answers = len(got.gold_given)
    return {
        "annotations": data.annotations,
        "human_labels": got.labels,
        "annotators": got.annotators,
        "annotators_per_clip": data.project["annotators_per_clip"],
        "raters_per_clip": {
            "histogram": {str(k): v for k, v in sorted(Counter(per_clip).items())},
            "mean": round(sum(human) / len(human), 3) if human else None,
            "min": min(human) if human else None,
            "max": max(human) if human else None,
        },
        "gold": {
            "gold_rate": data.project["gold_rate"],
            "gold_clips": len(got.gold_keys),
            "gold_answers": gold_answers,
            "share_of_human_labels": round(gold_answers / got.labels, 4) if got.labels else None,
        },
        "mode": "assisted" if data.project["assisted"] else "blind",
        "labels_with_suggestion_shown": got.suggestion_shown,
        "label_sources": dict(sorted(got.sources.items())),
        "labels_dropped_by_mapping": got.dropped,
        "taxonomy_mapping": data.mapping,
        "lineage": {k: v for k, v in data.lineage.items() if k != "rankings"},
    }


def _limitations(data: SheetInput, comp: dict[str, Any], coll: dict[str, Any]) -> list[str]:
    found = ["Labels are crowd judgements of perceived emotion, not the speaker's felt emotion."]
    for split, row in comp["splits"].items():
        if split != "train" and row["speakers"] < FEW_SPEAKERS:
            found.append(
                f"The {split} split has {row['speakers']} speakers (fewer than "
                f"{FEW_SPEAKERS}): its figures generalise poorly to new voices."
            )
    for ring, figures in data.agreement.items():
        alpha = figures["alpha"]
        if alpha is None:
            found.append(f"Alpha is undefined at the {ring} ring (no clip has two ratings "
                         "at this ring, or all of them carry one label).")  # fmt: skip
        elif alpha < LOW_ALPHA:
            found.append(f"Alpha is {round(alpha, 3)} at the {ring} ring (below {LOW_ALPHA}).")
    for ring, labels in data.consensus.items():
        small = {
            label: n for label, n in sorted(Counter(labels.values()).items())
            if n < FEW_CLIPS_PER_CLASS
        }  # fmt: skip
        if small:
            listed = ", ".join(f"{label} ({n})" for label, n in small.items())
            found.append(f"At the {ring} ring {len(small)} classes have fewer than "
                         f"{FEW_CLIPS_PER_CLASS} clips: {listed}.")  # fmt: skip
    single = coll["raters_per_clip"]["histogram"].get("1", 0)
    if single:
        found.append(f"{single} clips have a single human rater (no agreement information).")
    unlabelled = coll["raters_per_clip"]["histogram"].get("0", 0)
    if unlabelled:
        found.append(f"{unlabelled} clips have no human label (corpus labels only, or "
                     "labels a taxonomy update dropped); they are in no labels table.")  # fmt: skip
    if coll["labels_dropped_by_mapping"]:
        found.append(f"{coll['labels_dropped_by_mapping']} labels were given on feelings a "
                     "taxonomy update dropped; they count in no aggregate.")  # fmt: skip
    if comp["clips_without_speaker"]:
        found.append(f"{comp['clips_without_speaker']} clips have no speaker id: their split "
                     "group is the recording or the clip itself.")  # fmt: skip
    return found


def figures(data: SheetInput) -> dict[str, Any]:
    """The datasheet's figures (datasheet.json)."""
    comp = _composition(data)
    coll = _collection(data)
    return {
        "version": data.meta,
        "composition": comp,
        "collection": coll,
        "agreement": {
            ring: {"alpha": f["alpha"], "alpha_per_class": f["alpha_per_class"]}
            for ring, f in data.agreement.items()
        },
        "limitations": _limitations(data, comp, coll),
        "plots": plots.names(list(data.consensus)),
    }


def _alpha(value: float | None) -> str:
    return "undefined" if value is None else str(value)


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return lines


def _markdown(data: dict[str, Any]) -> str:
    meta, comp, coll = data["version"], data["composition"], data["collection"]
    splits = comp["splits"]
    lines = [
        f"# Datasheet: {meta['project']} v{meta['number']}", "", "## Composition", "",
        f"{comp['clips']} clips, {comp['duration_s']} s of audio, {comp['speakers']} speakers "
        f"({comp['clips_without_speaker']} clips without a speaker id).", "",
    ]  # fmt: skip
    lines += _table(
        ["split", "clips", "duration (s)", "speakers", "without human label"],
        [[s, r["clips"], r["duration_s"], r["speakers"], r["without_human_label"]]
         for s, r in splits.items()],
    )  # fmt: skip
    for ring in data["agreement"]:
        labels = sorted({label for r in splits.values() for label in r["classes"][ring]})
        lines += ["", f"### Classes (majority label) per split, {ring} ring", ""]
        if not labels:
            lines.append("No clip has a human label at this ring.")
        else:
            lines += _table(
                ["label", *splits],
                [[label, *(r["classes"][ring].get(label, 0) for r in splits.values())]
                 for label in labels],
            )  # fmt: skip
        if ring in plots.BALANCE_RINGS:
            lines += ["", f"![class balance, {ring} ring](plots/class_balance_{ring}.png)"]
    lines += ["", "### Coverage per split", ""]
    for facet in COVERAGE:
        values = sorted({v for r in splits.values() for v in r[facet]})
        lines += _table(
            [facet.replace("_", " "), *splits],
            [[v, *(r[facet].get(v, 0) for r in splits.values())] for v in values],
        )
        lines.append("")
    lines += ["![coverage](plots/coverage.png)", "", "## Collection process", ""]
    per_clip, gold, lin = coll["raters_per_clip"], coll["gold"], coll["lineage"]
    histogram = ", ".join(f"{c} clips with {n}" for n, c in per_clip["histogram"].items())
    sources = ", ".join(f"{k} {v}" for k, v in coll["label_sources"].items()) or "none"
    strategies = ", ".join(
        f"{k} {v}" for k, v in lin.get("selections_by_strategy", {}).items()
    ) or "none"  # fmt: skip
    lines += [
        f"- Annotators (human, pseudonymous ids): {coll['annotators']}; "
        f"{coll['human_labels']} human labels among {coll['annotations']} annotation rows.",
        f"- Overlap: the project asks {coll['annotators_per_clip']} annotators per clip; "
        f"observed raters per clip: mean {per_clip['mean']}, min {per_clip['min']}, "
        f"max {per_clip['max']} ({histogram}).",
        f"- Gold: rate {gold['gold_rate']}; {gold['gold_clips']} gold clips, "
        f"{gold['gold_answers']} gold answers ({gold['share_of_human_labels']} of human labels).",
        f"- Mode: {coll['mode']}; {coll['labels_with_suggestion_shown']} labels were given "
        "with a model suggestion shown.",
        f"- Label sources (annotation rows): {sources}.",
        f"- Active learning: {lin.get('clips_selected_by_loop', 0)} clips selected by a "
        f"ranking, {lin.get('clips_not_selected_by_loop', 0)} not by the loop; selections "
        f"by strategy: {strategies} (per clip: lineage.csv).",
        f"- Taxonomy mapping applied: {len(coll['taxonomy_mapping'])} older nodes mapped; "
        f"{coll['labels_dropped_by_mapping']} labels dropped.",
        "", "## Agreement (Krippendorff's alpha, nominal, human raters)", "",
    ]  # fmt: skip
    for ring, figs in data["agreement"].items():
        per_class = ", ".join(
            f"{k} {_alpha(v)}" for k, v in sorted(figs["alpha_per_class"].items())
        )
        lines.append(f"- {ring}: {_alpha(figs['alpha'])} (per class: {per_class or 'none'})")
    lines += ["", "![agreement](plots/agreement.png)", "", "## Known limitations", ""]
    lines += [f"- {item}" for item in data["limitations"]]
    return "\n".join(lines) + "\n"


def write(folder: Path, data: dict[str, Any]) -> None:
    """datasheet.json, datasheet.md and plots/*.png (deterministic bytes)."""
    write_text(folder, data)
    plots.write_all(folder / "plots", data)


def write_text(folder: Path, data: dict[str, Any]) -> None:
    """datasheet.json and datasheet.md; `plots.write_all` draws the rest (the build draws
    them after its Dawid-Skene worker has ended: matplotlib's memory is not beside it)."""
    (folder / "datasheet.json").write_text(
        json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (folder / "datasheet.md").write_text(_markdown(data), encoding="utf-8")
