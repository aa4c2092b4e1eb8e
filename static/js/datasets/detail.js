// The panel of one ready version: facts, download (per format), datasheet with its plots,
// the comparison with another version, and the file list.

import { getJson } from "../label/api.js";
import { byId, el, formatBytes, formatTime, formatValue } from "./dom.js";
import { arrayView, datasheetView, humanise, MAX_ROWS } from "./tables.js";

const DATASHEET = "datasheet.json";
const MANIFEST = "SHA256SUMS";

function fileUrl(base, path) {
  return `${base}files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

function facts(version) {
  const rows = [
    ["Status", version.status],
    ["Split seed", version.split_seed],
    ["Clips", version.query],
    ["Taxonomy version", version.taxonomy_version],
    ["Code version", version.code_version],
    ["Created", `${formatTime(version.created_at)} by ${version.created_by || "–"}`],
    ["Finished", formatTime(version.finished_at)],
    ["Manifest SHA-256", version.manifest_sha256],
  ];
  return rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, formatValue(value))]);
}

function filesRows(base, files) {
  // Audio files can number 100,000: list the others in full and only the first audio files.
  const audio = files.filter((f) => f.path.startsWith("audio/"));
  const shown = [...files.filter((f) => !f.path.startsWith("audio/")), ...audio.slice(0, MAX_ROWS)];
  const rows = shown.map((f) =>
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: fileUrl(base, f.path), download: f.path.split("/").pop() }, f.path)),
      el("td", {}, formatBytes(f.size)),
      el("td", {}, el("code", { title: f.sha256 }, f.sha256.slice(0, 12))),
    ),
  );
  // The manifest itself is served too, though it does not list itself.
  rows.unshift(
    el(
      "tr",
      {},
      el("td", {}, el("a", { href: fileUrl(base, MANIFEST), download: MANIFEST }, MANIFEST)),
      el("td", { colspan: 2, class: "muted" }, "the manifest: the SHA-256 of every file below"),
    ),
  );
  if (audio.length > MAX_ROWS) {
    const more = `… and ${audio.length - MAX_ROWS} more audio files (all of them are in the zip).`;
    rows.push(el("tr", {}, el("td", { colspan: 3, class: "muted" }, more)));
  }
  return rows;
}

function plotFigures(base, files) {
  return files
    .filter((f) => f.path.startsWith("plots/") && f.path.endsWith(".png"))
    .map((f) => {
      const name = f.path.slice("plots/".length, -".png".length);
      return el(
        "figure",
        { class: "ds-plot" },
        el("img", { src: fileUrl(base, f.path), alt: humanise(name.replace(/[-.]/g, "_")), loading: "lazy" }),
        el("figcaption", {}, f.path),
      );
    });
}

function diffView(diff) {
  const parts = [];
  const summary = diff.summary || {};
  const rows = [];
  for (const [key, value] of Object.entries(summary)) {
    if (value !== null && typeof value === "object") {
      for (const [ring, n] of Object.entries(value)) rows.push([`${humanise(key)} (${ring})`, n]);
    } else {
      rows.push([humanise(key), value]);
    }
  }
  parts.push(
    el("h4", {}, `From v${diff.from} to v${diff.to}`),
    el(
      "table",
      { class: "grid ds-kv", id: "diff-summary" },
      el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, formatValue(v))))),
    ),
  );
  // The API caps its lists (`limit`); the summary has the full counts.
  const list = (title, rows, total) => {
    const count = typeof total === "number" ? total : rows.length;
    const capped = rows.length < count ? el("p", { class: "muted" }, `The first ${rows.length} of ${count}.`) : null;
    return el("details", {}, el("summary", {}, `${title} (${count})`), capped, arrayView(rows));
  };
  for (const key of ["clips_added", "clips_removed", "split_moves"]) {
    if (Array.isArray(diff[key])) parts.push(list(humanise(key), diff[key], summary[key]));
  }
  for (const [ring, changes] of Object.entries(diff.labels_changed || {})) {
    if (Array.isArray(changes)) {
      parts.push(list(`Labels changed at ${ring}`, changes, (summary.labels_changed || {})[ring]));
    }
  }
  return parts;
}

/** The detail panel. `show(version, readyVersions)` fills it; a later call wins. */
export class Detail {
  constructor({ listUrl }) {
    this.listUrl = listUrl;
    this.version = null;
    this.token = 0;
    this.diffToken = 0;
    this.downloadToken = 0;
    byId("format").addEventListener("change", () => this.updateDownload());
    byId("download").addEventListener("click", (event) => this.download(event));
    byId("compare-with").addEventListener("change", (event) => this.compare(event.target.value));
  }

  base() {
    return `${this.listUrl}${this.version.number}/`;
  }

  updateDownload() {
    if (!this.version) return;
    this.downloadToken += 1; // a format or version change stops a running poll
    byId("download-status").textContent = "";
    // The native layout is download.zip; other formats are download/<format>.zip.
    const format = byId("format").value;
    byId("download").href =
      format && format !== "native"
        ? `${this.base()}download/${encodeURIComponent(format)}.zip`
        : `${this.base()}download.zip`;
  }

  /**
   * Formats other than native are converted once by a background task: ask for the
   * conversion (started if needed), show its progress while it runs, then download its zip.
   * The native zip downloads through the link itself.
   */
  async download(event) {
    const format = byId("format").value;
    if (!this.version || !format || format === "native") return;
    event.preventDefault();
    const token = ++this.downloadToken;
    const status = byId("download-status");
    const url = `${this.base()}download/${encodeURIComponent(format)}.zip?status`;
    let retry = "&retry=1"; // the first request may restart a failed conversion; polls don't
    for (;;) {
      let data;
      try {
        ({ data } = await getJson(url + retry));
      } catch (error) {
        if (token === this.downloadToken) status.textContent = `The conversion could not be asked for: ${error.message}`;
        return;
      }
      retry = "&retry=0";
      if (token !== this.downloadToken) return;
      status.dataset.status = data.status;
      if (data.status === "ready") {
        status.textContent = `Converted to ${format}; downloading.`;
        window.location.assign(data.url);
        return;
      }
      if (data.status === "failed") {
        status.textContent = `The ${format} conversion failed: ${data.error}`;
        return;
      }
      const progress = data.progress || {};
      status.textContent = `Converting to ${format}: ${progress.stage || data.status} (${progress.done || 0} of ${progress.total || 4} steps)…`;
      await new Promise((resolve) => setTimeout(resolve, data.poll_ms || 1000));
      if (token !== this.downloadToken) return;
    }
  }

  /** The versions a ready one can be compared with. */
  setCompareChoices(readyVersions) {
    const select = byId("compare-with");
    const current = select.value;
    const others = readyVersions.filter((v) => !this.version || v.number !== this.version.number);
    select.replaceChildren(
      el("option", { value: "" }, "Choose a version…"),
      ...others.map((v) => el("option", { value: v.number, selected: String(v.number) === current }, `v${v.number}`)),
    );
  }

  async show(version, readyVersions) {
    const token = ++this.token;
    this.diffToken += 1;
    this.version = version;
    const panel = byId("detail");
    panel.hidden = false;
    panel.dataset.number = version.number;
    panel.dataset.loaded = "false";
    byId("detail-heading").textContent = `Version ${version.number}`;
    byId("detail-facts").replaceChildren(...facts(version));
    byId("diff").replaceChildren();
    this.setCompareChoices(readyVersions);
    byId("compare-with").value = "";
    this.updateDownload();
    const base = this.base();
    const { data: files } = await getJson(`${base}files/`);
    if (token !== this.token) return;
    byId("file-count").textContent = String(files.length);
    byId("files").querySelector("tbody").replaceChildren(...filesRows(base, files));
    const plots = plotFigures(base, files);
    byId("plots").replaceChildren(...(plots.length ? [el("h4", {}, "Plots"), ...plots] : []));
    byId("plots").hidden = plots.length === 0;
    const hasSheet = files.some((f) => f.path === DATASHEET);
    byId("datasheet-missing").hidden = hasSheet;
    let tables = [];
    if (hasSheet) {
      const { data: sheet } = await getJson(`${base}files/${DATASHEET}`);
      if (token !== this.token) return;
      tables = datasheetView(sheet);
    }
    byId("datasheet-tables").replaceChildren(...tables);
    panel.dataset.loaded = "true";
  }

  async compare(other) {
    const target = byId("diff");
    if (!other || !this.version) {
      target.replaceChildren();
      return;
    }
    const token = ++this.diffToken;
    const [from, to] = [Number(other), this.version.number].sort((a, b) => a - b);
    target.replaceChildren(el("p", { class: "muted" }, `Comparing v${from} with v${to}…`));
    try {
      const { data } = await getJson(`${this.listUrl}${from}/diff/${to}/`);
      if (token !== this.diffToken) return;
      target.replaceChildren(...diffView(data));
    } catch (error) {
      if (token !== this.diffToken) return;
      const why = error.status === 404 ? "this server has no diff of versions yet" : error.message;
      target.replaceChildren(el("p", { class: "error" }, `No comparison: ${why}.`));
    }
  }
}
