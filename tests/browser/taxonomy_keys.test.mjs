// Rules of the feelings-wheel keys (static/js/label/taxonomy.js), run by `node --test`
// from tests/browser/test_taxonomy_keys.py.
import assert from "node:assert/strict";
import test from "node:test";

import {
  affectOf,
  assignHotkeys,
  buildTree,
  pathOf,
  ringOf,
} from "../../static/js/label/taxonomy.js";

const node = (key, extra = {}) => ({
  key,
  name: key,
  parent: key.includes(".") ? key.split(".").slice(0, -1).join(".") : null,
  level: key.split(".").length - 1,
  order: 0,
  colour: "#000000",
  hotkey: null,
  valence: null,
  arousal: null,
  ...extra,
});

test("a node's own key wins; the others take the free digits in order", () => {
  const ring = assignHotkeys([node("a", { hotkey: "2" }), node("b"), node("c")]);
  assert.deepEqual(
    ring.map((n) => n.key_),
    ["2", "1", "3"],
  );
});

test("command keys and duplicates are not feeling keys", () => {
  const ring = assignHotkeys([
    node("a", { hotkey: "s" }), // skip
    node("b", { hotkey: "x" }),
    node("c", { hotkey: "x" }),
  ]);
  assert.deepEqual(
    ring.map((n) => n.key_),
    ["1", "x", "2"],
  );
});

test("the tenth item is 0 and an eleventh has no key", () => {
  const ring = assignHotkeys(Array.from({ length: 11 }, (_, i) => node(`n${i}`)));
  assert.equal(ring[9].key_, "0");
  assert.equal(ring[10].key_, null);
});

test("the ring is the selection's children, or its siblings for a leaf", () => {
  const tree = buildTree([
    node("mad", { hotkey: "1", order: 0, valence: -0.6, arousal: 0.7 }),
    node("mad.hurt", { order: 0 }),
    node("mad.hurt.jealous", { order: 0 }),
    node("mad.hurt.betrayed", { order: 1 }),
    node("sad", { hotkey: "2", order: 1 }),
  ]);
  assert.deepEqual(
    ringOf(tree, null).map((n) => n.key),
    ["mad", "sad"],
  );
  const hurt = tree.byKey.get("mad.hurt");
  assert.deepEqual(
    ringOf(tree, hurt).map((n) => n.key_),
    ["1", "2"],
  );
  const jealous = tree.byKey.get("mad.hurt.jealous");
  assert.equal(ringOf(tree, jealous), hurt.children);
  assert.deepEqual(
    pathOf(jealous).map((n) => n.key),
    ["mad", "mad.hurt", "mad.hurt.jealous"],
  );
  assert.equal(affectOf(jealous).from.key, "mad");
});
