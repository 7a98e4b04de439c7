// Coordinator's live view: who is connected and with what role, each viewer's bitrate, loss and
// delay as a small live chart (from the edge's stats, through frontend/views.py), removing a
// participant, starting and stopping the recording; plus the live picture.

import { $, FrameFit, Presence, SoundGate, api, consentText, mediaMessage, recordingText, startPage } from "./page.js";
import { LatencyMeter, latencyLevel } from "./signalling.js";
import { Telestration } from "./telestration.js";
import { receiveStats, watch } from "./watch.js";

const { boot, link, status } = startPage();
const video = $("video");
const talkback = $("talkback");
new FrameFit($("area"), $("frame"), video);
const sound = new SoundGate($("sound"));
sound.attach(video);
sound.attach(talkback);
const latency = new LatencyMeter(link, video, $("latency"));
latency.start();
const media = watch(link, { video, talkback, canTalk: boot.may.talk });
media.addEventListener("state", (event) => {
  if (event.detail.state === "live") status.clear("media");
  else status.show({ ...mediaMessage(event.detail), key: "media" });
});
new Presence(link, null, $("talking"));
const telestration = new Telestration($("overlay"));
link.addEventListener("annotation", (event) => telestration.apply(event.detail));
link.addEventListener("welcome", (event) => telestration.restore(event.detail.drawing || []));

// ---------------------------------------------------------------- people and their charts
const HISTORY = 60; // samples, one per 2 s: the last two minutes
const history = new Map(); // participant id -> [{bitrate, loss, delay}]
let lastState = null;

// `publisher` is the edge's publisher, if any: the person whose picture the edge is sending on.
function rowFor(person, viewer, publisher) {
  const tr = document.createElement("tr");
  tr.dataset.id = person.id;
  tr.dataset.role = person.role;
  const cell = (text) => {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
    return td;
  };
  cell(person.name + (person.id === boot.participant.id ? " (you)" : ""));
  cell(person.role_label + (person.external ? " · external" : ""));
  if (viewer) {
    const rate = bitrateText(viewer.bitrate_bps);
    const loss = Math.round((viewer.loss || 0) * 100);
    // What the viewer's own feedback says its link carries, and which picture it gets for it.
    const link = viewer.estimate_bps != null ? `, link ≈ ${bitrateText(viewer.estimate_bps)}` : "";
    const layer = { lower: ", reduced picture (weak link)", keyframes: ", still pictures only (very weak link)" }[viewer.layer] || "";
    cell(`${rate}${loss ? `, ${loss} % lost` : ""}${link}${layer}${viewer.connection !== "connected" ? ` (${viewer.connection})` : ""}`);
  } else {
    const sending = publisher?.participant_id === person.id;
    cell(sending ? `sending${publisher.connection !== "connected" ? ` (${publisher.connection})` : ""}` : "—");
  }
  const delay = cell(person.latency_ms != null ? `${Math.round(person.latency_ms)} ms` : "—");
  if (person.latency_ms != null) delay.dataset.level = latencyLevel(person.latency_ms);
  const chartCell = document.createElement("td");
  const canvas = document.createElement("canvas");
  canvas.className = "spark";
  canvas.width = 240;
  canvas.height = 48;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Bitrate (blue), link estimate (green), loss (red) and delay (amber) of ${person.name} over the last two minutes`);
  chartCell.append(canvas);
  tr.append(chartCell);
  drawSpark(canvas, history.get(person.id) || []);
  const actions = document.createElement("td");
  if (boot.may.remove && person.id !== boot.participant.id) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "danger small";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${person.name} from the session`);
    remove.addEventListener("click", () => removePerson(person));
    actions.append(remove);
  }
  tr.append(actions);
  return tr;
}

function bitrateText(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

function drawSpark(canvas, samples) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#2a3644";
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  if (samples.length < 2) return;
  const step = width / (HISTORY - 1);
  const line = (key, colour, max) => {
    ctx.beginPath();
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    samples.forEach((s, i) => {
      const x = width - (samples.length - 1 - i) * step;
      const v = s[key] == null ? 0 : Math.min(1, s[key] / max);
      const y = height - 2 - v * (height - 4);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  };
  const peak = Math.max(1e6, ...samples.map((s) => Math.max(s.bitrate || 0, s.estimate || 0)));
  line("estimate", "#4cc38a", peak);
  line("bitrate", "#3fa7ff", peak);
  line("loss", "#ff5c5c", 0.1);
  line("delay", "#f0b429", 600);
}

function render(state) {
  lastState = state;
  const viewers = new Map((state.edge?.viewers || []).map((v) => [v.participant_id, v]));
  for (const person of state.participants) {
    const viewer = viewers.get(person.id);
    const samples = history.get(person.id) || [];
    samples.push({ bitrate: viewer?.bitrate_bps ?? null, estimate: viewer?.estimate_bps ?? null, loss: viewer?.loss ?? null, delay: person.latency_ms ?? null });
    if (samples.length > HISTORY) samples.shift();
    history.set(person.id, samples);
  }
  const rows = $("people-rows");
  // Keep keyboard focus on the same button across refreshes.
  const focused = document.activeElement?.closest?.("tr")?.dataset.id;
  rows.replaceChildren(...state.participants.map((p) => rowFor(p, viewers.get(p.id), state.edge?.publisher)));
  if (!state.participants.length) {
    rows.innerHTML = '<tr><td colspan="6" class="empty">Nobody is connected.</td></tr>';
  }
  if (focused) rows.querySelector(`tr[data-id="${focused}"] button`)?.focus();
  $("people-count").textContent = `(${state.participants.length})`;
  $("stats-note").textContent = state.edge_error ? `Video statistics unavailable: ${state.edge_error}` : "";
  $("recording-state").textContent = recordingText(state.recording);
  $("recording-state").dataset.state = state.recording.state;
  // The last recording failed its check or is stuck: what happened and what to do, in words.
  $("recording-problem").textContent = state.recording.problem || "";
  $("recording-problem").hidden = !state.recording.problem;
  $("consent-state").textContent = `Patient consent: ${consentText(state.consent)}`;
  const live = state.session.status === "live";
  const running = state.recording.state === "recording" || state.recording.state === "interrupted";
  $("record-start").disabled = !boot.may.record || !live || running || !state.consent.record;
  $("record-stop").disabled = !boot.may.record || !running;
  $("record-start").title = !live ? "Start the session first." : !state.consent.record ? "The patient did not consent to recording." : "";
}

async function refresh() {
  try {
    render(await api(boot, "state/"));
  } catch (error) {
    $("stats-note").textContent = error.message;
  }
}

async function removePerson(person) {
  if (!window.confirm(`Remove ${person.name} from this session? Their link stops working and their connection drops now.`)) return;
  const note = $("action-error");
  note.hidden = true;
  try {
    await api(boot, `participants/${person.id}/remove/`, { method: "POST" });
    await refresh();
  } catch (error) {
    note.textContent = `${person.name} was not removed: ${error.message}`;
    note.hidden = false;
  }
}

async function record(action) {
  const note = $("recording-error");
  note.hidden = true;
  $("record-start").disabled = $("record-stop").disabled = true;
  $("recording-state").textContent = action === "start" ? "Starting the recording…" : "Stopping the recording…";
  try {
    await api(boot, "recording/", { method: "POST", body: { action } });
  } catch (error) {
    note.textContent = error.message;
    note.hidden = false;
  }
  await refresh();
}
$("record-start").addEventListener("click", () => record("start"));
$("record-stop").addEventListener("click", () => record("stop"));
for (const type of ["welcome", "presence", "notice", "session"]) link.addEventListener(type, refresh);
setInterval(refresh, 2000);
document.addEventListener("orstream:ended", () => media.stop());

Object.assign(window.orstream, { media, telestration, latency, refresh, state: () => lastState, stats: () => receiveStats(media.pc) });
link.connect();
media.start();
