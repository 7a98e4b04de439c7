// What every orstream page shares, live or not: finding elements, the status panel that says the
// one thing a person most needs to know, one fetch wrapper that turns every failure into words a
// person can act on, and reconnecting with backoff. Imports nothing; page.js (the live pages),
// signalling.js and the recordings' player build on it.

export const $ = (id) => document.getElementById(id);

// One place for the message the page most needs to say. Messages have a key so that, say, the
// video's state and the connection's state do not overwrite each other's "all is well".
export class StatusPanel {
  constructor(element) {
    this.element = element;
    this.current = null;
  }

  show({ level, title, detail = "", actions = [], fatal = false, key = "link" }) {
    if (this.current?.fatal) return;
    this.current = { level, key, fatal };
    const el = this.element;
    el.hidden = false;
    el.dataset.level = level;
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.replaceChildren();
    const heading = document.createElement("p");
    heading.className = "status-title";
    heading.textContent = title;
    el.append(heading);
    if (detail) {
      const p = document.createElement("p");
      p.className = "status-detail";
      p.textContent = detail;
      el.append(p);
    }
    for (const action of actions) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "primary";
      button.textContent = action.label;
      button.addEventListener("click", action.onClick);
      el.append(button);
    }
    if (actions.length && level === "error") el.querySelector("button").focus();
  }

  clear(key) {
    if (!this.current || this.current.fatal) return;
    if (key && this.current.key !== key) return;
    this.current = null;
    this.element.hidden = true;
    this.element.replaceChildren();
  }
}

// A refused or failed request. `status` is the HTTP status, 0 when the server could not be
// reached; `data` is the JSON body the server sent with its refusal, if any.
export class RequestError extends Error {
  constructor(message, { status = 0, data = null } = {}) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

// One JSON request to the site: `json` is sent as JSON, `form` as the form's fields. Returns the
// reply's JSON; throws a RequestError whose message a person can act on.
export async function request(url, { method = "GET", json, form, headers = {} } = {}) {
  const sent = { Accept: "application/json", ...headers };
  let body;
  if (json !== undefined) {
    sent["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = new FormData(form);
  }
  if (method !== "GET") sent["X-CSRFToken"] = document.querySelector("[name=csrfmiddlewaretoken]")?.value || "";
  let reply;
  try {
    reply = await fetch(url, { method, headers: sent, body, credentials: "same-origin" });
  } catch {
    throw new RequestError("orstream cannot be reached. Check the network of this computer.");
  }
  const data = await reply.json().catch(() => null);
  if (!reply.ok || data === null) {
    const message = data?.error || data?.message || `orstream refused (error ${reply.status}). Reload the page; if it persists, call the coordinator.`;
    throw new RequestError(message, { status: reply.status, data });
  }
  return data;
}

// The HTTP status the site answers `url` with (0 when it cannot be reached), for a page that
// needs to know why something the browser loaded itself failed (a video's source, say).
export async function statusOf(url, { headers = {} } = {}) {
  try {
    return (await fetch(url, { headers, credentials: "same-origin" })).status;
  } catch {
    return 0;
  }
}

// How long to wait before reconnection `attempt` (0, 1, 2...): doubling from `firstMs` up to
// `maxMs`, with jitter so that a room full of screens does not come back all at once.
export function retryDelay(attempt, { firstMs = 500, maxMs = 3000 } = {}) {
  return Math.min(maxMs, firstMs * 2 ** attempt) * (0.85 + Math.random() * 0.3);
}

// A site path as a WebSocket URL of this page's origin.
export function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

// Follow a socket that only pushes (progress): reconnect with backoff; stop for good on a close
// code in `finalCodes` (a refusal nothing will change); a refusal before the handshake looks like
// any failed connection to a browser, so after `giveUpAfter` attempts that never opened, call
// `onGiveUp` instead of retrying forever.
export function followSocket(path, { onMessage, onGiveUp = () => {}, finalCodes = [4403, 4404], giveUpAfter = 5 }) {
  let attempt = 0;
  let failedOpens = 0;
  const open = () => {
    const socket = new WebSocket(socketUrl(path));
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      attempt = 0;
      failedOpens = 0;
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (finalCodes.includes(event.code)) return;
      if (!opened && ++failedOpens >= giveUpAfter) {
        onGiveUp();
        return;
      }
      setTimeout(open, retryDelay(attempt++, { firstMs: 1000, maxMs: 30000 }));
    });
  };
  open();
}
