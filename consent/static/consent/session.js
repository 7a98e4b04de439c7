// The consent page: show only the uses the chosen form asks about, and say "Saving…" while the
// page submits. The forms' uses come as JSON in #consent-purposes (no inline script: the site's
// Content-Security-Policy forbids it).

import { $ } from "../orstream/base.js";

const purposes = JSON.parse($("consent-purposes").textContent);
const select = $("consent-form-version");
const form = $("consent-form");
const sync = () => {
  const asked = purposes[select.value] || [];
  for (const row of document.querySelectorAll(".decision-row")) {
    const on = asked.includes(row.dataset.purpose);
    row.hidden = !on;
    for (const input of row.querySelectorAll("input")) input.disabled = !on;
  }
};
if (select) { select.addEventListener("change", sync); sync(); }
if (form) form.addEventListener("submit", () => {
  $("consent-save").disabled = true;
  $("consent-saving").hidden = false;
});
