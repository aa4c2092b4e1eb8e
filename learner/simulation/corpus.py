"""The corpus side of the simulator: a folder of audio and its labels CSV, the corpus's
emotion names mapped onto the flat `basic` taxonomy, and the speaker rotations the test
splits are cut from.

The labels file is read by labelling's manifest reader (`labelling.manifest.read_rows`),
the same one clip imports use; this module only checks its columns and maps its emotions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Both are framework-free (manifest and taxonomy_schema are stdlib only).
from labelling.manifest import ManifestError, read_rows
from labelling.taxonomy_schema import load_preset
from learner.targets import Node

TAXONOMY_PRESET = "basic"


# --- Emotion names -------------------------------------------------------------------------

# Spellings in common corpora (EmoDB, RAVDESS, CREMA-D, TESS, IEMOCAP, SAVEE, ...) for each
# node of the flat `basic` preset. Single letters are left out on purpose: "a" is anger in
# SAVEE and Angst (fear) in EmoDB's file names.
EMOTION_ALIASES: Mapping[str, tuple[str, ...]] = {
    "anger": ("anger", "angry", "ang", "mad", "rage", "furious"),
    "boredom": ("boredom", "bored", "bor"),
    "disgust": ("disgust", "disgusted", "dis", "disgusting"),
    "fear": ("fear", "fearful", "fea", "afraid", "scared", "frightened"),
    "happiness": ("happiness", "happy", "hap", "joy", "joyful", "glad"),
    "sadness": ("sadness", "sad", "unhappy", "sorrow"),
    "surprise": (
        "surprise",
        "surprised",
        "sur",
        "ps",
        "pleasant_surprise",
        "pleasant_surprised",
    ),
    "calm": ("calm", "calmness", "relaxed"),
    "neutral": ("neutral", "neu", "neutrality"),
}


def _spelling(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def flat_taxonomy() -> list[Node]:
    """The `basic` preset's nodes as learner label-space nodes (one flat ring)."""
    doc = load_preset(TAXONOMY_PRESET)
    return [Node(n.key, n.name, n.level, n.parent_key) for n in doc.nodes]


def emotion_lookup(nodes: Sequence[Node] | None = None) -> dict[str, str]:
    """Spelling (lower case, spaces and hyphens as "_") -> node key of the flat taxonomy."""
    nodes = list(nodes) if nodes is not None else flat_taxonomy()
    lookup: dict[str, str] = {}
    for node in nodes:
        lookup[_spelling(node.key)] = node.key
        lookup[_spelling(node.name)] = node.key
        for alias in EMOTION_ALIASES.get(node.key, ()):
            lookup[_spelling(alias)] = node.key
    return lookup


def canonical_emotion(name: str, lookup: Mapping[str, str] | None = None) -> str | None:
    """The taxonomy node a corpus emotion name stands for, or None when it has none."""
    return (lookup if lookup is not None else emotion_lookup()).get(_spelling(name))


# --- Corpus --------------------------------------------------------------------------------


class CorpusError(ValueError):
    """The corpus or its labels cannot be simulated; the message says what to fix."""


@dataclass
class Corpus:
    """A fully labelled corpus, one row per clip (N clips, K classes in taxonomy order)."""

    root: Path
    files: list[Path]  # N audio paths
    names: list[str]  # N `file` values as written in the CSV
    speakers: list[str]  # N speaker ids
    labels: np.ndarray  # (N,) int class indices into `classes`
    classes: list[str]  # K node keys of the flat taxonomy, in taxonomy order
    spellings: dict[str, str]  # corpus emotion name -> node key, as mapped
    metadata: dict[str, list[str]]  # optional columns (gender, age, ...) -> N values
    dropped: dict[str, int] = field(default_factory=dict)  # unmapped name -> rows dropped

    def __len__(self) -> int:
        return len(self.files)


def _resolve_audio(root: Path, names: Sequence[str]) -> list[Path]:
    """`file` values relative to the corpus folder, or found by name anywhere below it."""
    index: dict[str, list[Path]] | None = None
    out: list[Path] = []
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            out.append(direct)
            continue
        if index is None:
            index = {}
            for path in root.rglob("*"):
                if path.is_file():
                    index.setdefault(path.name, []).append(path)
        found = index.get(Path(name).name, [])
        if len(found) == 1:
            out.append(found[0])
        elif len(found) > 1:
            raise CorpusError(
                f"{name!r} matches {len(found)} files below {root}; write its path relative "
                "to the corpus folder in the labels CSV"
            )
        else:
            missing.append(name)
    if missing:
        raise CorpusError(
            f"{len(missing)} file(s) of the labels CSV are not below {root}, e.g. {missing[:3]}"
        )
    return out


def _text(value: object) -> str:
    """A cell as the corpus reads it: stripped text, "" for a missing cell."""
    return "" if value is None else str(value).strip()


def load_corpus(
    corpus_dir: str | Path,
    labels_csv: str | Path,
    *,
    drop_unknown: bool = False,
    nodes: Sequence[Node] | None = None,
) -> Corpus:
    """Read the labels CSV (columns file, speaker, emotion; any others are metadata).

    The file is read by labelling's manifest reader (`labelling.manifest.read_rows`: a .csv,
    or a .jsonl with the same keys), names and cells stripped. A relative `labels_csv` that
    does not exist as given is looked up in the corpus folder. Emotion names without a
    taxonomy node raise CorpusError, listing them, unless `drop_unknown` (their rows are
    then left out and counted in `Corpus.dropped`).
    """
    root = Path(corpus_dir)
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist")
    labels_path = Path(labels_csv)
    if not labels_path.is_file() and not labels_path.is_absolute():
        labels_path = root / labels_path
    if not labels_path.is_file():
        raise CorpusError(f"labels CSV {labels_csv} not found (also looked in {root})")
    try:
        raw = read_rows(labels_path)
    except ManifestError as exc:
        raise CorpusError(str(exc)) from exc
    if not raw:
        raise CorpusError(f"{labels_path} has no rows")
    columns = list(dict.fromkeys(_text(k) for r in raw for k in r if k is not None))
    # A CSV row's cells beyond the header come under the key None: they have no column.
    rows = [
        dict.fromkeys(columns, "") | {_text(k): _text(v) for k, v in r.items() if k is not None}
        for r in raw
    ]
    required = {"file", "speaker", "emotion"}
    if not required <= set(columns):
        raise CorpusError(f"{labels_path} needs the columns {sorted(required)}; it has {columns}")
    nodes = list(nodes) if nodes is not None else flat_taxonomy()
    lookup = emotion_lookup(nodes)
    unknown: dict[str, int] = {}
    kept: list[dict[str, str]] = []
    for row in rows:
        if not row["file"]:
            continue
        if canonical_emotion(row["emotion"], lookup) is None:
            unknown[row["emotion"]] = unknown.get(row["emotion"], 0) + 1
        else:
            kept.append(row)
    if unknown and not drop_unknown:
        known = ", ".join(n.key for n in nodes)
        raise CorpusError(
            f"emotion name(s) with no node in the {TAXONOMY_PRESET!r} taxonomy ({known}): "
            + ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unknown.items()))
            + "; rename them in the CSV or pass --drop-unknown to leave those rows out"
        )
    if any(not row["speaker"] for row in kept):
        raise CorpusError("every row needs a speaker id (the test splits are by speaker)")
    # Every kept row's emotion has a node (the unknown ones were counted above).
    spellings = {row["emotion"]: lookup[_spelling(row["emotion"])] for row in kept}
    used = set(spellings.values())
    classes = [n.key for n in nodes if n.key in used]
    if len(classes) < 2:
        raise CorpusError(f"the corpus has {len(classes)} emotion class(es); at least 2 needed")
    index = {k: i for i, k in enumerate(classes)}
    names = [row["file"] for row in kept]
    meta_columns = [c for c in columns if c not in required]
    return Corpus(
        root=root,
        files=_resolve_audio(root, names),
        names=names,
        speakers=[row["speaker"] for row in kept],
        labels=np.array([index[spellings[row["emotion"]]] for row in kept], dtype=np.int64),
        classes=classes,
        spellings=dict(sorted(spellings.items())),
        metadata={c: [row.get(c, "") for row in kept] for c in meta_columns},
        dropped=unknown if drop_unknown else {},
    )


# --- Splits --------------------------------------------------------------------------------


def speaker_rotations(
    speakers: Sequence[str], rotations: int, per_rotation: int, seed: int = 0
) -> list[list[str]]:
    """`rotations` sets of `per_rotation` held-out speakers each.

    Walks a seeded permutation of the speakers in consecutive groups, so the sets are
    disjoint while speakers last (5 x 2 of 10 speakers: every speaker is tested once); then
    a new permutation starts. Within a set no speaker repeats.
    """
    names = sorted(set(speakers))
    if per_rotation < 1 or per_rotation > len(names) - 2:
        raise CorpusError(
            f"{per_rotation} test speaker(s) per rotation leaves too few of the {len(names)} "
            "speakers for the pool (need at least 2 in the pool and 1 to test)"
        )
    rng = np.random.default_rng(seed)
    order: list[str] = []
    out: list[list[str]] = []
    while len(out) < rotations:
        if len(order) < per_rotation:
            fresh = [names[i] for i in rng.permutation(len(names))]
            order += [s for s in fresh if s not in order]
        group, order = order[:per_rotation], order[per_rotation:]
        out.append(sorted(group))
    return out


def default_test_speakers(n_speakers: int, fraction: float = 0.2) -> int:
    return max(1, min(n_speakers - 2, round(fraction * n_speakers)))
