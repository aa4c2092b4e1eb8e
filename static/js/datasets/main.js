// The dataset versions page (templates/exports/datasets.html): create a version, watch it
// build, open a ready one. Everything comes from the dataset API (exports.api).

import { postJson } from "../label/api.js";
import { Detail } from "./detail.js";
import { byId, clearAlerts, showAlert } from "./dom.js";
import { VersionList } from "./versions.js";

const config = JSON.parse(byId("datasets-config").textContent);
const root = byId("datasets");
const detail = new Detail({ listUrl: config.urls.list });
// The version the user just created opens by itself once it is ready.
let awaited = null;

function ready(versions) {
  return versions.filter((v) => v.status === "ready");
}

function open(number) {
  const version = list.versions.get(number);
  if (!version || version.status !== "ready") return;
  clearAlerts();
  detail.show(version, ready(list.sorted())).catch((error) => {
    showAlert(`Could not open version ${number}: ${error.message}`);
  });
}

const list = new VersionList({
  listUrl: config.urls.list,
  pollMs: config.poll_ms,
  onOpen: open,
  onChange(versions) {
    detail.setCompareChoices(ready(versions));
  },
  onFinished(version) {
    if (version.number !== awaited) return;
    awaited = null;
    if (version.status === "ready") open(version.number);
    else showAlert(`Version ${version.number} failed: ${version.error || "no reason given"}`);
  },
});

async function create(event) {
  event.preventDefault();
  const form = event.target;
  const button = byId("create-button");
  const body = { seed: Number(form.seed.value) };
  if (form.import_batch.value) body.import_batch = Number(form.import_batch.value);
  button.disabled = true;
  clearAlerts();
  try {
    const { data } = await postJson(config.urls.list, body);
    awaited = data.number;
    list.add(data);
  } catch (error) {
    showAlert(`The version was not created: ${error.message}`);
    // A 503 saved the version (queued, not sent): show it anyway.
    if (error.status === 503) await list.load();
  } finally {
    button.disabled = false;
  }
}

async function start() {
  byId("create-form").addEventListener("submit", create);
  try {
    await list.load();
  } catch (error) {
    showAlert(`Could not list the versions: ${error.message}`);
    root.dataset.state = "error";
    return;
  }
  root.dataset.state = "ready";
  const newest = ready(list.sorted())[0];
  if (newest) open(newest.number);
}

start();
