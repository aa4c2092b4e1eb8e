// Training and models (templates/console/models.html): start a run, follow open runs until
// they finish (then reload: the new version, curve and plots are drawn by the server), and
// activate or roll back a version. Every write is the learner API's.

import { config, getJson, poll, postJson, showAlert } from "./http.js";

const settings = config();
const OPEN = new Set(["queued", "running"]);

function describeProgress(progress) {
  if (!progress || !progress.stage) return "";
  return progress.total ? `${progress.stage} ${progress.done}/${progress.total}` : progress.stage;
}

function follow(runId) {
  poll(
    async () => {
      const run = await getJson(`${settings.urls.runs}/${runId}`);
      const row = document.querySelector(`tr[data-run="${runId}"]`);
      if (row) {
        row.dataset.status = run.status;
        row.querySelector(".run-status").textContent = run.status;
        row.querySelector(".run-progress").textContent = describeProgress(run.progress);
      }
      if (OPEN.has(run.status)) return false;
      const next = run.model_version ? `?version=${run.model_version}` : "";
      window.location.assign(`${window.location.pathname}${next}`);
      return true;
    },
    settings.poll_ms,
    (error) => showAlert(`Could not read run #${runId}: ${error.message}`),
  );
}

const form = document.getElementById("train-form");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("train-button");
    button.disabled = true;
    try {
      const { run, created } = await postJson(settings.urls.runs, { feature_set: form.feature_set.value });
      if (!created) showAlert(`A training is already ${run.status} (run #${run.id}); following it.`);
      // Show the run at once, then follow it.
      window.location.assign(`${window.location.pathname}?run=${run.id}`);
    } catch (error) {
      showAlert(`The training was not started: ${error.message}`);
      button.disabled = false;
    }
  });
}

for (const button of document.querySelectorAll("button.activate")) {
  button.addEventListener("click", async () => {
    // A candidate the quality gate refused: activating it overrides the gate (audited).
    if (button.dataset.candidate && !window.confirm(`The quality gate refused v${button.dataset.number}. Activate it anyway?`)) return;
    button.disabled = true;
    try {
      await postJson(`${settings.urls.models}/${button.dataset.number}/activate`);
      window.location.assign(`${window.location.pathname}?version=${button.dataset.number}`);
    } catch (error) {
      showAlert(`Version ${button.dataset.number} was not activated: ${error.message}`);
      button.disabled = false;
    }
  });
}

for (const row of document.querySelectorAll("tr[data-run]")) {
  if (OPEN.has(row.dataset.status)) follow(Number(row.dataset.run));
}
