"""A minimal datasheet for a version ("Datasheets for Datasets", Gebru et al.): composition
and agreement figures computed from what the build already holds. Plots are not drawn yet.

`datasheet.json` has the figures; `datasheet.md` states the same figures in prose and tables.
Both depend only on the version's rows, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from exports.core.aggregation import Item


def figures(
    *,
    meta: dict[str, Any],
    split_of: dict[int, str],
    clips: dict[int, tuple[float, str, str]],
    consensus: dict[str, dict[Item, str]],
    raters: int,
    annotations: int,
    agreement: dict[str, Any],
) -> dict[str, Any]:
    """The datasheet's figures. `clips`: clip id -> (duration_s, gender, speaker id);
    `consensus`: ring name -> clip -> majority label; `agreement`: agreement.json's content."""
    splits = sorted(set(split_of.values()))
    per_split: dict[str, Any] = {}
    for split in splits:
        ids = [clip for clip, s in split_of.items() if s == split]
        per_split[split] = {
            "clips": len(ids),
            "duration_s": round(sum(clips[c][0] for c in ids), 3),
            "speakers": len({clips[c][2] for c in ids if clips[c][2]}),
            "gender": dict(sorted(Counter(clips[c][1] or "unknown" for c in ids).items())),
            "classes": {
                ring: dict(sorted(Counter(labels[c] for c in ids if c in labels).items()))
                for ring, labels in consensus.items()
            },
        }
    by_speaker: dict[str, int] = defaultdict(int)
    for _duration, _gender, speaker in clips.values():
        by_speaker[speaker or "(none)"] += 1
    return {
        "version": meta,
        "composition": {
            "clips": len(clips),
            "duration_s": round(sum(c[0] for c in clips.values()), 3),
            "speakers": len([s for s in by_speaker if s != "(none)"]),
            "clips_without_speaker": by_speaker.get("(none)", 0),
            "splits": per_split,
        },
        "collection": {"raters": raters, "annotations": annotations},
        "agreement": {ring: figures["alpha"] for ring, figures in agreement.items()},
        "limitations": [
            "Labels are crowd judgements of perceived emotion, not the speaker's felt emotion.",
            "Aggregated labels include every rater's vote; clips with one rater carry no "
            "agreement information.",
            "Plots and coverage by age band, language and channel are not in this datasheet "
            "yet (see clips.csv).",
        ],
    }


def _markdown(data: dict[str, Any]) -> str:
    meta, comp = data["version"], data["composition"]
    lines = [
        f"# Datasheet: {meta['project']} v{meta['number']}",
        "",
        "## Composition",
        "",
        f"{comp['clips']} clips, {comp['duration_s']} s of audio, {comp['speakers']} speakers "
        f"({comp['clips_without_speaker']} clips without a speaker id).",
        "",
        "| split | clips | duration (s) | speakers | gender |",
        "|---|---|---|---|---|",
    ]
    for split, row in comp["splits"].items():
        gender = ", ".join(f"{g} {n}" for g, n in row["gender"].items())
        lines.append(
            f"| {split} | {row['clips']} | {row['duration_s']} | {row['speakers']} | {gender} |"
        )
    first: dict[str, Any] = next(iter(comp["splits"].values()), {})
    for ring in first.get("classes", {}):
        lines += ["", f"### Majority labels per split, {ring} ring", ""]
        lines += ["| split | " + " | ".join(["label", "clips"]) + " |", "|---|---|---|"]
        for split, row in comp["splits"].items():
            for label, n in row["classes"][ring].items():
                lines.append(f"| {split} | {label} | {n} |")
    lines += [
        "",
        "## Collection",
        "",
        f"{data['collection']['annotations']} current annotations by "
        f"{data['collection']['raters']} raters (pseudonymous ids).",
        "",
        "## Agreement (Krippendorff's alpha, nominal)",
        "",
    ]
    lines += [f"- {ring}: {alpha}" for ring, alpha in data["agreement"].items()]
    lines += ["", "## Known limitations", ""]
    lines += [f"- {item}" for item in data["limitations"]]
    return "\n".join(lines) + "\n"


def write(folder: Path, data: dict[str, Any]) -> None:
    (folder / "datasheet.json").write_text(
        json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (folder / "datasheet.md").write_text(_markdown(data), encoding="utf-8")
