"""Label Studio JSON of a native version (export), and its reader (for the import).

```
<name>-labelstudio/
  tasks.json        a JSON array of tasks, one per clip, by clip_id
  config.xml        the labelling config: <Audio name="audio"> + <Taxonomy name="emotion">
  audio/<clip_id>.wav
  version.json, datasheet.md|json, plots/   copied from the native version
```

A task: `{"id": clip_id, "data": {"audio": "audio/<clip_id>.wav", "clip_id", "split",
"speaker_id", "gender", …}, "annotations": [...], "predictions": [...]}`. One annotation per
human annotator of the clip (sorted by pseudonym): `completed_by` the pseudonym, `result` a
single `taxonomy` result whose value is the label's path of key segments
(`mad.angry.furious` -> `[["mad", "angry", "furious"]]`, the `value`s of the nested
`<Choice>`s in config.xml); a skip is `was_cancelled: true` with an empty result.
`predictions` holds the clip's weak labels (native `weak_labels`, external models'
predictions), one per model version: its top label, `score` its probability, `model_version`
"<model> <version>" (the full distribution stays in the native table); empty without them.
Corpus labels (`label_source` corpus) are annotations whose `completed_by` is the corpus
rater (`corpus:emodb`).

`data.audio` is relative to the folder: Label Studio serves local files from a URL
(`/data/local-files/?d=<root>/audio/…` with local-file serving on), so the importing team
prefixes it. The taxonomy in config.xml is the nodes the version shows (native version.json
names the taxonomy version but not its nodes, nor their display names): node key segments
as Choice values, from the annotations, aggregates, gold answers and weak labels' top labels.

Memory: the annotations are grouped by clip on disk (`NativeVersion.annotations_by_clip`);
one task is in memory at a time, written as soon as it is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from xml.sax.saxutils import quoteattr

from exports.formats.native import ClipGroups, NativeVersion, Record

TASKS = "tasks.json"
CONFIG = "config.xml"
FROM_NAME = "emotion"
TO_NAME = "audio"
# Clip columns copied into a task's data (beside "audio").
DATA_FIELDS = ("clip_id", "split", "speaker_id", "gender", "age_band", "language", "dialect",
               "channel", "duration_s", "recording_id", "start_s", "end_s", "sha256")  # fmt: skip
# Annotation columns kept in an annotation's "meta".
META_FIELDS = ("skip_reason", "unsure", "intensity", "valence", "arousal", "label_source",
               "suggestion_shown")  # fmt: skip
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _deepest(row: Record) -> str | None:
    return row.get("tertiary") or row.get("secondary") or row.get("core")


def _annotation(row: Record) -> dict[str, Any]:
    key = _deepest(row)
    result = (
        [
            {
                "id": f"a{row['annotation_id']}",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "taxonomy",
                "value": {"taxonomy": [key.split(".")]},
            }
        ]
        if key
        else []
    )
    spent = row.get("time_spent_ms")
    return {
        "id": row["annotation_id"],
        "completed_by": row["annotator"],
        "result": result,
        "was_cancelled": key is None,
        "ground_truth": False,
        "created_at": row["created_at"],
        "lead_time": spent / 1000 if spent is not None else None,
        "meta": {
            field: row.get(field)
            for field in (
                "skip_reason",
                "unsure",
                "intensity",
                "valence",
                "arousal",
                "label_source",
                "suggestion_shown",
            )
        },
    }


def _prediction(row: Record, number: int) -> dict[str, Any]:
    """A weak label (an external model's prediction) as a Label Studio prediction: its top
    label, scored with its probability."""
    return {
        "model_version": f"{row['model']} {row['model_version']}",
        "score": row["top_probability"],
        "result": [
            {
                "id": f"w{row['clip_id']}-{number}",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "taxonomy",
                "value": {"taxonomy": [row["top_label"].split(".")]},
            }
        ],
    }


def _tasks(native: NativeVersion, audio: Path) -> Iterator[dict[str, Any]]:
    annotations = ClipGroups(native.annotations_by_clip())
    weak = ClipGroups(native.weak_labels_by_clip())
    for clip in native.rows("clips"):
        clip_id = clip["clip_id"]
        name = f"audio/{clip_id}.wav"
        data: dict[str, Any] = {"audio": name}
        data.update({field: clip.get(field) for field in DATA_FIELDS})
        data["sha256"] = native.copy_audio(clip, audio.parent / name)
        yield {
            "id": clip_id,
            "data": data,
            "annotations": [_annotation(row) for row in annotations.take(clip_id)],
            "predictions": [
                _prediction(row, number)
                for number, row in enumerate(weak.take(clip_id), start=1)
                if row.get("top_label")
            ],
        }


def config_xml(keys: list[str]) -> str:
    """The labelling config for the node keys given (any rings, dotted keys), as a nested
    Taxonomy; children sorted by key."""
    children: dict[str, list[str]] = {}
    for key in sorted(set(keys)):
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            node, parent = ".".join(parts[:depth]), ".".join(parts[: depth - 1])
            siblings = children.setdefault(parent, [])
            if node not in siblings:
                siblings.append(node)

    def choices(parent: str, indent: str) -> list[str]:
        lines: list[str] = []
        for node in sorted(children.get(parent, [])):
            value = quoteattr(node.rsplit(".", 1)[-1])
            if node in children:
                lines.append(f"{indent}<Choice value={value}>")
                lines += choices(node, indent + "  ")
                lines.append(f"{indent}</Choice>")
            else:
                lines.append(f"{indent}<Choice value={value}/>")
        return lines

    return "\n".join([
        "<View>",
        f'  <Audio name="{TO_NAME}" value="$audio"/>',
        f'  <Taxonomy name="{FROM_NAME}" toName="{TO_NAME}">',
        *choices("", "    "),
        "  </Taxonomy>",
        "</View>",
        "",
    ])  # fmt: skip


def write(native: NativeVersion, out: Path) -> None:
    """Write tasks.json, config.xml, the audio and the provenance into the empty `out`."""
    audio = out / "audio"
    audio.mkdir()
    with (out / TASKS).open("w", encoding="utf-8", newline="\n") as file:
        file.write("[")
        for index, task in enumerate(_tasks(native, audio)):
            file.write(",\n" if index else "\n")
            file.write(_ENCODER.encode(task))
        file.write("\n]\n")
    keys = [key for ring_keys in native.node_keys().values() for key in ring_keys]
    if native.has("weak_labels"):  # so that Label Studio can show the predictions
        keys += [row["top_label"] for row in native.rows("weak_labels") if row["top_label"]]
    (out / CONFIG).write_text(config_xml(keys), encoding="utf-8", newline="\n")
    native.copy_provenance(out)


# --- Reading (the import reuses this) -------------------------------------------------------


class LabelStudioLabel(NamedTuple):
    """One label read from a Label Studio export: the task's audio (as written in its data),
    who gave it (a pseudonym, a Label Studio user id as text, or its email), the node key
    (dotted path: `mad.angry.furious`)."""

    audio: str
    annotator: str
    key: str


def iter_tasks(path: Path, chunk: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """The tasks of a Label Studio JSON export (a JSON array), one at a time, reading the
    file in chunks: a large export is never parsed whole."""
    decoder = json.JSONDecoder()
    with Path(path).open(encoding="utf-8") as file:
        buffer, position, started, done = "", 0, False, False
        while True:
            more = file.read(chunk)
            buffer = buffer[position:] + more
            position = 0
            while True:
                while position < len(buffer) and buffer[position] in " \t\r\n,":
                    position += 1
                if position == len(buffer):
                    break
                if not started:
                    if buffer[position] != "[":
                        raise ValueError(f"{path}: not a JSON array of tasks")
                    started, position = True, position + 1
                    continue
                if buffer[position] == "]":
                    done = True
                    break
                try:
                    task, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError:
                    if not more:
                        raise
                    break  # the task goes on in the next chunk
                if not isinstance(task, dict):
                    raise ValueError(f"{path}: a task that is not an object")
                yield task
                position = end
            if done:
                return
            if not more:
                raise ValueError(f"{path}: the JSON array is not closed")


def _who(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id"))
    return str(completed_by)


def read_labelstudio(
    path: Path, from_name: str = FROM_NAME, audio_field: str = "audio"
) -> Iterator[LabelStudioLabel]:
    """Every label in a Label Studio JSON export, in file order.

    Reads `taxonomy` results (each selected path, joined with "." into a node key) and
    `choices` results (each choice as a key) of the control named `from_name`; cancelled
    (skipped) annotations, other controls and predictions are left out. `completed_by` may be
    a pseudonym, a user id or a user object (its email, else its id).
    """
    for task in iter_tasks(path):
        audio = str(task.get("data", {}).get(audio_field, ""))
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            annotator = _who(annotation.get("completed_by"))
            for result in annotation.get("result") or []:
                if result.get("from_name") != from_name:
                    continue
                value = result.get("value", {})
                if result.get("type") == "taxonomy":
                    for segments in value.get("taxonomy", []):
                        yield LabelStudioLabel(audio, annotator, ".".join(segments))
                elif result.get("type") == "choices":
                    for choice in value.get("choices", []):
                        yield LabelStudioLabel(audio, annotator, choice)
