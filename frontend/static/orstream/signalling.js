// orstream signalling client, shared by every live page.
//
// SessionLink: one WebSocket to /ws/sessions/<id>/ (protocol: docs/signalling.md). It joins with
// the page's token, reconnects with backoff, and never reconnects after close 4403 (refused or
// removed): the page shows the message instead. Messages come out as DOM events named by type.
//
// MediaLink: one RTCPeerConnection to the media edge through the link. The edge does not trickle
// ICE, so candidates are gathered before the offer leaves. It rebuilds the connection by itself
// when the edge drops, the network fails or the video freezes.
//
// LatencyMeter: glass-to-glass estimate from the edge's ingest clock to this screen, using
// requestVideoFrameCallback's rtpTimestamp and the clock mapping the edge gives.

import { $, retryDelay, socketUrl } from "./base.js";

const REFUSED = 4403;
const PING_EVERY_MS = 15000;
// The server answers in order: a pong can wait behind an offer the edge takes seconds to answer.
const PONG_WITHIN_MS = 10000;

export function readBootstrap() {
  return JSON.parse($("orstream-bootstrap").textContent);
}

const REMOVED_MESSAGES = {
  revoked: "Your link was withdrawn by the coordinator. Contact them if you should still take part.",
  consent: "The patient's consent no longer covers your viewing, so the video was stopped. Contact the coordinator if you think this is wrong.",
  removed: "The coordinator removed you from this session. Contact them if you should still take part.",
  expired: "Your link's time is up. Ask the coordinator or the surgeon for a new link if you should stay.",
};

export class SessionLink extends EventTarget {
  constructor({ wsPath, token }) {
    super();
    this.wsPath = wsPath;
    this.token = token;
    this.ws = null;
    this.joined = false;
    this.final = null; // {reason, message} once refused or removed: no reconnection after that
    this.attempt = 0;
    this.state = "idle";
    this.welcome = null;
    this.waiters = [];
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.setState(this.welcome ? "reconnecting" : "connecting");
    const ws = new WebSocket(socketUrl(this.wsPath));
    this.ws = ws;
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "join", token: this.token })));
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (ws === this.ws) this.handle(message);
    });
    ws.addEventListener("close", (event) => {
      if (ws === this.ws) this.closed(event);
    });
  }

  handle(message) {
    this.lastHeard = Date.now();
    if (message.type === "welcome") {
      this.attempt = 0;
      this.joined = true;
      this.welcome = message;
      this.startPings();
    } else if (message.type === "refused") {
      this.final = { reason: message.reason, message: message.message };
    } else if (message.type === "removed") {
      this.final = { reason: message.reason, message: REMOVED_MESSAGES[message.reason] || REMOVED_MESSAGES.removed };
    }
    for (const waiter of [...this.waiters]) {
      if (waiter.types.includes(message.type)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(message);
      }
    }
    this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
    if (message.type === "welcome") this.setState("open");
  }

  closed(event) {
    this.joined = false;
    clearInterval(this.pingTimer);
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error("The connection was lost."));
    if (event.code === REFUSED || this.final) {
      this.final = this.final || { reason: "refused", message: "This page was closed by the server. Ask the coordinator for a new link." };
      this.setState("ended", this.final);
      return;
    }
    if (this.stopped) return;
    // 0.5 s, 1 s, 2 s, then every 3 s: a kiosk must come back soon after the network does.
    const delay = retryDelay(this.attempt);
    this.attempt += 1;
    this.setState("lost", { delay, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPings() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (!this.send({ type: "ping" })) return;
      const sent = Date.now();
      setTimeout(() => {
        // Nothing heard since the ping: the network is gone even if the socket has not noticed.
        if (this.joined && (this.lastHeard || 0) < sent && !this.waiters.length && this.ws) this.ws.close();
      }, PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  send(message) {
    if (!this.joined || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  // Send a message and wait for the first reply of one of `types`.
  request(message, types, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      if (!this.send(message)) {
        reject(new Error("Not connected to orstream."));
        return;
      }
      const waiter = { types, resolve, reject };
      this.waiters.push(waiter);
      setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) {
          this.waiters.splice(index, 1);
          reject(new Error("No answer from orstream in time."));
        }
      }, timeoutMs);
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close();
  }
}

// ------------------------------------------------------------------ WebRTC

export class MediaError extends Error {}

export function waitForIceGathering(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// Offer, gather every candidate (the edge does not trickle), relay through the link, apply the answer.
// `fields` go with the offer (the OR console's `media`: "publish" or "watch").
export async function negotiate(link, pc, fields = {}, current = () => true) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await waitForIceGathering(pc);
  // Stopped while gathering: an offer sent now would only put a dead peer on the edge.
  if (!current()) throw new MediaError("This connection was stopped.");
  const reply = await link.request({ ...fields, type: "offer", sdp: pc.localDescription.sdp }, ["answer", "media_error"], 20000);
  if (reply.type === "media_error") throw new MediaError(reply.message);
  await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
}

// Put H.264 first on a video transceiver (the edge forwards H.264 without re-encoding).
export function preferH264(transceiver, direction) {
  const caps = direction === "send" ? RTCRtpSender.getCapabilities?.("video") : RTCRtpReceiver.getCapabilities?.("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const h264 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/h264");
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== "video/h264");
  // Richest profile first for a publisher: High (64), Main (4d), then Baseline.
  const rank = (c) => {
    const p = /profile-level-id=([0-9a-f]{2})/i.exec(c.sdpFmtpLine || "");
    return { "64": 0, "4d": 1, "42": 2 }[p ? p[1].toLowerCase() : ""] ?? 3;
  };
  h264.sort((a, b) => rank(a) - rank(b));
  if (h264.length) transceiver.setCodecPreferences([...h264, ...rest]);
}

// One connection to the edge, rebuilt whenever it fails. `setup(pc)` adds tracks and transceivers.
// Events: "state" {state: connecting|live|waiting|retrying, message}, "track" {track, streams, index}.
export class MediaLink extends EventTarget {
  // waitForPublisher (viewers): after the edge said it has no video, or could not be reached, try
  // again as soon as the publisher is up (the edge's "publisher.up" notice), and only slowly
  // otherwise. A viewer's offer to an edge without video waits there for seconds, and offers are
  // answered one at a time: asking too often would hold up the OR console's own offer.
  constructor(link, { setup, watchVideo = null, retryMs = 1000, waitForPublisher = false, slowRetryMs = 6000, offerFields = {} }) {
    super();
    this.offerFields = offerFields;
    this.waitForPublisher = waitForPublisher;
    this.slowRetryMs = slowRetryMs;
    this.link = link;
    this.setup = setup;
    this.watchVideo = watchVideo;
    this.retryMs = retryMs;
    this.pc = null;
    this.generation = 0;
    this.wanted = false;
    this.sessionStatus = null;
    link.addEventListener("welcome", (event) => {
      this.sessionStatus = event.detail.session.status;
      if (this.wanted && !this.isLive()) this.restart(0);
    });
    link.addEventListener("notice", (event) => {
      if (event.detail.event === "edge.restarted") this.edgeRestarted();
      else if (this.wanted && event.detail.event === "publisher.up" && !this.isLive()) this.restart(0);
    });
    link.addEventListener("session", (event) => {
      this.sessionStatus = event.detail.status;
      if (event.detail.status === "ended") {
        this.emit("ended", "The session has ended. Thank you.");
        this.stop();
        return;
      }
      if (this.wanted && event.detail.status === "live" && !this.isLive()) this.restart(0);
    });
    if (watchVideo) this.watchFrames(watchVideo);
  }

  isLive() {
    return this.pc && this.pc.connectionState === "connected" && !this.frozen();
  }

  start() {
    this.wanted = true;
    if (this.link.joined) this.restart(0);
  }

  stop() {
    this.wanted = false;
    this.generation += 1; // an attempt under way ends quietly
    this.negotiating = false;
    clearTimeout(this.timer);
    if (this.pc) this.pc.close();
    this.pc = null;
  }

  // Resolves once no attempt is under way (an offer sent is answered or has failed).
  async settled() {
    await this.inflight;
  }

  restart(delay = this.retryMs) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.inflight = this.attempt().catch(() => {});
    }, delay);
  }

  emit(state, message = "") {
    if (window.ORSTREAM_DEBUG) console.debug(`media ${state} ${message}`);
    this.state = state;
    if (state === "live") {
      this.hadVideo = true;
      this.restarted = false;
    }
    // Until the picture is back, every state says why it went: the media server restarted.
    const detail = { state, message, hadVideo: Boolean(this.hadVideo), restarted: Boolean(this.restarted) };
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }

  // The site re-created the session on a media server that restarted: the connection to the old
  // one is dead even if it still says "connected". Start again at once, unless an offer to the
  // new one is already on its way.
  edgeRestarted() {
    this.restarted = true;
    if (!this.wanted) return;
    if (this.negotiating) {
      this.emit(this.state, "");
      return;
    }
    this.emit("retrying", "");
    this.restart(0);
  }

  async attempt() {
    if (!this.wanted) return;
    if (!this.link.joined) return; // the link's welcome starts us again
    if (this.sessionStatus && this.sessionStatus !== "live") {
      // Not started yet: the "session live" message starts us; look again now and then anyway.
      this.emit("waiting", "The session has not started yet: the video appears as soon as the coordinator starts it.");
      this.restart(15000);
      return;
    }
    const generation = ++this.generation;
    if (this.pc) this.pc.close();
    const pc = new RTCPeerConnection({ iceServers: this.link.welcome?.ice_servers || [] });
    this.pc = pc;
    this.lastFrameAt = 0;
    let trackIndex = 0;
    pc.addEventListener("track", (event) => {
      this.dispatchEvent(new CustomEvent("track", { detail: { track: event.track, streams: event.streams, index: trackIndex++, transceiver: event.transceiver } }));
    });
    pc.addEventListener("connectionstatechange", () => {
      if (generation !== this.generation) return;
      const state = pc.connectionState;
      if (state === "connected") {
        this.connectedAt = Date.now();
        this.emit("live");
      } else if (state === "failed") {
        this.emit("retrying", "The video connection failed. Reconnecting…");
        this.restart(0);
      } else if (state === "disconnected") {
        this.emit("retrying", "The video connection is interrupted. Reconnecting…");
        // Often recovers by itself within a second; otherwise start again.
        setTimeout(() => {
          if (generation === this.generation && pc.connectionState !== "connected") this.restart(0);
        }, 1500);
      }
    });
    this.emit("connecting");
    this.negotiating = true;
    try {
      await this.setup(pc);
      await negotiate(this.link, pc, this.offerFields, () => generation === this.generation);
      if (generation === this.generation) this.negotiating = false;
    } catch (error) {
      if (generation !== this.generation) return;
      this.negotiating = false;
      pc.close();
      if (error.name === "NotAllowedError" || error.name === "NotFoundError" || error.name === "NotReadableError" || error.name === "OverconstrainedError") {
        this.wanted = false;
        this.emit("device", error);
        return;
      }
      this.emit("waiting", error instanceof MediaError ? error.message : "The media server did not answer. Trying again…");
      this.restart(this.waitForPublisher ? this.slowRetryMs : this.retryMs);
    }
  }

  // Frames stop while the connection still says "connected" (the edge restarted and came back
  // before ICE noticed): rebuild when a picture that was moving has stood still for 4 s.
  watchFrames(video) {
    const onFrame = () => {
      this.lastFrameAt = Date.now();
      video.requestVideoFrameCallback(onFrame);
    };
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(onFrame);
    setInterval(() => {
      if (this.wanted && this.pc && this.pc.connectionState === "connected" && this.frozen()) {
        this.emit("retrying", "The picture stopped. Reconnecting…");
        this.restart(0);
      }
    }, 1000);
  }

  frozen() {
    // Still pictures only (the edge's last resort on a very weak link) come seconds apart.
    const after = this.stills ? 10000 : 4000;
    return this.watchVideo && this.lastFrameAt > 0 && Date.now() - this.lastFrameAt > after && !document.hidden;
  }
}

// ------------------------------------------------------------------ latency

export const LATENCY_GREEN_MS = 150;
export const LATENCY_AMBER_MS = 300;

export function latencyLevel(ms) {
  if (ms < LATENCY_GREEN_MS) return "good";
  if (ms < LATENCY_AMBER_MS) return "fair";
  return "poor";
}

// Difference of two 32-bit RTP timestamps, wrap-around aware.
function rtpDelta(a, b) {
  let d = (a - b) >>> 0;
  if (d >= 2 ** 31) d -= 2 ** 32;
  return d;
}

export class LatencyMeter {
  constructor(link, video, badge, { reportEveryMs = 5000, clockEveryMs = 5000 } = {}) {
    this.link = link;
    this.video = video;
    this.badge = badge;
    this.samples = [];
    this.mapping = null;
    this.offsetMs = 0; // edge clock minus this browser's clock
    this.estimate = null;
    this.reportEveryMs = reportEveryMs;
    this.clockEveryMs = clockEveryMs;
  }

  start() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {
      this.show(null, "This browser cannot measure the delay.");
      return;
    }
    const onFrame = (now, meta) => {
      this.sample(meta);
      this.video.requestVideoFrameCallback(onFrame);
    };
    this.video.requestVideoFrameCallback(onFrame);
    this.refreshClock();
    setInterval(() => this.refreshClock(), this.clockEveryMs);
    setInterval(() => this.render(), 500);
    setInterval(() => {
      if (this.estimate !== null) this.link.send({ type: "latency", ms: Math.round(this.estimate) });
    }, this.reportEveryMs);
  }

  async refreshClock() {
    if (!this.link.joined) return;
    try {
      const sent = Date.now();
      const reply = await this.link.request({ type: "clock" }, ["clock"], 5000);
      const back = Date.now();
      if (reply.error || !reply.video || !reply.video.ingest_time) return;
      // NTP-style: the edge read its clock halfway through the round trip (error at most rtt/2).
      const offset = reply.now * 1000 - (sent + back) / 2;
      const rtt = back - sent;
      if (this.bestRtt === undefined || rtt <= this.bestRtt * 1.5 || Date.now() - this.offsetAt > 60000) {
        this.offsetMs = offset;
        this.offsetAt = Date.now();
        this.bestRtt = this.bestRtt === undefined ? rtt : Math.min(this.bestRtt, rtt);
      }
      this.mapping = reply.video;
    } catch {
      /* the badge shows "measuring" until the clock answers */
    }
  }

  sample(meta) {
    if (!this.mapping || meta.rtpTimestamp === undefined) return;
    const { clock_rate: rate, rtp_timestamp: rtp, ingest_time: ingest } = this.mapping;
    const ingestMs = ingest * 1000 + (rtpDelta(meta.rtpTimestamp, rtp) * 1000) / rate;
    const shownMs = performance.timeOrigin + (meta.expectedDisplayTime || meta.presentationTime) + this.offsetMs;
    const ms = shownMs - ingestMs;
    if (ms < -1000 || ms > 60000) return; // a mapping from before an edge restart
    this.lastIngestMs = ingestMs;
    this.samples.push(ms);
    if (this.samples.length > 60) this.samples.shift();
  }

  // The media time (edge clock, seconds) of the frame on screen: what telestration refers to.
  mediaTime() {
    return this.lastIngestMs ? this.lastIngestMs / 1000 : (Date.now() + this.offsetMs) / 1000;
  }

  render() {
    if (this.samples.length < 5) {
      this.show(null);
      return;
    }
    const sorted = [...this.samples].sort((a, b) => a - b);
    this.estimate = Math.max(0, sorted[Math.floor(sorted.length / 2)]);
    this.show(this.estimate);
  }

  show(ms, note) {
    if (!this.badge) return;
    if (ms === null) {
      this.badge.dataset.level = "unknown";
      this.badge.textContent = note ? "Delay: —" : "Delay: measuring…";
      this.badge.title = note || "Measuring the delay between the operating room and this screen.";
      return;
    }
    const level = latencyLevel(ms);
    this.badge.dataset.level = level;
    this.badge.dataset.ms = String(Math.round(ms));
    this.badge.textContent = `Delay ${Math.round(ms)} ms`;
    this.badge.title = {
      good: "Delay from the operating room to this screen: good.",
      fair: "Delay from the operating room to this screen: noticeable. Allow for it when pointing.",
      poor: "Delay from the operating room to this screen: high. What you see is late; check the network.",
    }[level];
  }
}
