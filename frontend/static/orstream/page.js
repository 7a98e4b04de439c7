// Pieces every live page shares: the connection pill and status panel (loading / failure / success
// in words for the theatre), fitting the video frame, the sound button, presence, talking, chat.
// Built on base.js (what every page shares, live or not), whose pieces it passes on.

import { $, StatusPanel, request } from "./base.js";
import { SessionLink, readBootstrap } from "./signalling.js";

export { $, StatusPanel };

export function startPage() {
  const boot = readBootstrap();
  const link = new SessionLink({ wsPath: boot.ws_path, token: boot.token });
  const status = new StatusPanel($("status"));
  const pill = $("connection");
  status.show({ level: "loading", title: "Connecting to the session…", detail: "This takes a few seconds." });
  link.addEventListener("state", (event) => {
    const { state } = event.detail;
    if (pill) {
      pill.dataset.state = state;
      pill.textContent = {
        connecting: "Connecting…",
        open: "Connected",
        reconnecting: "Reconnecting…",
        lost: "Connection lost: reconnecting…",
        ended: "Disconnected",
      }[state] || state;
    }
    if (state === "lost" && link.welcome) {
      status.show({
        level: "warn",
        title: "Connection to orstream interrupted",
        detail: "Reconnecting by itself: orstream may be restarting. If this lasts more than a minute, call the coordinator.",
      });
    } else if (state === "lost") {
      status.show({
        level: "warn",
        title: "Cannot reach orstream",
        detail: "Trying again by itself. Check that this computer is on the hospital network.",
      });
    } else if (state === "ended") {
      const final = event.detail;
      document.body.classList.add("ended");
      status.show({
        level: "error",
        title: final.reason === "consent" ? "The video is not available to you" : "You cannot take part in this session",
        detail: final.message,
        fatal: true,
      });
      document.dispatchEvent(new CustomEvent("orstream:ended", { detail: final }));
    }
  });
  link.addEventListener("welcome", () => status.clear("link"));
  window.orstream = { boot, link, status };
  return { boot, link, status };
}

// Size the frame (video + drawings) to the picture: fit the window, or one video pixel per screen pixel.
export class FrameFit {
  constructor(area, frame, video) {
    this.area = area;
    this.frame = frame;
    this.video = video;
    this.mode = "fit";
    new ResizeObserver(() => this.update()).observe(area);
    video.addEventListener("resize", () => this.update());
    video.addEventListener("loadedmetadata", () => this.update());
    this.update();
  }

  setMode(mode) {
    this.mode = mode;
    this.area.dataset.mode = mode;
    this.update();
  }

  update() {
    const vw = this.video.videoWidth || 1920;
    const vh = this.video.videoHeight || 1080;
    let width;
    let height;
    if (this.mode === "native") {
      const dpr = window.devicePixelRatio || 1;
      width = vw / dpr;
      height = vh / dpr;
    } else {
      const scale = Math.min(this.area.clientWidth / vw, this.area.clientHeight / vh) || 1;
      width = vw * scale;
      height = vh * scale;
    }
    this.frame.style.width = `${Math.floor(width)}px`;
    this.frame.style.height = `${Math.floor(height)}px`;
    const size = $("video-size");
    if (size) size.textContent = this.video.videoWidth ? `${this.video.videoWidth}×${this.video.videoHeight}` : "";
  }
}

// Browsers may refuse to play sound before someone clicks. `startMuted` (the conference room)
// always starts muted; other pages try with sound and fall back to muted.
export class SoundGate {
  constructor(button, { startMuted = false } = {}) {
    this.button = button;
    this.muted = startMuted;
    this.elements = new Set();
    button.addEventListener("click", () => this.unmute());
    this.render();
  }

  attach(element) {
    this.elements.add(element);
    element.muted = this.muted;
    element.play().catch(() => {
      if (!element.muted) {
        this.muted = true;
        element.muted = true;
        this.render();
        element.play().catch(() => {});
      }
    });
  }

  unmute() {
    this.muted = false;
    for (const element of this.elements) {
      element.muted = false;
      element.play().catch(() => {});
    }
    this.render();
  }

  render() {
    this.button.hidden = !this.muted;
    document.body.dataset.sound = this.muted ? "off" : "on";
  }
}

// Who is here, by role, and who is talking.
export class Presence {
  constructor(link, list, talkingLine) {
    this.people = new Map();
    this.talking = new Set();
    this.list = list;
    this.talkingLine = talkingLine;
    link.addEventListener("welcome", (event) => {
      this.people.clear();
      this.talking.clear();
      this.self = event.detail.participant.id;
      for (const person of event.detail.present) this.people.set(person.id, person);
      this.people.set(event.detail.participant.id, event.detail.participant);
      this.render();
    });
    link.addEventListener("presence", (event) => {
      const person = event.detail.participant;
      if (event.detail.event === "joined") this.people.set(person.id, person);
      else {
        this.people.delete(person.id);
        this.talking.delete(person.id);
      }
      this.render();
    });
    link.addEventListener("talking", (event) => {
      if (event.detail.talking) this.talking.add(event.detail.participant);
      else this.talking.delete(event.detail.participant);
      this.render();
    });
  }

  name(id) {
    return this.people.get(id)?.name || "Someone";
  }

  render() {
    if (this.list) {
      this.list.replaceChildren();
      const sorted = [...this.people.values()].sort((a, b) => a.role.localeCompare(b.role) || a.name.localeCompare(b.name));
      for (const person of sorted) {
        const li = document.createElement("li");
        li.dataset.role = person.role;
        li.dataset.id = person.id;
        const name = document.createElement("span");
        name.className = "person-name";
        name.textContent = person.id === this.self ? `${person.name} (you)` : person.name;
        const role = document.createElement("span");
        role.className = "person-role";
        role.textContent = person.role_label + (person.external ? " · external" : "");
        li.append(name, role);
        if (this.talking.has(person.id)) {
          li.classList.add("talking");
          const mic = document.createElement("span");
          mic.className = "talking-mark";
          mic.textContent = "talking";
          li.append(mic);
        }
        this.list.append(li);
      }
    }
    if (this.talkingLine) {
      const names = [...this.talking].filter((id) => id !== this.self).map((id) => this.name(id));
      this.talkingLine.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} talking` : "";
      this.talkingLine.hidden = !names.length;
    }
  }
}

export class Chat {
  constructor(link, log, form) {
    this.log = log;
    link.addEventListener("annotation", (event) => {
      if (event.detail.kind === "chat") this.add(event.detail);
    });
    link.addEventListener("welcome", () => this.log.replaceChildren());
    if (!form) return;
    const input = form.querySelector("input, textarea");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (link.send({ type: "chat", text })) input.value = "";
    });
  }

  add(line) {
    const li = document.createElement("li");
    const who = document.createElement("strong");
    who.textContent = line.from_name;
    const at = document.createElement("time");
    at.dateTime = line.at;
    at.textContent = new Date(line.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(who, " ", at, document.createElement("br"), line.text);
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
  }
}

// What to say when the edge refuses or the media path fails.
export function mediaMessage(detail, who = "video") {
  if (detail.restarted) {
    return {
      level: "warn",
      title: "The media server restarted",
      detail: "Nothing to do on this computer: the video comes back by itself in a few seconds.",
    };
  }
  if (detail.state === "waiting") {
    return {
      level: "warn",
      title: detail.hadVideo ? "Video interrupted" : `No ${who} yet`,
      detail: `${detail.message} Trying again by itself every few seconds.`,
    };
  }
  if (detail.state === "retrying") {
    return { level: "warn", title: "Video interrupted", detail: detail.message };
  }
  return { level: "loading", title: "Connecting the video…", detail: "This takes a few seconds." };
}

// The live pages' JSON (frontend/views.py), authorized by the page's join token.
export function api(boot, path, { method = "GET", body } = {}) {
  return request(`/live/${boot.session.id}/${path}`, { method, json: body, headers: { "X-Orstream-Token": boot.token } });
}

export const PURPOSE_NAMES = { record: "recording", live_internal: "live viewing in the hospital", live_external: "live viewing outside the hospital" };

export function consentText(consent) {
  if (!consent) return "unknown";
  const yes = Object.entries(consent).filter(([, v]) => v).map(([k]) => PURPOSE_NAMES[k] || k);
  const no = Object.entries(consent).filter(([, v]) => !v).map(([k]) => PURPOSE_NAMES[k] || k);
  if (!yes.length) return "No consent on record: no recording, no viewers who need it.";
  return `Given for ${yes.join(", ")}.` + (no.length ? ` Not given for ${no.join(", ")}.` : "");
}

export function recordingText(recording) {
  if (!recording) return "unknown";
  if (recording.state === "recording") {
    // The site words the time in the session's own zone, as on every page and in the e-mail.
    const since = recording.since || new Date(recording.started_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return `Recording since ${since}`;
  }
  // A recording runs but the media server is not writing it (it restarted, or is unreachable).
  if (recording.state === "interrupted") return recording.note || "Recording interrupted: nothing is being recorded right now.";
  return "Not recording";
}
