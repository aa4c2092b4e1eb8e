// The operations page (templates/ops/ops.html): redraws its sections from
// /api/ops/overview/ every REFRESH_MS, and sends the retry and measure-storage actions.
// Text from the API only ever goes in as textContent.

import { getJson, postJson } from "../label/api.js";

const REFRESH_MS = 5000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fill(tableId, rows, emptyRow) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...(rows.length ? rows : emptyRow ? [emptyRow] : []));
}

function when(seconds) {
  if (!seconds) return "never";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

/** An ISO time from the API as the server writes it: "2026-12-01 04:30:35". */
function isoTime(text) {
  return text ? text.replace("T", " ").slice(0, 19) : "never";
}

function bytes(n) {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function alertText(text) {
  document.getElementById("ops-alerts").textContent = text;
}

function failureAction(f) {
  if (f.retryable) {
    return el("button", { type: "button", class: "retry", "data-failure-id": f.id }, "Retry");
  }
  if (f.retried_at) return `retried by ${f.retried_by || "?"}`;
  return el("span", { class: "muted" }, f.retry_refused || "");
}

function draw(data) {
  fill(
    "checks",
    Object.entries(data.checks).map(([name, c]) =>
      el("tr", { "data-check": name }, el("td", {}, name),
        el("td", { class: c.ok ? "ok" : "bad" }, c.ok ? "ok" : "failing"),
        el("td", {}, `${c.ms} ms`), el("td", {}, c.error)),
    ),
  );
  document.getElementById("heartbeat").textContent =
    `Last heartbeat: ${when(data.last_heartbeat && data.last_heartbeat.at)}`;
  // Workers that answered, then those whose heartbeat was seen but that did not answer
  // ("not answering" while the heartbeat is fresh, "missing" once it is stale).
  const alive = data.workers.map((w) =>
    el("tr", { "data-worker": w.hostname, "data-state": "alive" }, el("td", {}, w.hostname),
      el("td", { class: "ok" }, "alive"), el("td", {}, w.running.map((t) => t.name).join(", ") || "–")),
  );
  const none = el("tr", { class: "none" },
    el("td", { colspan: 3, class: "bad" }, data.errors.workers || "No worker answered."));
  const silent = (data.silent_workers || []).map((w) =>
    el("tr", { "data-silent-worker": w.hostname, "data-state": w.state }, el("td", {}, w.hostname),
      el("td", { class: "bad" }, w.state),
      el("td", { class: "muted" }, `last heartbeat ${Math.round(w.age_s)} s ago`)),
  );
  fill("workers", [...(alive.length ? alive : [none]), ...silent]);
  fill(
    "queues",
    data.queues.map((q) =>
      el("tr", { "data-queue": q.name }, el("td", {}, q.name), el("td", {}, q.queued === null ? "?" : q.queued),
        el("td", {}, q.running), el("td", {}, q.failed_24h)),
    ),
  );
  fill(
    "failures",
    data.failures.map((f) =>
      el("tr", { "data-failure": f.id, "data-task-id": f.task_id },
        el("td", {}, isoTime(f.failed_at)),
        el("td", {}, el("code", {}, f.task_name), el("br"), el("span", { class: "muted" }, f.queue)),
        el("td", {}, el("code", {}, f.args_repr)),
        el("td", {}, el("strong", { class: "error-text" }, f.exception),
          el("details", {}, el("summary", {}, "Traceback"), el("pre", {}, f.traceback))),
        el("td", {}, failureAction(f))),
    ),
    el("tr", { class: "none" }, el("td", { colspan: 5, class: "muted" }, "No failed task.")),
  );
  fill(
    "beat",
    data.beat.map((b) =>
      el("tr", { "data-entry": b.entry }, el("td", {}, b.entry), el("td", {}, el("code", {}, b.task)),
        el("td", {}, b.every_s ? `${Math.round(b.every_s)} s` : "–"), el("td", {}, isoTime(b.last_run_at))),
    ),
  );
  const storage = data.storage;
  document.getElementById("storage-when").textContent = storage
    ? `Measured ${when(storage.measured_at)} (${storage.root}).`
    : "Not measured yet.";
  fill(
    "storage",
    (storage ? storage.folders : []).map((f) =>
      el("tr", {}, el("td", {}, f.folder), el("td", {}, bytes(f.bytes)), el("td", {}, f.files)),
    ),
  );
}

async function refresh(root) {
  try {
    const { data } = await getJson(root.dataset.api);
    draw(data);
    root.dataset.state = "live";
    if (root.dataset.alert !== "action") alertText("");
  } catch (error) {
    root.dataset.state = "stale";
    alertText(`Could not refresh: ${error.message}`);
  }
}

async function act(root, url, done) {
  root.dataset.alert = "action";
  try {
    await postJson(url);
    alertText(done);
  } catch (error) {
    alertText(error.message);
  }
  await refresh(root);
}

function start() {
  const root = document.getElementById("ops");
  if (!root) return;
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("retry")) {
      button.disabled = true;
      act(root, `/api/ops/failures/${button.dataset.failureId}/retry/`, "Task sent again.");
    } else if (button.id === "measure-storage") {
      act(root, "/api/ops/storage/measure/", "Measuring storage; the figures update when it is done.");
    }
  });
  refresh(root);
  setInterval(() => refresh(root), REFRESH_MS);
}

start();
