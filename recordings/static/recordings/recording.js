// The library's player page: plays a recording's parts in order as one timeline, replays the
// session's telestration in sync, lists chapters and bookmarks, adds marks, and follows export
// progress pushed over the recording's WebSocket.
//
// Times: every time on this page is seconds from the start of the recording ("recording time"),
// across its parts. Part i starts at parts[i].start (the durations of the parts before it), so
// recording time = parts[i].start + video.currentTime. Strokes carry `t` in the same time (the
// server maps their edge media time against the recording's start: recordings.services).

import { $, StatusPanel, followSocket, request, statusOf } from "../orstream/base.js";
import { Telestration } from "../orstream/telestration.js";
import { clock, partAt } from "./timeline.js";

const script = $("recording-script");
const playback = JSON.parse($("playback").textContent);
const video = $("video");
const player = $("player");
const parts = playback.parts;
let part = 0;
let pendingSeek = null;

// The frame keeps the recording's shape, set here: the site's policy allows no inline style.
{
  const frame = $("frame");
  const shape = `${Number(frame.dataset.width) || 16} / ${Number(frame.dataset.height) || 9}`;
  frame.style.aspectRatio = shape;
  frame.style.width = `min(100%, calc(70vh * ${shape}))`;
}

// ------------------------------------------------------------------ states

const panel = new StatusPanel($("player-status"));

// The player's state (loading, ready, playing, error) on #player, and in words while not playing.
function status(level, title, detail = "") {
  player.dataset.state = level;
  if (level === "playing" || level === "ready") panel.clear();
  else panel.show({ level: level === "error" ? "error" : "loading", title, detail });
}

// ------------------------------------------------------------------ parts as one timeline

function now() {
  return parts.length ? parts[part].start + (video.currentTime || 0) : 0;
}

function load(index, { at = 0, play = false } = {}) {
  part = index;
  pendingSeek = at;
  video.src = parts[index].url;
  $("part-label").textContent = parts.length > 1 ? `· part ${index + 1} of ${parts.length}` : "";
  if (play) video.play().catch(() => {});
}

// Jump to recording time `t`, switching part if needed.
function seek(t) {
  const { index, within } = partAt(parts, t);
  if (index === part) {
    video.currentTime = within;
  } else {
    load(index, { at: within, play: !video.paused });
  }
  video.focus();
}

video.addEventListener("loadedmetadata", () => {
  if (pendingSeek) video.currentTime = pendingSeek;
  pendingSeek = null;
});
video.addEventListener("canplay", () => {
  if (player.dataset.state === "loading") status("ready", "Ready");
});
video.addEventListener("playing", () => status("playing", "Playing"));
video.addEventListener("waiting", () => status("loading", "Loading the recording…", "The video continues in a moment."));
video.addEventListener("ended", () => {
  if (part + 1 < parts.length) load(part + 1, { play: true });
});
// Chromium reports a refused or missing file like an unplayable one, so ask the server which it was.
video.addEventListener("error", async () => {
  status("loading", "Checking why the video stopped…");
  const answer = await statusOf(parts[part].url, { headers: { Range: "bytes=0-0" } });
  const detail = {
    403: "You can no longer watch this recording: it may have been locked because the patient withdrew consent. Reload the page to see its state.",
    404: "A part of this recording is missing. Tell the records office which recording it is.",
    0: "The network did not answer. Check the connection, then reload the page.",
  }[answer] || (answer >= 200 && answer < 300
    ? "This browser cannot play the recording's video format. Use an up-to-date Chrome, Edge or Firefox, or ask the records office for an export."
    : "The video could not be loaded. Reload the page; if it keeps failing, tell the records office which recording it is.");
  status("error", "The recording cannot be played", detail);
});

// ------------------------------------------------------------------ telestration replay

const replay = new Telestration($("replay"));
const strokes = playback.annotations;
let shown = -1;

// Strokes on screen at recording time t: those drawn since the last "clear" before t.
function visibleAt(t) {
  let first = 0;
  let last = 0;
  while (last < strokes.length && strokes[last].t <= t) {
    if (strokes[last].kind === "clear") first = last + 1;
    last += 1;
  }
  return strokes.slice(first, last).filter((s) => s.kind === "stroke");
}

function frame() {
  const t = now();
  const visible = visibleAt(t);
  if (visible.length !== shown) {
    shown = visible.length;
    replay.strokes = visible;
    replay.redraw();
  }
  $("position").textContent = clock(t);
  $("bookmark-time").value = t.toFixed(3);
  highlight(t);
}

function loop() {
  frame();
  if (!video.paused && !video.ended) requestAnimationFrame(loop);
}
video.addEventListener("play", () => requestAnimationFrame(loop));
video.addEventListener("seeked", frame);
video.addEventListener("timeupdate", frame);

// ------------------------------------------------------------------ chapters and bookmarks

const marks = [...playback.bookmarks];

function renderMarks() {
  const list = $("marks");
  list.replaceChildren();
  for (const mark of marks) {
    const item = document.createElement("li");
    item.className = mark.private ? `${mark.kind} private` : mark.kind;
    item.dataset.t = mark.t;
    const button = document.createElement("button");
    button.type = "button";
    const time = document.createElement("time");
    time.textContent = clock(mark.t);
    const label = document.createElement("span");
    label.textContent = mark.kind === "chapter" ? `§ ${mark.label}` : mark.label;
    button.append(time, label);
    button.setAttribute("aria-label", `${mark.kind === "chapter" ? "Chapter" : "Bookmark"} ${mark.label} at ${clock(mark.t)}: play from here`);
    button.addEventListener("click", () => seek(mark.t));
    item.append(button);
    list.append(item);
  }
  $("marks-empty").hidden = marks.length > 0;
}

function highlight(t) {
  let current = null;
  for (const item of $("marks").children) {
    item.classList.remove("current");
    if (item.classList.contains("chapter") && Number(item.dataset.t) <= t) current = item;
  }
  if (current) current.classList.add("current");
}

function notice(element, level, text) {
  element.hidden = false;
  element.dataset.level = level;
  element.textContent = text;
}

// The page's forms answer {ok, message, ...}, refusals too; only an unreachable server throws.
async function post(form) {
  try {
    return await request(form.action, { method: "POST", form });
  } catch (error) {
    if (!error.status) throw error;
    return error.data || { ok: false, message: `The server answered ${error.status}. Reload the page and try again.` };
  }
}

$("bookmark-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  $("bookmark-time").value = now().toFixed(3);
  const button = form.querySelector("button");
  button.disabled = true;
  notice($("bookmark-notice"), "info", "Saving…");
  try {
    const reply = await post(form);
    if (reply.ok) {
      marks.push(reply.bookmark);
      marks.sort((a, b) => a.t - b.t);
      renderMarks();
      form.querySelector("#bookmark-label").value = "";
      notice($("bookmark-notice"), "ok", reply.message);
    } else {
      notice($("bookmark-notice"), "error", reply.message);
    }
  } catch {
    notice($("bookmark-notice"), "error", "The mark was not saved: the network did not answer. Check the connection and try again.");
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ export progress

const STAGES = { export: "Copying to the destination", finalize: "Verifying the recording", archive: "Archiving" };

function progress(stage, percent) {
  $("export-progress").hidden = false;
  $("export-bar").value = percent;
  $("export-bar").textContent = `${percent}%`;
  $("export-label").textContent = `${STAGES[stage] || stage}: ${percent}%`;
  if (stage === "export" && percent >= 100) notice($("export-notice"), "ok", "Export finished: every file was copied and checked against its checksum.");
}

// The recording's progress socket, followed with backoff until it refuses for good.
function follow(path) {
  followSocket(path, {
    onMessage: (message) => {
      if (message.type === "progress") progress(message.stage, message.percent);
    },
    onGiveUp: () => notice($("export-notice"), "error", "Live progress is not available right now. An export keeps running; reload the page later to see its result."),
  });
}

const exportForm = $("export-form");
if (exportForm) {
  follow(script.dataset.progress);
  exportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("export-button");
    button.disabled = true;
    notice($("export-notice"), "info", "Starting the export…");
    try {
      const reply = await post(exportForm);
      if (!reply.ok) notice($("export-notice"), "error", reply.message);
      else if (reply.status_text === "done") progress("export", 100);
      else notice($("export-notice"), "info", reply.message);
    } catch {
      notice($("export-notice"), "error", "The export was not started: the network did not answer. Check the connection and try again.");
    } finally {
      button.disabled = false;
    }
  });
}

// ------------------------------------------------------------------ start

renderMarks();
$("length").textContent = clock(playback.duration || 0);
if (!parts.length) {
  status("error", "This recording has no video", "Nothing was registered for it. Tell the records office which recording it is.");
} else {
  // ?t=<seconds> opens the player at that moment (links from chapters, assessments, the training library).
  const from = Number(new URLSearchParams(location.search).get("t")) || 0;
  if (from > 0) {
    part = -1;
    seek(from);
  } else {
    load(0);
  }
}
