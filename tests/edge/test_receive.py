"""The edge's receive path from a WebRTC publisher over a lossy link: a real aiortc publisher on
loopback whose sends are dropped and whose retransmissions come late, as over a bad uplink.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
from aiortc.rtp import RtpPacket

from bench.fuzz import PacketTrack
from orstream.edge.hub import Edge
from orstream.edge.protocol import PublisherOffer, RecordingStart
from orstream.edge.receive import PassthroughReceiver

from .conftest import CLIP_GOP
from .peers import publisher_accept, publisher_offer, wait_for

FRAME_TICKS = 3000  # PacketTrack: 30 frames a second on a 90 kHz clock
RETRANSMIT_DELAY = 0.35  # longer than the live path waits for a frame (REORDER_WAIT)


class LossyUplink:
    """Between the publisher and the edge's receiver: drops the first arrival of one video
    packet in ten, and also the first retransmission of one in thirty (so only a repeated NACK
    recovers it); retransmissions arrive late, after the live path has given their frame up."""

    def __init__(self, receiver: PassthroughReceiver) -> None:
        self.arrivals: dict[int, int] = {}
        self.dropped = 0
        self.receiver = receiver
        self.inner = receiver._handle_rtp_packet
        receiver._handle_rtp_packet = self.arrive  # type: ignore[method-assign]

    async def arrive(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        rtx = packet.ssrc in self.receiver._rtx_ssrc
        if rtx and len(packet.payload) >= 2:
            seq = int.from_bytes(packet.payload[:2], "big")
        elif packet.payload_type in self.receiver._codecs and not rtx:
            seq = packet.sequence_number
        else:
            await self.inner(packet, arrival_time_ms)
            return
        count = self.arrivals[seq] = self.arrivals.get(seq, 0) + 1
        if (count == 1 and seq % 10 == 3) or (count == 2 and seq % 30 == 3):
            self.dropped += 1
            return
        if count > 1:
            asyncio.get_running_loop().call_later(
                RETRANSMIT_DELAY, lambda: asyncio.ensure_future(self.inner(packet, arrival_time_ms))
            )
            return
        await self.inner(packet, arrival_time_ms)


def recorded_video_dts(directory: Path) -> list[int]:
    out: list[int] = []
    for segment in sorted(directory.glob("seg-*.mp4")):
        with av.open(str(segment)) as container:
            stream = container.streams.video[0]
            scale = stream.time_base * 90_000
            out += [round(p.dts * scale) for p in container.demux(stream) if p.dts is not None and p.size]
    return out


async def test_a_lossy_publishers_recording_is_complete_though_the_live_path_gave_frames_up(
    source_video_units: list[bytes], tmp_path: Path
) -> None:
    edge = Edge(emit_event=lambda t, s, d: None, media_dir=tmp_path)
    hub = edge.session_create("s1")
    publisher = await publisher_offer(video=PacketTrack(source_video_units * 4))
    answer = await hub.add_publisher(PublisherOffer(participant_id="console", sdp=publisher.pc.localDescription.sdp))
    assert hub.publisher is not None and hub.publisher.video_receiver is not None
    receiver = hub.publisher.video_receiver
    uplink = LossyUplink(receiver)
    await publisher_accept(publisher, answer)
    try:
        await wait_for(lambda: hub.counters.video_frames >= 5, timeout=15)
        before = receiver.stats.frames_recorded
        directory = await hub.start_recording(RecordingStart(recording_id="r1"))
        await wait_for(lambda: receiver.stats.frames_recorded >= before + 120, timeout=30)
        await hub.stop_recording()
    finally:
        await publisher.close()
        await edge.close()
    stats = receiver.stats
    assert uplink.dropped > 10
    assert stats.nacks_repeated > 0, "NACKs were repeated for packets whose retransmission was lost too"
    assert stats.frames_dropped > 0, "the live path gave frames up (retransmissions came too late for it)"
    assert stats.frames_recovered_for_recording > 0 and stats.frames_dropped_from_recording == 0
    dts = recorded_video_dts(directory)
    # The file opens at the first keyframe after the start: up to a GOP before it is not in it.
    assert len(dts) >= 120 - CLIP_GOP, f"{len(dts)} frames recorded"
    steps = {b - a for a, b in zip(dts, dts[1:], strict=False)}
    assert steps == {FRAME_TICKS}, f"every frame is in the recording, none missing: steps {sorted(steps)[:10]}"
