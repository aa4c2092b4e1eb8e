// The versions table: one row per version, live progress while a version is built.

import { getJson } from "../label/api.js";
import { byId, el, formatTime, showAlert } from "./dom.js";

const ACTIVE = new Set(["queued", "building"]);

export function isActive(version) {
  return ACTIVE.has(version.status);
}

function progressCell(version) {
  const { stage = "", done = 0, total = 0 } = version.progress || {};
  const cell = el("td", { class: "ds-status" }, el("span", { class: `pill pill-${version.status}` }, version.status));
  if (isActive(version)) {
    const bar = el("progress", { max: total || 1, value: total ? done : 0, "aria-label": `Build of version ${version.number}` });
    let text = "waiting for a worker";
    if (version.status === "building") text = total ? `${stage}: ${done} / ${total}` : stage || "starting";
    cell.append(el("div", { class: "ds-progress" }, bar, el("span", { class: "ds-stage" }, text)));
  } else if (version.status === "failed" && version.error) {
    cell.append(el("p", { class: "error ds-error" }, version.error));
  }
  return cell;
}

/** A ready version's clips: its last progress beat's total (unknown when none was kept). */
function clipCount(version) {
  const total = (version.progress || {}).total;
  return version.status === "ready" && total > 0 ? String(total) : "–";
}

function row(version, onOpen) {
  const digest = version.manifest_sha256 || "";
  const open = el("button", { type: "button", class: "small", hidden: version.status !== "ready" }, "Open");
  open.addEventListener("click", () => onOpen(version.number));
  return el(
    "tr",
    { "data-number": version.number, "data-status": version.status },
    el("td", {}, `v${version.number}`),
    progressCell(version),
    el("td", {}, formatTime(version.created_at)),
    el("td", {}, version.created_by || "–"),
    el("td", {}, clipCount(version)),
    el("td", {}, digest ? el("code", { title: digest }, digest.slice(0, 12)) : "–"),
    el("td", {}, open),
  );
}

/**
 * Holds the versions shown, redraws their rows and polls the detail of every version that
 * is queued or building every `pollMs` until it is ready or failed.
 * `onChange(versions)` runs after each redraw; `onFinished(version)` when a build ends.
 */
export class VersionList {
  constructor({ listUrl, pollMs, onOpen, onChange, onFinished }) {
    this.listUrl = listUrl;
    this.pollMs = pollMs;
    this.onOpen = onOpen;
    this.onChange = onChange;
    this.onFinished = onFinished;
    this.versions = new Map();
    this.timer = null;
    this.stopped = false;
  }

  async load() {
    const { data } = await getJson(this.listUrl);
    for (const version of data) this.versions.set(version.number, version);
    this.draw();
    this.schedule();
  }

  /** A version the page just created (the API's 201 body). */
  add(version) {
    this.versions.set(version.number, version);
    this.draw();
    this.schedule();
  }

  sorted() {
    return [...this.versions.values()].sort((a, b) => b.number - a.number);
  }

  draw() {
    const rows = this.sorted().map((version) => row(version, this.onOpen));
    byId("versions").querySelector("tbody").replaceChildren(...rows);
    byId("versions").hidden = rows.length === 0;
    byId("versions-empty").hidden = rows.length !== 0;
    this.onChange(this.sorted());
  }

  schedule() {
    if (this.stopped || this.timer !== null || !this.sorted().some(isActive)) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.poll();
    }, this.pollMs);
  }

  async poll() {
    for (const version of this.sorted().filter(isActive)) {
      try {
        const { data } = await getJson(`${this.listUrl}${version.number}/`);
        this.versions.set(data.number, data);
        if (!isActive(data)) this.onFinished(data);
      } catch (error) {
        // A missed beat (network, server) is retried on the next one; a refusal (the
        // session ended) stops the polling.
        showAlert(`Could not read the progress of version ${version.number}: ${error.message}`);
        if (!error.transient) this.stopped = true;
      }
    }
    this.draw();
    this.schedule();
  }
}
