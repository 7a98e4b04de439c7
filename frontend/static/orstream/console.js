// OR console (the surgeon's side). When the room has its own video feed, the console shows that
// feed as the mentors see it (a viewer of the edge); the surgeon may switch to the console's camera
// deliberately, which then replaces the feed for everyone, and back. Without a room feed the
// console publishes its camera. Either way it plays the mentors' talkback, shows their drawings
// over the picture they drew on, who is watching by role, and the recording and consent state.

import { $, Presence, FrameFit, api, consentText, mediaMessage, recordingText, startPage } from "./page.js";
import { MediaLink, preferH264 } from "./signalling.js";
import { publishEncodings } from "./encodings.js";
import { Telestration, buildPickers } from "./telestration.js";
import { watch } from "./watch.js";

const { boot, link, status } = startPage();
const video = $("video");
const talkback = $("talkback");
const fit = new FrameFit($("area"), $("frame"), video);

// ---------------------------------------------------------------- the mentors' voices
// The console must play talkback without anyone clicking first. Browsers that refuse sound before
// a user gesture (a kiosk should allow it: see the README) get a clear message, and the first
// touch or key press anywhere on the page turns the sound on.
const sound = {
  state: "waiting",
  async play() {
    talkback.muted = false;
    if (!talkback.srcObject) return;
    try {
      await talkback.play();
      this.show("on");
    } catch (error) {
      if (error.name === "NotAllowedError") this.show("blocked");
    }
  },
  show(state) {
    this.state = state;
    document.body.dataset.sound = state;
    $("sound").hidden = state !== "blocked";
    $("sound-state").dataset.state = state;
    $("sound-state").textContent = {
      on: "On: you hear a mentor as soon as they talk.",
      blocked: "Blocked by this browser. Touch the screen or press any key to hear the mentors.",
      waiting: "Waiting for the connection…",
    }[state];
  },
};
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => sound.state === "blocked" && sound.play(), { capture: true });
}
$("sound").addEventListener("click", () => sound.play());
talkback.addEventListener("playing", () => sound.show("on"));
sound.show("waiting");

// ---------------------------------------------------------------- camera
let camera = null;

const CAMERA_HELP = {
  NotAllowedError: {
    title: "The browser is not allowed to use the camera",
    detail: "Click the camera icon in the address bar, choose “Allow”, then press “Try the camera again”. If a hospital policy blocks it, call IT support.",
  },
  NotFoundError: {
    title: "No camera found",
    detail: "Check that the camera or the video capture box is plugged in and switched on, then press “Try the camera again”.",
  },
  NotReadableError: {
    title: "The camera is busy",
    detail: "Another program is using the camera. Close it (video call, recording software), then press “Try the camera again”.",
  },
};
CAMERA_HELP.OverconstrainedError = CAMERA_HELP.NotFoundError;

async function openCamera() {
  if (source !== "camera") return;
  $("camera-retry").hidden = true;
  $("camera-state").textContent = "Starting…";
  status.show({ level: "loading", title: "Starting the camera…", detail: "If the browser asks, allow the camera and the microphone.", key: "camera" });
  let stream;
  try {
    // Ask for 4K at 60 fps: the browser gives the closest the device can do.
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 3840 }, height: { ideal: 2160 }, frameRate: { ideal: 60 } },
    });
  } catch (error) {
    const help = CAMERA_HELP[error.name] || { title: "The camera could not start", detail: `${error.message || error.name}. Press “Try the camera again”; if it fails again, restart the computer.` };
    $("camera-state").textContent = help.title;
    $("camera-retry").hidden = false;
    status.show({ level: "error", ...help, key: "camera", actions: [{ label: "Try the camera again", onClick: openCamera }] });
    return;
  }
  let micNote = "";
  try {
    const audio = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: true } });
    stream.addTrack(audio.getAudioTracks()[0]);
  } catch {
    micNote = " No microphone: the mentors see but do not hear the room.";
  }
  if (source !== "camera") {
    // The surgeon went back to the room's feed while the camera was starting.
    stream.getTracks().forEach((t) => t.stop());
    return;
  }
  camera = stream;
  const track = stream.getVideoTracks()[0];
  track.contentHint = "detail";
  const settings = track.getSettings();
  $("camera-state").textContent = `${settings.width}×${settings.height}${settings.frameRate ? ` at ${Math.round(settings.frameRate)} fps` : ""}.${micNote}`;
  track.addEventListener("ended", () => {
    if (camera !== stream) return;
    $("camera-state").textContent = "The camera was disconnected.";
    status.show({ level: "error", ...CAMERA_HELP.NotFoundError, key: "camera", actions: [{ label: "Try the camera again", onClick: openCamera }] });
    publisher.stop();
  });
  video.srcObject = stream;
  video.play().catch(() => {});
  status.clear("camera");
  publisher.start();
}

function closeCamera() {
  camera?.getTracks().forEach((t) => t.stop());
  camera = null;
  $("camera-retry").hidden = true;
  $("camera-state").textContent = boot.room_feed ? "Not in use: the room's feed is shown." : "Off.";
}

// ---------------------------------------------------------------- publishing the camera
const publisher = new MediaLink(link, {
  offerFields: { media: "publish" },
  setup: async (pc) => {
    const track = camera.getVideoTracks()[0];
    const settings = track.getSettings();
    const picture = pc.addTransceiver(track, {
      direction: "sendonly",
      streams: [camera],
      // Far more than the browser's default cap; keep the resolution, drop frames if short.
      sendEncodings: publishEncodings(settings),
    });
    preferH264(picture, "send");
    const params = picture.sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await picture.sender.setParameters(params).catch(() => {});
    const mic = camera.getAudioTracks()[0];
    // Audio both ways: the room's sound out, the mentors' talkback in. The element gets the
    // receiver's track now (see watch.js): one loaded without it would stay silent.
    const voices = pc.addTransceiver(mic || "audio", { direction: "sendrecv", streams: [camera] });
    talkback.srcObject = new MediaStream([voices.receiver.track]);
  },
});
publisher.addEventListener("track", (event) => {
  if (event.detail.track.kind === "audio") sound.play();
});

// ---------------------------------------------------------------- watching the room's feed
// As a viewer of the edge: the picture the mentors see and draw on. The room's own sound is not
// played (the room hears itself); the second audio track is the mentors' talkback. The surgeon's
// voice (boot.may.talk) goes out with the publisher's microphone above, so this connection only
// listens: sending it here too would make the mentors hear the room twice.
const viewer = watch(link, { video, talkback, canTalk: false, offerFields: { media: "watch" } });
viewer.addEventListener("track", (event) => {
  if (event.detail.track.kind === "audio") sound.play();
});

// ---------------------------------------------------------------- which picture
const SOURCE_KEY = `orstream.console.source.${boot.session.id}`;
let source = boot.room_feed ? (sessionStorage.getItem(SOURCE_KEY) === "camera" ? "camera" : "feed") : "camera";
let switching = false;
const active = () => (source === "camera" ? publisher : viewer);

const SOURCE_TEXT = {
  feed: "The room's video feed. The mentors see this same picture and draw on it.",
  camera: boot.room_feed
    ? "This console's camera, in place of the room's feed. The mentors see it."
    : "This console's camera (the room has no video feed of its own). The mentors see it.",
};

function renderSource() {
  $("source-state").textContent = switching ? "Switching…" : SOURCE_TEXT[source];
  $("source-state").dataset.source = source;
  document.body.dataset.source = source;
  $("source-choice").hidden = !boot.room_feed;
  for (const input of document.querySelectorAll("input[name=source]")) {
    input.checked = input.value === source;
    input.disabled = switching;
  }
}

async function use(next) {
  if (switching || next === source) return;
  switching = true;
  const leaving = active();
  source = next;
  sessionStorage.setItem(SOURCE_KEY, next);
  renderSource();
  leaving.stop();
  // One offer at a time: the edge must see the switch in the order the surgeon made it.
  await leaving.settled();
  status.clear("media");
  talkback.srcObject = null;
  if (next === "camera") {
    video.srcObject = null;
    await openCamera();
  } else {
    closeCamera();
    video.srcObject = null;
    viewer.start();
  }
  switching = false;
  renderSource();
}

for (const input of document.querySelectorAll("input[name=source]")) {
  input.addEventListener("change", () => input.checked && use(input.value));
}

function onMediaState(link) {
  return (event) => {
    if (link !== active()) return;
    const { state, message } = event.detail;
    const feed = link === viewer;
    const text = {
      live: feed ? "Live: showing the room's feed, as the mentors see it." : "Live: the mentors see this picture.",
      connecting: "Connecting to the media server…",
      waiting: "Not yet (see the message on the picture)",
      retrying: "Interrupted: reconnecting…",
      ended: message,
    }[state] || state;
    $("publish-state").textContent = text;
    $("publish-state").dataset.state = state;
    if (state === "live") status.clear("media");
    else if (state === "ended") status.show({ level: "info", title: "The session has ended", detail: message, key: "media" });
    else if (feed && state !== "connecting") status.show({ ...mediaMessage(event.detail, "video from the room"), key: "media" });
    else if (state === "waiting") status.show({ level: "warn", title: "Not broadcasting yet", detail: `${message} Trying again by itself.`, key: "media" });
    else if (state === "retrying") status.show({ level: "warn", title: "Broadcast interrupted", detail: message, key: "media" });
  };
}
publisher.addEventListener("state", onMediaState(publisher));
viewer.addEventListener("state", onMediaState(viewer));

// ---------------------------------------------------------------- who is watching
const presence = new Presence(link, $("people"), $("talking"));
const renderSummary = () => {
  const counts = new Map();
  for (const person of presence.people.values()) {
    if (person.id === presence.self) continue;
    counts.set(person.role_label, (counts.get(person.role_label) || 0) + 1);
  }
  $("watching-summary").textContent = counts.size ? [...counts].map(([label, n]) => `${n} × ${label}`).join(", ") : "Nobody yet.";
};
for (const type of ["welcome", "presence"]) link.addEventListener(type, () => setTimeout(renderSummary));

// ---------------------------------------------------------------- recording and consent
async function refreshState() {
  try {
    const state = await api(boot, "state/");
    $("recording-state").textContent = recordingText(state.recording);
    $("recording-state").dataset.state = state.recording.state;
    document.body.dataset.recording = state.recording.state;
    $("consent-state").textContent = consentText(state.consent);
  } catch (error) {
    $("recording-state").textContent = `Unknown: ${error.message}`;
  }
}
link.addEventListener("notice", (event) => {
  const kind = event.detail.event;
  if (kind === "recording.started" || kind === "recording.stopped") refreshState();
});
link.addEventListener("welcome", refreshState);
setInterval(refreshState, 10000);

// ---------------------------------------------------------------- drawings
// The canvas lies over the video element, which shows the picture the mentors see: the room's
// feed when that is the source, else this camera (the one the mentors receive).
const pickers = buildPickers($("pickers"), boot.drawing);
const telestration = new Telestration($("overlay"), {
  editable: true,
  send: (message) => link.send(message),
  mediaTime: () => Date.now() / 1000,
  tool: pickers.tool,
  color: pickers.color,
});
link.addEventListener("annotation", (event) => telestration.apply(event.detail));
link.addEventListener("welcome", (event) => telestration.restore(event.detail.drawing || []));
$("clear").addEventListener("click", () => link.send({ type: "clear", media_time: Date.now() / 1000 }));
$("camera-retry").addEventListener("click", openCamera);

document.addEventListener("orstream:ended", () => {
  publisher.stop();
  viewer.stop();
  closeCamera();
});

Object.defineProperty(window.orstream, "media", { get: active });
Object.defineProperty(window.orstream, "source", { get: () => source });
Object.assign(window.orstream, { publisher, viewer, telestration, fit, sound, use });
renderSource();
link.connect();
if (source === "camera") openCamera();
else {
  closeCamera();
  viewer.start();
}
