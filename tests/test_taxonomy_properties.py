"""Properties of the taxonomy format (labelling.taxonomy_schema), checked with hypothesis.

- Round trip: a generated valid wheel parses to the same tree (keys, names stripped,
  parents, levels, sibling order, the colours, hotkeys and coordinates given), and
  export -> parse is the identity on what `parse_document` returns, as a dict, JSON text
  or UTF-8 bytes.
- Normalisation: every ring of at most nine gets distinct hotkeys, the ones written kept
  and the missing ones the free digits in sibling order; every colour is "#rrggbb" in lower
  case, a core without one takes the palette by position and a child without one is its
  parent's colour lightened.
- Every broken rule is refused with a TaxonomyFormatError whose problem names the path and
  the rule, and several broken rules on different nodes are all reported at once.
- Nothing crashes: any JSON value in place of the document, a field or a node, and any text
  or bytes, gives a TaxonomyDocument or a TaxonomyFormatError, never another exception.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from labelling.taxonomy_schema import (
    _BIDI_CONTROLS,
    COLOUR_PATTERN,
    CORE_PALETTE,
    FORMAT,
    HOTKEY_PATTERN,
    KEY_PATTERN,
    MAX_DEPTH,
    MAX_NODE_NAME_LENGTH,
    MAX_NODES,
    SLUG_PATTERN,
    TaxonomyDocument,
    TaxonomyFormatError,
    parse_document,
    to_document,
)

FAST = settings(max_examples=60, deadline=None, derandomize=True)
HOTKEYS = "123456789abcdefghijklmnopqrstuvwxyz"


# --- Valid wheels -------------------------------------------------------------------------

# Generated keys never start with "z", so that keys the tests add ("zz-...") are fresh.
keys = st.from_regex(KEY_PATTERN, fullmatch=True).filter(lambda key: not key.startswith("z"))
safe_characters = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=_BIDI_CONTROLS
)
names = st.text(safe_characters, min_size=1, max_size=MAX_NODE_NAME_LENGTH).filter(str.strip)
descriptions = st.text(st.one_of(safe_characters, st.sampled_from("\n\t")), max_size=60)
colours = st.from_regex(r"#[0-9a-fA-F]{6}", fullmatch=True)
coordinates = st.one_of(st.floats(-1.0, 1.0), st.integers(-1, 1))


@dataclass
class Site:
    """Where a node sits in a nested document."""

    path: str  # as parse_document's problems name it, e.g. "nodes[0].children[2]"
    node: dict[str, Any]
    level: int
    order: int
    parent_key: str | None
    ring: list[Any]  # the node's siblings, itself included


def sites(document: dict[str, Any]) -> list[Site]:
    """Every node of a nested document in pre-order."""
    found: list[Site] = []

    def walk(ring: list[Any], path: str, level: int, parent_key: str | None) -> None:
        for order, node in enumerate(ring):
            found.append(Site(f"{path}[{order}]", node, level, order, parent_key, ring))
            walk(node.get("children") or [], f"{path}[{order}].children", level + 1, node["key"])

    walk(document["nodes"], "nodes", 0, None)
    return found


@st.composite
def rings(draw: Any, key_pool: list[str], level: int) -> list[dict[str, Any]]:
    """A ring of 1-4 siblings (1-11 at the core, past the nine that get hotkeys) and their
    subtrees, keys taken from the pool."""
    size = draw(st.integers(1, 11 if level == 0 else 4))
    hotkeys = draw(st.permutations(HOTKEYS))
    ring = []
    for order in range(size):
        if not key_pool:
            break
        node: dict[str, Any] = {"key": key_pool.pop(), "name": draw(names)}
        if draw(st.booleans()):
            node["colour"] = draw(colours)
        if draw(st.booleans()):
            node["hotkey"] = hotkeys[order]
        for field in ("valence", "arousal"):
            if draw(st.booleans()):
                node[field] = draw(coordinates)
        if draw(st.booleans()):
            node["description"] = draw(descriptions)
        if level + 1 < MAX_DEPTH and draw(st.booleans()):
            node["children"] = draw(rings(key_pool, level + 1))
        ring.append(node)
    return ring


@st.composite
def documents(draw: Any) -> dict[str, Any]:
    """A valid nested document of up to ~40 nodes."""
    key_pool = draw(st.lists(keys, min_size=1, max_size=40, unique=True))
    document = {
        "format": FORMAT,
        "name": draw(names),
        "slug": draw(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)),
        "nodes": draw(rings(key_pool, 0)),
    }
    for field in ("description", "source"):
        if draw(st.booleans()):
            document[field] = draw(descriptions if field == "description" else names)
    if draw(st.booleans()):
        document["version"] = draw(st.integers(1, 10**6))
    return document


@FAST
@given(document=documents())
def test_a_valid_wheel_parses_to_the_same_tree(document):
    parsed = parse_document(document)

    written = sites(document)
    assert [node.key for node in parsed.nodes] == [site.node["key"] for site in written]
    for node, site in zip(parsed.nodes, written, strict=True):
        assert node.name == site.node["name"].strip()
        assert (node.level, node.order, node.parent_key) == (
            site.level,
            site.order,
            site.parent_key,
        )
        if "colour" in site.node:
            assert node.colour == site.node["colour"].lower()
        if "hotkey" in site.node:
            assert node.hotkey == site.node["hotkey"]
        for field in ("valence", "arousal"):
            given_value = site.node.get(field)
            assert getattr(node, field) == (None if given_value is None else float(given_value))
        assert node.description == site.node.get("description", "").strip()
    assert parsed.name == document["name"].strip()
    assert parsed.slug == document["slug"]


@FAST
@given(document=documents())
def test_export_then_parse_gives_the_parsed_document_back_in_every_input_form(document):
    parsed = parse_document(document)
    exported = parsed.to_dict()

    assert parse_document(exported) == parsed
    assert parse_document(json.dumps(exported)) == parsed
    assert parse_document(json.dumps(exported).encode("utf-8-sig")) == parsed


@FAST
@given(document=documents(), data=st.data())
def test_export_nests_flat_nodes_whatever_order_they_come_in(document, data):
    parsed = parse_document(document)
    shuffled = data.draw(st.permutations(parsed.nodes))

    assert to_document("N", "n", "", "", shuffled) == to_document("N", "n", "", "", parsed.nodes)


@FAST
@given(document=documents(), data=st.data())
def test_export_refuses_flat_nodes_with_a_missing_parent_or_a_cycle(document, data):
    nodes = list(parse_document(document).nodes)
    index = data.draw(st.integers(0, len(nodes) - 1))
    node = nodes[index]
    below = [n.key for n in nodes if _descends_from(nodes, n, node.key)]
    parent = data.draw(st.sampled_from(["zz-missing", node.key, *below]))
    nodes[index] = replace(node, parent_key=parent)

    with pytest.raises(ValueError, match="missing or forms a cycle") as caught:
        to_document("N", "n", "", "", nodes)
    assert repr(node.key) in str(caught.value)


def _descends_from(nodes: list[Any], node: Any, ancestor: str) -> bool:
    by_key = {n.key: n for n in nodes}
    while node.parent_key is not None:
        if node.parent_key == ancestor:
            return True
        node = by_key[node.parent_key]
    return False


@FAST
@given(document=documents())
def test_parsing_fills_hotkeys_and_colours_by_the_documented_rules(document):
    parsed = parse_document(document)
    by_key = {node.key: node for node in parsed.nodes}
    written = {site.node["key"]: site.node for site in sites(document)}

    rings_by_parent: dict[str | None, list[Any]] = {}
    for node in parsed.nodes:
        rings_by_parent.setdefault(node.parent_key, []).append(node)
    for ring in rings_by_parent.values():
        if len(ring) > 9:
            continue
        hotkeys = [node.hotkey for node in ring]
        assert None not in hotkeys
        assert len(set(hotkeys)) == len(hotkeys)
        claimed = {written[node.key]["hotkey"] for node in ring if "hotkey" in written[node.key]}
        filled = [node.hotkey for node in ring if "hotkey" not in written[node.key]]
        assert filled == [digit for digit in "123456789" if digit not in claimed][: len(filled)]

    for node in parsed.nodes:
        assert node.colour == node.colour.lower()
        assert len(node.colour) == 7
        if "colour" in written[node.key]:
            continue
        if node.parent_key is None:
            assert node.colour == CORE_PALETTE[node.order % len(CORE_PALETTE)]
        else:
            parent = by_key[node.parent_key].colour
            for i in (1, 3, 5):  # every channel moves toward white
                assert int(node.colour[i : i + 2], 16) >= int(parent[i : i + 2], 16)


# --- Broken rules -------------------------------------------------------------------------


def problems_of(data: object) -> list[str]:
    try:
        parse_document(data)
    except TaxonomyFormatError as exc:
        return exc.problems
    raise AssertionError("the document was accepted")


def assert_refused(data: object, path: str, fragment: str) -> None:
    problems = problems_of(data)
    assert any(p.startswith(f"{path}: ") and fragment in p for p in problems), problems


bad_keys = st.one_of(
    st.text(max_size=90).filter(lambda text: not KEY_PATTERN.fullmatch(text)),
    st.integers(),
    st.lists(st.integers(), max_size=2),
    st.booleans(),
)
# A valid key spoilt by one character (upper case, a space, a slash, an accent, a leading
# '_', '.' or '-') or made one character too long.
spoilt_keys = st.one_of(
    st.tuples(keys, st.sampled_from("AZ /é:")).map(lambda kc: kc[0] + kc[1]),
    st.tuples(st.sampled_from("_.-"), keys).map(lambda ck: ck[0] + ck[1]),
    st.integers(81, 120).map(lambda length: "k" * length),
)
not_numbers = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2))
out_of_range = st.one_of(
    st.floats(allow_nan=True).filter(lambda x: not -1 <= x <= 1),
    st.integers().filter(lambda x: not -1 <= x <= 1),
)
unsafe_characters = st.one_of(
    st.characters(whitelist_categories=("Cc", "Cs", "Zl", "Zp")),
    st.sampled_from(sorted(_BIDI_CONTROLS)),
)


@st.composite
def broken(draw: Any, rule: str) -> tuple[dict[str, Any], str, str]:
    """A valid document with `rule` broken at one node: (document, path, problem)."""
    document = copy.deepcopy(draw(documents()))
    written = sites(document)
    if rule == "duplicate hotkey":  # a node with siblings
        assume(any(len(s.ring) > 1 for s in written))
        written = [s for s in written if len(s.ring) > 1]
    site = draw(st.sampled_from(written))
    node, path = site.node, site.path
    if rule == "duplicate key":  # the later one in pre-order is the duplicate
        assume(len(written) > 1)
        first, later = draw(
            st.lists(st.sampled_from(written), min_size=2, max_size=2, unique_by=id)
        )
        first, later = sorted((first, later), key=lambda s: written.index(s))
        later.node["key"] = first.node["key"]
        return document, f"{later.path}.key", "duplicate key"
    if rule in ("bad key", "spoilt key"):
        node["key"] = draw(bad_keys if rule == "bad key" else spoilt_keys)
        return document, f"{path}.key", "must be 1-80 lower-case letters"
    if rule == "missing key":
        del node["key"]
        return document, f"{path}.key", "required"
    if rule == "too deep":  # first children down to a ring at level MAX_DEPTH
        parent = node
        for level in range(site.level + 1, MAX_DEPTH + 1):
            child = {"key": f"zz-{level}", "name": "Deeper"}
            parent["children"] = [child, *(parent.get("children") or [])]
            parent = child
        last_parent = path + ".children[0]" * (MAX_DEPTH - 1 - site.level)
        return document, f"{last_parent}.children", "too deep"
    if rule == "bad colour":
        node["colour"] = draw(
            st.one_of(
                st.text(max_size=9).filter(lambda t: not COLOUR_PATTERN.fullmatch(t)), st.integers()
            )
        )
        return document, f"{path}.colour", 'must be "#rrggbb"'
    if rule == "bad hotkey":
        node["hotkey"] = draw(
            st.one_of(
                st.text(max_size=3).filter(lambda t: not HOTKEY_PATTERN.fullmatch(t)), st.integers()
            )
        )
        return document, f"{path}.hotkey", "must be one character"
    if rule == "duplicate hotkey":
        for sibling in site.ring:
            sibling["hotkey"] = "q"
        return document, f"{path.rsplit('[', 1)[0]}[1].hotkey", "duplicate hotkey"
    if rule == "coordinate not a number":
        field = draw(st.sampled_from(["valence", "arousal"]))
        node[field] = draw(not_numbers)
        return document, f"{path}.{field}", "must be a number"
    if rule == "coordinate out of range":
        field = draw(st.sampled_from(["valence", "arousal"]))
        node[field] = draw(out_of_range)
        return document, f"{path}.{field}", "must be between -1 and 1"
    if rule == "blank name":
        node["name"] = draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))
        return document, f"{path}.name", "must not be blank"
    if rule == "long name":
        node["name"] = "x" * draw(st.integers(MAX_NODE_NAME_LENGTH + 1, 500))
        return document, f"{path}.name", f"at most {MAX_NODE_NAME_LENGTH} characters"
    if rule == "control character":
        text = draw(st.text(safe_characters, max_size=20))
        cut = draw(st.integers(0, len(text)))
        node["name"] = "A" + text[:cut] + draw(unsafe_characters) + text[cut:] + "Z"
        return document, f"{path}.name", "control character"
    if rule == "unknown field":
        field = draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
        assume(field not in {"key", "name", "colour", "hotkey", "valence", "arousal"})
        assume(field not in {"description", "children"})
        node[field] = 1
        return document, f"{path}.{field}", "unknown field"
    if rule == "not an object":
        site.ring[site.order] = draw(
            st.one_of(st.none(), st.integers(), st.text(), st.lists(st.none()))
        )
        return document, path, "must be an object"
    assert rule == "children not a list", rule
    node["children"] = draw(
        st.one_of(st.integers(), st.text(), st.dictionaries(st.text(), st.none()))
    )
    return document, f"{path}.children", "must be a list of nodes"


RULES = (
    "duplicate key",
    "bad key",
    "spoilt key",
    "missing key",
    "too deep",
    "bad colour",
    "bad hotkey",
    "duplicate hotkey",
    "coordinate not a number",
    "coordinate out of range",
    "blank name",
    "long name",
    "control character",
    "unknown field",
    "not an object",
    "children not a list",
)


@pytest.mark.parametrize("rule", RULES)
def test_every_broken_rule_is_refused_with_its_path_and_reason(rule):
    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(case=broken(rule))
    def check(case):
        document, path, fragment = case
        assert_refused(document, path, fragment)

    check()


@FAST
@given(
    document=documents(),
    data=st.data(),
)
def test_every_problem_on_different_nodes_is_reported_at_once(document, data):
    document = copy.deepcopy(document)
    written = sites(document)
    chosen = data.draw(
        st.lists(st.sampled_from(range(len(written))), min_size=1, max_size=4, unique=True)
    )
    expected = []
    for index in chosen:
        site = written[index]
        rule = data.draw(st.sampled_from(["colour", "hotkey", "valence", "name", "field"]))
        if rule == "colour":
            site.node["colour"] = "crimson"
            expected.append((f"{site.path}.colour", "#rrggbb"))
        elif rule == "hotkey":
            site.node["hotkey"] = "F1"
            expected.append((f"{site.path}.hotkey", "one character"))
        elif rule == "valence":
            site.node["valence"] = 2
            expected.append((f"{site.path}.valence", "between -1 and 1"))
        elif rule == "name":
            site.node["name"] = " "
            expected.append((f"{site.path}.name", "blank"))
        else:
            site.node["nmae"] = "typo"
            expected.append((f"{site.path}.nmae", 'did you mean "name"'))
    problems = problems_of(document)
    for path, fragment in expected:
        assert any(p.startswith(f"{path}: ") and fragment in p for p in problems), (path, problems)
    assert len(problems) == len(expected)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(extra=st.integers(0, 3), depth=st.integers(0, MAX_DEPTH - 1))
def test_a_wheel_is_refused_from_its_node_past_the_limit(extra, depth):
    # MAX_NODES - 1 leaves under one chain of `depth` nodes, plus `extra` more.
    chain = [{"key": f"c{level}", "name": "C"} for level in range(depth)]
    leaves = [{"key": f"k{i}", "name": "K"} for i in range(MAX_NODES - depth + extra)]
    ring = leaves
    path = "nodes"
    for node in reversed(chain):
        node["children"] = ring
        ring = [node]
    for _ in chain:
        path += "[0].children"
    document = {"format": FORMAT, "name": "Big", "slug": "big", "nodes": ring}
    if extra == 0:
        assert len(parse_document(document).nodes) == MAX_NODES
    else:
        assert problems_of(document)[0] == (
            f"{path}[{MAX_NODES - depth}]: too many nodes: a taxonomy has at most {MAX_NODES}"
        )


bad_document_fields = st.one_of(
    st.tuples(st.just("format"), st.one_of(st.none(), st.text(max_size=20), st.integers())),
    st.tuples(
        st.just("slug"),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=90).filter(lambda t: not SLUG_PATTERN.fullmatch(t)),
        ),
    ),
    st.tuples(st.just("nodes"), st.one_of(st.none(), st.just([]), st.integers(), st.text())),
    st.tuples(
        st.just("version"),
        st.one_of(st.integers(max_value=0), st.booleans(), st.text(max_size=3), st.floats()),
    ),
    st.tuples(
        st.just("name"),
        st.one_of(st.none(), st.just(" "), st.integers(), st.just("N" * 121)),
    ),
)


@FAST
@given(document=documents(), broken_field=bad_document_fields)
def test_a_broken_document_field_is_refused_with_its_name(document, broken_field):
    field, value = broken_field
    assume(not (field == "format" and value == FORMAT))
    document = copy.deepcopy(document)
    document[field] = value

    problems = problems_of(document)

    assert any(p.startswith(f"{field}: ") for p in problems), problems


# --- Nothing crashes ----------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=10),
        # Past sys.get_int_max_str_digits() an int has no str() or repr() at all.
        st.integers(4301, 4400).map(lambda digits: -(10**digits)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def parses_or_refuses(data: object) -> None:
    try:
        result = parse_document(data)
    except TaxonomyFormatError as exc:
        problems = exc.problems
    else:
        assert isinstance(result, TaxonomyDocument)
        return
    assert problems
    assert all(isinstance(problem, str) for problem in problems)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    document=documents(),
    data=st.data(),
    value=json_values,
    where=st.sampled_from(["document", "field", "node field", "node", "ring"]),
)
def test_any_json_value_anywhere_is_parsed_or_refused_never_a_crash(document, data, value, where):
    document = copy.deepcopy(document)
    if where == "document":
        parses_or_refuses(value)
        return
    if where == "field":
        field = data.draw(st.sampled_from([*document, "description", "source", "other"]))
        document[field] = value
    else:
        site = data.draw(st.sampled_from(sites(document)))
        if where == "node field":
            field = data.draw(st.sampled_from([*site.node, "colour", "hotkey", "valence", "x"]))
            site.node[field] = value
        elif where == "node":
            site.ring[site.order] = value
        else:
            site.node["children"] = value
    parses_or_refuses(document)
    parses_or_refuses(json.dumps(document, allow_nan=False) if _finite(document) else "{}")


def _finite(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    raw=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v) if _finite(v) else "[]"),
        st.integers(4301, 6000).map(lambda digits: '{"version": ' + "9" * digits + "}"),
    )
)
def test_any_text_or_bytes_is_parsed_or_refused_never_a_crash(raw):
    parses_or_refuses(raw)
