// Getting a leased clip ready to play before it is shown: its audio blob and peaks are
// fetched in parallel, the audio is decoded (for the waveform and the spectrogram) and an
// <audio> element starts buffering it. Showing a prepared clip then costs no network and no
// decoding, which is what makes the next clip playable right after a submit.

import { getBlob, getJson } from "./api.js";

// One context for every decode; an OfflineAudioContext needs no user gesture and resamples
// to the canonical rate (16 kHz), so the spectrogram's frequency axis is right.
let decoder = null;
function decodeAudio(arrayBuffer) {
  decoder ??= new OfflineAudioContext(1, 1, 16000);
  return decoder.decodeAudioData(arrayBuffer);
}

/**
 * A clip with everything needed to show it. `ticket` is the API's answer to next/undo:
 * {clip, lease, suggestion, revising}.
 */
export class PreparedClip {
  constructor(ticket) {
    this.clip = ticket.clip;
    this.lease = ticket.lease;
    this.suggestion = ticket.suggestion ?? null;
    this.revising = ticket.revising ?? null;
    this.blob = null;
    this.objectUrl = null;
    this.samples = null; // Float32Array at 16 kHz, or null when decoding failed
    this.peaks = null; // the server's outline (100 points/s), the fallback waveform
    this.duration = Number(ticket.clip.duration_s) || 0;
    this.media = null;
    this.warning = "";
    // Listening and timing, kept across an undo that shows this clip again later.
    this.listen = { plays: 0, heardToEnd: false, covered: null };
    this.visibleMs = 0;
  }

  get id() {
    return this.clip.id;
  }

  get leaseId() {
    return this.lease.id;
  }

  get expiresAt() {
    return Date.parse(this.lease.expires_at) || 0;
  }

  /** Fetch, decode and start buffering. Rejects (ApiError) when the audio cannot be had. */
  async load({ signal } = {}) {
    const [blob, peaks] = await Promise.all([
      getBlob(this.clip.audio_url, { signal }),
      this.clip.peaks_url
        ? getJson(this.clip.peaks_url, { signal }).then(
            (answer) => answer.data,
            () => null, // the waveform can come from the decoded audio instead
          )
        : Promise.resolve(null),
    ]);
    this.blob = blob;
    this.peaks = peaks && Array.isArray(peaks.peaks) ? peaks : null;
    try {
      const buffer = await decodeAudio(await blob.arrayBuffer());
      this.samples = buffer.getChannelData(0);
      this.duration = buffer.duration;
    } catch {
      this.samples = null;
      this.warning = "This browser could not decode the audio: no spectrogram for this clip.";
    }
    this.objectUrl = URL.createObjectURL(blob);
    this.media = makeMedia(this.objectUrl);
    return this;
  }

  /** Waveform data for wavesurfer: decoded samples, else the server's peaks. */
  channelData() {
    if (this.samples) return [this.samples];
    if (this.peaks && this.peaks.peaks.length) return [Float32Array.from(this.peaks.peaks)];
    return null;
  }

  /** Forget the audio (after submit, or when the lease is given up). */
  release() {
    if (this.media) {
      this.media.pause();
      this.media.removeAttribute("src");
      this.media.load();
      this.media = null;
    }
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    this.blob = null;
    this.samples = null;
  }

  /** A fresh element for the same audio (wavesurfer and a WebAudio source own the old one). */
  renewMedia() {
    if (!this.objectUrl) return;
    if (this.media) this.media.pause();
    this.media = makeMedia(this.objectUrl);
  }
}

function makeMedia(src) {
  const media = new Audio();
  media.preload = "auto";
  media.preservesPitch = true;
  media.src = src;
  media.load();
  return media;
}

/** Resolve once the element can play on (readyState >= HAVE_FUTURE_DATA). */
export function whenPlayable(media) {
  if (media.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      media.removeEventListener("canplay", done);
      media.removeEventListener("error", fail);
      resolve();
    };
    const fail = () => {
      media.removeEventListener("canplay", done);
      media.removeEventListener("error", fail);
      reject(new Error("The browser cannot play this audio."));
    };
    media.addEventListener("canplay", done);
    media.addEventListener("error", fail);
  });
}
