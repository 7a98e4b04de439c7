"""``make security``: a bounded random mutator thrown at a running edge while a second session watches.

Starts a real edge (``python -m orstream.edge``, its log in a file), loops a small clip on a
"watch" session with one stock aiortc viewer, and aims at a "fuzz" session on the same edge:

1. **signalling**: mutated SDP offers (viewer, publisher, WHIP) and mutated JSON bodies and
   query strings on every signed route, plus badly signed and unsigned requests;
2. **datagrams**: mutated STUN and junk in every RFC 7983 first-byte range at the edge's UDP
   ports (the watcher's included), and mutated RTP and RTCP sent through a connected publisher's
   and talker's own SRTP, so they reach the parsers and handlers behind SRTP.

It counts outcomes (HTTP statuses; datagrams sent and the edge's own drop counters), the log
lines the edge wrote in each phase and the tracebacks among them, the edge's health at the end,
and the watcher's frames: missing ones (gaps in its RTP timestamps) and fps in each phase.
Deterministic for a seed. Used by tests/edge/test_fuzz.py; ``python -m bench.fuzz`` prints a
table and one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import av
import yarl
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

from orstream.edge import demo, protocol
from orstream.edge.h264 import join_nal_units, split_nal_units
from orstream.edge.send import packetize_h264

SECRET = "fuzz-edge-secret"
HIGH_PROFILE = "profile-level-id=640c1f"
AIORTC_PROFILE = "profile-level-id=42e01f"
# Inputs per kind for the default 10,000.
MIX = {
    "sdp_viewer": 900,
    "sdp_publisher": 500,
    "sdp_whip": 400,
    "signalling": 2200,
    "stun": 2000,
    "junk": 1000,
    "rtp": 2000,
    "rtcp": 1000,
}
WEIRD_TOKENS = [
    "", "abc", "-1", "128", "4294967296", "99999999999999999999", "0x60", "1e3", "²", "\x00", "\udc80",
    "é" * 40, "a" * 5000, "%s%n", "../../etc/passwd", "null", "NaN", " ", "\t", ";;;", "=", "/",
]
BAD_LINES = [
    "a=rtpmap:abc H264/90000", "a=fmtp:9x packetization-mode=1", "a=rtpmap:96", "a=fmtp:96",
    "a=fmtp:96 profile-level-id=zz;packetization-mode=1", "a=rtpmap:300 H264/90000", "m=video",
    "m=", "m=audio x UDP/TLS/RTP/SAVPF", "a=candidate:1 1 udp 1 999.1.1.1 70000 typ host",
    "a=candidate:", "a=ssrc-group:FID x y", "a=ssrc:abc cname:x", "a=extmap:99999 urn:x",
    "a=mid:", "a=group:BUNDLE 7 8 9", "a=fingerprint:sha-256 ZZ", "a=setup:bogus", "c=IN IP4",
    "a=rtcp-fb:* nack", "a=msid:", "a=ice-ufrag:", "a=ice-pwd:", "a=rtpmap:96 H264/0",
    "a=rtpmap:96 H264/90000/2/3", "a=fmtp:96 apt=abc", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=97",
]


class Mutator:
    """Small random edits of bytes, SDP lines and JSON values, reproducible from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def data(self, data: bytes, ops: int = 3) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, ops)):
            choice = self.rng.randrange(8)
            at = self.rng.randrange(len(out) + 1)
            if choice == 0 and out:
                out[at % len(out)] ^= 1 << self.rng.randrange(8)
            elif choice == 1 and out:
                out[at % len(out)] = self.rng.choice((0, 1, 0x7F, 0x80, 0xFF, self.rng.randrange(256)))
            elif choice == 2:
                out[at:at] = self.rng.randbytes(self.rng.randint(1, 16))
            elif choice == 3:
                del out[at : at + self.rng.randint(1, 16)]
            elif choice == 4:
                del out[self.rng.randrange(len(out) + 1) :]
            elif choice == 5 and out:
                start = self.rng.randrange(len(out))
                out[at:at] = out[start : start + self.rng.randint(1, 32)]
            elif choice == 6 and len(out) >= 2:
                struct.pack_into("!H", out, at % (len(out) - 1), self.rng.choice((0, 0xFFFF, 0x8000, self.rng.randrange(65536))))
            else:
                out[at:at] = bytes(self.rng.randint(1, 8))
        return bytes(out)

    def sdp(self, sdp: str) -> str:
        lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
        for _ in range(self.rng.randint(1, 4)):
            choice = self.rng.randrange(7)
            i = self.rng.randrange(len(lines)) if lines else 0
            if choice == 0 and lines:
                del lines[i]
            elif choice == 1 and lines:
                lines.insert(i, lines[self.rng.randrange(len(lines))])
            elif choice == 2:
                lines.insert(i, self.rng.choice(BAD_LINES))
            elif choice == 3 and lines:
                parts = re.split(r"([ :;=/])", lines[i])
                j = self.rng.randrange(len(parts))
                parts[j] = self.rng.choice(WEIRD_TOKENS)
                lines[i] = "".join(parts)
            elif choice == 4 and lines:
                lines[i] = self.data(lines[i].encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
            elif choice == 5 and len(lines) > 1:
                j = self.rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
            elif lines:
                del lines[self.rng.randrange(len(lines)) :]
        return "\r\n".join(lines) + self.rng.choice(("\r\n", "\n", ""))

    def value(self, depth: int = 0) -> Any:
        choice = self.rng.randrange(9)
        if choice == 0:
            return None
        if choice == 1:
            return self.rng.choice((True, False))
        if choice == 2:
            return self.rng.choice((0, -1, 1, 2**31, 2**63, -(2**70), 600))
        if choice == 3:
            return self.rng.choice((0.5, -1e308, 1e308))
        if choice == 4 and depth < 3:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if choice == 5 and depth < 3:
            return {self.rng.choice(WEIRD_TOKENS[:8]): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        if choice == 6:
            nested: Any = 1
            for _ in range(self.rng.choice((50, 500, 5000))):
                nested = [nested]
            return nested
        return self.rng.choice(WEIRD_TOKENS)

    def body(self, body: dict[str, Any]) -> bytes:
        """A JSON body with fields removed, added or given odd values; sometimes broken JSON."""
        out = dict(body)
        for _ in range(self.rng.randint(1, 3)):
            choice = self.rng.randrange(4)
            if choice == 0 and out:
                del out[self.rng.choice(list(out))]
            elif choice == 1:
                out[self.rng.choice(WEIRD_TOKENS[:6] + ["evil", "type", "options"])] = self.value()
            elif out:
                out[self.rng.choice(list(out))] = self.value()
        try:
            raw = json.dumps(out).encode("utf-8", "surrogatepass")
        except (RecursionError, ValueError):
            raw = b"[" * 100_000
        if self.rng.random() < 0.15:
            raw = self.data(raw)
        return raw

    def query(self) -> str:
        if self.rng.random() < 0.5:
            return ""
        pairs = [(self.rng.choice(WEIRD_TOKENS[:6]), self.rng.choice(WEIRD_TOKENS[:12])) for _ in range(self.rng.randint(1, 3))]
        return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogateescape')}" for k, v in pairs)


# --- the watcher: a stock aiortc viewer that counts frames instead of decoding them ---------


class _CountingDecoder(Decoder):
    """Takes aiortc's decoder's place: notes each reassembled frame's arrival and RTP timestamp."""

    by_thread: dict[int, _CountingDecoder] = {}

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.frames: list[tuple[float, int]] = []
        self.by_thread[threading.get_ident()] = self

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        self.frames.append((time.time(), encoded_frame.timestamp))
        return []


@dataclass
class Watcher:
    pc: RTCPeerConnection

    @property
    def frames(self) -> list[tuple[float, int]]:
        """(arrival, RTP timestamp) of every video frame the watcher's receiver reassembled."""
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.kind == "video")
        thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
        decoder = _CountingDecoder.by_thread.get(thread.ident or -1) if thread is not None else None
        return list(decoder.frames) if decoder is not None and decoder.thread is thread else []

    def between(self, start: float, end: float) -> list[tuple[float, int]]:
        return [f for f in self.frames if start <= f[0] < end]

    def missing(self, start: float, end: float) -> int:
        """Frames absent in the RTP timestamps received in [start, end): 30 fps, 3000 ticks each."""
        stamps = [ts for _, ts in self.between(start, end)]
        gaps = 0
        for a, b in zip(stamps, stamps[1:], strict=False):
            gaps += max(0, round(((b - a) & 0xFFFFFFFF) / 3000) - 1)
        return gaps

    def fps(self, start: float, end: float) -> float:
        return len(self.between(start, end)) / max(end - start, 1e-6)


class PacketTrack(MediaStreamTrack):
    """Video that sends the given Annex-B access units in a loop, 30 a second, without encoding."""

    kind = "video"

    def __init__(self, units: list[bytes]) -> None:
        super().__init__()
        self.units = units
        self.count = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.count / 30 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.units[self.count % len(self.units)])
        packet.pts = self.count * 3000
        packet.time_base = Fraction(1, 90000)
        self.count += 1
        return packet


def _pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def edge_ports(answer_sdp: str) -> list[int]:
    return sorted({int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer_sdp)})


# --- the edge under test -------------------------------------------------------------------


class Edge:
    """``python -m orstream.edge`` on a free port, its log in a file, and a signed client."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log_path = work / "edge.log"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "ORSTREAM_EDGE_SECRET": SECRET,
            "ORSTREAM_EDGE_MEDIA_DIR": str(self.work / "spool"),
            "ORSTREAM_EDGE_WEBHOOK_URL": "",
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orstream.edge", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with self.http.get(self.url("/health")) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the edge did not start; see {self.log_path}")

    def url(self, target: str) -> str:
        return f"http://127.0.0.1:{self.port}{target}"

    async def request(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, str]:
        assert self.http is not None
        sent = headers if headers is not None else protocol.sign(secret=SECRET, method=method, path=target, body=body)
        # encoded=True: send the target exactly as signed, without re-quoting it
        async with self.http.request(method, yarl.URL(self.url(target), encoded=True), data=body, headers=sent) as reply:
            return reply.status, await reply.text()

    async def call(self, method: str, target: str, body: Any = None) -> Any:
        status, text = await self.request(method, target, b"" if body is None else json.dumps(body).encode())
        if status >= 300:
            raise RuntimeError(f"{method} {target}: {status} {text[:200]}")
        return json.loads(text) if text else None

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self) -> int | None:
        if self.http is not None:
            await self.http.close()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the run -------------------------------------------------------------------------------


@dataclass
class Figures:
    tried: Counter[str] = field(default_factory=Counter)
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, kind: str, outcome: str) -> None:
        self.tried[kind] += 1
        self.outcomes.setdefault(kind, Counter())[outcome] += 1


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


async def _offer_sdp(video: str, audio: int, talk: bool = False) -> tuple[RTCPeerConnection, str]:
    pc = _pc()
    pc.addTransceiver("video", direction=video)
    for i in range(audio):
        pc.addTransceiver(AudioStreamTrack() if talk and i == 0 else "audio", direction="sendrecv" if talk and i == 0 else "recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def run(*, inputs: int = 10_000, seed: int = 1, work: Path | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    scale = inputs / sum(MIX.values())
    budget = {kind: max(1, round(n * scale)) for kind, n in MIX.items()}
    mutate = Mutator(seed)
    own = tempfile.TemporaryDirectory(prefix="orstream-fuzz-") if work is None else None
    root = Path(own.name) if own is not None else work
    assert root is not None
    figures = Figures()
    edge = Edge(root)
    peers: list[RTCPeerConnection] = []
    import aiortc.rtcrtpreceiver as rtcrtpreceiver

    stock_decoder = rtcrtpreceiver.get_decoder
    # No peer here decodes: each receiver notes its frames, and the watcher reads its own.
    rtcrtpreceiver.get_decoder = lambda codec: _CountingDecoder()
    try:
        clip = demo.generate(root / "clip.mp4", width=320, height=240, seconds=2.0, bitrate=400_000, gop_seconds=0.5)
        units = annexb_units(clip)
        await edge.start()
        say(f"edge on port {edge.port}; {sum(budget.values())} mutated inputs")

        # The watching session: a looped source and one viewer.
        await edge.call("POST", "/sessions", {"session_id": "watch"})
        await edge.call("POST", "/sessions/watch/source", {"url": str(clip), "loop": True})
        pc, sdp = await _offer_sdp("recvonly", 1)
        peers.append(pc)
        answer = await edge.call("POST", "/sessions/watch/viewers", {"participant_id": "watcher", "role": "resident", "sdp": sdp.replace(AIORTC_PROFILE, HIGH_PROFILE)})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=_aiortc_profile(answer["sdp"]), type="answer"))
        watcher = Watcher(pc=pc)
        watch_ports = edge_ports(answer["sdp"])
        await _wait(lambda: len(watcher.frames) > 15, 20, "the watcher got no picture")

        # The fuzzing session, with a real publisher so that viewer offers can be answered.
        await edge.call("POST", "/sessions", {"session_id": "fuzz"})
        publisher, publisher_sdp = await _publisher(edge, units, peers)
        viewer_pc, viewer_sdp = await _offer_sdp("recvonly", 2)
        peers.append(viewer_pc)
        viewer_sdp = viewer_sdp.replace(AIORTC_PROFILE, HIGH_PROFILE)

        # Phase 1: signalling.
        lines_before = len(edge.log_lines())
        start = time.time()
        await _fuzz_signalling(edge, mutate, figures, budget, viewer_sdp, publisher_sdp, str(clip))
        end = time.time()
        figures.phases["signalling"] = _phase(edge, watcher, lines_before, start, end)
        say(f"signalling: {end - start:.1f} s")

        # Phase 2: datagrams. A fresh publisher and a talker, both connected, send through SRTP.
        await edge.request("DELETE", "/sessions/fuzz")
        await edge.call("POST", "/sessions", {"session_id": "fuzz"})
        publisher, _ = await _publisher(edge, units, peers)
        talker, talker_answer = await _talker(edge, peers)
        fuzz_ports = edge_ports(talker_answer) + edge_ports(publisher.remoteDescription.sdp)
        lines_before = len(edge.log_lines())
        start = time.time()
        await _fuzz_datagrams(mutate, figures, budget, watch_ports, fuzz_ports, publisher, talker, units)
        # Let the last datagrams land, and measure the watcher over a few seconds at least.
        await asyncio.sleep(max(1.0, 5.0 - (time.time() - start)))
        end = time.time()
        figures.phases["datagrams"] = _phase(edge, watcher, lines_before, start, end)
        say(f"datagrams: {end - start:.1f} s")

        alive = edge.alive
        try:
            metrics = (await edge.request("GET", "/metrics"))[1]
        except aiohttp.ClientError:
            metrics = ""
        drops = {m[0]: int(m[1]) for m in re.findall(r'orstream_edge_malformed_dropped_total\{kind="(\w+)"\} (\d+)', metrics)}
        stats = await edge.call("GET", "/sessions/watch/stats") if alive else {}
        watch_viewer: dict[str, Any] = next((v for v in stats.get("viewers", []) if v["participant_id"] == "watcher"), {})
        log = edge.log_lines()
        whole = (figures.phases["signalling"]["start"], figures.phases["datagrams"]["end"])
        result = {
            "inputs_tried": sum(figures.tried.values()),
            "tried": dict(figures.tried),
            "outcomes": {k: dict(v) for k, v in figures.outcomes.items()},
            "edge_alive": alive,
            "edge_drops": drops,
            "server_errors": sum(v.get("5xx", 0) for v in figures.outcomes.values()),
            "log_lines": len(log),
            "tracebacks": sum(1 for line in log if line.startswith("Traceback")),
            "phases": {k: {n: x for n, x in v.items() if n not in ("start", "end")} for k, v in figures.phases.items()},
            "watcher_missing_frames": watcher.missing(*whole),
            "watcher_connection": watch_viewer.get("connection"),
            "watcher_overflows": watch_viewer.get("overflows"),
        }
    finally:
        rtcrtpreceiver.get_decoder = stock_decoder  # type: ignore[assignment]
        for peer in peers:
            await peer.close()
        code = await edge.stop()
        if own is not None:
            own.cleanup()
    result["edge_exit_code"] = code
    return result


def _aiortc_profile(sdp: str) -> str:
    return re.sub(r"profile-level-id=[0-9a-fA-F]{6}", AIORTC_PROFILE, sdp)


def annexb_units(clip: Path) -> list[bytes]:
    """A clip's access units in the edge's canonical Annex-B form, read independently of ingest."""
    from av.bitstream import BitStreamFilterContext

    out: list[bytes] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        annexb = BitStreamFilterContext("h264_mp4toannexb", stream)
        for packet in container.demux(stream):
            for filtered in annexb.filter(packet):
                out.append(join_nal_units(split_nal_units(bytes(filtered))))
    return out


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        await asyncio.sleep(0.05)


def _phase(edge: Edge, watcher: Watcher, lines_before: int, start: float, end: float) -> dict[str, Any]:
    written = edge.log_lines()[lines_before:]
    return {
        "start": start,
        "end": end,
        "seconds": round(end - start, 1),
        "log_lines": len(written),
        "log_lines_not_access": sum(1 for line in written if " aiohttp.access " not in line),
        "tracebacks": sum(1 for line in written if line.startswith("Traceback")),
        "watcher_fps": round(watcher.fps(start, end), 1),
        "watcher_missing_frames": watcher.missing(start, end),
    }


async def _publisher(edge: Edge, units: list[bytes], peers: list[RTCPeerConnection]) -> tuple[RTCPeerConnection, str]:
    pc = _pc()
    peers.append(pc)
    pc.addTransceiver(PacketTrack(units), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    answer = await edge.call("POST", "/sessions/fuzz/publisher", {"participant_id": "console", "sdp": sdp})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=_aiortc_profile(answer["sdp"]), type="answer"))
    await _wait(lambda: pc.connectionState == "connected", 20, "the fuzzing publisher did not connect")
    return pc, sdp


async def _talker(edge: Edge, peers: list[RTCPeerConnection]) -> tuple[RTCPeerConnection, str]:
    pc, sdp = await _offer_sdp("recvonly", 2, talk=True)
    peers.append(pc)
    await asyncio.sleep(0.5)  # the publisher's first keyframe gives the session its profile
    answer = await edge.call("POST", "/sessions/fuzz/viewers", {"participant_id": "talker", "role": "mentor", "sdp": sdp.replace(AIORTC_PROFILE, HIGH_PROFILE)})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=_aiortc_profile(answer["sdp"]), type="answer"))
    await _wait(lambda: pc.connectionState == "connected", 20, "the fuzzing talker did not connect")
    return pc, answer["sdp"]


async def _fuzz_signalling(
    edge: Edge, mutate: Mutator, figures: Figures, budget: dict[str, int], viewer_sdp: str, publisher_sdp: str, clip: str
) -> None:
    rng = mutate.rng
    token = protocol.whip_token_mint(secret=SECRET, session_id="fuzz", ttl=3600)

    async def send(kind: str, method: str, target: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            status, _ = await edge.request(method, target, body, headers)
            figures.count(kind, _status_class(status))
        except (TimeoutError, aiohttp.ClientError) as exc:
            figures.count(kind, f"no answer ({type(exc).__name__})")
        except ValueError:  # a header aiohttp will not send (a mutated token with a line break)
            figures.count(kind, "not sent")

    for i in range(budget["sdp_viewer"]):
        offer = {"participant_id": f"v{i % 4}", "role": rng.choice(("resident", "mentor", "observer")), "sdp": mutate.sdp(viewer_sdp)}
        await send("sdp_viewer", "POST", "/sessions/fuzz/viewers", json.dumps(offer).encode("utf-8", "surrogatepass"))
    for _ in range(budget["sdp_publisher"]):
        offer = {"participant_id": "console", "sdp": mutate.sdp(publisher_sdp)}
        await send("sdp_publisher", "POST", "/sessions/fuzz/publisher", json.dumps(offer).encode("utf-8", "surrogatepass"))
    for _ in range(budget["sdp_whip"]):
        raw = mutate.data(publisher_sdp.encode()) if rng.random() < 0.3 else mutate.sdp(publisher_sdp).encode("utf-8", "surrogateescape")
        bearer = token if rng.random() < 0.8 else mutate.data(token.encode()).decode("latin-1")
        whip = {"Authorization": f"Bearer {bearer}", "Content-Type": rng.choice(("application/sdp", "application/sdp", "text/plain"))}
        await send("sdp_whip", "POST", "/whip/fuzz", raw, whip)
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/sessions", {"session_id": "fuzz"}),
        ("POST", "/sessions/fuzz/viewers", {"participant_id": "v0", "role": "resident", "sdp": viewer_sdp}),
        ("POST", "/sessions/fuzz/publisher", {"participant_id": "console", "sdp": publisher_sdp}),
        ("POST", "/sessions/fuzz/source", {"url": clip, "loop": True}),
        ("DELETE", "/sessions/fuzz/source", None),
        ("POST", "/sessions/fuzz/recording", {"recording_id": "r1", "segment_seconds": 600}),
        ("DELETE", "/sessions/fuzz/recording", None),
        ("DELETE", "/sessions/fuzz/participants/v1", None),
        ("GET", "/sessions/fuzz/stats", None),
        ("GET", "/sessions/fuzz/clock", None),
        ("GET", "/metrics", None),
        ("DELETE", "/whip/fuzz/console", None),
    ]
    for _ in range(budget["signalling"]):
        method, target, body = rng.choice(routes)
        raw = mutate.body(body) if body is not None and rng.random() < 0.9 else b""
        target += mutate.query()
        headers: dict[str, str] | None = None
        roll = rng.random()
        if target.startswith("/whip/"):
            headers = {"Authorization": f"Bearer {token if roll < 0.5 else mutate.data(token.encode()).decode('latin-1')}"}
        elif roll < 0.05:
            headers = {}
        elif roll < 0.12:
            signed = protocol.sign(secret=SECRET, method=method, path=target, body=raw)
            key = rng.choice(list(signed))
            signed[key] = mutate.data(signed[key].encode()).decode("latin-1")
            headers = signed
        await send("signalling", method, target, raw, headers)
    # Whatever the mutations did to the session, the next phase starts from a clean one.
    await send("signalling", "POST", "/sessions", json.dumps({"session_id": "fuzz"}).encode())


def _stun(mutate: Mutator) -> bytes:
    """A STUN message with random attributes (types aioice knows, lengths it may not expect), mutated."""
    from aioice import stun

    rng = mutate.rng
    attributes = b""
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(list(stun.ATTRIBUTES_BY_TYPE) + [0x0000, 0xFFFF])
        value = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 12, 20, 64)))
        attributes += struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
    kind = rng.choice((0x0001, 0x0101, 0x0111, 0x0011, 0x0002, rng.randrange(0x4000)))
    message = struct.pack("!HHI12s", kind, len(attributes), 0x2112A442, rng.randbytes(12)) + attributes
    return mutate.data(message, ops=2) if rng.random() < 0.4 else message


def _junk(rng: random.Random) -> bytes:
    first = rng.choice((rng.randrange(0, 4), rng.randrange(16, 20), rng.randrange(20, 64), rng.randrange(64, 80),
                        rng.randrange(128, 192), rng.randrange(192, 256)))
    return bytes([first]) + rng.randbytes(rng.choice((0, 1, 11, 27, 100, 1200)))


def _rtp_packets(units: list[bytes], payload_type: int, ssrc: int, seq: int, timestamp: int) -> list[RtpPacket]:
    packets: list[RtpPacket] = []
    for n, unit in enumerate(units[:10]):
        payloads = packetize_h264(split_nal_units(unit))
        for i, payload in enumerate(payloads):
            packets.append(RtpPacket(payload_type=payload_type, marker=int(i == len(payloads) - 1),
                                     sequence_number=(seq + len(packets)) & 0xFFFF, timestamp=(timestamp + n * 3000) & 0xFFFFFFFF,
                                     ssrc=ssrc, payload=payload))
    return packets


def _sender_info(pc: RTCPeerConnection, kind: str) -> tuple[Any, int, int]:
    """The DTLS transport, payload type and SSRC a peer's sender of ``kind`` uses."""
    transceiver = next(t for t in pc.getTransceivers() if t.kind == kind)
    sender = transceiver.sender
    codec = next(c for c in transceiver._codecs if c.mimeType.lower() in ("video/h264", "audio/opus"))
    return sender.transport, int(codec.payloadType or 0), int(sender._ssrc)


def _rtcp(mutate: Mutator, ssrc: int, media_ssrc: int) -> bytes:
    rng = mutate.rng
    nack = RtcpRtpfbPacket(fmt=1, ssrc=ssrc, media_ssrc=media_ssrc)
    first = rng.randrange(65000)
    nack.lost = sorted({first + rng.randrange(100) for _ in range(rng.randint(0, 20))})
    report = RtcpReceiverInfo(ssrc=media_ssrc, fraction_lost=rng.randrange(256), packets_lost=rng.randrange(1 << 23),
                              highest_sequence=rng.randrange(1 << 32), jitter=rng.randrange(1 << 32),
                              lsr=rng.randrange(1 << 32), dlsr=rng.randrange(1 << 32))
    packets: list[Any] = [
        nack,
        RtcpPsfbPacket(fmt=rng.choice((1, 4, 15)), ssrc=ssrc, media_ssrc=media_ssrc, fci=rng.randbytes(rng.choice((0, 8)))),
        RtcpRrPacket(ssrc=ssrc, reports=[report]),
        RtcpSrPacket(ssrc=ssrc, sender_info=RtcpSenderInfo(ntp_timestamp=rng.randrange(1 << 64), rtp_timestamp=rng.randrange(1 << 32),
                                                           packet_count=0, octet_count=0), reports=[report]),
        RtcpByePacket(sources=[media_ssrc]),
    ]
    data = b"".join(bytes(p) for p in rng.sample(packets, rng.randint(1, 3)))
    if rng.random() < 0.5:
        data = mutate.data(data, ops=2)
        if len(data) < 2 or not 192 <= data[1] <= 223:
            data = b"\x80\xc9" + data[2:]  # keep it RTCP for aiortc's demultiplexer
    return data


async def _fuzz_datagrams(
    mutate: Mutator, figures: Figures, budget: dict[str, int], watch_ports: list[int], fuzz_ports: list[int],
    publisher: RTCPeerConnection, talker: RTCPeerConnection, units: list[bytes],
) -> None:
    rng = mutate.rng
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    ports = watch_ports + fuzz_ports

    def datagram(kind: str, data: bytes) -> None:
        port = rng.choice(watch_ports) if rng.random() < 0.5 else rng.choice(ports)
        try:
            sock.sendto(data, ("127.0.0.1", port))
            figures.count(kind, "sent")
        except BlockingIOError:
            figures.count(kind, "socket full")

    video_dtls, video_pt, video_ssrc = _sender_info(publisher, "video")
    audio_dtls, audio_pt, audio_ssrc = _sender_info(talker, "audio")
    edge_video_ssrc = _edge_video_ssrc(talker)
    # SSRCs of their own: the peers' real senders keep theirs, and SRTP protects each packet
    # number of a stream once.
    base = _rtp_packets(units, video_pt, video_ssrc ^ 1, rng.randrange(65536), rng.randrange(1 << 32))
    next_seq = base[-1].sequence_number
    audio_seq = rng.randrange(65536)
    try:
        steps = max(budget["stun"], budget["junk"], budget["rtp"], budget["rtcp"])
        for i in range(steps):
            if i < budget["stun"]:
                datagram("stun", _stun(mutate))
            if i < budget["junk"]:
                datagram("junk", _junk(rng))
            if i < budget["rtp"]:
                if rng.random() < 0.7:
                    packet = base[i % len(base)]
                    packet.sequence_number = next_seq = (next_seq + 1) & 0xFFFF  # SRTP protects a number once
                    raw = mutate.data(packet.serialize(), ops=2) if rng.random() < 0.6 else packet.serialize()
                    raw = b"\x80" + raw[1:] if raw else raw
                    await _send_srtp(video_dtls, raw, figures, "rtp")
                else:
                    audio_seq = (audio_seq + 1) & 0xFFFF
                    opus = RtpPacket(payload_type=audio_pt, sequence_number=audio_seq, timestamp=rng.randrange(1 << 32),
                                     ssrc=audio_ssrc ^ 1, payload=rng.randbytes(rng.choice((0, 1, 60))))
                    await _send_srtp(audio_dtls, mutate.data(opus.serialize(), ops=1), figures, "rtp")
            if i < budget["rtcp"]:
                await _send_srtp(audio_dtls, _rtcp(mutate, audio_ssrc, edge_video_ssrc), figures, "rtcp")
            if i % 40 == 0:
                await asyncio.sleep(0.005)  # let every process read its sockets
    finally:
        sock.close()


def _edge_video_ssrc(pc: RTCPeerConnection) -> int:
    section = pc.remoteDescription.sdp.split("m=video", 1)[1].split("m=audio", 1)[0]
    match = re.search(r"a=ssrc:(\d+) ", section)
    return int(match.group(1)) if match else 0


async def _send_srtp(dtls: Any, data: bytes, figures: Figures, kind: str) -> None:
    if len(data) < 12:
        data = data + bytes(12 - len(data))
    try:
        await dtls._send_rtp(data)
        figures.count(kind, "sent")
    except Exception as exc:  # our own SRTP may refuse a packet it cannot protect
        figures.count(kind, f"not sent ({type(exc).__name__})")


def table(result: dict[str, Any]) -> str:
    lines = [f"{'input':<14} {'tried':>6}  outcomes"]
    for kind, tried in result["tried"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"][kind].items()))
        lines.append(f"{kind:<14} {tried:>6}  {outcomes}")
    lines.append(f"{'total':<14} {result['inputs_tried']:>6}  server errors {result['server_errors']}, edge alive {result['edge_alive']}")
    lines.append(f"edge drops by kind: {result['edge_drops']}")
    for name, phase in result["phases"].items():
        lines.append(
            f"{name:<11} {phase['seconds']:>5} s: log lines {phase['log_lines']} ({phase['log_lines_not_access']} not the access log), "
            f"tracebacks {phase['tracebacks']}, watcher {phase['watcher_fps']} fps, {phase['watcher_missing_frames']} frames missing"
        )
    lines.append(f"tracebacks in the whole log: {result['tracebacks']}; watcher frames missing: {result['watcher_missing_frames']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep the edge's log and clip here")
    args = parser.parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(inputs=args.inputs, seed=args.seed, work=args.work, say=lambda text: print(text, file=sys.stderr)))
    print(table(result))
    print(json.dumps({"security_fuzz": result}, default=str))
    ok = result["edge_alive"] and not result["server_errors"] and not result["tracebacks"] and not result["watcher_missing_frames"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
