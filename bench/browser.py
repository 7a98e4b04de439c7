"""``python -m bench.browser``: delay from the edge's ingest to the display of a frame in headless
Chromium, for a 1080p30 and a 4K30 camera request, measured the way the pages' latency badge does.

One Chromium page publishes its fake camera to a real edge process (as the OR console does), another
watches over WebRTC; each displayed frame's rtpTimestamp goes through the edge's clock mapping
(GET /sessions/{id}/clock) to its ingest wall-clock time, compared with the frame's expected display
time. This is the edge-ingest-to-glass part of glass-to-glass: camera and encoder delay come on top.
The resolution column says what was really sent: Chromium lowers it when the CPU cannot encode more.
``--source clip`` loops the demo's H.264 High clip through the edge instead (no encoder in the loop).
Prints a table, then one JSON object on its last line. Never imports Django.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib import error, request

from orstream.edge import protocol

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-edge-secret"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
]

# The statements that make a page's offer with every ICE candidate in it (the edge takes no
# trickled candidates): shared by the pages the benchmarks drive.
OFFER = """
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
  });
"""

PUBLISHER = """
async ([width, height]) => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { exact: width }, height: { exact: height }, frameRate: { ideal: 30 } } });
  const pc = new RTCPeerConnection({ iceServers: [] });
  const t = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', sendEncodings: [{ maxBitrate: 25_000_000, maxFramerate: 30 }] });
  const caps = RTCRtpSender.getCapabilities('video').codecs;
  t.setCodecPreferences([...caps.filter(c => c.mimeType === 'video/H264'), ...caps.filter(c => c.mimeType !== 'video/H264')]);
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendrecv' });
""" + OFFER + """  const answer = await window.edgePublish(pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.publisher = pc;
}
"""

# The statements that connect a watching page to the edge (window.edgeOffer answers its offer):
# shared by the benchmarks that watch from Chromium.
VIEWER_CONNECT = """
  const pc = new RTCPeerConnection({ iceServers: [] });
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.append(video);
  const t = pc.addTransceiver('video', { direction: 'recvonly' });
  const caps = RTCRtpReceiver.getCapabilities('video').codecs;
  t.setCodecPreferences([...caps.filter(c => c.mimeType === 'video/H264'), ...caps.filter(c => c.mimeType !== 'video/H264')]);
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; video.play().catch(() => {}); };
""" + OFFER + """  const answer = await window.edgeOffer(pc.localDescription.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
"""

VIEWER = """
async () => {
""" + VIEWER_CONNECT + """  const state = { samples: [], frames: 0, width: 0, height: 0, mapping: null, offset: 0, bestRtt: undefined, offsetAt: 0 };
  window.bench = state;
  state.pc = pc;
  const refresh = async () => {
    const sent = Date.now();
    const clock = await window.edgeClock();
    const back = Date.now();
    // As the pages' LatencyMeter: the edge read its clock halfway through the round trip, so the
    // offset is off by up to rtt/2; a slow answer keeps the offset of a fast one.
    const rtt = back - sent;
    if (state.bestRtt === undefined || rtt <= state.bestRtt * 1.5 || Date.now() - state.offsetAt > 60000) {
      state.offset = clock.now * 1000 - (sent + back) / 2;
      state.offsetAt = Date.now();
      state.bestRtt = state.bestRtt === undefined ? rtt : Math.min(state.bestRtt, rtt);
    }
    state.mapping = clock.video;
  };
  await refresh();
  setInterval(refresh, 2000);
  const onFrame = (now, meta) => {
    state.frames++;
    state.width = meta.width; state.height = meta.height;
    const m = state.mapping;
    if (m && m.ingest_time && meta.rtpTimestamp !== undefined && state.collect) {
      let d = (meta.rtpTimestamp - m.rtp_timestamp) >>> 0;
      if (d >= 2 ** 31) d -= 2 ** 32;
      const ingest = m.ingest_time * 1000 + d * 1000 / m.clock_rate;
      const shown = performance.timeOrigin + meta.expectedDisplayTime + state.offset;
      state.samples.push(shown - ingest);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EdgeClient:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = protocol.sign(secret=SECRET, method=method, path=path, body=payload)
        headers["Content-Type"] = "application/json"
        req = request.Request(self.url + path, data=payload or None, method=method, headers=headers)
        try:
            with request.urlopen(req, timeout=30) as reply:
                raw = reply.read()
        except error.HTTPError as refusal:
            raise RuntimeError(f"edge {method} {path}: {refusal.code} {refusal.read()[:300]!r}") from None
        return json.loads(raw) if raw else None


def start_edge(log: Path, media: Path, *, log_level: str = "WARNING") -> tuple[subprocess.Popen[bytes], EdgeClient]:
    """An edge process on a free loopback port, once it answers ``/health``."""
    port = free_port()
    env = {**os.environ, "ORSTREAM_EDGE_SECRET": SECRET, "ORSTREAM_EDGE_MEDIA_DIR": str(media)}
    process = subprocess.Popen(
        [sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    edge = EdgeClient(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            edge.call("GET", "/health")
            return process, edge
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"the edge did not start; see {log}") from None
            time.sleep(0.2)


def stop_edge(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(browser: Any, edge: EdgeClient, size: tuple[int, int], *, warmup: float, seconds: float, clip: Path | None = None) -> dict[str, Any]:
    sid = f"bench-{uuid.uuid4().hex[:12]}"
    edge.call("POST", "/sessions", {"session_id": sid})
    camera = browser.new_context()
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        if clip is not None:
            edge.call("POST", f"/sessions/{sid}/source", {"url": str(clip), "loop": True})
        console = camera.new_page()
        console.expose_function(
            "edgePublish",
            lambda sdp: edge.call("POST", f"/sessions/{sid}/publisher", {"participant_id": "camera", "sdp": sdp})["sdp"],
        )
        # A loopback origin is a secure context: the camera is available there, not on about:blank.
        console.goto(edge.url + "/health")
        console.set_content("<!doctype html><body></body>")
        if clip is None:
            console.evaluate(PUBLISHER, list(size))
        page = context.new_page()
        page.expose_function(
            "edgeOffer",
            lambda sdp: edge.call("POST", f"/sessions/{sid}/viewers", {"participant_id": "bench", "role": "resident", "sdp": sdp})["sdp"],
        )
        page.expose_function("edgeClock", lambda: edge.call("GET", f"/sessions/{sid}/clock"))
        page.goto(edge.url + "/health")
        page.set_content("<!doctype html><body style='margin:0;background:#000'></body>")
        page.evaluate(VIEWER)
        try:
            page.wait_for_function("() => window.bench && window.bench.frames > 0", timeout=30_000)
        except Exception:
            print(page.evaluate("""async () => { const r = await window.bench.pc.getStats(); const out = [window.bench.pc.connectionState];
              r.forEach(s => { if (s.type === 'inbound-rtp') out.push([s.kind, s.packetsReceived, s.framesDecoded, s.keyFramesDecoded, s.decoderImplementation, s.framesDropped]); }); return out; }"""), file=sys.stderr)
            raise
        # Wait with Playwright, never time.sleep: the page's clock requests (edgeClock) are only
        # answered while Playwright runs, and a reply held back for seconds skews the clock offset.
        page.wait_for_timeout(warmup * 1000)
        page.evaluate("() => { window.bench.collect = true; window.bench.start = window.bench.frames; }")
        page.wait_for_timeout(seconds * 1000)
        result = page.evaluate("() => ({ samples: window.bench.samples, frames: window.bench.frames - window.bench.start, width: window.bench.width, height: window.bench.height, clock_rtt: window.bench.bestRtt })")
    finally:
        context.close()
        camera.close()
        edge.call("DELETE", f"/sessions/{sid}")
    samples = [s for s in result["samples"] if -1000 < s < 60_000]
    return {
        "resolution": f"{result['width']}x{result['height']}",
        "fps_displayed": round(result["frames"] / seconds, 1),
        "samples": len(samples),
        "p50_ms": round(statistics.median(samples), 1) if samples else None,
        "p95_ms": round(percentile(samples, 0.95), 1) if samples else None,
        "max_ms": round(max(samples), 1) if samples else None,
        "clock_rtt_ms": result["clock_rtt"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=os.environ.get("ORSTREAM_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--source", choices=["camera", "clip"], default="camera",
        help="camera: Chromium's fake camera published like the OR console; clip: the demo's H.264 High clip looped by the edge",
    )
    parser.add_argument("--clips", type=Path, default=ROOT / "var" / "bench-browser")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"Chromium is missing at {args.chromium}: run `make browser`", file=sys.stderr)
        return 2
    args.clips.mkdir(parents=True, exist_ok=True)
    cases = [("1080p30", 1920, 1080), ("4K30", 3840, 2160)]
    if args.source == "clip":
        from orstream.edge import demo

        for name, width, height in cases:
            if not (args.clips / f"{name}.mp4").exists():
                demo.generate(args.clips / f"{name}.mp4", width=width, height=height, fps=30, seconds=10.0, bitrate=8_000_000 if height <= 1080 else 25_000_000)
    port = free_port()
    env = {**os.environ, "ORSTREAM_EDGE_SECRET": SECRET, "ORSTREAM_RECORDINGS_SPOOL_DIR": str(args.clips / "media")}
    log = (args.clips / "edge.log").open("ab")
    edge_process = subprocess.Popen(
        [sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    results: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or edge_process.poll() is not None:
                    raise RuntimeError("the edge did not start; see var/bench-browser/edge.log") from None
                time.sleep(0.1)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            for name, width, height in cases:
                clip = args.clips / f"{name}.mp4" if args.source == "clip" else None
                results[name] = measure(browser, EdgeClient(f"http://127.0.0.1:{port}"), (width, height), warmup=args.warmup, seconds=args.seconds, clip=clip)
            browser.close()
    finally:
        edge_process.terminate()
        edge_process.wait(timeout=10)
    print(f"{'case':<9} {'resolution':<11} {'fps':>5} {'samples':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        print(f"{name:<9} {r['resolution']:<11} {r['fps_displayed']:>5} {r['samples']:>8} {r['p50_ms']!s:>8} {r['p95_ms']!s:>8} {r['max_ms']!s:>8}")
    print(json.dumps({"ingest_to_display": results, "source": args.source}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
