// The imports page (templates/console/imports.html): upload through the imports API, then
// follow the batch until every file has its outcome, and show it.

import { config, getJson, poll, postForm, showAlert } from "./http.js";

const settings = config();
const form = document.getElementById("upload-form");
const status = document.getElementById("upload-status");
const FINISHED = new Set(["done", "failed"]);

function follow(batchId) {
  poll(
    async () => {
      const batch = await getJson(`${settings.urls.batch}${batchId}/`);
      const c = batch.counts;
      status.textContent = `Import #${batchId}: ${batch.status} · ${c.accepted} accepted, ${c.duplicate} duplicate, ${c.rejected} rejected, ${c.pending} pending of ${c.total}`;
      if (!FINISHED.has(batch.status)) return false;
      window.location.assign(`${settings.urls.page}?batch=${batchId}`);
      return true;
    },
    settings.poll_ms,
    (error) => {
      status.textContent = `Could not read import #${batchId}: ${error.message}`;
    },
  );
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData();
  for (const file of form.files.files) data.append("files", file);
  if (form.manifest.files.length) data.append("manifest", form.manifest.files[0]);
  if (form.url.value.trim()) data.append("url", form.url.value.trim());
  data.append("segment", form.segment.checked ? "true" : "false");
  const button = document.getElementById("upload-button");
  button.disabled = true;
  status.textContent = "Uploading…";
  try {
    const batch = await postForm(settings.urls.upload, data);
    status.textContent = `Import #${batch.id} started.`;
    follow(batch.id);
  } catch (error) {
    status.textContent = "";
    showAlert(`The import was not started: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

// A batch still being processed when the page opened: follow it too.
const detail = document.getElementById("batch-detail");
if (detail && !FINISHED.has(detail.dataset.status)) follow(Number(detail.dataset.batch));
