// A recording's parts as one timeline, shared by the library's player and the pages that play a
// recording beside something else (the training assessment page). Recording time is seconds from
// the recording's start across its parts; part i starts at parts[i].start.

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

// The part that recording time `t` falls in, and the time within that part.
export function partAt(parts, t) {
  let index = parts.length - 1;
  while (index > 0 && t < parts[index].start) index -= 1;
  return { index, within: Math.max(0, t - parts[index].start) };
}
