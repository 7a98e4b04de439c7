"""Counting WebRTC viewers for ``make bench``: real ICE and DTLS, then RTP counted below SRTP.

``bench.edge`` starts this module as a subprocess (several viewers per process, never in
the edge's process) and drives it with one JSON command per line on stdin; each answer is one
JSON line on stdout. A viewer is a stock aiortc ``RTCPeerConnection`` (recvonly video + audio,
H.264 preferred) that POSTs its offer to the bench edge, so ICE, DTLS-SRTP keying, consent checks
and RTCP stay what a real peer does. Only the RTP media path is replaced: the viewer's UDP socket
is drained by a reader of its own that reads the clear RTP header of every datagram (sequence
number, timestamp, marker) and never decrypts or depacketizes. Everything else (STUN, DTLS, RTCP)
goes on to aioice as usual.

Why: decrypting and reassembling 4K30 for dozens of viewers would cost more CPU than the edge
under test, on a 2-core machine where the viewers and the edge share the cores. Counting costs
about 1 µs per packet and still shows what matters: which packets arrived, when each frame's
last packet arrived, and whether a frame arrived whole.

Sends an RTCP receiver report per stream every second, as browsers do (the edge uses them to
know a viewer is there), and, as Chromium does, offers transport-cc and answers every 50 ms with
transport-cc feedback (the transport-wide sequence number sits in the clear RTP header), so
the edge under test estimates each viewer's link and paces its sends as it does for browsers.
Never sends NACK or PLI (loss is measured raw, with no repair) and never decodes.

Commands: ``join`` (add viewers one after another), ``window`` (the measurement interval, wall
clock), ``report`` (per-viewer counts and per-frame records), ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from orstream.edge.twcc import TWCC_URI, ArrivalLog

# Big enough for several 4K keyframe bursts (a 4K IDR is ~1,100 packets, up to 1.5 MB) in case
# this process is scheduled late: a loss should be the edge's, not the counting viewer's.
RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
# The source is H.264 High; aiortc only lists Constrained Baseline, so the offer is relabelled
# (as a browser's would read) and the answer relabelled back for aiortc's own negotiation.
HIGH_PROFILE = "640033"
AIORTC_PROFILE = "42e01f"
CONNECT_TIMEOUT = 20.0
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# The header extension id the viewers offer transport-cc under (aiortc's own use 1-4).
TWCC_ID = 5
FEEDBACK_INTERVAL = 0.05


@dataclass
class StreamCount:
    """One RTP stream (one payload type) as seen by a counting viewer."""

    ssrc: int = 0
    received: int = 0
    window_received: int = 0
    window_min: int | None = None
    window_max: int | None = None
    cycles: int = 0
    last_seq: int | None = None

    def extend(self, seq: int) -> int:
        """Extended (unwrapped) sequence number, tolerant of a little reordering."""
        last = self.last_seq
        if last is None:
            self.last_seq = seq
            return self.cycles + seq
        if seq < last and last - seq > 0x8000:
            self.cycles += 0x10000
            self.last_seq = seq
            return self.cycles + seq
        if seq > last and seq - last > 0x8000:
            return self.cycles - 0x10000 + seq  # a late packet from before the wrap
        if seq > last:
            self.last_seq = seq
        return self.cycles + seq


@dataclass
class CountingViewer:
    """One viewer: its peer connection and what its socket drain has counted."""

    viewer_id: str
    pc: RTCPeerConnection
    video_pts: set[int] = field(default_factory=set)
    answer_time: float = 0.0
    connected_time: float = 0.0
    window: tuple[float, float] = (float("inf"), float("inf"))
    streams: dict[int, StreamCount] = field(default_factory=dict)
    # video frames by RTP timestamp: [packets, min ext seq, max ext seq, marker arrival time]
    frames: dict[int, list[Any]] = field(default_factory=dict)
    earlier_frames: list[list[Any]] = field(default_factory=list)
    other_datagrams: int = 0
    # transport-cc: arrivals of the edge's transport-wide numbers, when the edge numbers them
    arrivals: ArrivalLog | None = None
    # one receive buffer per viewer: no allocation per datagram
    _buffer: bytearray = field(default_factory=lambda: bytearray(2048))

    def install(self) -> None:
        """Take over reading of every ICE socket of this peer (call after gathering)."""
        loop = asyncio.get_running_loop()
        for transceiver in self.pc.getTransceivers():
            connection = transceiver.receiver.transport.transport.iceGatherer._connection
            for protocol in connection._protocols:
                transport = protocol.transport
                # the real socket: get_extra_info("socket") is a wrapper without recvfrom
                sock = getattr(transport, "_sock", None)
                if sock is None:
                    continue
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
                except OSError:  # not root: the kernel's rmem_max applies
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
                # asyncio's datagram transport reads one datagram per event-loop turn; this reader
                # drains the socket per wake-up, which is what keeps counting cheap. Re-adding a
                # reader for the same fd replaces the transport's own.
                loop._add_reader(sock.fileno(), self._drain, sock, protocol)  # type: ignore[attr-defined]

    def _drain(self, sock: socket.socket, protocol: Any) -> None:
        now = time.time()
        t0, t1 = self.window
        in_window = t0 <= now < t1
        buf = self._buffer
        recvfrom_into = sock.recvfrom_into
        frames = self.frames
        streams = self.streams
        video_pts = self.video_pts
        arrivals = self.arrivals
        arrival_us = int(time.monotonic() * 1e6)
        for _ in range(4096):  # bounded, so one busy socket cannot starve the others
            try:
                size, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            b1 = buf[1]
            if size < 12 or not (128 <= buf[0] < 192) or 192 <= b1 <= 223:
                # STUN, DTLS, RTCP: aioice and aiortc handle them as usual.
                self.other_datagrams += 1
                protocol.datagram_received(bytes(buf[:size]), addr)
                continue
            pt = b1 & 0x7F
            stream = streams.get(pt)
            if stream is None:
                stream = streams[pt] = StreamCount(ssrc=int.from_bytes(buf[8:12], "big"))
            ext = stream.extend((buf[2] << 8) | buf[3])
            stream.received += 1
            if in_window:
                stream.window_received += 1
                if stream.window_min is None or ext < stream.window_min:
                    stream.window_min = ext
                if stream.window_max is None or ext > stream.window_max:
                    stream.window_max = ext
            if arrivals is not None and buf[0] & 0x10:
                seq = _transport_seq(buf, size)
                if seq is not None:
                    arrivals.note(seq, arrival_us)
            if pt in video_pts:
                ts = (buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7]
                frame = frames.get(ts)
                if frame is not None and frame[3] and now - frame[3] > 1.0:
                    # Same timestamp, a second after that frame ended: a source that restarts
                    # its clock on each loop (aiortc's MediaPlayer). Keep the old frame apart.
                    self.earlier_frames.append([ts, *frame])
                    frame = None
                if frame is None:
                    frame = frames[ts] = [0, ext, ext, 0.0]
                frame[0] += 1
                if ext < frame[1]:
                    frame[1] = ext
                elif ext > frame[2]:
                    frame[2] = ext
                if b1 & 0x80:
                    frame[3] = time.time()  # the frame's last packet: when it became decodable

    async def send_receiver_reports(self) -> None:
        """An RTCP receiver report per stream about every second, as a browser sends.

        aiortc's receiver never sees the media this viewer counts, so it would send none; the
        edge reads these reports (loss, RTT, presence), so a silent viewer would not be a fair one.
        """
        from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

        ssrc = self.pc.getTransceivers()[0].sender._ssrc
        dtls = self.pc.getTransceivers()[0].receiver.transport
        last: dict[int, tuple[int, int]] = {}
        while True:
            await asyncio.sleep(1.0)
            reports = []
            for stream in self.streams.values():
                highest = (stream.cycles + (stream.last_seq or 0)) & 0xFFFFFFFF
                before = last.get(stream.ssrc, (highest, stream.received))
                expected = highest - before[0]
                lost = max(0, expected - (stream.received - before[1]))
                last[stream.ssrc] = (highest, stream.received)
                reports.append(RtcpReceiverInfo(
                    ssrc=stream.ssrc, fraction_lost=min(255, (lost * 256) // expected) if expected > 0 else 0,
                    packets_lost=0, highest_sequence=highest, jitter=0, lsr=0, dlsr=0,
                ))
            if reports and dtls.state == "connected":
                try:
                    await dtls._send_rtp(bytes(RtcpRrPacket(ssrc=ssrc, reports=reports)))
                except Exception:  # the peer is closing: reports end with it
                    return

    async def send_transport_feedback(self) -> None:
        """Transport-cc feedback every 50 ms, as Chromium sends it."""
        assert self.arrivals is not None
        ssrc = self.pc.getTransceivers()[0].sender._ssrc
        dtls = self.pc.getTransceivers()[0].receiver.transport
        media_ssrc = next(iter(s.ssrc for pt, s in self.streams.items() if pt in self.video_pts), 0)
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            if not media_ssrc:
                media_ssrc = next(iter(s.ssrc for pt, s in self.streams.items() if pt in self.video_pts), 0)
            for packet in self.arrivals.feedback(sender_ssrc=ssrc, media_ssrc=media_ssrc):
                if dtls.state != "connected":
                    return
                try:
                    await dtls._send_rtp(packet)
                except Exception:  # the peer is closing: feedback ends with it
                    return

    def report(self) -> dict[str, Any]:
        video = [s for pt, s in self.streams.items() if pt in self.video_pts]
        return {
            "id": self.viewer_id,
            "connection": self.pc.connectionState,
            "answer_time": self.answer_time,
            "connected_time": self.connected_time,
            "streams": {
                str(pt): {
                    "video": pt in self.video_pts,
                    "received": s.received,
                    "window_received": s.window_received,
                    "window_expected": (
                        s.window_max - s.window_min + 1 if s.window_min is not None and s.window_max is not None else 0
                    ),
                }
                for pt, s in self.streams.items()
            },
            "video_packets": sum(s.received for s in video),
            "frames": self.earlier_frames + [[ts, *rec] for ts, rec in self.frames.items()],
            "other_datagrams": self.other_datagrams,
        }


def _transport_seq(buf: bytearray, size: int) -> int | None:
    """The transport-wide sequence number in an RTP packet's one-byte header extensions."""
    pos = 12 + 4 * (buf[0] & 0x0F)
    if pos + 4 > size or buf[pos] != 0xBE or buf[pos + 1] != 0xDE:
        return None
    end = pos + 4 + 4 * ((buf[pos + 2] << 8) | buf[pos + 3])
    pos += 4
    while pos < end and pos < size:
        byte = buf[pos]
        if byte == 0:
            pos += 1
            continue
        ext_id, length = byte >> 4, (byte & 0x0F) + 1
        if ext_id == TWCC_ID and length == 2 and pos + 3 <= size:
            return (buf[pos + 1] << 8) | buf[pos + 2]
        pos += 1 + length
    return None


def _offer_transport_cc(sdp: str) -> str:
    """Add the transport-wide-cc extension and transport-cc feedback to the video section."""
    head, video = sdp.split("m=video", 1)
    section, sep, rest = video.partition("\r\nm=")
    pts = section.split("\r\n", 1)[0].split()[2:]
    lines = section.split("\r\n")
    lines.insert(1 + next(i for i, line in enumerate(lines[1:]) if line.startswith("a=")),
                 f"a=extmap:{TWCC_ID} {TWCC_URI}")
    lines += [f"a=rtcp-fb:{pt} transport-cc" for pt in pts]
    lines = [line for line in lines if line]
    return head + "m=video" + "\r\n".join(lines) + "\r\n" + (sep[2:] + rest if sep else "")


def _h264_first(pc: RTCPeerConnection) -> None:
    """Offer only H.264 (and its RTX) for video, as the edge forwards H.264 only."""
    capabilities = RTCRtpSender.getCapabilities("video")
    codecs = [c for c in capabilities.codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(codecs)


def _video_payload_types(answer_sdp: str) -> set[int]:
    """Payload types of the answer's video section, RTX excluded."""
    section = answer_sdp.split("m=video", 1)[1].split("\nm=", 1)[0]
    rtx = {int(pt) for pt in re.findall(r"a=rtpmap:(\d+) rtx/", section)}
    first = section.split("\n", 1)[0].split()
    return {int(p) for p in first[2:] if p.isdigit() and int(p) not in rtx}  # after port and proto


class ViewerProcess:
    """The viewers of this process and the command loop that drives them."""

    def __init__(self) -> None:
        self.viewers: list[CountingViewer] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    async def join_one(
        self, viewer_id: str, url: str, *, high_profile: bool, audio: bool, feedback: bool = False
    ) -> CountingViewer:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.addTransceiver("video", direction="recvonly")
        if audio:
            pc.addTransceiver("audio", direction="recvonly")
        _h264_first(pc)
        viewer = CountingViewer(viewer_id=viewer_id, pc=pc)
        self.viewers.append(viewer)
        await pc.setLocalDescription(await pc.createOffer())
        viewer.install()
        sdp = pc.localDescription.sdp
        if high_profile:
            sdp = sdp.replace(f"profile-level-id={AIORTC_PROFILE}", f"profile-level-id={HIGH_PROFILE}")
        if feedback:
            sdp = _offer_transport_cc(sdp)
        assert self.session is not None
        async with self.session.post(url, json={"id": viewer_id, "sdp": sdp}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"edge refused viewer {viewer_id}: {body}")
        answer = re.sub(r"profile-level-id=[0-9a-fA-F]{6}", f"profile-level-id={AIORTC_PROFILE}", body["sdp"])
        viewer.video_pts = _video_payload_types(answer)
        if f"a=extmap:{TWCC_ID} {TWCC_URI}" in answer:
            viewer.arrivals = ArrivalLog()
        viewer.answer_time = time.time()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise RuntimeError(f"viewer {viewer_id} did not connect: {pc.connectionState}")
            await asyncio.sleep(0.01)
        viewer.connected_time = time.time()
        self.tasks.append(asyncio.ensure_future(viewer.send_receiver_reports()))
        if viewer.arrivals is not None:
            self.tasks.append(asyncio.ensure_future(viewer.send_transport_feedback()))
        return viewer

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        name = command.get("cmd")
        if name == "join":
            if self.session is None:
                self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            joined, errors = [], []
            for viewer_id in command["ids"]:
                try:
                    await self.join_one(
                        viewer_id, command["url"], high_profile=command.get("high_profile", True),
                        audio=command.get("audio", True), feedback=command.get("feedback", False),
                    )
                    joined.append(viewer_id)
                except Exception as exc:  # reported, not raised: the bench decides what a failure means
                    errors.append(f"{viewer_id}: {exc}")
            return {"joined": joined, "errors": errors}
        if name == "window":
            for viewer in self.viewers:
                viewer.window = (float(command["t0"]), float(command["t1"]))
            return {"ok": True}
        if name == "report":
            return {"viewers": [v.report() for v in self.viewers]}
        if name == "quit":
            await self.close()
            return {"ok": True}
        return {"error": f"unknown command {name!r}"}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        await asyncio.gather(*(v.pc.close() for v in self.viewers), return_exceptions=True)
        self.viewers.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None


async def _main() -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        # A thread, because stdin is a pipe the event loop would otherwise block on.
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    process = ViewerProcess()
    try:
        while True:
            line = await lines.get()
            if line is None:  # the bench went away: leave
                break
            if not line.strip():
                continue
            command = json.loads(line)
            try:
                reply = await process.handle(command)
            except Exception as exc:
                reply = {"error": repr(exc)}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
            if command.get("cmd") == "quit":
                break
    finally:
        await process.close()


if __name__ == "__main__":
    asyncio.run(_main())
