"""The process under test in ``make bench``: one edge (or a stock aiortc baseline) serving viewers.

``bench.edge`` starts ``python -m bench.edge_target --mode MODE --clip PATH`` and
talks to it over a small HTTP server on 127.0.0.1 (the port is the first line on stdout). Viewer
processes (``bench_viewer``) POST their offers to ``/offer``; the bench reads ``/stats`` at the
start and end of a measurement window and ``/frames`` at the end.

Modes, each a fresh process so one run's memory and sockets never leak into the next:

- ``edge``: orstream's ``Edge``/``SessionHub`` with a looped file ``PyAVSource``, viewers added
  through ``SessionHub.add_viewer``: exactly the forwarding path the product runs.
- ``stock``: stock aiortc sending the same encoded packets: one shared demux (the edge's
  ``PyAVSource``, so demux cost is equal), one ``av.Packet`` per frame handed to a per-viewer
  track whose ``recv()`` returns it, one ``RTCPeerConnection.addTrack`` per viewer: aiortc
  packetizes, builds, protects and sends per viewer (what ``MediaPlayer(decode=False)`` does).
- ``relay``: stock aiortc ``MediaPlayer`` decoding the clip and ``MediaRelay`` feeding an
  encoding ``RTCRtpSender``: the only way stock aiortc forwards a live source.
- ``ingest``: the edge ingesting the file with no viewers; ``/record`` starts a ``Recorder``.

CPU figures come from ``resource.getrusage(RUSAGE_SELF)`` of this process: every thread (demux
included), nothing of the viewers'. The bench's own bookkeeping here (a timestamp map of ~30
entries a second, an HTTP request a few times per run) is negligible next to that.

Never used outside the benchmark; pokes read-only at a few internals (named where it does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiohttp import web

from orstream.edge.frames import EncodedFrame

# Keep a bounded history of frame timestamps (the longest run is well under this).
FRAME_MAP_LIMIT = 30 * 600


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Target:
    """What every mode offers the HTTP server."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip

    async def start(self) -> None: ...

    async def add_viewer(self, viewer_id: str, sdp: str) -> str:
        raise NotImplementedError

    async def packets_sent(self) -> int:
        return 0

    def frames(self) -> dict[str, Any]:
        """{"frames": {rtp timestamp - offset: [ingest time, keyframe, packets]}, "offsets": {viewer: offset}}"""
        return {"frames": {}, "offsets": {}}

    async def record(self, directory: Path) -> None:
        raise NotImplementedError

    async def close(self) -> None: ...


class EdgeTarget(Target):
    """orstream's edge, as the API would drive it."""

    def __init__(self, clip: Path) -> None:
        from orstream.edge.hub import Edge

        self.clip = clip
        self.edge = Edge(emit_event=lambda type_, session, data: None, ice_loopback=True)
        self.hub = self.edge.session_create("bench")
        # RTP timestamp -> (ingest wall time, keyframe, packets): lets viewers' arrivals be turned
        # into lag and completeness without the viewers decrypting anything.
        self.frame_map: dict[int, tuple[float, bool, int | None]] = {}

    async def start(self) -> None:
        from orstream.edge.protocol import SourceAttach

        hub = self.hub
        forward = hub.on_frame

        def on_frame(frame: EncodedFrame) -> None:
            forward(frame)
            if frame.kind != "video":
                return
            # SessionHub.clock() gives the RTP timestamp every viewer sees for the latest frame.
            mapping = hub.clock()["video"]
            packets = None
            gop = hub._gop  # read-only peek: the PacketizedFrame just cached, for its packet count
            if gop and gop[-1].frame.ingest_time == frame.ingest_time:
                packets = len(gop[-1].payloads)
            if len(self.frame_map) < FRAME_MAP_LIMIT:
                self.frame_map[mapping["rtp_timestamp"]] = (mapping["ingest_time"], frame.keyframe, packets)

        # attach_source hands the source self.on_frame: an instance attribute wins.
        hub.on_frame = on_frame  # type: ignore[method-assign]
        await hub.attach_source(SourceAttach(url=str(self.clip), loop=True))
        await hub._wait_profile()

    async def add_viewer(self, viewer_id: str, sdp: str) -> str:
        from orstream.edge.protocol import ViewerOffer

        return await self.hub.add_viewer(ViewerOffer(participant_id=viewer_id, role="resident", sdp=sdp))

    async def packets_sent(self) -> int:
        return sum(f.sender.stats.packets_sent + f.sender.stats.retransmits
                   for v in self.hub.viewers.values() for f in v.feeds())

    def frames(self) -> dict[str, Any]:
        return {"frames": {str(ts): list(v) for ts, v in self.frame_map.items()}, "offsets": {}}

    def feed_stats(self) -> dict[str, Any]:
        overflows = dropped = 0
        send_lags = []
        for viewer in self.hub.viewers.values():
            if viewer.video is not None:
                overflows += viewer.video.stats.overflows
                dropped += viewer.video.stats.frames_dropped
                # the edge's own view: ingest -> last packet of the latest frame handed to the socket
                send_lags.append(viewer.video.stats.lag_last)
        counters = self.hub.counters
        estimating = sum(
            1 for v in self.hub.viewers.values()
            if v.video is not None and v.video.sender.estimator is not None and v.video.sender.estimator.stats.feedbacks
        )
        paced = sum(1 for v in self.hub.viewers.values() if v.video is not None and v.video.pace_bps)
        return {"overflows": overflows, "frames_dropped": dropped,
                "viewers_estimating": estimating, "viewers_paced": paced,
                "send_lag_max_ms": 1000 * max(send_lags) if send_lags else None,
                "viewers_paused": getattr(counters, "viewers_paused", 0)}

    async def record(self, directory: Path) -> None:
        from orstream.edge.protocol import RecordingStart

        self.hub.media_dir = directory
        await self.hub.start_recording(RecordingStart(recording_id="bench", segment_seconds=600))

    async def close(self) -> None:
        await self.edge.close()


class _PacketTrack:
    """A stock aiortc track whose recv() returns encoded av.Packets (as MediaPlayer(decode=False)).

    Frames are taken only once aiortc's sender has started pulling, and video from a keyframe
    on: a backlog queued during ICE and DTLS would otherwise be blasted out at once, starving the
    other viewers' handshakes (and a stock viewer could not decode frames before an IDR anyway).
    """

    def __init__(self, kind: str) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        gate = self

        # Built lazily so importing this module does not import aiortc's media stack.
        class Track(MediaStreamTrack):
            def __init__(self) -> None:
                super().__init__()
                self.kind = kind
                self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=120)

            async def recv(self) -> Any:
                gate.pulling = True
                return await self.queue.get()

        self.kind = kind
        self.pulling = False
        self.started = kind != "video"
        self.track = Track()

    def offer(self, packet: Any, keyframe: bool) -> None:
        if not self.pulling:
            return
        if not self.started:
            if not keyframe:
                return
            self.started = True
        if self.track.queue.full():
            return  # a stalled stock viewer: drop, as the edge would
        self.track.queue.put_nowait(packet)


class StockTarget(Target):
    """Stock aiortc: one RTCPeerConnection and one encoded-packet track per viewer."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.pcs: dict[str, Any] = {}
        self.tracks: list[tuple[_PacketTrack, _PacketTrack]] = []
        self.source: Any = None
        # pts -> (ingest time, keyframe, packets unknown): aiortc adds a random origin per sender,
        # which the bench finds per viewer.
        self.frame_map: dict[int, tuple[float, bool, int | None]] = {}

    async def start(self) -> None:
        from orstream.edge.ingest import PyAVSource

        self.source = PyAVSource(url=str(self.clip), on_frame=self._on_frame, loop_file=True)
        self.source.start()

    def _on_frame(self, frame: EncodedFrame) -> None:
        import av

        # One av.Packet per frame, shared by all viewers (aiortc's pack() only reads it): the
        # most favourable setup for stock aiortc.
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = Fraction(1, frame.clock_rate)
        index = 0 if frame.kind == "video" else 1
        if index == 0 and len(self.frame_map) < FRAME_MAP_LIMIT:
            self.frame_map[frame.pts & 0xFFFFFFFF] = (frame.ingest_time, frame.keyframe, None)
        for pair in self.tracks:
            pair[index].offer(packet, frame.keyframe)

    async def add_viewer(self, viewer_id: str, sdp: str) -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs[viewer_id] = pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        video, audio = _PacketTrack("video"), _PacketTrack("audio")
        pc.addTrack(video.track)
        if "m=audio" in sdp:
            pc.addTrack(audio.track)
        await pc.setLocalDescription(await pc.createAnswer())
        self.tracks.append((video, audio))
        return str(pc.localDescription.sdp)

    async def packets_sent(self) -> int:
        total = 0
        for pc in self.pcs.values():
            for sender in pc.getSenders():
                for stats in (await sender.getStats()).values():
                    if getattr(stats, "type", "") == "outbound-rtp":
                        total += stats.packetsSent
        return total

    def frames(self) -> dict[str, Any]:
        return {"frames": {str(ts): list(v) for ts, v in self.frame_map.items()}, "offsets": self._origins()}

    def _origins(self) -> dict[str, int]:
        """Each viewer's RTP timestamp origin: aiortc draws it at random inside the sender's RTP
        coroutine and exposes it nowhere, so it is read from that coroutine's frame."""
        origins = {}
        for viewer_id, pc in self.pcs.items():
            for sender in pc.getSenders():
                if sender.kind != "video":
                    continue
                task = getattr(sender, "_RTCRtpSender__rtp_task", None)
                frame = task.get_coro().cr_frame if task is not None else None
                if frame is not None and "timestamp_origin" in frame.f_locals:
                    origins[viewer_id] = int(frame.f_locals["timestamp_origin"])
        return origins

    async def close(self) -> None:
        if self.source is not None:
            await self.source.stop()
        await asyncio.gather(*(pc.close() for pc in self.pcs.values()), return_exceptions=True)


class RelayTarget(Target):
    """Stock aiortc's way to forward: decode with MediaPlayer, MediaRelay, re-encode per viewer."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.pcs: list[Any] = []
        self.player: Any = None
        self.relay: Any = None

    async def start(self) -> None:
        from aiortc.contrib.media import MediaPlayer, MediaRelay

        self.player = MediaPlayer(str(self.clip), loop=True)
        self.relay = MediaRelay()

    async def add_viewer(self, viewer_id: str, sdp: str) -> str:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        pc.addTrack(self.relay.subscribe(self.player.video))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        if self.player is not None and self.player.video is not None:
            self.player.video.stop()


class IngestTarget(EdgeTarget):
    """The edge ingesting the clip with no viewers; recording starts on request."""


TARGETS: dict[str, type[Target]] = {
    "edge": EdgeTarget,
    "stock": StockTarget,
    "relay": RelayTarget,
    "ingest": IngestTarget,
}


def build_app(target: Target, stopped: asyncio.Event) -> web.Application:
    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            answer = await asyncio.wait_for(target.add_viewer(body["id"], body["sdp"]), timeout=20)
        except Exception as exc:
            return web.json_response({"error": repr(exc)}, status=500)
        return web.json_response({"sdp": answer})

    async def stats(request: web.Request) -> web.Response:
        out: dict[str, Any] = {
            "time": time.time(),
            "cpu": cpu_seconds(),
            "rss": rss_bytes(),
            "packets_sent": await target.packets_sent(),
        }
        if isinstance(target, EdgeTarget):
            out.update(target.feed_stats())
        return web.json_response(out)

    async def frames(request: web.Request) -> web.Response:
        return web.json_response(target.frames())

    async def record(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            await target.record(Path(body["directory"]))
        except Exception as exc:
            return web.json_response({"error": repr(exc)}, status=500)
        return web.json_response({"ok": True})

    async def quit_(request: web.Request) -> web.Response:
        stopped.set()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/offer", offer)
    app.router.add_get("/stats", stats)
    app.router.add_get("/frames", frames)
    app.router.add_post("/record", record)
    app.router.add_post("/quit", quit_)
    return app


async def serve(mode: str, clip: Path, record_dir: Path | None) -> None:
    target = TARGETS[mode](clip)
    stopped = asyncio.Event()
    runner = web.AppRunner(build_app(target, stopped), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await asyncio.wait_for(target.start(), timeout=30)
        sys.stdout.write(json.dumps({"port": port, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        await stopped.wait()
    finally:
        try:
            await asyncio.wait_for(target.close(), timeout=10)
        finally:
            await runner.cleanup()
            if record_dir is not None:
                shutil.rmtree(record_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mode", choices=sorted(TARGETS), required=True)
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--record-dir", type=Path, default=None, help="removed when the process ends")
    args = parser.parse_args()
    asyncio.run(serve(args.mode, args.clip, args.record_dir))


if __name__ == "__main__":
    main()
