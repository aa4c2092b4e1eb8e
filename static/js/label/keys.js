// The labelling page's keyboard: one document-level keydown handler (main.js installs it).
// It decides whether a key press is a command at all (a held key, a text field, a focused
// control, the help dialog), then looks the key up: in the skip menu the digits choose a
// reason; otherwise the command table below, and then the feeling keys of the ring on
// screen. The keys are listed for annotators in the help dialog (templates/labelling/
// label.html) and in docs/annotator.md.

import {
  clearChoice,
  closeSkipMenu,
  goUp,
  openSkipMenu,
  pickByKey,
  setAutoplay,
  setIntensity,
  toggleUnsure,
} from "./choice.js";
import { playContext, playFromStart, submit, togglePlay, undo } from "./flow.js";
import { $, INTENSITY_KEYS, app, config, pad, player, state } from "./state.js";

// While a clip is being labelled, by `event.key` (lower-cased when it is one character).
// Each command gets the key press's time, which submit records. `v` exists only when the
// project asks for the valence/arousal pad.
const COMMANDS = new Map([
  [" ", () => togglePlay()],
  ["r", () => playFromStart()],
  [",", () => player.changeSpeed(-1)],
  [".", () => player.changeSpeed(1)],
  ["-", () => player.changeZoom(-1)],
  ["=", () => player.changeZoom(1)],
  ["+", () => player.changeZoom(1)],
  ["[", () => playContext("previous")],
  ["]", () => playContext("next")],
  ["a", () => setAutoplay(!state.autoplay)],
  ...Object.entries(INTENSITY_KEYS).map(([key, value]) => [key, () => setIntensity(value)]),
  ["u", () => toggleUnsure()],
  ["s", () => openSkipMenu()],
  ...(pad ? [["v", () => pad.area.focus()]] : []),
  ["Enter", (at) => submit({ at })],
  ["Backspace", () => goUp()],
  ["Escape", () => clearChoice()],
]);

function isTextField(el) {
  return Boolean(el?.closest?.("input:not([type=checkbox]), textarea, select, [contenteditable]"));
}

export function onKeyDown(event) {
  player.unlockAudio();
  // A held key repeats: one press is one command (the pad's arrows handle their own).
  if (event.defaultPrevented || event.isComposing || event.repeat) return;
  const help = $("help");
  if (help.open) {
    if (event.key === "?") {
      help.close();
      event.preventDefault();
    }
    return;
  }
  const target = event.target;
  if (isTextField(target)) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  // On a focused control, Enter and Space activate it, as everywhere else.
  const onControl = target !== app && target?.closest?.("button, a, summary, input");
  if (onControl && (key === "Enter" || key === " ")) return;

  if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && key === "z") {
    event.preventDefault();
    undo();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;

  const handled = handleKey(key, event.timeStamp);
  if (handled) event.preventDefault();
}

/** Run the command for `key`; true when there was one (the browser's default is then off). */
function handleKey(key, at) {
  // Help and undo work in every phase, with or without a clip on screen.
  if (key === "?") {
    $("help").showModal();
    return true;
  }
  if (key === "z") {
    undo();
    return true;
  }
  if (state.phase !== "labelling") return false;
  if (state.skipOpen) return handleSkipMenuKey(key, at);
  const command = COMMANDS.get(key);
  if (command) {
    command(at);
    return true;
  }
  return pickByKey(key);
}

/** In the open skip menu: Escape or S closes it, digit n skips with the n-th reason. */
function handleSkipMenuKey(key, at) {
  if (key === "Escape" || key === "s") {
    closeSkipMenu({ refocus: true });
    return true;
  }
  const index = Number.parseInt(key, 10);
  const reason = config.skip_reasons[index - 1];
  if (reason && /^[1-9]$/.test(key)) {
    closeSkipMenu({ refocus: true });
    submit({ skipReason: reason.value, at });
    return true;
  }
  return false;
}
