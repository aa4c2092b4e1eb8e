"""Label mappings: names used outside the project (a corpus's emotions, a model's classes)
onto node keys of the project's active taxonomy version.

A preset (labelling/corpus_presets/<corpus>.json) maps each corpus label to a node key per
taxonomy preset ("basic", "plutchik", "willcox"); `aliases` lets the corpus's codes (EmoDB's
German initials, RAVDESS's numbers) stand for its names. A custom mapping is a JSON object
{"label": "node.key" | null, ...} (or {"labels": {...}}). A null target drops the label
on purpose: rows carrying it are not imported. A label the mapping does not name is an
error, and so is a target that is not a node of the project's active version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from labelling.models import Project, TaxonomyNode

PRESET_DIR = Path(__file__).resolve().parents[2] / "corpus_presets"
PRESETS = ("emodb", "ravdess", "cremad", "iemocap")


class InteropError(ValueError):
    """Bad input for an import; nothing was written. `problems` lists every fault found."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


def _short(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass(frozen=True)
class LabelMapping:
    """External label -> node key of the project's active version (None: dropped)."""

    name: str
    targets: dict[str, str | None]
    nodes: dict[str, TaxonomyNode] = field(repr=False)
    rater: str = ""  # the corpus rater's username, for a preset
    label_column: str = "emotion"

    def node_for(self, label: str) -> TaxonomyNode | None:
        """The node a label maps to; None when the mapping drops it. KeyError if unknown."""
        key = self.targets[label.strip()]
        return None if key is None else self.nodes[key]

    def check_labels(self, labels: set[str]) -> None:
        """Raise InteropError naming every label the mapping does not know."""
        unknown = sorted(label for label in labels if label.strip() not in self.targets)
        if unknown:
            raise InteropError(
                f"{len(unknown)} label(s) not in mapping {self.name}: {_short(unknown)} "
                "(map them, or map them to null to drop them)"
            )


def _nodes(project: Project) -> dict[str, TaxonomyNode]:
    if project.taxonomy_version_id is None:
        raise InteropError(f"Project {project.slug} has no taxonomy: assign one first.")
    return {n.key: n for n in TaxonomyNode.objects.filter(version_id=project.taxonomy_version_id)}


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"Cannot read {what} {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise InteropError(f"{what} {path.name} must be a JSON object")
    return data


def preset_document(preset: str) -> dict:
    if preset not in PRESETS:
        raise InteropError(f"Unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    return _read_json(PRESET_DIR / f"{preset}.json", "preset")


def _finish(
    name: str, targets: dict[str, str | None], nodes: dict[str, TaxonomyNode], **extra: str
) -> LabelMapping:
    missing = sorted({key for key in targets.values() if key is not None and key not in nodes})
    if missing:
        raise InteropError(
            f"Mapping {name} names node(s) not in the project's taxonomy: {_short(missing)}"
        )
    return LabelMapping(name, targets, nodes, **extra)


def custom_targets(data: dict) -> dict[str, str | None]:
    raw = data.get("labels", data)
    if not isinstance(raw, dict) or not raw:
        raise InteropError('A mapping is a JSON object {"label": "node.key" or null, ...}')
    bad = sorted(str(k) for k, v in raw.items() if v is not None and not isinstance(v, str))
    if bad:
        raise InteropError(f"Mapping targets must be node keys or null: {_short(bad)}")
    return {str(k).strip(): (v.strip() if isinstance(v, str) else None) for k, v in raw.items()}


def load_mapping(
    project: Project, *, preset: str | None = None, mapping_path: Path | None = None
) -> LabelMapping:
    """The mapping for an import into `project`: a custom JSON file (which wins for the
    labels it names, over the preset's), a preset, or both; node keys themselves map to
    themselves when neither names them (a file already in the project's keys)."""
    nodes = _nodes(project)
    targets: dict[str, str | None] = {}
    extra: dict[str, str] = {}
    name = "node keys"
    if preset:
        doc = preset_document(preset)
        wheel = project.taxonomy_version.taxonomy.slug  # type: ignore[union-attr]
        labels = doc["labels"]
        if not all(wheel in per_wheel for per_wheel in labels.values()) and mapping_path is None:
            raise InteropError(
                f"Preset {preset} has no mapping onto taxonomy {wheel!r} (it maps onto "
                f"{', '.join(sorted(next(iter(labels.values()))))}): give --mapping FILE.json"
            )
        for label, per_wheel in labels.items():
            if wheel in per_wheel:
                targets[label] = per_wheel[wheel]
        for alias, label in doc.get("aliases", {}).items():
            if label in targets:
                targets.setdefault(alias, targets[label])
        extra = {"rater": doc["rater"], "label_column": doc.get("label_column", "emotion")}
        name = f"preset {preset} onto {wheel}"
    if mapping_path is not None:
        targets.update(custom_targets(_read_json(mapping_path, "mapping")))
        name = f"{name} + {mapping_path.name}" if preset else mapping_path.name
    if not preset and mapping_path is None:
        targets = {key: key for key in nodes}
    else:
        for key in nodes:
            targets.setdefault(key, key)
    return _finish(name, targets, nodes, **extra)
