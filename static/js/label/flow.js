// The clip flow of the labelling page: one clip at a time, leased, prepared, shown, labelled
// and submitted; undo brings the last one back for revision. The playback commands that tell
// the annotator when the browser refuses (play, replay, the context utterances) are here too.
//
// Flow: the page leases a clip (POST next) and prepares it (audio, peaks, decode); while the
// annotator works on it a second clip is leased and prepared. Enter sends the label in the
// background (retried with the same client_id, so a repeat is harmless) and shows the
// prepared clip at once. The server allows two active leases per annotator, which is exactly
// the clip on screen plus the prepared one; the next prefetch therefore waits until the
// previous submit has been recorded.
//
// One request per label: the submit asks for the next clip too (`next: true`) and its answer
// carries that clip's lease, which becomes the prepared one. A retried submit (same
// client_id) gets the same lease back. Only when a submit brings no clip (refused, or the
// queue had nothing then) does the prefetch ask next on its own.
//
// bench/annotator_flow.py reads the "emoloop:submit-to-playable" measure made here.

import { ApiError, postJson, withRetry } from "./api.js";
import { restoreChoice, saveChoice } from "./choice.js";
import { PreparedClip } from "./clips.js";
import {
  alertError,
  announce,
  formatSeconds,
  hint,
  renderAll,
  renderClipInfo,
  renderSession,
  showWaveMessage,
} from "./render.js";
import { $, app, config, pad, player, settings, state } from "./state.js";
import { pathOf } from "./taxonomy.js";

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
  return acceptTicket(answer.data);
}

/** A leased clip from next or from a submit's answer: a PreparedClip (loading started), or
 * undefined when it is one the page already holds. */
function acceptTicket(ticket) {
  if (heldLeases().has(ticket.lease.id)) {
    // The server hands back a lease we already hold when we are at its limit of two (e.g.
    // after a reload or an undo): nothing new to prepare now.
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
    // limit of two) would hand that one back instead of a new clip. The submit's answer
    // usually brings the next clip itself (or says none is left): then nothing to ask.
    await state.submitChain;
    const answered = state.handoffEmpty;
    state.handoffEmpty = false;
    if (state.ready.length || state.exhausted || answered) {
      state.prefetching = null;
      return;
    }
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
export async function advance() {
  setPhase("loading");
  for (;;) {
    let prepared = state.ready.shift();
    if (!prepared && state.prefetching) {
      await state.prefetching;
      prepared = state.ready.shift();
    }
    if (!prepared) {
      await state.submitChain;
      // The submit just awaited may have brought the next clip with its answer.
      prepared = state.ready.shift();
    }
    if (!prepared) {
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
export function visibleMs(prepared) {
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

// --- Playing ----------------------------------------------------------------------------

export async function playFromStart({ auto = false } = {}) {
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

/** Space and the Play button: play or pause, saying why if the browser refuses. */
export function togglePlay() {
  player.togglePlay().catch((error) => hint(`Playback failed: ${error.message}`, "warn"));
}

export async function playContext(which) {
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

// --- Submitting -------------------------------------------------------------------------

function listenFacts(prepared) {
  return {
    play_count: prepared.listen.plays,
    heard_to_end: prepared.listen.heardToEnd,
  };
}

/** Send the choice and show the next clip; `at` is the key press's time (event.timeStamp). */
export function submit({ skipReason = "", at = performance.now() } = {}) {
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
    next: true,
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
    // A revision replaces a label already counted.
    if (!prepared.revising) state.submitted += 1;
    takeHandedOut(answer.data);
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

/** The next clip a submit's answer brought (`next`): prepared behind the one on screen. */
function takeHandedOut(data) {
  if (!data || !("next" in data)) return;
  if (data.next === null) {
    state.handoffEmpty = true;
    return;
  }
  const prepared = acceptTicket(data.next);
  if (prepared) state.ready.push(prepared);
}

export async function undo() {
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
