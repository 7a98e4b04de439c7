// What the OR console's camera is encoded as: plain functions, no page state (the edge's
// simulcast test runs them in Chromium as they are).

// What the surgeon's field needs in H.264: about 0.13 bit per pixel, 8 Mbit/s for 1080p30,
// 25 Mbit/s (what the edge's viewers are sized for) from 4K30 up. The edge's feedback lets
// the browser reach it within seconds.
export function fieldBitrate({ width = 1920, height = 1080, frameRate = 30 }) {
  return Math.round(Math.min(25_000_000, Math.max(2_500_000, width * height * Math.min(frameRate, 60) * 0.13)));
}

// Simulcast: the field ("f") and, from a camera larger than 720p, a second encoding of it at
// about 1280x720 and 2.5 Mbit/s ("h"), which the edge forwards to mentors on weak links instead
// of transcoding the field. Both H.264 (the transceiver's codec): the viewers and the recording
// take nothing else.
export const LOWER_LINES = 720;
export const LOWER_BITRATE = 2_500_000;

export function publishEncodings(settings) {
  const frameRate = Math.min(60, settings.frameRate || 60);
  const full = { rid: "f", maxBitrate: fieldBitrate(settings), maxFramerate: frameRate };
  const lines = Math.min(settings.width || 0, settings.height || 0); // a portrait camera too
  if (lines <= LOWER_LINES) return [full];
  return [full, { rid: "h", scaleResolutionDownBy: lines / LOWER_LINES, maxBitrate: LOWER_BITRATE, maxFramerate: frameRate }];
}
