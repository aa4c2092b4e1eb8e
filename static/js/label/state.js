// The labelling page's state: what is fixed when the page loads (the server's config, the
// taxonomy tree, the page's elements and widgets) and the one mutable record, `state`, that
// the other modules read and change. It imports only the widgets and the taxonomy, never the
// modules that use it: rendering (render.js), the annotator's choice (choice.js), the clip
// flow (flow.js) and the keys (keys.js) all stand on it without an import cycle. The widgets
// report through events that main.js wires.

import { AffectPad } from "./pad.js";
import { ClipPlayer } from "./player.js";
import { buildTree } from "./taxonomy.js";
import { Wheel } from "./wheel.js";

// Emitted by templates/labelling/label.html with json_script (the CSP allows no inline script).
export const config = JSON.parse(document.getElementById("emoloop-config").textContent);
export const settings = config.settings || {};
export const $ = (id) => document.getElementById(id);
export const app = $("labeller");
export const tree = buildTree(config.taxonomy.nodes);
export const INTENSITY_KEYS = { q: "low", w: "medium", e: "high" };
const AUTOPLAY_KEY = "emoloop:autoplay";

export const player = new ClipPlayer({ waveContainer: $("waveform") });
export const wheel = new Wheel($("wheel"), tree);
export const pad = settings.dimensional ? new AffectPad($("pad-card")) : null;

export const state = {
  current: null, // PreparedClip on screen
  ready: [], // PreparedClips waiting (prefetched, or put aside by an undo)
  prefetching: null, // Promise of the prefetch in flight
  exhausted: false, // the server said 204: nothing more for now
  handoffEmpty: false, // the last submit's answer said no next clip (read once, by the prefetch)
  phase: "loading", // loading | labelling | done
  selected: null, // taxonomy node
  intensity: "",
  unsure: false,
  skipOpen: false,
  shownAt: 0, // performance.now() when the current clip became visible
  submitTimes: [],
  submitted: 0,
  pendingSubmits: 0,
  submitChain: Promise.resolve(),
  autoplay: readAutoplay(),
  suggestionShown: false,
  transitionFromSubmit: false,
};

// --- Autoplay preference: this browser's choice, else the project's default -------------

function readAutoplay() {
  try {
    const stored = localStorage.getItem(AUTOPLAY_KEY);
    if (stored === "1" || stored === "0") return stored === "1";
  } catch {
    // Storage may be unavailable (private mode); the project default applies.
  }
  return settings.autoplay !== false;
}

export function storeAutoplay(on) {
  state.autoplay = on;
  try {
    localStorage.setItem(AUTOPLAY_KEY, on ? "1" : "0");
  } catch {
    // Not persisted; still applies to this page.
  }
}
