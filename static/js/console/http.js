// Fetch helpers for the workspace pages (templates/console/): the session cookie, Django's
// CSRF token, and the API's error shape turned into one readable message.

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** The API's error body as one line: `detail`, or every field's messages. */
export function describeError(body, status) {
  if (!body || typeof body !== "object") return `The server answered ${status}.`;
  if (typeof body.detail === "string") return body.detail;
  const parts = [];
  for (const [field, value] of Object.entries(body.errors || body)) {
    const messages = Array.isArray(value) ? value : [value];
    parts.push(`${field}: ${messages.map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ")}`);
  }
  return parts.length ? parts.join("; ") : `The server answered ${status}.`;
}

async function send(url, options) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", ...options });
  } catch {
    throw new Error("No answer from the server (network).");
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) throw new Error(describeError(body, response.status));
  return body;
}

export function getJson(url) {
  return send(url, { headers: { Accept: "application/json" } });
}

export function postJson(url, data = {}) {
  return send(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(data),
  });
}

export function patchJson(url, data) {
  return send(url, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(data),
  });
}

export function deleteJson(url) {
  return send(url, { method: "DELETE", headers: { Accept: "application/json", "X-CSRFToken": csrfToken() } });
}

export function postForm(url, formData) {
  return send(url, {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    body: formData,
  });
}

/** Call `check` every `ms` until it resolves true; errors are reported and polling goes on. */
export function poll(check, ms, onError) {
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try {
      if (await check()) return;
    } catch (error) {
      onError(error);
    }
    setTimeout(tick, ms);
  }
  tick();
  return () => {
    stopped = true;
  };
}

export function showAlert(message) {
  const box = document.getElementById("alerts");
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = message;
  box.append(p);
}

export function config() {
  return JSON.parse(document.getElementById("console-config").textContent);
}
