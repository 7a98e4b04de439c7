// The recording page's archive card: while a copy is being made, ask every 2 s how far it is and
// say it (parts encoded of total, time left); when it is accepted or flagged, reload the page so
// its scores and sizes show. Nothing to do when no copy is being made.
import { $, request } from "../orstream/base.js";

const card = $("archive");
const busy = (status) => ["queued", "encoding", "joining"].includes(status);

async function poll() {
  let reply;
  try {
    reply = await request(card.dataset.url);
  } catch {
    setTimeout(poll, 5000); // the site is busy or the network blinked: ask again a little later
    return;
  }
  let anyBusy = false;
  for (const copy of reply.copies || []) {
    const article = card.querySelector(`.archive-copy[data-codec="${copy.codec}"]`);
    if (!article) continue;
    if (article.dataset.status !== copy.status && !busy(copy.status)) {
      window.location.reload();
      return;
    }
    article.dataset.status = copy.status;
    article.querySelector(".archive-status").textContent = copy.label;
    const label = article.querySelector(".archive-progress-label");
    const bar = article.querySelector("progress");
    if (label && bar) {
      const left = copy.seconds_left === null ? "" : `, about ${Math.round(copy.seconds_left)} s left`;
      label.textContent = `${copy.chunks_done} of ${copy.chunks_total || "?"} parts encoded${left}`;
      bar.max = copy.chunks_total || 1;
      bar.value = copy.chunks_done;
    }
    anyBusy = anyBusy || busy(copy.status);
  }
  if (anyBusy) setTimeout(poll, 2000);
}

if (card && [...card.querySelectorAll(".archive-copy")].some((a) => busy(a.dataset.status))) poll();
