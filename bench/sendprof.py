"""CPU per packet of the edge's send path, measured in one process: ``python -m bench.sendprof``.

For A/B work on send.py, not a figure of record (``make bench`` is): it takes the noise of a
shared machine out by counting only this process's CPU time and by leaving out what is not the
send path. Real aiortc viewers complete ICE and DTLS in this process, then stop reading their
sockets (their receive work would be counted as ours); the hub is fed the access units of a
clip from memory at its frame rate, on the event loop as ingest would, without demuxing. So the
figure is: packetize once + per-viewer header, SRTP and send + feeds and event loop, divided by
the RTP packets sent. Viewers that stop reading eventually fail ICE consent, so windows are
short. Uses only the edge's public objects (Edge, SessionHub.on_frame, feeds' sender stats), so
it runs unchanged against an older tree (``PYTHONPATH=old-tree python path/to/sendprof.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import time
from pathlib import Path
from typing import Any


def load_units(clip: Path, limit: int) -> tuple[list[tuple[bytes, bool]], list[bytes], float]:
    """(annex-b access unit, keyframe) of the clip's video, its Opus-sized audio stand-ins, fps."""
    import av
    from av.bitstream import BitStreamFilterContext

    from orstream.edge.h264 import has_idr, join_nal_units, split_nal_units

    units: list[tuple[bytes, bool]] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        annexb = BitStreamFilterContext("h264_mp4toannexb", stream)
        for packet in container.demux(stream):
            for filtered in annexb.filter(packet):
                nal_units = split_nal_units(bytes(filtered))
                units.append((join_nal_units(nal_units), has_idr(nal_units)))
            if len(units) >= limit:
                break
    audio = [bytes([0xFC]) + bytes((i * 7 + 1) % 255 + 1 for i in range(120))] * 50
    return units, audio, fps


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def run(clip: Path, viewers: int, window: float, warmup: float) -> dict[str, Any]:
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from orstream.edge.frames import EncodedFrame
    from orstream.edge.hub import Edge
    from orstream.edge.protocol import ViewerOffer

    units, audio, fps = load_units(clip, limit=10_000)
    first_key = next(i for i, (_, key) in enumerate(units) if key)
    units = units[first_key:]
    edge = Edge(emit_event=lambda type_, session, data: None, ice_loopback=True)
    hub = edge.session_create("prof")
    loop = asyncio.get_running_loop()
    frame_index = 0
    audio_pts = 0
    start_wall = time.time()

    def feed_one() -> None:
        nonlocal frame_index, audio_pts
        data, key = units[frame_index % len(units)]
        now = time.time()
        hub.on_frame(EncodedFrame("video", data, int(frame_index * 90_000 / fps), key, now))
        # Opus at 50 packets/s rides along, as in a real session.
        while audio_pts * 1 / 48_000 <= frame_index / fps:
            hub.on_frame(EncodedFrame("audio", audio[0], audio_pts, False, now))
            audio_pts += 960
        frame_index += 1

    feed_one()
    pcs: list[Any] = []
    for i in range(viewers):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp.replace("profile-level-id=42e01f", "profile-level-id=640033")
        answer = await hub.add_viewer(ViewerOffer(participant_id=f"v{i}", role="resident", sdp=offer))
        answer = re.sub(r"profile-level-id=[0-9a-fA-F]{6}", "profile-level-id=42e01f", answer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        pcs.append(pc)
    deadline = time.monotonic() + 20
    while not all(v.active for v in hub.viewers.values()) or any(pc.connectionState != "connected" for pc in pcs):
        if time.monotonic() > deadline:
            raise RuntimeError("viewers did not connect")
        await asyncio.sleep(0.05)
    # The viewers stop reading: their receive work must not be counted as the edge's.
    for pc in pcs:
        for transceiver in pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            for protocol in ice._connection._protocols:
                sock = protocol.transport.get_extra_info("socket")
                if sock is not None:
                    loop._remove_reader(sock.fileno())  # type: ignore[attr-defined]  # the transport owns the fd
    profiles = sorted({getattr(f.sender, "srtp_profile", "") for v in hub.viewers.values() for f in v.feeds()})

    def packets() -> int:
        return sum(f.sender.stats.packets_sent for v in hub.viewers.values() for f in v.feeds())

    async def paced(seconds: float) -> None:
        # Frames at the clip's rate, on the event loop, the way ingest hands them over.
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < seconds:
            feed_one()
            n += 1
            await asyncio.sleep(max(0.0, t0 + n / fps - time.monotonic()))

    await paced(warmup)
    p0, c0, w0 = packets(), cpu_seconds(), time.monotonic()
    await paced(window)
    p1, c1, w1 = packets(), cpu_seconds(), time.monotonic()
    writers = [getattr(getattr(getattr(f.sender, "_path_cache", None), "fast", None), "writer", None)
               for v in hub.viewers.values() for f in v.feeds()]
    syscalls = sum(w.syscalls for w in writers if w is not None)
    gso = sorted({w.gso for w in writers if w is not None})
    paused = getattr(hub.counters, "viewers_paused", None)
    lags = [v.video.stats.lag_avg * 1000 for v in hub.viewers.values() if v.video]
    await edge.close()
    for pc in pcs:
        await pc.close()
    del start_wall
    return {
        "viewers": viewers,
        "packets_per_s": round((p1 - p0) / (w1 - w0)),
        "cpu_pct": round(100 * (sum(c1) - sum(c0)) / (w1 - w0), 1),
        "us_per_packet": round(1e6 * (sum(c1) - sum(c0)) / max(1, p1 - p0), 3),
        "user_us_per_packet": round(1e6 * (c1[0] - c0[0]) / max(1, p1 - p0), 3),
        "sys_us_per_packet": round(1e6 * (c1[1] - c0[1]) / max(1, p1 - p0), 3),
        "lag_avg_ms": round(sum(lags) / max(1, len(lags)), 2),
        "srtp_profiles": profiles,
        "viewers_paused": paused,
        "fast_paths": sum(1 for w in writers if w is not None),
        "gso": gso,
        "packets_per_syscall": round(p1 / syscalls, 1) if syscalls else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clip", type=Path, default=Path("var/bench/source-3840x2160-30-25000k-10s.mp4"))
    parser.add_argument("--viewers", type=int, default=8)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.clip, args.viewers, args.window, args.warmup))))


if __name__ == "__main__":
    main()
