"""The taxonomy file format: presets, normalisation, round trip, and every rule's problem."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest

from labelling.taxonomy_schema import (
    FORMAT,
    MAX_NODES,
    PRESET_SLUGS,
    FlatNode,
    TaxonomyFormatError,
    load_preset,
    parse_document,
    preset_path,
    to_document,
)


def small_document() -> dict[str, Any]:
    """Two cores; the first has two secondaries, one of which has a tertiary."""
    return {
        "format": FORMAT,
        "name": "Small wheel",
        "slug": "small",
        "description": "For tests.",
        "source": "",
        "nodes": [
            {
                "key": "mad",
                "name": "Mad",
                "colour": "#c0392b",
                "valence": -0.6,
                "arousal": 0.7,
                "children": [
                    {
                        "key": "mad.hurt",
                        "name": "Hurt",
                        "children": [{"key": "mad.hurt.jealous", "name": "Jealous"}],
                    },
                    {"key": "mad.angry", "name": "Angry"},
                ],
            },
            {"key": "sad", "name": "Sad"},
        ],
    }


def problems_of(data: object) -> list[str]:
    with pytest.raises(TaxonomyFormatError) as caught:
        parse_document(data)
    return caught.value.problems


# --- Presets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slug", "ring_sizes"),
    [("willcox", [6, 36, 72]), ("plutchik", [8, 24]), ("basic", [9])],
)
def test_each_preset_loads_with_its_ring_sizes(slug, ring_sizes):
    document = load_preset(slug)

    levels = Counter(node.level for node in document.nodes)
    assert [levels[level] for level in sorted(levels)] == ring_sizes
    assert document.slug == slug


@pytest.mark.parametrize("slug", PRESET_SLUGS)
def test_preset_files_are_in_the_format_and_fully_hotkeyed(slug):
    raw = json.loads(preset_path(slug).read_text(encoding="utf-8"))
    document = load_preset(slug)

    assert raw["format"] == FORMAT
    assert document.description
    assert document.source
    assert all(node.hotkey is not None for node in document.nodes)
    core_colours = [node.colour for node in document.nodes if node.level == 0]
    assert len(set(core_colours)) == len(core_colours)
    assert all(
        node.valence is not None and node.arousal is not None
        for node in document.nodes
        if node.level == 0
    )


def test_willcox_has_the_published_core_and_secondary_rings():
    document = load_preset("willcox")
    by_key = {node.key: node for node in document.nodes}

    cores = [node.name for node in document.nodes if node.level == 0]
    sad = [node.name for node in document.nodes if node.parent_key == "sad"]
    assert cores == ["Mad", "Scared", "Joyful", "Powerful", "Peaceful", "Sad"]
    assert sad == ["Guilty", "Ashamed", "Depressed", "Lonely", "Bored", "Sleepy"]
    assert all(
        Counter(n.parent_key for n in document.nodes)[key] == 2
        for key, node in by_key.items()
        if node.level == 1
    )


def test_plutchik_children_are_the_intensity_forms_mild_to_intense():
    document = load_preset("plutchik")

    joy = [node.key for node in document.nodes if node.parent_key == "joy"]
    anger = [node.name for node in document.nodes if node.parent_key == "anger"]
    assert joy == ["joy.serenity", "joy.joy", "joy.ecstasy"]
    assert anger == ["Annoyance", "Anger", "Rage"]


@pytest.mark.parametrize("slug", ["../settings", "WILLCOX", "", "unknown"])
def test_an_unknown_preset_slug_is_refused_before_touching_the_disk(slug):
    with pytest.raises(ValueError, match="unknown preset"):
        preset_path(slug)


# --- Round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", PRESET_SLUGS)
def test_a_preset_survives_export_and_reimport_as_json_text(slug):
    document = load_preset(slug)

    exported = json.dumps(document.to_dict())

    assert parse_document(exported) == document


def test_to_document_nests_by_parent_and_orders_by_order_not_input_order():
    nodes = [
        FlatNode("b", "B", None, 0, 1, "#000000"),
        FlatNode("a.y", "Y", "a", 1, 1, "#111111", hotkey="y"),
        FlatNode("a", "A", None, 0, 0, "#222222", valence=0.5, arousal=-0.5),
        FlatNode("a.x", "X", "a", 1, 0, "#333333", description="first"),
    ]

    document = to_document("Name", "name", "", "", nodes)

    assert document["nodes"] == [
        {
            "key": "a",
            "name": "A",
            "colour": "#222222",
            "valence": 0.5,
            "arousal": -0.5,
            "children": [
                {"key": "a.x", "name": "X", "colour": "#333333", "description": "first"},
                {"key": "a.y", "name": "Y", "colour": "#111111", "hotkey": "y"},
            ],
        },
        {"key": "b", "name": "B", "colour": "#000000"},
    ]


def test_to_document_refuses_a_node_whose_parent_is_missing():
    nodes = [FlatNode("a", "A", None, 0, 0, "#000000"), FlatNode("x", "X", "gone", 1, 0, "#000000")]

    with pytest.raises(ValueError, match="parent is missing"):
        to_document("Name", "name", "", "", nodes)


def test_an_exported_version_number_does_not_block_reimport():
    data = small_document()
    data["version"] = 3

    assert parse_document(data).slug == "small"


# --- Normalisation ------------------------------------------------------------------------


def test_nodes_come_out_in_pre_order_with_levels_and_sibling_positions():
    document = parse_document(small_document())

    assert [(n.key, n.parent_key, n.level, n.order) for n in document.nodes] == [
        ("mad", None, 0, 0),
        ("mad.hurt", "mad", 1, 0),
        ("mad.hurt.jealous", "mad.hurt", 2, 0),
        ("mad.angry", "mad", 1, 1),
        ("sad", None, 0, 1),
    ]


def test_children_without_a_colour_get_their_parents_colour_lightened():
    by_key = {node.key: node for node in parse_document(small_document()).nodes}

    assert by_key["mad"].colour == "#c0392b"
    assert by_key["mad.hurt"].colour == "#d67e75"
    assert by_key["mad.hurt.jealous"].colour == "#e4aba5"
    assert by_key["sad"].colour.startswith("#")


def test_colours_are_lower_cased():
    data = small_document()
    data["nodes"][0]["colour"] = "#C0392B"

    assert parse_document(data).nodes[0].colour == "#c0392b"


def test_hotkeys_are_numbered_by_sibling_order_when_absent():
    by_key = {node.key: node for node in parse_document(small_document()).nodes}

    assert [by_key[k].hotkey for k in ("mad", "sad", "mad.hurt", "mad.angry")] == [
        "1",
        "2",
        "1",
        "2",
    ]


def test_absent_hotkeys_take_the_digits_that_explicit_siblings_leave_free():
    data = small_document()
    data["nodes"][1]["hotkey"] = "1"

    hotkeys = [node.hotkey for node in parse_document(data).nodes if node.level == 0]

    assert hotkeys == ["2", "1"]


def test_more_than_nine_siblings_get_no_automatic_hotkeys():
    data = small_document()
    data["nodes"] = [{"key": f"k{i}", "name": f"K{i}"} for i in range(10)]

    assert {node.hotkey for node in parse_document(data).nodes} == {None}


def test_names_and_descriptions_are_stripped():
    data = small_document()
    data["nodes"][1]["name"] = "  Sad \n"
    data["description"] = "  padded  "

    document = parse_document(data)

    assert document.nodes[-1].name == "Sad"
    assert document.description == "padded"


def test_integer_coordinates_become_floats():
    data = small_document()
    data["nodes"][1]["valence"] = -1

    valence = parse_document(data).nodes[-1].valence

    assert valence == -1.0
    assert isinstance(valence, float)


# --- Input forms --------------------------------------------------------------------------


def test_json_text_and_utf8_bytes_are_accepted():
    text = json.dumps(small_document())

    from_text = parse_document(text)

    assert from_text == parse_document(text.encode("utf-8"))
    assert from_text == parse_document(b"\xef\xbb\xbf" + text.encode("utf-8"))  # BOM


def test_invalid_json_is_one_clear_problem():
    assert problems_of('{"format": "emoloop-taxonomy/1",') == [
        "document: invalid JSON at line 1 column 33: Expecting property name enclosed in "
        "double quotes"
    ]


def test_invalid_utf8_is_refused():
    assert problems_of(b'{"name": "\xff"}') == ["document: not valid UTF-8 (byte 10)"]


def test_nan_is_not_json():
    text = json.dumps(small_document()).replace("-0.6", "NaN")

    assert problems_of(text) == ["document: NaN is not a valid JSON number"]


def test_a_number_with_more_digits_than_python_converts_is_one_clear_problem():
    # Regression (found by tests/test_taxonomy_properties.py): json.loads refuses an integer
    # past sys.get_int_max_str_digits() with a plain ValueError, which escaped the parser.
    text = '{"format": "emoloop-taxonomy/1", "version": 1' + "0" * 5000 + "}"

    assert problems_of(text) == ["document: a number in it has too many digits"]


def test_a_huge_integer_in_a_decoded_document_is_named_not_shown():
    # Regression: quoting such a value in a problem raised ValueError (it has no str()).
    data = small_document()
    data["nodes"][1]["valence"] = -(10**5000)

    assert problems_of(data) == [
        "nodes[1].valence: must be between -1 and 1, got <number too large to show>"
    ]


def test_json_nested_past_the_recursion_limit_is_one_clear_problem():
    text = "[" * 100_000 + "]" * 100_000  # under MAX_DOCUMENT_CHARS, past Python's stack

    assert problems_of(text) == ["document: JSON nested too deeply"]


def test_a_member_written_twice_in_one_object_is_refused():
    text = '{"format": "emoloop-taxonomy/1", "name": "A", "name": "B"}'

    assert problems_of(text) == ['document: member "name" appears twice in one JSON object']


@pytest.mark.parametrize("data", [[], "[]", 42, None, "null"])
def test_the_document_must_be_an_object(data):
    [problem] = problems_of(data)

    assert problem.startswith("document: must be a JSON object")


# --- Rules, each with its path ------------------------------------------------------------


def _set(path: tuple[Any, ...], value: Any):
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]):
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


MAD = ("nodes", 0)
HURT = (*MAD, "children", 0)
ANGRY = (*MAD, "children", 1)
JEALOUS = (*HURT, "children", 0)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(_delete(("format",)), "format: required", id="format-missing"),
        pytest.param(
            _set(("format",), "emoloop-taxonomy/2"),
            'format: expected "emoloop-taxonomy/1", got "emoloop-taxonomy/2"',
            id="format-wrong",
        ),
        pytest.param(_set(("name",), "   "), "name: must not be blank", id="name-blank"),
        pytest.param(_set(("slug",), "Small Wheel"), "slug: must be", id="slug-pattern"),
        pytest.param(_set(("source",), 5), "source: must be a string", id="source-type"),
        pytest.param(_set(("nodes",), []), "nodes: must contain at least one", id="no-core"),
        pytest.param(_set(("nodes",), {}), "nodes: must be a list", id="nodes-type"),
        pytest.param(_set(("colour",), "#fff"), "colour: unknown field", id="top-unknown"),
        pytest.param(
            _set((*MAD, "color"), "#ffffff"),
            'nodes[0].color: unknown field (did you mean "colour"?)',
            id="typo-surfaces",
        ),
        pytest.param(
            _set((*MAD, "bad key"), 1), 'nodes[0]["bad key"]: unknown field', id="odd-field"
        ),
        pytest.param(_set(("nodes", 1), "sad"), "nodes[1]: must be an object", id="node-type"),
        pytest.param(_delete((*ANGRY, "key")), "nodes[0].children[1].key: required", id="key"),
        pytest.param(
            _set((*ANGRY, "key"), "Mad.Angry"), "nodes[0].children[1].key: must be", id="upper"
        ),
        pytest.param(
            _set((*ANGRY, "key"), "mad\n"), "nodes[0].children[1].key: must be", id="newline"
        ),
        pytest.param(
            _set((*ANGRY, "key"), "-mad"), "nodes[0].children[1].key: must be", id="leading"
        ),
        pytest.param(
            _set((*ANGRY, "key"), "a" * 81), "nodes[0].children[1].key: must be", id="long-key"
        ),
        pytest.param(
            _set((*JEALOUS, "key"), "mad.hurt"),
            'nodes[0].children[0].children[0].key: duplicate key "mad.hurt" '
            "(first at nodes[0].children[0].key)",
            id="duplicate-key",
        ),
        pytest.param(
            _set(("nodes", 1, "key"), "mad.angry"),
            'nodes[1].key: duplicate key "mad.angry" (first at nodes[0].children[1].key)',
            id="duplicate-across-branches",
        ),
        pytest.param(_delete((*MAD, "name")), "nodes[0].name: required", id="name-missing"),
        pytest.param(
            _set((*MAD, "name"), " \t "), "nodes[0].name: must not be blank", id="name-empty"
        ),
        pytest.param(
            _set((*MAD, "name"), "x" * 81),
            "nodes[0].name: must be at most 80 characters, got 81",
            id="name-long",
        ),
        pytest.param(
            _set((*MAD, "name"), "Ma\x00d"),
            "nodes[0].name: contains a control character (U+0000)",
            id="name-control",
        ),
        pytest.param(
            _set((*MAD, "name"), "Ma\nd"),
            "nodes[0].name: contains a control character (U+000A)",
            id="name-newline",
        ),
        pytest.param(
            _set((*MAD, "name"), "\u202edaM"),
            "nodes[0].name: contains a control character (U+202E)",
            id="name-bidi-override",
        ),
        pytest.param(
            _set((*MAD, "description"), "ok\x1b[31m"),
            "nodes[0].description: contains a control character (U+001B)",
            id="description-escape",
        ),
        pytest.param(
            _set((*MAD, "colour"), "red"), 'nodes[0].colour: must be "#rrggbb"', id="colour"
        ),
        pytest.param(
            _set((*MAD, "colour"), "#c0392"), 'nodes[0].colour: must be "#rrggbb"', id="short"
        ),
        pytest.param(
            _set((*MAD, "hotkey"), "0"),
            'nodes[0].hotkey: must be one character from 1-9 or a-z, got "0"',
            id="hotkey-zero",
        ),
        pytest.param(
            _set((*MAD, "hotkey"), "A"), "nodes[0].hotkey: must be one character", id="hotkey-up"
        ),
        pytest.param(
            _set((*MAD, "hotkey"), 1), "nodes[0].hotkey: must be one character", id="hotkey-int"
        ),
        pytest.param(
            _set((*HURT, "hotkey"), "12"),
            "nodes[0].children[0].hotkey: must be one character",
            id="hotkey-long",
        ),
        pytest.param(
            _set((*MAD, "valence"), 1.5),
            "nodes[0].valence: must be between -1 and 1, got 1.5",
            id="valence-range",
        ),
        pytest.param(
            _set((*MAD, "arousal"), "high"),
            "nodes[0].arousal: must be a number, got string",
            id="arousal-type",
        ),
        pytest.param(
            _set((*MAD, "arousal"), True),
            "nodes[0].arousal: must be a number, got boolean",
            id="arousal-bool",
        ),
        pytest.param(
            _set((*MAD, "valence"), float("inf")),
            "nodes[0].valence: must be between -1 and 1",
            id="valence-inf",
        ),
        pytest.param(
            _set((*MAD, "valence"), 10**400),
            "nodes[0].valence: must be between -1 and 1",
            id="valence-huge-int",
        ),
        pytest.param(
            _set((*MAD, "children"), {"key": "x"}),
            "nodes[0].children: must be a list of nodes, got object",
            id="children-type",
        ),
        pytest.param(
            _set((*JEALOUS, "children"), [{"key": "mad.hurt.jealous.green", "name": "Green"}]),
            "nodes[0].children[0].children[0].children: too deep: a taxonomy has at most 3 levels",
            id="depth",
        ),
    ],
)
def test_each_rule_violation_is_reported_with_its_path(mutate, expected):
    data = small_document()
    mutate(data)

    problems = problems_of(data)

    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_duplicate_hotkeys_among_siblings_are_refused():
    data = small_document()
    data["nodes"][0]["hotkey"] = "m"
    data["nodes"][1]["hotkey"] = "m"

    assert problems_of(data) == [
        'nodes[1].hotkey: duplicate hotkey "m" among siblings (first at nodes[0].hotkey)'
    ]


def test_the_same_hotkey_in_different_rings_is_fine():
    data = small_document()
    data["nodes"][0]["hotkey"] = "1"
    data["nodes"][0]["children"][0]["hotkey"] = "1"

    assert parse_document(data).nodes[1].hotkey == "1"


def test_empty_children_and_null_optionals_mean_absent():
    data = small_document()
    data["nodes"][1].update(children=[], colour=None, hotkey=None, valence=None)

    sad = parse_document(data).nodes[-1]

    assert (sad.hotkey, sad.valence) == ("2", None)


def test_too_many_nodes_are_refused():
    data = small_document()
    data["nodes"] = [{"key": f"k{i}", "name": "K"} for i in range(MAX_NODES + 5)]

    assert problems_of(data) == [
        f"nodes[{MAX_NODES}]: too many nodes: a taxonomy has at most {MAX_NODES}"
    ]


def test_an_export_with_a_bad_version_number_is_refused():
    data = small_document()
    data["version"] = 0

    assert problems_of(data) == ["version: must be a positive integer, got 0"]


def test_untrusted_values_are_quoted_escaped_and_truncated_in_problems():
    data = small_document()
    data["nodes"][0]["key"] = "<script>\x07" + "x" * 100

    [problem] = problems_of(data)

    assert "\x07" not in problem
    assert '"<script>\\u0007xxx' in problem
    assert problem.endswith("...")


# --- All problems at once -----------------------------------------------------------------


def test_all_problems_are_collected_not_just_the_first():
    data = small_document()
    del data["slug"]
    data["nodes"][0]["colour"] = "crimson"
    data["nodes"][0]["children"][1]["key"] = "mad.hurt"
    data["nodes"][0]["children"][0]["children"][0]["valence"] = 2
    data["nodes"][1]["nmae"] = "typo"

    problems = problems_of(data)

    assert [problem.split(":")[0] for problem in problems] == [
        "slug",
        "nodes[0].colour",
        "nodes[0].children[0].children[0].valence",
        "nodes[0].children[1].key",
        "nodes[1].nmae",
    ]


def test_the_error_message_summarises_the_problems():
    data = small_document()
    data["nodes"] = [{"key": "K", "name": ""} for _ in range(4)]

    with pytest.raises(TaxonomyFormatError) as caught:
        parse_document(data)

    assert len(caught.value.problems) == 8
    assert str(caught.value).startswith("invalid taxonomy document (8 problem(s)): nodes[0].key")
    assert str(caught.value).endswith("; and 3 more")
    assert isinstance(caught.value, ValueError)


def test_parsing_does_not_modify_the_input():
    data = small_document()
    before = copy.deepcopy(data)

    parse_document(data)

    assert data == before
