// JSON calls to the labelling API with the session cookie and Django's CSRF token.

export class ApiError extends Error {
  /** `status` is the HTTP status (0: no answer); `code` the API's error code, if any. */
  constructor(message, { status = 0, code = "", body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** Worth sending again unchanged: no answer, or the server failed (not a refusal). */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 429;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** POST JSON; resolves to {status, data} (data null for 204), throws ApiError otherwise. */
export async function postJson(url, body = {}, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("No answer from the server (network).", { status: 0 });
  }
  return readJson(response);
}

export async function getJson(url, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("No answer from the server (network).", { status: 0 });
  }
  return readJson(response);
}

export async function getBlob(url, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("No answer from the server (network).", { status: 0 });
  }
  if (!response.ok) {
    throw new ApiError(`The audio could not be loaded (HTTP ${response.status}).`, {
      status: response.status,
    });
  }
  return response.blob();
}

async function readJson(response) {
  if (response.status === 204) return { status: 204, data: null };
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (response.ok) return { status: response.status, data };
  if (response.status === 403 && !type.includes("json")) {
    throw new ApiError("Your session has ended: reload the page and log in again.", {
      status: 403,
    });
  }
  const detail = (data && (data.detail || firstFieldError(data))) || `HTTP ${response.status}`;
  throw new ApiError(String(detail), {
    status: response.status,
    code: (data && data.code) || "",
    body: data,
  });
}

function firstFieldError(data) {
  for (const [field, value] of Object.entries(data)) {
    const text = Array.isArray(value) ? value[0] : value;
    if (typeof text === "string") return `${field}: ${text}`;
  }
  return "";
}

/**
 * Run `attempt` until it succeeds or fails for a reason other than the network or the
 * server; waits 0.5 s, 1 s, 2 s … (at most `maxDelayMs`) between tries and reports each
 * failure to `onRetry(error, tryNumber, delayMs)`. Used for submits, whose client_id makes a
 * repeat harmless.
 */
export async function withRetry(attempt, { onRetry = () => {}, maxTries = 8, maxDelayMs = 8000 } = {}) {
  for (let tryNumber = 1; ; tryNumber += 1) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ApiError) || !error.transient || tryNumber >= maxTries) throw error;
      const delay = Math.min(500 * 2 ** (tryNumber - 1), maxDelayMs);
      onRetry(error, tryNumber, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
