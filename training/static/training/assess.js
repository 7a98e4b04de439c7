// The assessment page: plays the recording's parts as one timeline (from the assessed part's
// start), keeps the comment form's time on the player's position, and jumps the player to a
// comment's moment. Times are seconds from the recording's start across its parts, as the
// library's player and the bookmarks count them (recordings/static/recordings/recording.js).

import { $ } from "../orstream/base.js";
import { clock, partAt } from "../recordings/timeline.js";

const playback = JSON.parse($("playback").textContent);
const parts = playback.parts;
const video = $("video");
let part = -1;
let pendingSeek = null;

function status(state, title, detail = "") {
  $("player").dataset.state = state;
  $("player-status").hidden = state === "ready" || state === "playing";
  $("player-status").dataset.level = state === "error" ? "error" : "loading";
  $("player-status-title").textContent = title;
  $("player-status-detail").textContent = detail;
}

const now = () => (part >= 0 ? parts[part].start + (video.currentTime || 0) : 0);

function seek(t) {
  const { index, within } = partAt(parts, t);
  if (index === part) {
    video.currentTime = within;
  } else {
    part = index;
    pendingSeek = within;
    video.src = parts[index].url;
  }
}

function tick() {
  const t = now();
  $("position").textContent = clock(t);
  if ($("comment-time")) {
    $("comment-time").value = t.toFixed(3);
    $("comment-at").textContent = clock(t);
  }
}

video.addEventListener("loadedmetadata", () => {
  if (pendingSeek) video.currentTime = pendingSeek;
  pendingSeek = null;
  tick();
});
video.addEventListener("canplay", () => { if ($("player").dataset.state === "loading") status("ready", "Ready"); });
video.addEventListener("playing", () => status("playing", "Playing"));
video.addEventListener("timeupdate", tick);
video.addEventListener("seeked", tick);
video.addEventListener("ended", () => { if (part + 1 < parts.length) { seek(parts[part + 1].start); video.play().catch(() => {}); } });
video.addEventListener("error", () => status("error", "The recording cannot be played",
  "It may have been locked because the patient withdrew consent, or this browser cannot play it. Reload the page; if it keeps failing, tell the records office."));

for (const button of document.querySelectorAll("button.seek")) {
  button.addEventListener("click", () => { seek(Number(button.dataset.t)); video.focus(); });
}

if (!parts.length) {
  status("error", "This recording has no video", "Nothing was registered for it. Tell the records office which recording it is.");
} else {
  seek(playback.start || 0);
}
