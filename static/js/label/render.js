// Everything the labelling page draws, from `state` (state.js) to the DOM: the messages
// (live region, hint line, alerts), the clip's facts and the model's suggestion, the picker
// ring and breadcrumbs, intensity and skip controls, the session counter and the transport.
// Rendering changes no state, except `state.suggestionShown`, which records what was drawn so
// the submit reports it truthfully. The ring, intensity and skip buttons built here carry
// data-* attributes and main.js handles their clicks by delegation, so this module imports
// no action (an alert's button runs the callback it is given).

import { describeAffect } from "./pad.js";
import { SPEEDS, ZOOMS } from "./player.js";
import {
  AFFECT_MISMATCH,
  LEVEL_NAMES,
  affectDistance,
  affectOf,
  pathOf,
  ringOf,
} from "./taxonomy.js";
import { $, INTENSITY_KEYS, config, pad, player, settings, state, tree, wheel } from "./state.js";

// Labels per minute are computed over this many recent submits.
const PACE_WINDOW = 10;

// --- Messages ---------------------------------------------------------------------------

export function announce(text) {
  // Re-setting the same text would not be read again; clear first.
  const status = $("status");
  status.textContent = "";
  requestAnimationFrame(() => {
    status.textContent = text;
  });
}

export function hint(text, kind = "") {
  const el = $("hint");
  el.textContent = text;
  el.className = `hint ${kind}`;
}

/** A visible error that stays until dismissed; `action` adds a button ({label, run}). */
export function alertError(text, action = null) {
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

export function showWaveMessage(text) {
  const el = $("wave-message");
  el.textContent = text;
  el.hidden = false;
}

// --- The clip and the choice ------------------------------------------------------------

export function renderAll() {
  renderPicker();
  renderOptions();
  renderSkipMenu();
  renderSession();
  renderTransport();
  renderAffectHint();
}

export function renderClipInfo(prepared) {
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

export function renderPicker() {
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

export function renderOptions() {
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
      group.append(button);
    }
  }
  for (const button of group.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.intensity === state.intensity));
  }
  $("btn-unsure").setAttribute("aria-pressed", String(state.unsure));
}

export function renderSkipMenu() {
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
      menu.append(button);
    });
  }
  menu.hidden = !state.skipOpen;
  $("btn-skip").setAttribute("aria-expanded", String(state.skipOpen));
}

export function renderSession() {
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

export function renderTransport() {
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

export function renderTime(t) {
  const total = state.current?.duration ?? 0;
  $("time").textContent = `${t.toFixed(1)} / ${total.toFixed(1)} s`;
}

export function renderAffectHint() {
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

export function formatSeconds(s) {
  return `${(Number(s) || 0).toFixed(1)} s`;
}

