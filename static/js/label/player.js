// The clip on screen: wavesurfer's waveform and spectrogram over a prepared <audio> element,
// loudness-normalised playback, speed, zoom, and what the annotator actually heard.

import WaveSurfer from "../../vendor/wavesurfer/wavesurfer.esm.js";
import SpectrogramPlugin from "../../vendor/wavesurfer/plugins/spectrogram.esm.js";
import { whenPlayable } from "./clips.js";

export const SPEEDS = [0.5, 0.75, 1, 1.25, 1.5, 2];
// Pixels per second of audio; 0 fits the whole clip to the width.
export const ZOOMS = [0, 150, 300, 600, 1200];
// Normalisation gain is clamped so a near-silent clip is not blown up into noise and a
// mis-measured one cannot deafen anyone.
const GAIN_DB_MIN = -20;
const GAIN_DB_MAX = 15;
// Coverage is tracked in 50 ms bins; a clip counts as heard to the end when every bin was
// played through (seeking past a stretch leaves it unheard).
const BIN_S = 0.05;

export function clampGainDb(gainDb) {
  const value = Number(gainDb);
  if (!Number.isFinite(value)) return 0;
  return Math.min(GAIN_DB_MAX, Math.max(GAIN_DB_MIN, value));
}

/**
 * Routes media elements through one GainNode each once the page may use WebAudio (after the
 * first key press or click: browsers keep an AudioContext suspended before any gesture).
 * Until then gain is applied with the element's volume, which can only attenuate, so
 * quiet clips play unboosted rather than not at all.
 */
class Loudness {
  constructor() {
    this.context = null;
    this.sources = new Map(); // media element -> its GainNode (an element has one source)
  }

  unlock() {
    if (!window.AudioContext) return;
    this.context ??= new AudioContext();
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
  }

  /** Take a finished clip's element out of the audio graph (nodes stay alive while connected). */
  release(media) {
    const routed = this.sources.get(media);
    if (!routed) return;
    routed.disconnect();
    routed.source.disconnect();
    this.sources.delete(media);
  }

  apply(media, gainDb) {
    const linear = 10 ** (clampGainDb(gainDb) / 20);
    const routed = this.sources.get(media);
    if (routed) {
      routed.gain.value = linear;
      media.volume = 1;
      return "webaudio";
    }
    if (this.context && this.context.state === "running") {
      try {
        const source = this.context.createMediaElementSource(media);
        const gain = this.context.createGain();
        gain.gain.value = linear;
        source.connect(gain).connect(this.context.destination);
        gain.source = source;
        this.sources.set(media, gain);
        media.volume = 1;
        return "webaudio";
      } catch {
        // Fall through to the element's volume.
      }
    }
    media.volume = Math.min(1, linear);
    return "volume";
  }
}

/**
 * Events: "state" (playing, speed, zoom or what was heard changed) and "time" (detail: the
 * playback position in seconds).
 */
export class ClipPlayer extends EventTarget {
  constructor({ waveContainer }) {
    super();
    this.waveContainer = waveContainer;
    this.loudness = new Loudness();
    this.ws = null;
    this.prepared = null;
    this.speedIndex = SPEEDS.indexOf(1);
    this.zoomIndex = 0;
    this.lastTime = null;
    this.fromStart = false; // the next 'play' event starts a new listening
    this.playing = false;
    this.contextAudio = null;
  }

  unlockAudio() {
    this.loudness.unlock();
  }

  /** Forget a clip that will not be shown again: its audio, and its place in the graph. */
  release(prepared) {
    if (prepared.media) this.loudness.release(prepared.media);
    prepared.release();
  }

  get media() {
    return this.prepared?.media ?? null;
  }

  /**
   * Show a prepared clip. Resolves once it is playable: wavesurfer has drawn it ('ready')
   * and the audio element has data to play on (readyState >= HAVE_FUTURE_DATA).
   */
  async show(prepared) {
    this.stopContext();
    this.teardown();
    this.prepared = prepared;
    const listen = prepared.listen;
    listen.covered ??= new Uint8Array(Math.max(1, Math.ceil(prepared.duration / BIN_S)));
    const media = prepared.media;
    media.playbackRate = SPEEDS[this.speedIndex];
    this.loudness.apply(media, prepared.clip.gain_db);

    const channelData = prepared.channelData();
    const plugins = prepared.samples
      ? [
          SpectrogramPlugin.create({
            height: 120,
            labels: true,
            labelsBackground: "rgba(15, 23, 42, 0.55)",
            labelsColor: "#e2e8f0",
            scale: "mel",
            frequencyMax: 8000,
            fftSamples: 512,
            colorMap: "roseus",
            useWebWorker: true,
          }),
        ]
      : [];
    const ws = WaveSurfer.create({
      container: this.waveContainer,
      media,
      peaks: channelData ?? undefined,
      duration: prepared.duration || undefined,
      height: 88,
      waveColor: "#8aa0c8",
      progressColor: "#3158d4",
      cursorColor: "#1d2430",
      cursorWidth: 2,
      normalize: true,
      dragToSeek: true,
      autoScroll: true,
      minPxPerSec: ZOOMS[this.zoomIndex],
      plugins,
    });
    this.ws = ws;
    ws.on("timeupdate", (t) => this.track(t));
    ws.on("play", () => this.onPlay());
    ws.on("pause", () => this.onPause());
    ws.on("finish", () => this.onFinish());
    const ready = new Promise((resolve, reject) => {
      ws.once("ready", resolve);
      ws.once("error", reject);
    });
    await Promise.all([ready, whenPlayable(media)]);
    if (this.ws !== ws) throw new DOMException("superseded", "AbortError");
    this.emitState();
    return this;
  }

  teardown() {
    if (this.ws) {
      this.ws.destroy();
      this.ws = null;
    }
    if (this.prepared?.media) {
      this.prepared.media.pause();
    }
    this.playing = false;
    this.lastTime = null;
  }

  /** Start from the beginning (autoplay and replay). Rejects when the browser refuses. */
  async playFromStart() {
    if (!this.ws) return;
    this.stopContext();
    this.ws.setTime(0);
    this.lastTime = 0;
    this.fromStart = true;
    await this.ws.play();
  }

  async togglePlay() {
    if (!this.ws) return;
    this.stopContext();
    if (this.ws.isPlaying()) {
      this.ws.pause();
      return;
    }
    // Playing again after the end starts over.
    if (this.ws.getCurrentTime() >= this.ws.getDuration() - 0.01) {
      this.ws.setTime(0);
      this.lastTime = 0;
    }
    this.fromStart = this.ws.getCurrentTime() < 0.05;
    await this.ws.play();
  }

  isPlaying() {
    return Boolean(this.ws && this.ws.isPlaying());
  }

  changeSpeed(step) {
    this.speedIndex = Math.min(SPEEDS.length - 1, Math.max(0, this.speedIndex + step));
    if (this.ws) this.ws.setPlaybackRate(SPEEDS[this.speedIndex], true);
    this.emitState();
    return SPEEDS[this.speedIndex];
  }

  changeZoom(step) {
    this.zoomIndex = Math.min(ZOOMS.length - 1, Math.max(0, this.zoomIndex + step));
    if (this.ws) this.ws.zoom(ZOOMS[this.zoomIndex]);
    this.emitState();
    return ZOOMS[this.zoomIndex];
  }

  // --- What was heard ------------------------------------------------------------------

  onPlay() {
    const t = this.ws.getCurrentTime();
    // A play counts when it starts at the beginning (autoplay, replay, or again after the
    // end); resuming after a pause is the same listening.
    if (this.fromStart || this.prepared.listen.plays === 0) this.prepared.listen.plays += 1;
    this.fromStart = false;
    this.playing = true;
    // The 'play' event can arrive after the audio has already moved on a little: coverage
    // runs from where playback was asked to start, when that is plausibly just before.
    if (this.lastTime === null || t < this.lastTime || t - this.lastTime > 0.5) {
      this.lastTime = t;
    }
    this.emitState();
  }

  /** Largest step between two position updates that still counts as continuous play. */
  maxStep() {
    return 0.75 * Math.max(1, SPEEDS[this.speedIndex]);
  }

  track(t) {
    const listen = this.prepared?.listen;
    const last = this.lastTime;
    // Only continuous playback covers audio; a jump (seek) does not. `playing` is still
    // true for the update that reaches the end, which arrives as the element stops.
    if (listen && this.playing && last !== null && t >= last && t - last < this.maxStep()) {
      markCovered(listen.covered, last, t);
    }
    this.lastTime = t;
    this.dispatchEvent(new CustomEvent("time", { detail: t }));
  }

  onPause() {
    this.playing = false;
    this.emitState();
  }

  onFinish() {
    const listen = this.prepared?.listen;
    const end = this.prepared?.duration ?? 0;
    this.playing = false;
    if (listen && this.lastTime !== null && end - this.lastTime < this.maxStep()) {
      markCovered(listen.covered, this.lastTime, end + BIN_S);
    }
    if (listen) listen.heardToEnd ||= listen.covered.every(Boolean);
    this.emitState();
  }

  emitState() {
    this.dispatchEvent(new Event("state"));
  }

  // --- Context: the utterances before and after ----------------------------------------

  /** Play a neighbouring utterance (same gain as this clip: it is the same recording). */
  async playContext(url) {
    if (!url) return false;
    if (this.ws?.isPlaying()) this.ws.pause();
    this.stopContext();
    const audio = new Audio(url);
    audio.preservesPitch = true;
    audio.playbackRate = SPEEDS[this.speedIndex];
    this.loudness.apply(audio, this.prepared?.clip.gain_db ?? 0);
    this.contextAudio = audio;
    audio.addEventListener("ended", () => this.stopContext());
    await audio.play();
    this.emitState();
    return true;
  }

  stopContext() {
    if (this.contextAudio) {
      this.contextAudio.pause();
      this.contextAudio.removeAttribute("src");
      this.contextAudio = null;
      this.emitState();
    }
  }
}

function markCovered(covered, from, to) {
  const first = Math.max(0, Math.floor(from / BIN_S));
  const last = Math.min(covered.length - 1, Math.ceil(to / BIN_S) - 1);
  for (let i = first; i <= last; i += 1) covered[i] = 1;
}
