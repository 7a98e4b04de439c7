"""``python -m bench.weak``: what a Chromium mentor behind a weak link sees.

A Linux network namespace of its own holds the edge, the viewer's headless Chromium and the API
calls between them; its loopback is shaped with ``tc tbf`` (rate R, 64 kB burst, 200 ms queue),
which drops what overflows its small buffer, as a real shallow-buffered link does. The edge loops
the demo's 4K30 H.264 High clip; the page watches it over WebRTC and Chromium's own
``inbound-rtp`` stats (framesDecoded, freezeCount, totalFreezesDuration, packetsLost, frameWidth)
are sampled every half second. ``--change-to R2 --change-at T`` reshapes the link mid-run (how
fast the viewer moves between layers).

Needs root (``ip netns``). Prints a table, then one JSON object on its last line. Every run is
bounded: the namespace and everything in it are removed at the end. Never imports Django.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.browser import CHROMIUM_ARGS, VIEWER_CONNECT, start_edge, stop_edge

ROOT = Path(__file__).resolve().parents[1]
BURST = "64kb"
QUEUE = "200ms"

VIEWER = "async () => {\n" + VIEWER_CONNECT + "  window.viewer = pc;\n}\n"

SAMPLE = """
async () => {
  const out = { state: window.viewer ? window.viewer.connectionState : 'none' };
  if (!window.viewer) return out;
  const report = await window.viewer.getStats();
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, {
        framesDecoded: s.framesDecoded || 0, freezeCount: s.freezeCount || 0,
        totalFreezesDuration: s.totalFreezesDuration || 0, packetsLost: s.packetsLost || 0,
        packetsReceived: s.packetsReceived || 0, bytesReceived: s.bytesReceived || 0,
        frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
        nackCount: s.nackCount || 0, pliCount: s.pliCount || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
      });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPackets = (out.audioPackets || 0) + (s.packetsReceived || 0);
  });
  return out;
}
"""


def shape(rate: str, *, change: bool = False) -> None:
    """(Re)shape this namespace's loopback: ``rate`` through a 64 kB bucket and a 200 ms queue."""
    verb = "change" if change else "add"
    subprocess.run(
        ["tc", "qdisc", verb, "dev", "lo", "root", "tbf", "rate", rate, "burst", BURST, "latency", QUEUE], check=True
    )


def summarize(samples: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Figures over the samples taken between ``start`` and ``end`` seconds after the offer."""
    window = [s for s in samples if start <= s["t"] <= end and "framesDecoded" in s]
    if len(window) < 2:
        return {"fps": 0.0, "freeze_s": None, "freezes": None, "packets_lost": None, "width": 0, "height": 0}
    first, last = window[0], window[-1]
    span = last["t"] - first["t"]
    widths = [s["frameWidth"] for s in window if s["frameWidth"]]
    return {
        "fps": round((last["framesDecoded"] - first["framesDecoded"]) / span, 1),
        "freeze_s": round(last["totalFreezesDuration"] - first["totalFreezesDuration"], 2),
        "freezes": last["freezeCount"] - first["freezeCount"],
        "packets_lost": last["packetsLost"] - first["packetsLost"],
        "mbit_s": round((last["bytesReceived"] - first["bytesReceived"]) * 8 / span / 1e6, 2),
        "width": min(widths) if widths else 0,
        "height": min(s["frameHeight"] for s in window if s["frameWidth"]) if widths else 0,
        "width_last": last["frameWidth"],
    }


def first_time(samples: list[dict[str, Any]], after: float, test: Any) -> float | None:
    for s in samples:
        if s["t"] >= after and "framesDecoded" in s and test(s):
            return round(s["t"] - after, 2)
    return None


def watch(args: argparse.Namespace, clip: Path) -> dict[str, Any]:
    """Inside the namespace: an edge looping the clip, one Chromium viewer, its stats over time."""
    from playwright.sync_api import sync_playwright

    shape(args.rate)
    media = Path(tempfile.mkdtemp(prefix="orstream-weak-"))
    edge_process, edge = start_edge(clip.parent / "edge-weak.log", media, log_level=args.edge_log)
    samples: list[dict[str, Any]] = []
    edge_stats: list[dict[str, Any]] = []
    lower: list[tuple[float, float]] = []  # (time, CPU seconds of the lower-layer process)
    changed_at: float | None = None
    try:
        sid = f"weak-{uuid.uuid4().hex[:12]}"
        edge.call("POST", "/sessions", {"session_id": sid})
        edge.call("POST", f"/sessions/{sid}/source", {"url": str(clip), "loop": True})
        time.sleep(1.5)  # the source is playing and a GOP is cached, as in a live session
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.expose_function(
                "edgeOffer",
                lambda sdp: edge.call(
                    "POST", f"/sessions/{sid}/viewers", {"participant_id": "mentor", "role": "mentor", "sdp": sdp}
                )["sdp"],
            )
            page.goto(edge.url + "/health")
            page.set_content("<!doctype html><body style='margin:0;background:#000'></body>")
            t0 = time.monotonic()
            page.evaluate(VIEWER)
            next_stats = 0.0
            while True:
                now = time.monotonic() - t0
                if now >= args.seconds:
                    break
                if args.change_to and changed_at is None and now >= args.change_at:
                    shape(args.change_to, change=True)
                    changed_at = now
                sample = page.evaluate(SAMPLE)
                sample["t"] = round(time.monotonic() - t0, 3)
                samples.append(sample)
                if now >= next_stats:
                    next_stats = now + 1.0
                    stats = edge.call("GET", f"/sessions/{sid}/stats")
                    if stats["viewers"]:
                        edge_stats.append({"t": sample["t"], **stats["viewers"][0]})
                    cpu = (stats.get("lower_layer") or {}).get("cpu_s")
                    if cpu is not None:
                        lower.append((sample["t"], cpu))
                page.wait_for_timeout(500)
            browser.close()
        edge.call("DELETE", f"/sessions/{sid}")
    finally:
        stop_edge(edge_process)
        shutil.rmtree(media, ignore_errors=True)
    result: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "first_picture_s": first_time(samples, 0.0, lambda s: s["framesDecoded"] > 0),
    }
    if args.change_to and changed_at is not None:
        result["change_to"] = args.change_to
        result["changed_at_s"] = round(changed_at, 2)
        result["before"] = summarize(samples, args.warmup, changed_at)
        result["after"] = summarize(samples, changed_at + args.warmup, args.seconds)
        result["to_full_width_s"] = first_time(samples, changed_at, lambda s: s["frameWidth"] >= 3840)
        result["to_lower_width_s"] = first_time(samples, changed_at, lambda s: 0 < s["frameWidth"] < 3840)
        if result["to_lower_width_s"] is not None:
            # freeze time from the change until a second after the lower layer shows
            until = changed_at + result["to_lower_width_s"] + 1.0
            around = [s for s in samples if changed_at <= s["t"] <= until and "framesDecoded" in s]
            if len(around) >= 2:
                result["freeze_to_lower_s"] = round(
                    around[-1]["totalFreezesDuration"] - around[0]["totalFreezesDuration"], 2)
    else:
        result.update(summarize(samples, args.warmup, args.seconds))
    if len(lower) >= 2 and lower[-1][0] > lower[0][0]:
        result["lower_layer_cpu_pct"] = round((lower[-1][1] - lower[0][1]) / (lower[-1][0] - lower[0][0]) * 100, 1)
    if edge_stats:
        last = edge_stats[-1]
        result["edge"] = {k: last.get(k) for k in ("estimate_bps", "acked_bps", "congestion", "feedback_loss", "layer", "bitrate_bps", "loss", "rtt", "overflows")}
    if args.timeline:
        result["timeline"] = samples
        result["edge_timeline"] = edge_stats
    return result


def run_in_namespace(argv: list[str]) -> dict[str, Any]:
    """Run this module with ``argv`` inside a new network namespace; return its JSON line."""
    name = f"orstream-weak-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        inner = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, "-m", "bench.weak", "--inner", *argv],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=600,
        )
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
    lines = [line for line in inner.stdout.splitlines() if line.strip()]
    try:
        figures = json.loads(lines[-1]) if lines else None
    except ValueError:
        figures = None
    if not isinstance(figures, dict):
        return {"error": f"the weak-link run exited with {inner.returncode} and printed no JSON line"}
    return figures


def ensure_clip(directory: Path) -> Path:
    clip = directory / "4K30.mp4"
    if not clip.exists():
        from orstream.edge import demo

        demo.generate(clip, width=3840, height=2160, fps=30, seconds=10.0, bitrate=25_000_000)
    return clip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.weak", description=__doc__.splitlines()[0])
    p.add_argument("--rate", default="10mbit", help="tc rate of the viewer's link, e.g. 5mbit, 10mbit, 40mbit")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after the offer (or a change) left out of the figures")
    p.add_argument("--change-to", default="", help="reshape the link to this rate at --change-at")
    p.add_argument("--change-at", type=float, default=15.0)
    p.add_argument("--chromium", default=os.environ.get("ORSTREAM_CHROMIUM", "/usr/bin/chromium"))
    p.add_argument("--clips", type=Path, default=ROOT / "var" / "bench-browser")
    p.add_argument("--edge-log", default="WARNING")
    p.add_argument("--timeline", action="store_true", help="include every sample in the JSON")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.inner:
        print(json.dumps(watch(args, args.clips / "4K30.mp4")))
        return 0
    if os.geteuid() != 0:
        print("the weak-link bench needs root for ip netns and tc", file=sys.stderr)
        return 2
    args.clips.mkdir(parents=True, exist_ok=True)
    ensure_clip(args.clips)
    result = run_in_namespace(argv)
    edge = result.get("edge") or {}
    print(f"link {args.rate:>8}: first picture {result.get('first_picture_s')} s, "
          f"{result.get('fps', '-')} fps, freeze {result.get('freeze_s', '-')} s, "
          f"lost {result.get('packets_lost', '-')}, {result.get('width', '-')}x{result.get('height', '-')}, "
          f"edge estimate {edge.get('estimate_bps')}")
    print(json.dumps(result))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
