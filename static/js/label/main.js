// The labelling page (templates/labelling/label.html): wiring and boot only. The page's
// state is in state.js, drawing in render.js, the annotator's choice in choice.js, the clip
// flow (lease, show, submit, undo) in flow.js and the keyboard in keys.js; this module
// connects the widgets' events and the page's controls to them, then shows the first clip.

import {
  closeSkipMenu,
  goUp,
  openSkipMenu,
  pickNode,
  setAutoplay,
  setIntensity,
  toggleUnsure,
} from "./choice.js";
import {
  advance,
  playContext,
  playFromStart,
  submit,
  togglePlay,
  undo,
  visibleMs,
} from "./flow.js";
import { onKeyDown } from "./keys.js";
import { renderAffectHint, renderAll, renderTime, renderTransport } from "./render.js";
import { $, app, pad, player, state, tree, wheel } from "./state.js";

function wire() {
  player.addEventListener("state", renderTransport);
  player.addEventListener("time", (event) => renderTime(event.detail));
  wheel.addEventListener("pick", (event) => pickNode(tree.byKey.get(event.detail)));
  if (pad) {
    $("pad-card").hidden = false;
    pad.addEventListener("change", renderAffectHint);
    $("btn-pad-clear").addEventListener("click", () => pad.set(null));
  }
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("pointerdown", () => player.unlockAudio(), { capture: true });
  // After a mouse click the focus goes back to the page, so Space plays again instead of
  // pressing the clicked button a second time. Keyboard activation keeps its focus.
  app.addEventListener("click", (event) => {
    const control = event.target.closest("button");
    if (control && event.detail > 0 && !control.closest("dialog, .alerts, #skip-menu")) {
      app.focus({ preventScroll: true });
    }
  });
  // The ring, intensity and skip buttons are rebuilt by render.js: one listener per container.
  $("ring").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (button) pickNode(tree.byKey.get(button.dataset.key));
  });
  $("intensity").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-intensity]");
    if (button) setIntensity(button.dataset.intensity);
  });
  $("skip-menu").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-reason]");
    if (!button) return;
    closeSkipMenu({ refocus: true });
    submit({ skipReason: button.dataset.reason });
  });
  $("btn-play").addEventListener("click", () => togglePlay());
  $("btn-replay").addEventListener("click", () => playFromStart());
  $("btn-slower").addEventListener("click", () => player.changeSpeed(-1));
  $("btn-faster").addEventListener("click", () => player.changeSpeed(1));
  $("btn-zoom-out").addEventListener("click", () => player.changeZoom(-1));
  $("btn-zoom-in").addEventListener("click", () => player.changeZoom(1));
  $("btn-before").addEventListener("click", () => playContext("previous"));
  $("btn-after").addEventListener("click", () => playContext("next"));
  $("autoplay").addEventListener("change", (event) => setAutoplay(event.target.checked));
  $("btn-unsure").addEventListener("click", toggleUnsure);
  $("btn-skip").addEventListener("click", () =>
    state.skipOpen ? closeSkipMenu({ refocus: true }) : openSkipMenu(),
  );
  $("btn-submit").addEventListener("click", () => submit());
  $("btn-up").addEventListener("click", goUp);
  $("btn-undo").addEventListener("click", () => undo());
  $("btn-help").addEventListener("click", () => $("help").showModal());
  $("btn-check-again").addEventListener("click", () => {
    state.exhausted = false;
    advance();
  });
  document.addEventListener("visibilitychange", () => {
    // Time spent counts only while the page is visible.
    if (!state.current || state.phase !== "labelling") return;
    if (document.hidden) {
      state.current.visibleMs = visibleMs(state.current);
      state.shownAt = null;
    } else {
      state.shownAt = performance.now();
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (state.pendingSubmits > 0) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
}

wire();
renderAll();
app.focus({ preventScroll: true });
advance();
