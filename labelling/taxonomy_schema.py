"""The taxonomy import/export format (`emoloop-taxonomy/1`): validation and normalisation.

A taxonomy document is a feelings wheel as nested JSON: core nodes, their secondary children,
and those children's tertiary children. `parse_document` checks everything, collects every
problem (with a path such as `nodes[2].children[0].key`) and raises them together, so that a
user fixing an uploaded file sees all mistakes at once. On success it returns the wheel
flattened in pre-order, with the optional fields filled in:

- `colour`: a core node without one gets a colour from `CORE_PALETTE` by its position; a child
  without one gets its parent's colour lightened by `LIGHTEN`.
- `hotkey`: among at most 9 siblings, a node without one gets the first digit from 1 to 9 that
  no sibling claims, in sibling order (so a ring with no hotkeys is numbered 1, 2, 3, ...). The
  annotation screen picks from the current ring with these keys.

Framework-free on purpose (stdlib only): `labelling.services.taxonomy` imports through it, the
presets in `labelling/presets/` are loaded through it, and the tests run without a database.

Every string here is untrusted (it comes from uploaded files and ends up in HTML, where the
templates escape it); control characters and bidirectional overrides are refused rather than
stored; JSON text is decoded strictly (no repeated members, no NaN) and problem messages
quote values JSON-escaped and truncated, both by `labelling.untrusted_json`.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelling.untrusted_json import JSONInputError, json_type, quoted, strict_loads

FORMAT = "emoloop-taxonomy/1"
MAX_DEPTH = 3  # core, secondary, tertiary

# Lengths follow the columns of labelling.models.Taxonomy and TaxonomyNode.
MAX_NODES = 2000
MAX_NODE_NAME_LENGTH = 80
MAX_NODE_DESCRIPTION_LENGTH = 300
MAX_DOCUMENT_NAME_LENGTH = 120
MAX_DOCUMENT_DESCRIPTION_LENGTH = 5000
MAX_SOURCE_LENGTH = 300
MAX_DOCUMENT_CHARS = 2_000_000  # the presets are ~30 kB; this only stops absurd uploads

KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
COLOUR_PATTERN = re.compile(r"#[0-9a-fA-F]{6}")
HOTKEY_PATTERN = re.compile(r"[1-9a-z]")
AUTO_HOTKEYS = "123456789"

# Colours for core nodes that do not name one (Tableau 10: distinct, readable on white).
CORE_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
LIGHTEN = 0.35  # share of white mixed into a parent's colour for a child without one

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESET_SLUGS = ("willcox", "plutchik", "basic")

_DOCUMENT_FIELDS = ("format", "name", "slug", "description", "source", "nodes", "version")
_NODE_FIELDS = (
    "key",
    "name",
    "colour",
    "hotkey",
    "valence",
    "arousal",
    "description",
    "children",
)
# Bidirectional embeddings, overrides and isolates: they can make a label display as a
# different word (U+202E "right-to-left override").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class TaxonomyFormatError(ValueError):
    """A document that is not a valid taxonomy.

    `problems` lists every problem found, each as `path: message`, e.g.
    `nodes[2].children[0].key: duplicate key "mad.hurt" (first at nodes[0].children[0].key)`.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        summary = "; ".join(self.problems[:5])
        if count > 5:
            summary += f"; and {count - 5} more"
        super().__init__(f"invalid taxonomy document ({count} problem(s)): {summary}")


@dataclass(frozen=True, slots=True)
class FlatNode:
    """One feeling of the wheel, with its parent named by key."""

    key: str
    name: str
    parent_key: str | None
    level: int  # 0 core, 1 secondary, 2 tertiary
    order: int  # position among its siblings, from 0
    colour: str  # "#rrggbb", lower case
    hotkey: str | None = None
    valence: float | None = None  # [-1, 1]
    arousal: float | None = None  # [-1, 1]
    description: str = ""


@dataclass(frozen=True, slots=True)
class TaxonomyDocument:
    name: str
    slug: str
    description: str
    source: str
    nodes: tuple[FlatNode, ...]  # pre-order: every parent before its children

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form (see `to_document`)."""
        return to_document(self.name, self.slug, self.description, self.source, self.nodes)


# --- Parsing ------------------------------------------------------------------------------


def parse_document(data: object) -> TaxonomyDocument:
    """Validate and normalise a taxonomy document.

    `data` is the decoded JSON (a dict) or the JSON text itself (str, or UTF-8 bytes). Raises
    TaxonomyFormatError listing every problem found.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TaxonomyFormatError([f"document: not valid UTF-8 (byte {exc.start})"]) from None
    if isinstance(data, str):
        data = _load_json(data)
    return _Parser().document(data)


def _load_json(text: str) -> object:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise TaxonomyFormatError(
            [f"document: larger than {MAX_DOCUMENT_CHARS} characters, got {len(text)}"]
        )
    try:
        return strict_loads(text)
    except JSONInputError as exc:
        raise TaxonomyFormatError([f"document: {exc}"]) from None


@dataclass
class _Draft:
    """A node as written, before normalisation fills colour and hotkey."""

    key: str
    name: str
    parent_key: str | None
    level: int
    order: int
    colour: str | None
    hotkey: str | None
    valence: float | None
    arousal: float | None
    description: str


class _Parser:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.drafts: list[_Draft] = []  # pre-order
        self.sibling_groups: list[list[_Draft]] = []
        self.key_paths: dict[str, str] = {}
        self.node_count = 0

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # Document level ---------------------------------------------------------------------

    def document(self, data: object) -> TaxonomyDocument:
        if not isinstance(data, Mapping):
            raise TaxonomyFormatError([f"document: must be a JSON object, got {json_type(data)}"])
        self.unknown_fields(data, _DOCUMENT_FIELDS, "")

        if "format" not in data:
            self.problem("format", f"required; expected {quoted(FORMAT)}")
        elif data["format"] != FORMAT:
            self.problem("format", f"expected {quoted(FORMAT)}, got {quoted(data['format'])}")
        name = self.text(data, "name", "name", required=True, max_length=MAX_DOCUMENT_NAME_LENGTH)
        slug = self.slug(data)
        description = self.text(
            data,
            "description",
            "description",
            max_length=MAX_DOCUMENT_DESCRIPTION_LENGTH,
            multiline=True,
        )
        source = self.text(data, "source", "source", max_length=MAX_SOURCE_LENGTH)
        # `version` is written by labelling.services.taxonomy.export_version for the reader's
        # information; an exported file must import again, so it is allowed and ignored.
        version = data.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            self.problem("version", f"must be a positive integer, got {quoted(version)}")

        if "nodes" not in data or data["nodes"] is None:
            self.problem("nodes", "required; a taxonomy has at least one core node")
        elif isinstance(data["nodes"], list) and not data["nodes"]:
            self.problem("nodes", "must contain at least one core node")
        else:
            self.ring(data["nodes"], "nodes", parent_key=None, level=0)

        if self.problems:
            raise TaxonomyFormatError(self.problems)
        return TaxonomyDocument(
            name=name, slug=slug, description=description, source=source, nodes=self.normalise()
        )

    def slug(self, data: Mapping[Any, Any]) -> str:
        value = data.get("slug")
        if value is None:
            self.problem("slug", "required")
            return ""
        if not isinstance(value, str) or not SLUG_PATTERN.fullmatch(value):
            self.problem(
                "slug",
                "must be 1-80 lower-case letters, digits, '_' or '-', starting with a letter "
                f"or digit; got {quoted(value)}",
            )
            return ""
        return value

    # Node level -------------------------------------------------------------------------

    def ring(self, value: object, path: str, *, parent_key: str | None, level: int) -> None:
        """Check one list of siblings (the core ring, or a node's children)."""
        if not isinstance(value, list):
            self.problem(path, f"must be a list of nodes, got {json_type(value)}")
            return
        if not value:
            return
        if level >= MAX_DEPTH:
            # Not descending further: one problem says it, and it bounds the recursion.
            self.problem(
                path,
                f"too deep: a taxonomy has at most {MAX_DEPTH} levels (core, secondary, tertiary)",
            )
            return
        group: list[_Draft] = []
        hotkey_paths: dict[str, str] = {}
        for order, item in enumerate(value):
            item_path = f"{path}[{order}]"
            if self.node_count >= MAX_NODES:
                self.problem(item_path, f"too many nodes: a taxonomy has at most {MAX_NODES}")
                return
            self.node_count += 1
            if not isinstance(item, Mapping):
                self.problem(item_path, f"must be an object, got {json_type(item)}")
                continue
            draft = self.node(item, item_path, parent_key=parent_key, level=level, order=order)
            if draft.hotkey is not None:
                if draft.hotkey in hotkey_paths:
                    self.problem(
                        f"{item_path}.hotkey",
                        f"duplicate hotkey {quoted(draft.hotkey)} among siblings "
                        f"(first at {hotkey_paths[draft.hotkey]})",
                    )
                else:
                    hotkey_paths[draft.hotkey] = f"{item_path}.hotkey"
            group.append(draft)
            self.drafts.append(draft)
            if item.get("children") is not None:
                self.ring(
                    item["children"], f"{item_path}.children", parent_key=draft.key, level=level + 1
                )
        self.sibling_groups.append(group)

    def node(
        self, item: Mapping[Any, Any], path: str, *, parent_key: str | None, level: int, order: int
    ) -> _Draft:
        self.unknown_fields(item, _NODE_FIELDS, path)
        return _Draft(
            key=self.key(item, f"{path}.key"),
            name=self.text(
                item, "name", f"{path}.name", required=True, max_length=MAX_NODE_NAME_LENGTH
            ),
            parent_key=parent_key,
            level=level,
            order=order,
            colour=self.colour(item, f"{path}.colour"),
            hotkey=self.hotkey(item, f"{path}.hotkey"),
            valence=self.unit_interval(item, "valence", f"{path}.valence"),
            arousal=self.unit_interval(item, "arousal", f"{path}.arousal"),
            description=self.text(
                item,
                "description",
                f"{path}.description",
                max_length=MAX_NODE_DESCRIPTION_LENGTH,
                multiline=True,
            ),
        )

    def key(self, item: Mapping[Any, Any], path: str) -> str:
        value = item.get("key")
        if value is None:
            self.problem(path, "required")
            return ""
        if not isinstance(value, str) or not KEY_PATTERN.fullmatch(value):
            self.problem(
                path,
                "must be 1-80 lower-case letters, digits, '_', '.' or '-', starting with a "
                f'letter or digit (e.g. "mad.hurt"); got {quoted(value)}',
            )
            return ""
        if value in self.key_paths:
            self.problem(path, f"duplicate key {quoted(value)} (first at {self.key_paths[value]})")
        else:
            self.key_paths[value] = path
        return value

    def colour(self, item: Mapping[Any, Any], path: str) -> str | None:
        value = item.get("colour")
        if value is None:
            return None
        if not isinstance(value, str) or not COLOUR_PATTERN.fullmatch(value):
            self.problem(path, f'must be "#rrggbb", got {quoted(value)}')
            return None
        return value.lower()

    def hotkey(self, item: Mapping[Any, Any], path: str) -> str | None:
        value = item.get("hotkey")
        if value is None:
            return None
        if not isinstance(value, str) or not HOTKEY_PATTERN.fullmatch(value):
            self.problem(path, f"must be one character from 1-9 or a-z, got {quoted(value)}")
            return None
        return value

    def unit_interval(self, item: Mapping[Any, Any], field: str, path: str) -> float | None:
        value = item.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"must be a number, got {json_type(value)}")
            return None
        # Compare before converting: float() of a huge int overflows.
        if not (-1 <= value <= 1) or (isinstance(value, float) and not math.isfinite(value)):
            self.problem(path, f"must be between -1 and 1, got {quoted(value)}")
            return None
        return float(value)

    # Shared -----------------------------------------------------------------------------

    def text(
        self,
        obj: Mapping[Any, Any],
        field: str,
        path: str,
        *,
        max_length: int,
        required: bool = False,
        multiline: bool = False,
    ) -> str:
        value = obj.get(field)
        if value is None:
            if required:
                self.problem(path, "required")
            return ""
        if not isinstance(value, str):
            self.problem(path, f"must be a string, got {json_type(value)}")
            return ""
        text = value.strip()
        if required and not text:
            self.problem(path, "must not be blank")
        elif len(text) > max_length:
            self.problem(path, f"must be at most {max_length} characters, got {len(text)}")
        refused = _refused_character(text, multiline=multiline)
        if refused is not None:
            self.problem(path, f"contains a control character (U+{ord(refused):04X})")
        return text

    def unknown_fields(self, obj: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
        for field in obj:
            if field in known:
                continue
            name = str(field)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            allowed = ", ".join(known)
            self.problem(_field_path(path, name), f"unknown field{hint}; allowed: {allowed}")

    # Normalisation ----------------------------------------------------------------------

    def normalise(self) -> tuple[FlatNode, ...]:
        for group in self.sibling_groups:
            if len(group) > len(AUTO_HOTKEYS):
                continue  # more siblings than digits: the annotator picks with the mouse
            taken = {draft.hotkey for draft in group}
            free = iter([digit for digit in AUTO_HOTKEYS if digit not in taken])
            for draft in group:
                if draft.hotkey is None:
                    draft.hotkey = next(free)

        colours: dict[str, str] = {}
        nodes = []
        for draft in self.drafts:  # pre-order: a parent's colour is known before its children
            if draft.colour is not None:
                colour = draft.colour
            elif draft.parent_key is None:
                colour = CORE_PALETTE[draft.order % len(CORE_PALETTE)]
            else:
                colour = _lighten(colours[draft.parent_key], LIGHTEN)
            colours[draft.key] = colour
            nodes.append(
                FlatNode(
                    key=draft.key,
                    name=draft.name,
                    parent_key=draft.parent_key,
                    level=draft.level,
                    order=draft.order,
                    colour=colour,
                    hotkey=draft.hotkey,
                    valence=draft.valence,
                    arousal=draft.arousal,
                    description=draft.description,
                )
            )
        return tuple(nodes)


def _lighten(colour: str, amount: float) -> str:
    """Mix `amount` (0..1) of white into a "#rrggbb" colour."""
    channels = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in channels)


def _refused_character(text: str, *, multiline: bool) -> str | None:
    for char in text:
        if multiline and char in "\n\r\t":
            continue
        if unicodedata.category(char) in _REFUSED_CATEGORIES or char in _BIDI_CONTROLS:
            return char
    return None


def _field_path(path: str, name: str) -> str:
    if _FIELD_NAME.fullmatch(name):
        return f"{path}.{name}" if path else name
    return f"{path or 'document'}[{quoted(name)}]"


# --- Serialising --------------------------------------------------------------------------


def to_document(
    name: str,
    slug: str,
    description: str,
    source: str,
    nodes: Iterable[FlatNode],
) -> dict[str, Any]:
    """The nested JSON form of a flat wheel; `parse_document` of the result gives it back.

    Children are nested under their `parent_key` and ordered by `order` (ties keep the input
    order); `level` is implied by the nesting. Every node is written with its colour and, when
    it has them, hotkey, valence, arousal and description. Raises ValueError for duplicate
    keys and for nodes whose parent is missing (or that form a cycle).
    """
    node_list = list(nodes)
    children: dict[str | None, list[tuple[int, int, FlatNode]]] = {}
    seen: set[str] = set()
    for index, node in enumerate(node_list):
        if node.key in seen:
            raise ValueError(f"duplicate node key {node.key!r}")
        seen.add(node.key)
        children.setdefault(node.parent_key, []).append((node.order, index, node))

    written: set[str] = set()

    def ring(parent_key: str | None) -> list[dict[str, Any]]:
        out = []
        for _order, _index, node in sorted(
            children.get(parent_key, ()), key=lambda entry: (entry[0], entry[1])
        ):
            written.add(node.key)
            item: dict[str, Any] = {"key": node.key, "name": node.name, "colour": node.colour}
            if node.hotkey is not None:
                item["hotkey"] = node.hotkey
            if node.valence is not None:
                item["valence"] = node.valence
            if node.arousal is not None:
                item["arousal"] = node.arousal
            if node.description:
                item["description"] = node.description
            below = ring(node.key)
            if below:
                item["children"] = below
            out.append(item)
        return out

    core = ring(None)
    orphans = sorted(seen - written)
    if orphans:
        raise ValueError(f"nodes whose parent is missing or forms a cycle: {orphans}")
    return {
        "format": FORMAT,
        "name": name,
        "slug": slug,
        "description": description,
        "source": source,
        "nodes": core,
    }


# --- Presets ------------------------------------------------------------------------------


def preset_path(slug: str) -> Path:
    """The JSON file of a shipped preset. Only names in PRESET_SLUGS are accepted, so a slug
    from a request can never point outside the presets folder."""
    if slug not in PRESET_SLUGS:
        raise ValueError(f"unknown preset {slug!r}; the presets are {', '.join(PRESET_SLUGS)}")
    return PRESET_DIR / f"{slug}.json"


@functools.cache
def load_preset(slug: str) -> TaxonomyDocument:
    """A shipped preset, parsed (cached: the result is immutable)."""
    return parse_document(preset_path(slug).read_bytes())
