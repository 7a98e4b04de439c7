"""``python -m bench.ramp``: how fast a Chromium publisher (the OR console) reaches the bitrate it
is allowed to send.

Chromium publishes a generated 1080p30 picture (``--use-file-for-fake-video-capture``, a textured
field panning with a little noise, so the encoder always has more to say than it may) to a real
edge process, with ``maxBitrate`` and ``degradationPreference: maintain-resolution`` as the
console sets them. Its own ``outbound-rtp`` stats are sampled every 250 ms; ``publisher_ramp_s``
is the time from the edge's answer to the first second in which the video went out at >= 80 %
of ``maxBitrate``. Chromium's congestion control only ramps fast on transport-cc feedback, which
the edge sends (``feedback_sent``); ``available_outgoing_bps`` is Chromium's own estimate.

Prints a table, then one JSON object on its last line. Never imports Django.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.browser import CHROMIUM_ARGS, OFFER, start_edge, stop_edge

ROOT = Path(__file__).resolve().parents[1]
SHARE = 0.8

PUBLISH = """
async ([maxBitrate]) => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1920 }, height: { ideal: 1080 }, frameRate: { ideal: 30 } } });
  const track = stream.getVideoTracks()[0];
  track.contentHint = 'detail';
  const pc = new RTCPeerConnection({ iceServers: [] });
  const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream], sendEncodings: [{ maxBitrate, maxFramerate: 30 }] });
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  t.setCodecPreferences([...caps.filter(c => c.mimeType === 'video/H264'), ...caps.filter(c => c.mimeType !== 'video/H264')]);
  const params = t.sender.getParameters();
  params.degradationPreference = 'maintain-resolution';
  await t.sender.setParameters(params).catch(() => {});
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendrecv', streams: [stream] });
""" + OFFER + """  const answer = await window.edgePublish(pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.publisher = pc;
  window.answeredAt = performance.now();
}
"""

SAMPLE = """
async () => {
  const out = { t: (performance.now() - window.answeredAt) / 1000, bytesSent: 0, available: 0 };
  const report = await window.publisher.getStats();
  report.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.bytesSent += (s.bytesSent || 0) + (s.headerBytesSent || 0);
      out.width = s.frameWidth || 0; out.height = s.frameHeight || 0;
      out.fps = s.framesPerSecond || 0; out.target = s.targetBitrate || 0;
      out.limitation = s.qualityLimitationReason;
    }
    if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.available = s.availableOutgoingBitrate;
  });
  return out;
}
"""


def make_clip(path: Path, *, width: int = 1920, height: int = 1080, fps: int = 30, frames: int = 30) -> Path:
    """A raw y4m loop: a random texture panning a few pixels a frame, plus fresh noise (so no
    frame repeats the one before and the encoder wants more bits than it is allowed)."""
    import numpy as np

    if path.exists():
        return path
    rng = np.random.default_rng(11)
    texture = rng.integers(16, 236, size=(height // 8, width // 8), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    partial = path.with_suffix(".part")
    with partial.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            luma = np.roll(texture, shift=(i * 3, i * 5), axis=(0, 1))
            noise = rng.integers(-12, 13, size=luma.shape, dtype=np.int16)
            out.write(b"FRAME\n")
            out.write(np.clip(luma.astype(np.int16) + noise, 16, 235).astype(np.uint8).tobytes())
            out.write(np.roll(chroma, i, axis=1).tobytes())
            out.write(chroma.tobytes())
    partial.rename(path)
    return path


def ramp_time(samples: list[dict[str, Any]], target_bps: float) -> tuple[float | None, float]:
    """The first time the rate over the second before it reached ``target_bps``, and the peak."""
    peak = 0.0
    found: float | None = None
    for i, sample in enumerate(samples):
        earlier = [s for s in samples[:i] if sample["t"] - s["t"] >= 1.0]
        if not earlier:
            continue
        before = earlier[-1]
        rate = (sample["bytesSent"] - before["bytesSent"]) * 8 / (sample["t"] - before["t"])
        sample["bps"] = round(rate)
        peak = max(peak, rate)
        if found is None and rate >= target_bps:
            found = round(sample["t"], 2)
    return found, peak


def measure(*, chromium: str, clips: Path, max_bitrate: int, seconds: float) -> dict[str, Any]:
    """Publish the clip from Chromium to a fresh edge for ``seconds``; the figures."""
    from playwright.sync_api import sync_playwright

    clips.mkdir(parents=True, exist_ok=True)
    clip = make_clip(clips / "1080p30.y4m")
    media = Path(tempfile.mkdtemp(prefix="orstream-ramp-"))
    process, edge = start_edge(clips / "edge-ramp.log", media)
    samples: list[dict[str, Any]] = []
    publisher: dict[str, Any] = {}
    try:
        sid = f"ramp-{uuid.uuid4().hex[:12]}"
        edge.call("POST", "/sessions", {"session_id": sid})
        with sync_playwright() as playwright:
            args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"]
            browser = playwright.chromium.launch(executable_path=chromium, args=args, headless=True)
            page = browser.new_page()
            page.expose_function(
                "edgePublish",
                lambda sdp: edge.call("POST", f"/sessions/{sid}/publisher", {"participant_id": "console", "sdp": sdp})["sdp"],
            )
            page.goto(edge.url + "/health")  # a loopback origin is a secure context: the camera is there
            page.set_content("<!doctype html><body></body>")
            page.evaluate(PUBLISH, [max_bitrate])
            while True:
                sample = page.evaluate(SAMPLE)
                samples.append(sample)
                if sample["t"] >= seconds:
                    break
                page.wait_for_timeout(250)
            publisher = (edge.call("GET", f"/sessions/{sid}/stats").get("publisher") or {}).get("video") or {}
            browser.close()
        edge.call("DELETE", f"/sessions/{sid}")
    finally:
        stop_edge(process)
        shutil.rmtree(media, ignore_errors=True)
    ramp, peak = ramp_time(samples, SHARE * max_bitrate)
    last = samples[-1] if samples else {}
    return {
        "publisher_ramp_s": ramp,
        "max_bitrate_bps": max_bitrate,
        "peak_send_bps": round(peak),
        "available_outgoing_bps": max((s["available"] for s in samples), default=0),
        "available_outgoing_2mbit_s": next((round(s["t"], 2) for s in samples if s["available"] >= 2_000_000), None),
        "resolution": f"{last.get('width', 0)}x{last.get('height', 0)}",
        "fps": last.get("fps"),
        "quality_limitation": last.get("limitation"),
        "feedback_sent": publisher.get("feedback_sent", 0),
        "seconds": seconds,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "timeline": [{k: s.get(k) for k in ("t", "bps", "available", "fps", "width")} for s in samples[::4]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ramp", description=__doc__.splitlines()[0])
    p.add_argument("--chromium", default=os.environ.get("ORSTREAM_CHROMIUM", "/usr/bin/chromium"))
    p.add_argument("--clips", type=Path, default=ROOT / "var" / "bench-browser")
    p.add_argument("--max-bitrate", type=int, default=8_000_000, help="the publisher's maxBitrate (1080p30 as the console asks)")
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"Chromium is missing at {args.chromium}: run `make browser`", file=sys.stderr)
        return 2
    result = measure(chromium=args.chromium, clips=args.clips, max_bitrate=args.max_bitrate, seconds=args.seconds)
    for point in result["timeline"]:
        print(f"t {point['t']:6.2f} s  send {point.get('bps') or 0:>10} bit/s  available {point['available']:>10}  "
              f"{point.get('width')} px wide at {point.get('fps')} fps")
    print(f"publisher ramp to {SHARE:.0%} of {args.max_bitrate} bit/s: {result['publisher_ramp_s']} s "
          f"(peak {result['peak_send_bps']}, {result['feedback_sent']} feedback packets from the edge, load {result['load_avg_1m']})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
