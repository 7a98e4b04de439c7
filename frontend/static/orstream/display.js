// Conference-room display (kiosk): full-screen video with the drawings and the speakers' voices.
// View-only: it never asks for a microphone or camera. It starts muted (browsers refuse sound
// before a click) with a clear "Click for sound", and reconnects by itself, forever.

import { $, FrameFit, Presence, SoundGate, mediaMessage, startPage } from "./page.js";
import { LatencyMeter } from "./signalling.js";
import { Telestration } from "./telestration.js";
import { receiveStats, watch } from "./watch.js";

const { boot, link, status } = startPage();
const video = $("video");
const talkback = $("talkback");
new FrameFit($("area"), $("frame"), video);

const sound = new SoundGate($("sound"), { startMuted: true });
sound.attach(video);
sound.attach(talkback);
$("sound").addEventListener("click", () => {
  // A kiosk browser may not be in full screen yet: the click is the chance to ask.
  if (!document.fullscreenElement) document.documentElement.requestFullscreen?.().catch(() => {});
});

const latency = new LatencyMeter(link, video, $("latency"));
latency.start();

const media = watch(link, { video, talkback, canTalk: boot.may.talk });
media.addEventListener("state", (event) => {
  if (event.detail.state === "live") status.clear("media");
  else if (event.detail.state === "ended") status.show({ level: "info", title: "The session has ended", detail: event.detail.message, key: "media" });
  else status.show({ ...mediaMessage(event.detail), key: "media" });
});

new Presence(link, null, $("talking"));
const telestration = new Telestration($("overlay"));
link.addEventListener("annotation", (event) => telestration.apply(event.detail));
link.addEventListener("welcome", (event) => telestration.restore(event.detail.drawing || []));
document.addEventListener("orstream:ended", () => media.stop());

Object.assign(window.orstream, { media, telestration, latency, sound, stats: () => receiveStats(media.pc) });
link.connect();
media.start();
