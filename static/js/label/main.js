// The labelling page: one clip at a time, labelled on the feelings wheel from the keyboard.
//
// Flow: the page leases a clip (POST next) and prepares it (audio, peaks, decode); while the
// annotator works on it a second clip is leased and prepared. Enter sends the label in the
// background (retried with the same client_id, so a repeat is harmless) and shows the
// prepared clip at once. The server allows two active leases per annotator, which is exactly
// the clip on screen plus the prepared one; the next prefetch therefore waits until the
// previous submit has been recorded.

import { ApiError, postJson, withRetry } from "./api.js";
import { PreparedClip } from "./clips.js";
import { ClipPlayer, SPEEDS, ZOOMS } from "./player.js";
import { AffectPad, describeAffect } from "./pad.js";
import {
  AFFECT_MISMATCH,
  LEVEL_NAMES,
  affectDistance,
  affectOf,
  buildTree,
  pathOf,
  ringOf,
} from "./taxonomy.js";
import { Wheel } from "./wheel.js";

const config = JSON.parse(document.getElementById("emoloop-config").textContent);
const settings = config.settings || {};
const $ = (id) => document.getElementById(id);
const app = $("labeller");
const tree = buildTree(config.taxonomy.nodes);
const INTENSITY_KEYS = { q: "low", w: "medium", e: "high" };
const AUTOPLAY_KEY = "emoloop:autoplay";
// Labels per minute are computed over this many recent submits.
const PACE_WINDOW = 10;

const state = {
  current: null, // PreparedClip on screen
  ready: [], // PreparedClips waiting (prefetched, or put aside by an undo)
  prefetching: null, // Promise of the prefetch in flight
  exhausted: false, // the server said 204: nothing more for now
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

const player = new ClipPlayer({ waveContainer: $("waveform"), onTime: renderTime });
player.addEventListener("state", renderTransport);
const wheel = new Wheel($("wheel"), tree, { onPick: (key) => pickNode(tree.byKey.get(key)) });
const pad = settings.dimensional ? new AffectPad($("pad-card")) : null;
if (pad) {
  $("pad-card").hidden = false;
  pad.addEventListener("change", renderAffectHint);
  $("btn-pad-clear").addEventListener("click", () => pad.set(null));
}

// --- Messages ---------------------------------------------------------------------------

function announce(text) {
  // Re-setting the same text would not be read again; clear first.
  const status = $("status");
  status.textContent = "";
  requestAnimationFrame(() => {
    status.textContent = text;
  });
}

function hint(text, kind = "") {
  const el = $("hint");
  el.textContent = text;
  el.className = `hint ${kind}`;
}

/** A visible error that stays until dismissed; `action` adds a button ({label, run}). */
function alertError(text, action = null) {
  const box = document.createElement("div");
  box.className = "alert";
  const message = document.createElement("span");
  message.textContent = text;
  box.append(message);
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn small";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      box.remove();
      action.run();
    });
    box.append(button);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "btn small ghost";
  close.textContent = "Dismiss";
  close.setAttribute("aria-label", `Dismiss: ${text}`);
  close.addEventListener("click", () => box.remove());
  box.append(close);
  $("alerts").append(box);
  while ($("alerts").children.length > 4) $("alerts").firstElementChild.remove();
}

function setPhase(phase) {
  state.phase = phase;
  app.dataset.state = phase;
  app.setAttribute("aria-busy", phase === "loading" ? "true" : "false");
  $("done").hidden = phase !== "done";
}

// --- Leasing and preparing clips --------------------------------------------------------

function heldLeases() {
  return new Set([state.current, ...state.ready].filter(Boolean).map((p) => p.leaseId));
}

/** POST next; resolves to a PreparedClip (loading started) or null when nothing is left. */
async function leaseNext() {
  const answer = await withRetry(() => postJson(config.urls.next), {
    maxTries: 4,
    onRetry: (_e, n) => hint(`No answer from the server; asking again (${n})…`, "warn"),
  });
  if (answer.status === 204 || !answer.data) return null;
  const ticket = answer.data;
  if (heldLeases().has(ticket.lease.id)) {
    // The server hands back a lease we already hold when we are at its limit of two (e.g.
    // after a reload): nothing new to prepare now.
    for (const p of [state.current, ...state.ready]) {
      if (p && p.leaseId === ticket.lease.id) p.lease = ticket.lease;
    }
    return undefined;
  }
  return startPreparing(ticket);
}

function startPreparing(ticket) {
  const prepared = new PreparedClip(ticket);
  prepared.loading = prepared.load().then(
    () => prepared,
    (error) => {
      prepared.loadError = error;
      return prepared;
    },
  );
  return prepared;
}

/** Keep one clip prepared behind the one on screen. */
function ensurePrefetch() {
  if (state.prefetching || state.ready.length || state.exhausted) return state.prefetching;
  state.prefetching = (async () => {
    // The lease of the clip just submitted must be closed first, or the server (at its
    // limit of two) would hand that one back instead of a new clip.
    await state.submitChain;
    try {
      const prepared = await leaseNext();
      if (prepared === null) state.exhausted = true;
      else if (prepared) state.ready.push(prepared);
    } catch (error) {
      hint(`Could not get the next clip ready: ${error.message}`, "warn");
    } finally {
      state.prefetching = null;
    }
  })();
  return state.prefetching;
}

/** Show the next clip: the prepared one, else lease one now. */
async function advance() {
  setPhase("loading");
  for (;;) {
    let prepared = state.ready.shift();
    if (!prepared && state.prefetching) {
      await state.prefetching;
      prepared = state.ready.shift();
    }
    if (!prepared) {
      await state.submitChain;
      try {
        prepared = await leaseNext();
      } catch (error) {
        showLoadFailure(error);
        return;
      }
      if (!prepared) {
        showDone();
        return;
      }
    }
    // A clip prepared long ago may have lost its lease: do not make anyone label it.
    if (!prepared.revising && prepared.expiresAt && prepared.expiresAt < Date.now() + 5000) {
      player.release(prepared);
      continue;
    }
    await display(prepared);
    return;
  }
}

function showLoadFailure(error) {
  setPhase("loading");
  $("clip-title").textContent = "No clip";
  alertError(`Could not get a clip: ${error.message}`, {
    label: "Try again",
    run: () => advance(),
  });
}

function showDone() {
  player.teardown();
  state.current = null;
  setPhase("done");
  $("clip-title").textContent = "No clip left";
  announce("There is no clip left for you in this project.");
}

// --- Showing a clip ---------------------------------------------------------------------

async function display(prepared) {
  player.teardown();
  state.current = prepared;
  await prepared.loading;
  if (state.current !== prepared) return;
  const clip = prepared.clip;
  state.exhausted = false;
  restoreChoice(prepared);
  renderClipInfo(prepared);
  $("wave-message").hidden = true;
  if (prepared.loadError) {
    setPhase("labelling");
    showWaveMessage(
      `The audio could not be loaded (${prepared.loadError.message}). ` +
        "Skip this clip with S and choose a reason.",
    );
  } else {
    try {
      await player.show(prepared);
    } catch (error) {
      if (error.name === "AbortError") return;
      showWaveMessage(`The audio cannot be played here: ${error.message}`);
    }
    if (state.current !== prepared) return;
    if (prepared.warning) showWaveMessage(prepared.warning);
    setPhase("labelling");
  }
  app.dataset.clipId = String(clip.id);
  markPlayable(clip.id);
  state.shownAt = document.hidden ? null : performance.now();
  renderAll();
  announce(
    `${prepared.revising ? "Revising clip" : "Clip"} ${clip.id}, ${formatSeconds(prepared.duration)}.`,
  );
  if (state.autoplay && !prepared.loadError) playFromStart({ auto: true });
  ensurePrefetch();
}

/** Milliseconds the clip has been on screen while the page was visible. */
function visibleMs(prepared) {
  const running = state.shownAt === null ? 0 : performance.now() - state.shownAt;
  return prepared.visibleMs + Math.max(0, running);
}

function markPlayable(clipId) {
  performance.mark("emoloop:playable", { detail: { clip: clipId } });
  if (state.transitionFromSubmit) {
    performance.measure("emoloop:submit-to-playable", {
      start: "emoloop:submit",
      end: "emoloop:playable",
      detail: { clip: clipId },
    });
  }
  state.transitionFromSubmit = false;
}

function showWaveMessage(text) {
  const el = $("wave-message");
  el.textContent = text;
  el.hidden = false;
}

async function playFromStart({ auto = false } = {}) {
  try {
    await player.playFromStart();
  } catch (error) {
    if (error.name === "NotAllowedError") {
      hint(
        auto
          ? "The browser blocked autoplay: press Space to play."
          : "The browser refused to play: press Space to try again.",
        "warn",
      );
    } else if (error.name !== "AbortError") {
      hint(`Playback failed: ${error.message}`, "warn");
    }
  }
}

// --- Choosing ---------------------------------------------------------------------------

function restoreChoice(prepared) {
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

function saveChoice() {
  if (!state.current) return;
  state.current.ui = {
    selected: state.selected,
    intensity: state.intensity,
    unsure: state.unsure,
    point: pad ? pad.point : null,
  };
}

function pickNode(node) {
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

function pickByKey(key) {
  const ring = ringOf(tree, state.selected);
  const node = ring.find((n) => n.key_ === key);
  if (node) pickNode(node);
  return Boolean(node);
}

function goUp() {
  if (!state.selected) return;
  state.selected = state.selected.parentNode;
  renderPicker();
  renderAffectHint();
  announce(state.selected ? `Back to ${state.selected.name}.` : "Back to the core feelings.");
}

function setIntensity(value) {
  state.intensity = state.intensity === value ? "" : value;
  renderOptions();
  const label = config.intensities.find((i) => i.value === state.intensity)?.label;
  announce(label ? `Intensity ${label.toLowerCase()}.` : "Intensity cleared.");
}

function toggleUnsure() {
  state.unsure = !state.unsure;
  renderOptions();
  announce(state.unsure ? "Marked unsure." : "Unsure cleared.");
}

function openSkipMenu() {
  if (state.phase !== "labelling") return;
  state.skipOpen = true;
  renderSkipMenu();
  $("skip-menu").querySelector("button")?.focus();
}

function closeSkipMenu({ refocus = false } = {}) {
  const wasOpen = state.skipOpen;
  state.skipOpen = false;
  renderSkipMenu();
  if (wasOpen && refocus) app.focus({ preventScroll: true });
}

// --- Submitting -------------------------------------------------------------------------

function listenFacts(prepared) {
  return {
    play_count: prepared.listen.plays,
    heard_to_end: prepared.listen.heardToEnd,
  };
}

/** Send the choice and show the next clip; `at` is the key press's time (event.timeStamp). */
function submit({ skipReason = "", at = performance.now() } = {}) {
  const prepared = state.current;
  if (state.phase !== "labelling" || !prepared) return;
  if (!skipReason) {
    if (!state.selected) {
      hint("Choose a feeling first (its number), or skip the clip with S.", "warn");
      return;
    }
    if (settings.require_full_listen && !prepared.listen.heardToEnd && !prepared.loadError) {
      hint(
        "This project asks you to hear the whole clip before labelling it. " +
          "Press Space to play it to the end.",
        "warn",
      );
      announce("Not submitted: listen to the whole clip first.");
      return;
    }
  }
  performance.mark("emoloop:submit", { startTime: at, detail: { clip: prepared.id } });
  state.transitionFromSubmit = true;
  const spent = Math.round(visibleMs(prepared));
  const point = pad ? pad.point : null;
  const payload = {
    lease: prepared.leaseId,
    client_id: crypto.randomUUID(),
    intensity: skipReason ? "" : state.intensity,
    unsure: skipReason ? false : state.unsure,
    time_spent_ms: Math.max(0, spent),
    ...listenFacts(prepared),
    suggestion_shown: state.suggestionShown,
    valence: !skipReason && point ? point.valence : null,
    arousal: !skipReason && point ? point.arousal : null,
  };
  if (skipReason) payload.skip_reason = skipReason;
  else payload.node = state.selected.key;
  const what = skipReason
    ? `skipped (${config.skip_reasons.find((r) => r.value === skipReason)?.label ?? skipReason})`
    : pathOf(state.selected)
        .map((n) => n.name)
        .join(" › ");
  queueSubmit(prepared, payload, what);
  state.submitTimes.push(Date.now());
  player.teardown();
  player.release(prepared);
  state.current = null;
  advance();
}

function queueSubmit(prepared, payload, what) {
  state.pendingSubmits += 1;
  renderSession();
  const run = state.submitChain.then(() => sendSubmit(prepared, payload, what));
  state.submitChain = run.catch(() => {});
  return run;
}

async function sendSubmit(prepared, payload, what) {
  try {
    const answer = await withRetry(() => postJson(config.urls.submit, payload), {
      maxTries: 6,
      onRetry: (_error, n, delay) =>
        hint(
          `Saving clip ${prepared.id} failed (no answer); trying again in ` +
            `${Math.round(delay / 100) / 10} s (${n})…`,
          "warn",
        ),
    });
    if (typeof answer.data?.session?.submitted === "number") {
      state.submitted = answer.data.session.submitted;
    } else if (!prepared.revising) {
      // A revision replaces a label already counted.
      state.submitted += 1;
    }
    announce(`Saved clip ${prepared.id}: ${what}.`);
    if ($("hint").classList.contains("warn") && $("hint").textContent.startsWith("Saving clip")) {
      hint("");
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      alertError(`Clip ${prepared.id} was not saved: ${error.message}`);
    } else if (error instanceof ApiError && error.transient) {
      alertError(`Clip ${prepared.id} could not be saved: ${error.message}`, {
        label: "Retry",
        run: () => queueSubmit(prepared, payload, what),
      });
    } else {
      alertError(`Clip ${prepared.id} was not saved: ${error.message}`);
    }
  } finally {
    state.pendingSubmits -= 1;
    renderSession();
  }
}

async function undo() {
  if (state.phase === "done" && !state.submitTimes.length) return;
  hint("Undoing your last submit…");
  await state.submitChain;
  let answer;
  try {
    answer = await postJson(config.urls.undo);
  } catch (error) {
    hint("");
    alertError(`Undo failed: ${error.message}`);
    return;
  }
  if (answer.status === 204 || !answer.data) {
    hint("Nothing to undo.", "warn");
    return;
  }
  hint("");
  const revising = startPreparing(answer.data);
  // The clip on screen waits, with its choice so far, until the revision is submitted.
  const current = state.current;
  if (current) {
    saveChoice();
    current.visibleMs = visibleMs(current);
    player.teardown();
    state.ready.unshift(current);
  }
  state.current = null;
  setPhase("loading");
  await display(revising);
}

// --- Rendering --------------------------------------------------------------------------

function renderAll() {
  renderPicker();
  renderOptions();
  renderSkipMenu();
  renderSession();
  renderTransport();
  renderAffectHint();
}

function renderClipInfo(prepared) {
  const clip = prepared.clip;
  $("clip-title").textContent = `Clip ${clip.id} · ${formatSeconds(prepared.duration)}`;
  const badge = $("revising-badge");
  badge.hidden = !prepared.revising;
  if (prepared.revising) {
    const was = prepared.revising.node
      ? pathOf(tree.byKey.get(prepared.revising.node) ?? { name: prepared.revising.node })
          .map((n) => n.name)
          .join(" › ")
      : `skipped (${prepared.revising.skip_reason})`;
    badge.textContent = `Revising your last label — was: ${was}`;
  }
  const transcript = $("transcript");
  transcript.textContent = clip.transcript || "No transcript.";
  transcript.classList.toggle("muted", !clip.transcript);
  transcript.lang = clip.language || "";
  const facts = $("facts");
  facts.replaceChildren();
  const rows = [
    ["Language", clip.language],
    ["Dialect", clip.dialect],
    ["Channel", clip.channel],
    ...Object.entries(clip.metadata || {})
      .filter(([, v]) => ["string", "number"].includes(typeof v))
      .slice(0, 6),
  ];
  for (const [name, value] of rows) {
    if (value === "" || value === null || value === undefined) continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    facts.append(dt, dd);
  }
  // Context playback: only for clips cut from a longer recording.
  const ctx = clip.context || {};
  const hasContext = settings.context_playback && (ctx.previous_audio_url || ctx.next_audio_url);
  $("context-group").hidden = !hasContext;
  $("btn-before").disabled = !ctx.previous_audio_url;
  $("btn-after").disabled = !ctx.next_audio_url;
  renderSuggestion(prepared);
}

function renderSuggestion(prepared) {
  const card = $("suggestion-card");
  const suggestion = prepared.suggestion;
  // Blind mode shows nothing about the model, and reports that truthfully.
  const show = Boolean(settings.assisted && suggestion && suggestion.top);
  state.suggestionShown = show;
  card.hidden = !show;
  if (!show) return;
  const top = tree.byKey.get(suggestion.top);
  $("suggestion-top").textContent = top
    ? pathOf(top)
        .map((n) => n.name)
        .join(" › ")
    : suggestion.top;
  $("suggestion-version").textContent = String(suggestion.model_version ?? "?");
  const bars = $("suggestion-bars");
  bars.replaceChildren();
  const core = Object.entries(suggestion.probabilities?.core || {})
    .sort((a, b) => b[1] - a[1])
    .slice(0, 4);
  for (const [key, p] of core) {
    const node = tree.byKey.get(key);
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = node ? node.name : key;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.round(p * 100)}%`;
    fill.style.background = node?.colour || "#94a3b8";
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "pct";
    value.textContent = `${Math.round(p * 100)}%`;
    li.append(name, bar, value);
    bars.append(li);
  }
}

function renderPicker() {
  const selected = state.selected;
  const ring = ringOf(tree, selected);
  const list = $("ring");
  // Keyboard users who pressed a ring item keep their focus in the (rebuilt) ring.
  const hadFocus = list.contains(document.activeElement);
  list.replaceChildren();
  for (const node of ring) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ring-item";
    button.dataset.key = node.key;
    button.style.setProperty("--swatch", node.colour || "#cbd5e1");
    const isSelected = selected && selected.key === node.key;
    button.setAttribute("aria-pressed", isSelected ? "true" : "false");
    if (node.key_) button.setAttribute("aria-keyshortcuts", node.key_);
    const key = document.createElement("kbd");
    key.textContent = node.key_ ?? "";
    key.setAttribute("aria-hidden", "true");
    const dot = document.createElement("span");
    dot.className = "swatch";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = node.name;
    button.append(key, dot, name);
    if (node.children.length) {
      const more = document.createElement("span");
      more.className = "more";
      more.textContent = `${node.children.length} ›`;
      more.setAttribute("aria-label", `${node.children.length} finer feelings`);
      button.append(more);
    }
    if (node.description) button.title = node.description;
    li.append(button);
    list.append(li);
  }
  if (hadFocus) {
    const target =
      list.querySelector('button[aria-pressed="true"]') ?? list.querySelector("button");
    target?.focus();
  }
  list.setAttribute(
    "aria-label",
    ring === tree.roots ? "Core feelings" : `Feelings within ${ring[0]?.parentNode?.name ?? ""}`,
  );
  const crumbs = $("crumbs");
  crumbs.replaceChildren();
  const all = document.createElement("li");
  all.textContent = "Core";
  crumbs.append(all);
  for (const node of selected ? pathOf(selected) : []) {
    const li = document.createElement("li");
    li.textContent = node.name;
    li.style.setProperty("--swatch", node.colour || "#cbd5e1");
    crumbs.append(li);
  }
  const text = $("selection");
  if (selected) {
    const level = LEVEL_NAMES[selected.level] ?? `level ${selected.level}`;
    text.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = pathOf(selected)
      .map((n) => n.name)
      .join(" › ");
    text.append("Chosen: ", strong, ` (${level}). Enter submits it.`);
  } else {
    text.textContent = "Nothing chosen yet: press a number, or click the wheel.";
  }
  $("btn-up").disabled = !selected;
  wheel.update(selected, ring);
}

function renderOptions() {
  const group = $("intensity");
  if (!group.childElementCount) {
    const label = document.createElement("span");
    label.className = "group-label";
    label.textContent = "Intensity";
    group.append(label);
    const keys = Object.entries(INTENSITY_KEYS);
    for (const option of config.intensities) {
      const key = keys.find(([, value]) => value === option.value)?.[0] ?? "";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn toggle";
      button.dataset.intensity = option.value;
      button.setAttribute("aria-keyshortcuts", key.toUpperCase());
      button.append(option.label, " ");
      const kbd = document.createElement("kbd");
      kbd.textContent = key.toUpperCase();
      button.append(kbd);
      button.addEventListener("click", () => setIntensity(option.value));
      group.append(button);
    }
  }
  for (const button of group.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.intensity === state.intensity));
  }
  $("btn-unsure").setAttribute("aria-pressed", String(state.unsure));
}

function renderSkipMenu() {
  const menu = $("skip-menu");
  if (!menu.childElementCount) {
    config.skip_reasons.forEach((reason, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "skip-item";
      button.dataset.reason = reason.value;
      button.setAttribute("aria-keyshortcuts", String(i + 1));
      const kbd = document.createElement("kbd");
      kbd.textContent = String(i + 1);
      button.append(kbd, ` ${reason.label}`);
      button.addEventListener("click", () => {
        closeSkipMenu({ refocus: true });
        submit({ skipReason: reason.value });
      });
      menu.append(button);
    });
  }
  menu.hidden = !state.skipOpen;
  $("btn-skip").setAttribute("aria-expanded", String(state.skipOpen));
}

function renderSession() {
  $("session-count").textContent = String(state.submitted);
  const times = state.submitTimes.slice(-PACE_WINDOW);
  const pace = $("session-pace");
  if (times.length >= 2) {
    const minutes = (times[times.length - 1] - times[0]) / 60000;
    const perMinute = minutes > 0 ? (times.length - 1) / minutes : 0;
    pace.textContent = `${perMinute.toFixed(1)} / min`;
  } else {
    pace.textContent = "– / min";
  }
  $("session-count").parentElement.classList.toggle("saving", state.pendingSubmits > 0);
}

function renderTransport() {
  const playing = player.isPlaying();
  $("play-label").textContent = playing ? "Pause" : "Play";
  $("speed").textContent = `${SPEEDS[player.speedIndex]}×`;
  const zoom = ZOOMS[player.zoomIndex];
  $("zoom").textContent = zoom ? `${zoom} px/s` : "fit";
  $("autoplay").checked = state.autoplay;
  const listen = state.current?.listen;
  const el = $("listen");
  if (!listen || !listen.plays) {
    el.textContent = "Not played yet";
  } else {
    el.textContent =
      `Played ${listen.plays}× · ` + (listen.heardToEnd ? "heard to the end ✓" : "not heard to the end");
  }
  el.classList.toggle("ok", Boolean(listen?.heardToEnd));
  el.dataset.heard = String(Boolean(listen?.heardToEnd));
  el.dataset.plays = String(listen?.plays ?? 0);
  if (listen?.covered) {
    const heard = listen.covered.reduce((sum, bin) => sum + bin, 0) / listen.covered.length;
    el.dataset.covered = heard.toFixed(3);
  }
  if (listen?.heardToEnd && $("hint").textContent.startsWith("This project asks you to hear")) {
    hint("");
  }
}

function renderTime(t) {
  const total = state.current?.duration ?? 0;
  $("time").textContent = `${t.toFixed(1)} / ${total.toFixed(1)} s`;
}

function renderAffectHint() {
  if (!pad) return;
  const el = $("pad-hint");
  const point = pad.point;
  const affect = state.selected ? affectOf(state.selected) : null;
  if (point && affect && affectDistance(point, affect) > AFFECT_MISMATCH) {
    el.textContent =
      `${state.selected.name} is usually ${describeAffect(affect).split(" (")[0]}; ` +
      `your point is ${describeAffect(point).split(" (")[0]}. Intended?`;
  } else {
    el.textContent = "";
  }
}

function formatSeconds(s) {
  return `${(Number(s) || 0).toFixed(1)} s`;
}

// --- Autoplay preference ----------------------------------------------------------------

function readAutoplay() {
  try {
    const stored = localStorage.getItem(AUTOPLAY_KEY);
    if (stored === "1" || stored === "0") return stored === "1";
  } catch {
    // Storage may be unavailable (private mode); the project default applies.
  }
  return settings.autoplay !== false;
}

function setAutoplay(on) {
  state.autoplay = on;
  try {
    localStorage.setItem(AUTOPLAY_KEY, on ? "1" : "0");
  } catch {
    // Not persisted; still applies to this page.
  }
  renderTransport();
  announce(on ? "Autoplay on." : "Autoplay off.");
}

// --- Keyboard ---------------------------------------------------------------------------

function isTextField(el) {
  return Boolean(el?.closest?.("input:not([type=checkbox]), textarea, select, [contenteditable]"));
}

function onKeyDown(event) {
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

function handleKey(key, at) {
  if (key === "?") {
    $("help").showModal();
    return true;
  }
  if (key === "z") {
    undo();
    return true;
  }
  if (state.phase !== "labelling") return false;
  if (state.skipOpen) {
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
  switch (key) {
    case " ":
      player.togglePlay().catch((error) => hint(`Playback failed: ${error.message}`, "warn"));
      return true;
    case "r":
      playFromStart();
      return true;
    case ",":
      player.changeSpeed(-1);
      return true;
    case ".":
      player.changeSpeed(1);
      return true;
    case "-":
      player.changeZoom(-1);
      return true;
    case "=":
    case "+":
      player.changeZoom(1);
      return true;
    case "[":
    case "]":
      playContext(key === "[" ? "previous" : "next");
      return true;
    case "a":
      setAutoplay(!state.autoplay);
      return true;
    case "q":
    case "w":
    case "e":
      setIntensity(INTENSITY_KEYS[key]);
      return true;
    case "u":
      toggleUnsure();
      return true;
    case "s":
      openSkipMenu();
      return true;
    case "v":
      if (pad) pad.area.focus();
      return Boolean(pad);
    case "Enter":
      submit({ at });
      return true;
    case "Backspace":
      goUp();
      return true;
    case "Escape":
      if (state.selected) {
        state.selected = null;
        renderPicker();
        announce("Choice cleared.");
      }
      app.focus({ preventScroll: true });
      return true;
    default:
      return pickByKey(key);
  }
}

async function playContext(which) {
  const ctx = state.current?.clip.context || {};
  const url = which === "previous" ? ctx.previous_audio_url : ctx.next_audio_url;
  if (!settings.context_playback || !url) {
    hint(`There is no utterance ${which === "previous" ? "before" : "after"} this one.`);
    return;
  }
  try {
    await player.playContext(url);
    announce(`Playing the utterance ${which === "previous" ? "before" : "after"} this clip.`);
  } catch (error) {
    hint(`Could not play the context: ${error.message}`, "warn");
  }
}

// --- Wiring -----------------------------------------------------------------------------

function wire() {
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
  $("ring").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (button) pickNode(tree.byKey.get(button.dataset.key));
  });
  $("btn-play").addEventListener("click", () =>
    player.togglePlay().catch((error) => hint(`Playback failed: ${error.message}`, "warn")),
  );
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
