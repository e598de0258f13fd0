// The HTTP API, as every other client uses it: a bearer token from POST /api/auth/token.

const TOKEN_KEY = "provisio.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `request failed (${status})`);
    this.status = status;
    this.detail = detail;
  }

  // FastAPI's field errors: [{loc: [...], msg, type}], or [] when the detail is a sentence.
  get fieldErrors() {
    return Array.isArray(this.detail) ? this.detail : [];
  }
}

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (value) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// Listeners for "the token no longer works" (expired, user disabled): the app sends to sign-in.
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

function authHeaders(extra = {}) {
  const value = token.get();
  return value ? { ...extra, Authorization: `Bearer ${value}` } : { ...extra };
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export async function request(method, path, { json, form, headers = {}, signal } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json", ...headers }), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = new URLSearchParams(form);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  const body = await parse(response).catch(() => null);
  if (!response.ok) {
    const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
    const error = new ApiError(response.status, detail || response.statusText);
    if (response.status === 401 && path !== "/api/auth/token") {
      unauthorizedListeners.forEach((listener) => listener(error));
    }
    throw error;
  }
  return body;
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, json, options = {}) => request("POST", path, { ...options, json }),
  patch: (path, json, options = {}) => request("PATCH", path, { ...options, json }),
};

export async function signIn(username, password) {
  const body = await request("POST", "/api/auth/token", { form: { username, password } });
  token.set(body.access_token);
}

export function signOut() {
  // Tokens are stateless JWTs: forgetting it is signing out. They expire on their own.
  token.clear();
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events over fetch. EventSource cannot send an Authorization header, and a token in
// the URL would end up in access logs and history; fetch sends the header like every other call,
// sees the HTTP status (404, 401), and resumes with Last-Event-ID itself.

function parseEventStream(onEvent) {
  let buffer = "";
  let event = { data: [], type: "message", id: null };
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length || event.id !== null) {
          onEvent({ type: event.type, id: event.id, data: event.data.join("\n") });
        }
        event = { data: [], type: "message", id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the server's heartbeat
      const colon = line.indexOf(":");
      const name = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "data") event.data.push(value);
      else if (name === "event") event.type = value;
      else if (name === "id" && !value.includes("\0")) event.id = value;
      else if (name === "retry" && /^\d+$/.test(value)) onEvent({ type: "retry", data: value });
    }
  };
}

// Follows `path` until the server says `end` (or 204), `signal` aborts, or access is refused.
// Handlers: onEvent({type, id, data}), onState("live" | "reconnecting" | "limited" | "ended"),
// onError(ApiError). "limited": the user already holds as many live streams as the server allows
// (other tabs, a `provisio deployments watch`); the stream is asked again after Retry-After.
// After `end`, `recheckMs()` may return a delay: the stream is asked again after it (with the last
// id: 204 while nothing is new), because a settled deployment can still be destroyed or retried;
// null stops. Returns {wake()}, which cuts the current wait short (after the user started an
// operation, say).
export function followEvents(path, { after = 0, signal, onEvent, onState, onError, recheckMs = () => null }) {
  let lastEventId = null;
  let retryMs = 3000;
  let failures = 0;
  let idle = false; // the stream ended: waiting to ask again
  let wakeUp = () => {};

  const sleep = (ms) => new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      wakeUp = () => {};
      resolve();
    };
    const timer = setTimeout(done, ms);
    wakeUp = done;
    signal.addEventListener("abort", done);
  });

  const run = async () => {
    while (!signal.aborted) {
      if (idle) {
        const wait = recheckMs();
        if (wait === null || wait === undefined) return;
        await sleep(wait);
        if (signal.aborted) return;
        if (document.visibilityState !== "visible") continue;
        if (lastEventId === null) lastEventId = String(after);
      }
      const url = lastEventId === null ? `${path}?after=${after}` : path;
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
      let ended = false;
      try {
        const response = await fetch(url, { headers, signal, cache: "no-store" });
        if (response.status === 204) {
          if (!idle) {
            onState("ended");
            onEvent({ type: "end", id: null, data: "{}" });
          }
          idle = true;
          continue;
        }
        if (!response.ok) {
          const body = await parse(response).catch(() => null);
          const error = new ApiError(response.status, body?.detail || response.statusText);
          if (response.status === 401) unauthorizedListeners.forEach((listener) => listener(error));
          if (response.status === 429) {
            onState("limited");
            const seconds = Number(response.headers.get("Retry-After"));
            await sleep(Math.max(seconds > 0 ? seconds * 1000 : 0, retryMs));
            continue;
          }
          if (response.status < 500) {
            onError(error);
            return;
          }
          throw error;
        }
        onState("live");
        idle = false;
        failures = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        const feed = parseEventStream((event) => {
          if (event.type === "retry") {
            retryMs = Number(event.data);
            return;
          }
          if (event.id !== null) lastEventId = event.id;
          if (event.type === "end") ended = true;
          onEvent(event);
        });
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
      }
      if (ended) {
        onState("ended");
        idle = true;
        continue;
      }
      if (idle) continue; // a failed re-check: ask again after the next wait
      // The server closed a long stream, or the network dropped it: resume after the last id.
      onState("reconnecting");
      await sleep(failures ? Math.min(retryMs * 2 ** Math.min(failures, 4), 30000) : 250);
    }
  };
  run();
  return { wake: () => wakeUp() };
}
