// Mentor page (also specialists, residents and observers): the live field at native resolution,
// push-to-talk, telestration and chat. Residents and observers watch, read and chat only.

import { $, Chat, FrameFit, Presence, SoundGate, mediaMessage, startPage } from "./page.js";
import { LatencyMeter } from "./signalling.js";
import { Telestration, buildPickers } from "./telestration.js";
import { receiveStats, watch } from "./watch.js";

const { boot, link, status } = startPage();
// What this role may do comes with the page (orstream.roles), not decided here.
const canDraw = boot.may.draw;
const canTalk = boot.may.talk;

const video = $("video");
const talkback = $("talkback");
const fit = new FrameFit($("area"), $("frame"), video);
for (const [id, mode] of [["fit", "fit"], ["native", "native"]]) {
  $(id).addEventListener("click", () => {
    fit.setMode(mode);
    $("fit").setAttribute("aria-pressed", String(mode === "fit"));
    $("native").setAttribute("aria-pressed", String(mode === "native"));
  });
}

const sound = new SoundGate($("sound"));
sound.attach(video);
sound.attach(talkback);
const latency = new LatencyMeter(link, video, $("latency"));
latency.start();

const media = watch(link, { video, talkback, canTalk });
media.addEventListener("state", (event) => {
  if (event.detail.state === "live") status.clear("media");
  else if (event.detail.state === "ended") status.show({ level: "info", title: "The session has ended", detail: event.detail.message, key: "media" });
  else status.show({ ...mediaMessage(event.detail), key: "media" });
});

media.addEventListener("picture", (event) => {
  if (!event.detail.stills) return status.clear("picture");
  status.show({
    level: "info",
    key: "picture",
    title: "Your connection is very weak: still pictures only",
    detail: "You see a still picture every two seconds or so, and you still hear the operating room. The moving picture comes back by itself when the connection improves.",
  });
});

new Presence(link, $("people"), $("talking"));
new Chat(link, $("chat-log"), $("chat-form"));

// ---------------------------------------------------------------- telestration
let pickers = null;
if (canDraw) pickers = buildPickers($("pickers"), boot.drawing);
else $("draw-tools").hidden = true;
const telestration = new Telestration($("overlay"), {
  editable: canDraw,
  send: (message) => link.send(message),
  mediaTime: () => latency.mediaTime(),
  tool: () => pickers?.tool() || boot.drawing.tools[0].value,
  color: () => pickers?.color() || boot.drawing.colours[0].value,
});
link.addEventListener("annotation", (event) => telestration.apply(event.detail));
link.addEventListener("welcome", (event) => telestration.restore(event.detail.drawing || []));
$("clear").addEventListener("click", () => link.send({ type: "clear", media_time: latency.mediaTime() }));

// ---------------------------------------------------------------- microphone
let mic = null;
let held = false;
let open = false;
let talking = false;

async function getMic() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    mic = stream.getAudioTracks()[0];
    $("talk").disabled = false;
    $("open-mic").disabled = false;
    $("mic-retry").hidden = true;
    setTalking(false);
  } catch (error) {
    $("talk").disabled = true;
    $("open-mic").disabled = true;
    $("mic-retry").hidden = false;
    $("mic-state").dataset.level = "error";
    $("mic-state").textContent =
      error.name === "NotAllowedError"
        ? "Your microphone is blocked, so the operating room cannot hear you. You can still watch, draw and chat. To talk: click the camera or microphone icon in the address bar, allow the microphone, then press “Try the microphone again”."
        : "No microphone was found, so the operating room cannot hear you. You can still watch, draw and chat. Plug in a headset, then press “Try the microphone again”.";
  }
}

function setTalking(on) {
  const next = Boolean(on && mic);
  if (next !== talking) {
    talking = next;
    media.setTalkTrack(talking ? mic : null);
    link.send({ type: "talking", talking });
  }
  $("talk").setAttribute("aria-pressed", String(held));
  $("open-mic").setAttribute("aria-pressed", String(open));
  $("open-mic").textContent = open ? "Mute microphone" : "Keep microphone on";
  document.body.dataset.talking = String(talking);
  const state = $("mic-state");
  state.dataset.level = talking ? "live" : "muted";
  state.textContent = talking
    ? "The operating room hears you."
    : "Muted. Hold the button or the Space bar to talk.";
}

if (canTalk) {
  const talk = $("talk");
  const press = (event) => {
    event.preventDefault();
    held = true;
    setTalking(true);
  };
  const release = () => {
    held = false;
    setTalking(open);
  };
  talk.addEventListener("pointerdown", press);
  talk.addEventListener("pointerup", release);
  talk.addEventListener("pointerleave", () => held && release());
  talk.addEventListener("pointercancel", release);
  $("open-mic").addEventListener("click", () => {
    open = !open;
    setTalking(open || held);
  });
  // Space anywhere except while typing: hold to talk.
  const typing = (target) => target.closest?.("input, textarea, select, [contenteditable]");
  document.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    if (!event.repeat && !held) {
      held = true;
      setTalking(true);
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target)) return;
    event.preventDefault();
    release();
  });
  window.addEventListener("blur", () => held && release());
  $("mic-retry").addEventListener("click", getMic);
  link.addEventListener("welcome", () => {
    if (talking) link.send({ type: "talking", talking: true });
  });
  getMic();
} else {
  $("mic-tools").hidden = true;
}

document.addEventListener("orstream:ended", () => {
  media.stop();
  setTalking(false);
  mic?.stop();
});

Object.assign(window.orstream, { media, telestration, latency, stats: () => receiveStats(media.pc) });
link.connect();
media.start();
