// The feelings wheel as a tree, and the hotkeys of each ring. Pure: no DOM, so the rules
// (which key picks which feeling) can be read and tested on their own.

// Keys the page uses for commands; a node hotkey that collides with one of them is ignored
// and the node gets a positional digit instead (docs/annotator.md lists the commands).
export const RESERVED_KEYS = new Set([
  " ", "a", "e", "q", "r", "s", "u", "v", "w", "z", "?", "[", "]", ",", ".", "-", "=", "+",
]);
const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

/** Build the tree: nodes gain `children` (sorted by order) and `parentNode`. */
export function buildTree(flatNodes) {
  const byKey = new Map();
  for (const raw of flatNodes) {
    byKey.set(raw.key, { ...raw, children: [], parentNode: null });
  }
  const roots = [];
  for (const node of byKey.values()) {
    const parent = node.parent ? byKey.get(node.parent) : null;
    if (parent) {
      node.parentNode = parent;
      parent.children.push(node);
    } else {
      roots.push(node);
    }
  }
  const byOrder = (a, b) => a.order - b.order || a.key.localeCompare(b.key);
  roots.sort(byOrder);
  for (const node of byKey.values()) node.children.sort(byOrder);
  assignHotkeys(roots);
  for (const node of byKey.values()) assignHotkeys(node.children);
  return { roots, byKey };
}

/**
 * Give each node of one ring its key (`node.key_`): its own `hotkey` when that is a
 * single character, unique in the ring and not a command key; otherwise the first digit
 * (1-9, then 0) that no other node of the ring uses. Rings longer than ten get no key
 * past the tenth (they are still clickable and reachable with Tab).
 */
export function assignHotkeys(ring) {
  const taken = new Set();
  for (const node of ring) {
    const own = (node.hotkey || "").toLowerCase();
    if (own.length === 1 && !RESERVED_KEYS.has(own) && !taken.has(own)) {
      node.key_ = own;
      taken.add(own);
    } else {
      node.key_ = null;
    }
  }
  const free = DIGITS.filter((d) => !taken.has(d));
  for (const node of ring) {
    if (node.key_ === null) node.key_ = free.shift() ?? null;
  }
  return ring;
}

/** Ancestors from the core down to the node itself. */
export function pathOf(node) {
  const path = [];
  for (let n = node; n; n = n.parentNode) path.unshift(n);
  return path;
}

export function coreOf(node) {
  return pathOf(node)[0];
}

/** The ring the number keys act on: the selection's children, else its siblings. */
export function ringParent(selected) {
  if (!selected) return null;
  return selected.children.length ? selected : selected.parentNode;
}

export function ringOf(tree, selected) {
  const parent = ringParent(selected);
  return parent ? parent.children : tree.roots;
}

export const LEVEL_NAMES = ["core", "secondary", "tertiary"];

/** Valence/arousal of a node, inherited from the nearest ancestor that has them. */
export function affectOf(node) {
  for (let n = node; n; n = n.parentNode) {
    if (typeof n.valence === "number" && typeof n.arousal === "number") {
      return { valence: n.valence, arousal: n.arousal, from: n };
    }
  }
  return null;
}

// Points further apart than this on the -1..1 pad are flagged (about a third of the
// diagonal): far enough that a mis-click or a mis-chosen feeling is the likely cause.
export const AFFECT_MISMATCH = 0.9;

export function affectDistance(a, b) {
  return Math.hypot(a.valence - b.valence, a.arousal - b.arousal);
}
