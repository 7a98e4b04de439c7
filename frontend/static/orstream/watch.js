// Watching the operating room: the receive side every viewer page shares (mentor, conference room,
// coordinator). The edge answers, in m-line order: video; audio 1 = the room's sound (plus this
// viewer's voice, for roles that may talk); audio 2 = the other viewers' talkback.

import { MediaLink, preferH264 } from "./signalling.js";

export function watch(link, { video, talkback, canTalk = false, offerFields = {} }) {
  let talkSender = null;
  let talkTrack = null;
  let slots = null;
  const media = new MediaLink(link, {
    watchVideo: video,
    waitForPublisher: true,
    offerFields,
    setup: async (pc) => {
      const picture = pc.addTransceiver("video", { direction: "recvonly" });
      preferH264(picture, "recv");
      const room = pc.addTransceiver("audio", { direction: canTalk ? "sendrecv" : "recvonly" });
      const others = pc.addTransceiver("audio", { direction: "recvonly" });
      talkSender = canTalk ? room.sender : null;
      if (talkSender && talkTrack) await talkSender.replaceTrack(talkTrack);
      slots = { picture, room, others };
      // The receivers' tracks exist from the start (muted until media comes): the elements get
      // streams that already hold them. A media element loaded with an empty stream never plays
      // an audio track added to that stream later (Chromium stays at HAVE_NOTHING, in silence).
      video.srcObject = new MediaStream([picture.receiver.track, room.receiver.track]);
      if (talkback) talkback.srcObject = new MediaStream([others.receiver.track]);
    },
  });
  media.addEventListener("track", () => {
    if (!slots) return;
    video.play().catch(() => {});
    if (talkback) talkback.play().catch(() => {});
  });
  watchStills(media);
  // Push-to-talk: the microphone's track is on the sender only while talking. Sending nothing
  // (rather than silence) frees the edge's talk floor for the next person at once.
  media.setTalkTrack = async (track) => {
    talkTrack = track;
    if (talkSender) {
      try {
        await talkSender.replaceTrack(track);
      } catch {
        /* the connection is being rebuilt: setup applies the track */
      }
    }
  };
  return media;
}

// A link too weak even for the edge's lower layer gets its last resort: that layer's keyframes
// only, a still picture every two seconds or so while the sound goes on. The page tells from its
// own stats (every frame decoded over the last seconds was a keyframe) and says so through a
// "picture" event: { stills: true } then { stills: false } once moving pictures come back.
const STILLS_WINDOW_MS = 5000;

function watchStills(media) {
  const history = [];
  let stills = false;
  setInterval(async () => {
    const pc = media.pc;
    if (!pc || pc.connectionState !== "connected") {
      history.length = 0;
      return;
    }
    let frames = 0;
    let keys = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        frames = s.framesDecoded || 0;
        keys = s.keyFramesDecoded || 0;
      }
    });
    const at = performance.now();
    history.push({ frames, keys, at });
    while (history.length > 1 && at - history[1].at >= STILLS_WINDOW_MS) history.shift();
    const old = history[0];
    if (at - old.at < STILLS_WINDOW_MS * 0.8) return;
    const decoded = frames - old.frames;
    const now = decoded > 0 && decoded === keys - old.keys;
    if (now === stills || (decoded === 0 && stills)) return;
    stills = now;
    media.stills = stills;
    media.dispatchEvent(new CustomEvent("picture", { detail: { stills } }));
  }, 1000);
}

// Counters tests and the coordinator use: frames decoded, codec, audio received on each track.
export async function receiveStats(pc) {
  const out = { video: null, audio: [] };
  if (!pc) return out;
  const report = await pc.getStats();
  const codecs = {};
  report.forEach((s) => {
    if (s.type === "codec") codecs[s.id] = s.mimeType;
  });
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      out.video = { codec: codecs[s.codecId], framesDecoded: s.framesDecoded, width: s.frameWidth, height: s.frameHeight, bytes: s.bytesReceived, packetsLost: s.packetsLost };
    } else {
      out.audio.push({ mid: s.mid, codec: codecs[s.codecId], packets: s.packetsReceived, energy: s.totalAudioEnergy, level: s.audioLevel });
    }
  });
  return out;
}
