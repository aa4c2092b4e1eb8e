// The annotator's choice for the clip on screen and the transitions that change it: the
// feeling (picked from the ring, by its key or on the wheel; up a level; cleared), intensity,
// "unsure", the skip menu and the autoplay preference. Each updates `state` (state.js),
// re-renders what it changed (render.js) and announces the result to screen readers. A clip
// that an undo puts aside keeps its choice so far (saveChoice, restoreChoice).

import {
  announce,
  hint,
  renderAffectHint,
  renderOptions,
  renderPicker,
  renderSkipMenu,
  renderTransport,
} from "./render.js";
import { $, app, config, pad, state, storeAutoplay, tree } from "./state.js";
import { pathOf, ringOf } from "./taxonomy.js";

export function restoreChoice(prepared) {
  const ui = prepared.ui;
  if (ui) {
    state.selected = ui.selected;
    state.intensity = ui.intensity;
    state.unsure = ui.unsure;
    if (pad) pad.set(ui.point);
  } else {
    const previous = prepared.revising?.node ? tree.byKey.get(prepared.revising.node) : null;
    state.selected = previous ?? null;
    state.intensity = "";
    state.unsure = false;
    if (pad) pad.set(null);
  }
  closeSkipMenu();
  hint("");
}

export function saveChoice() {
  if (!state.current) return;
  state.current.ui = {
    selected: state.selected,
    intensity: state.intensity,
    unsure: state.unsure,
    point: pad ? pad.point : null,
  };
}

export function pickNode(node) {
  if (!node || state.phase !== "labelling") return;
  state.selected = node;
  hint("");
  renderPicker();
  renderAffectHint();
  const path = pathOf(node)
    .map((n) => n.name)
    .join(" › ");
  announce(
    node.children.length
      ? `${path}. Enter to submit, or choose a finer feeling.`
      : `${path}. Enter to submit.`,
  );
}

export function pickByKey(key) {
  const ring = ringOf(tree, state.selected);
  const node = ring.find((n) => n.key_ === key);
  if (node) pickNode(node);
  return Boolean(node);
}

export function goUp() {
  if (!state.selected) return;
  state.selected = state.selected.parentNode;
  renderPicker();
  renderAffectHint();
  announce(state.selected ? `Back to ${state.selected.name}.` : "Back to the core feelings.");
}

/** Escape: forget the feeling chosen, and take the focus back from any control. */
export function clearChoice() {
  if (state.selected) {
    state.selected = null;
    renderPicker();
    announce("Choice cleared.");
  }
  app.focus({ preventScroll: true });
}

export function setIntensity(value) {
  state.intensity = state.intensity === value ? "" : value;
  renderOptions();
  const label = config.intensities.find((i) => i.value === state.intensity)?.label;
  announce(label ? `Intensity ${label.toLowerCase()}.` : "Intensity cleared.");
}

export function toggleUnsure() {
  state.unsure = !state.unsure;
  renderOptions();
  announce(state.unsure ? "Marked unsure." : "Unsure cleared.");
}

export function openSkipMenu() {
  if (state.phase !== "labelling") return;
  state.skipOpen = true;
  renderSkipMenu();
  $("skip-menu").querySelector("button")?.focus();
}

export function closeSkipMenu({ refocus = false } = {}) {
  const wasOpen = state.skipOpen;
  state.skipOpen = false;
  renderSkipMenu();
  if (wasOpen && refocus) app.focus({ preventScroll: true });
}

export function setAutoplay(on) {
  storeAutoplay(on);
  renderTransport();
  announce(on ? "Autoplay on." : "Autoplay off.");
}
