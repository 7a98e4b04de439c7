// OR console (the surgeon's side): publishes the camera at the best resolution the device gives,
// plays the mentors' talkback, shows their drawings over its own preview, who is watching by role,
// and the recording and consent state.

import { FrameFit, Presence, SoundGate, api, consentText, recordingText, startPage } from "./page.js";
import { MediaLink, preferH264 } from "./signalling.js";
import { Telestration, buildPickers } from "./telestration.js";

const $ = (id) => document.getElementById(id);
const { boot, link, status } = startPage();
const video = $("video");
const talkback = $("talkback");
const fit = new FrameFit($("area"), $("frame"), video);
const sound = new SoundGate($("sound"));
sound.attach(talkback);

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
  camera = stream;
  const track = stream.getVideoTracks()[0];
  track.contentHint = "detail";
  const settings = track.getSettings();
  $("camera-state").textContent = `${settings.width}×${settings.height}${settings.frameRate ? ` at ${Math.round(settings.frameRate)} fps` : ""}.${micNote}`;
  track.addEventListener("ended", () => {
    $("camera-state").textContent = "The camera was disconnected.";
    status.show({ level: "error", ...CAMERA_HELP.NotFoundError, key: "camera", actions: [{ label: "Try the camera again", onClick: openCamera }] });
    publisher.stop();
  });
  video.srcObject = stream;
  video.play().catch(() => {});
  status.clear("camera");
  publisher.start();
}

// ---------------------------------------------------------------- publishing
let talkStream = null;
const publisher = new MediaLink(link, {
  setup: async (pc) => {
    const track = camera.getVideoTracks()[0];
    const picture = pc.addTransceiver(track, {
      direction: "sendonly",
      streams: [camera],
      // 4K needs far more than the browser's default cap; keep the resolution, drop frames if short.
      sendEncodings: [{ maxBitrate: 25_000_000, maxFramerate: 60 }],
    });
    preferH264(picture, "send");
    const params = picture.sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await picture.sender.setParameters(params).catch(() => {});
    const mic = camera.getAudioTracks()[0];
    // Audio both ways: the room's sound out, the mentors' talkback in.
    pc.addTransceiver(mic || "audio", { direction: "sendrecv", streams: [camera] });
    talkStream = new MediaStream();
    talkback.srcObject = talkStream;
  },
});
publisher.addEventListener("track", (event) => {
  if (event.detail.track.kind === "audio") {
    talkStream.addTrack(event.detail.track);
    sound.attach(talkback);
  }
});
publisher.addEventListener("state", (event) => {
  const { state, message } = event.detail;
  const text = { live: "Live: the mentors see this picture.", connecting: "Connecting to the media server…", waiting: "Not yet (see the message on the picture)", retrying: "Interrupted: reconnecting…", ended: message }[state] || state;
  $("publish-state").textContent = text;
  $("publish-state").dataset.state = state;
  if (state === "live") status.clear("media");
  else if (state === "waiting") status.show({ level: "warn", title: "Not broadcasting yet", detail: `${message} Trying again by itself.`, key: "media" });
  else if (state === "retrying") status.show({ level: "warn", title: "Broadcast interrupted", detail: message, key: "media" });
});

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
const pickers = buildPickers($("pickers"));
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
  camera?.getTracks().forEach((t) => t.stop());
});

Object.assign(window.orstream, { media: publisher, telestration, fit });
link.connect();
openCamera();
