"""The send path: equal-size packetization, GSO batches, SRTP in place, NACKs from history.

Real aiortc viewers on loopback; the only stand-in is a lossy wrapper on a viewer's own
datagram receive, to make packets go missing the way a network would.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiortc.codecs.h264 import H264PayloadDescriptor

from orstream.edge.frames import EncodedFrame
from orstream.edge.h264 import join_nal_units
from orstream.edge.hub import Edge
from orstream.edge.protocol import SourceAttach
from orstream.edge.send import PACKET_MAX, WireFrame, packetize
from orstream.edge.udp import GSO_MAX_BYTES, GSO_MAX_SEGMENTS

from .peers import RecordingDecoder, ViewerPeer
from .test_hub import join, wait_for


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


def _nal(kind: int, size: int) -> bytes:
    # no zero bytes: nothing in it can look like a start code
    return bytes([0x60 | kind]) + bytes((i * 13) % 251 + 1 for i in range(size - 1))


def _depacketize(payloads: tuple[bytes, ...]) -> bytes:
    out = b""
    for payload in payloads:
        _, data = H264PayloadDescriptor.parse(payload)
        out += data
    return out


def test_fu_a_fragments_are_equal_size_but_the_last_and_reassemble_byte_for_byte() -> None:
    units = [_nal(9, 2), _nal(7, 20), _nal(8, 6), _nal(5, 100_000), _nal(5, 3 * (PACKET_MAX - 2) + 2)]
    data = join_nal_units(units)
    packetized = packetize(EncodedFrame("video", data, 0, True))
    sizes = [len(p) for p in packetized.payloads]
    # AUD, SPS and PPS share one STAP-A; then two runs of full fragments, each with a short tail
    assert packetized.payloads[0][0] & 0x1F == 24
    first_run = sizes[1 : 1 + (100_000 - 1 + PACKET_MAX - 3) // (PACKET_MAX - 2)]
    assert set(first_run[:-1]) == {PACKET_MAX} and first_run[-1] < PACKET_MAX
    assert sizes[-4:] == [PACKET_MAX, PACKET_MAX, PACKET_MAX, 3]  # 3 full fragments and a 1-byte tail
    assert _depacketize(packetized.payloads) == data
    assert packetized.size == sum(sizes)


def test_gso_batches_hold_equal_segments_within_kernel_limits() -> None:
    units = [_nal(7, 20), _nal(8, 6), _nal(5, 200_000), _nal(1, 500), _nal(1, 90_000)]
    packetized = packetize(EncodedFrame("video", join_nal_units(units), 0, True))
    extension = bytes.fromhex("bede0001" "10300000")
    wire = packetized.wire(extension, 16)
    assert packetized.wire(extension, 16) is wire, "built once per header shape, shared by viewers"
    covered = []
    for lo, hi, byte_lo, byte_hi, segment in wire.batches:
        sizes = [wire.lengths[p] + 16 for p in range(lo, hi)]
        assert all(size == segment for size in sizes[:-1]) and sizes[-1] <= segment
        assert hi - lo <= GSO_MAX_SEGMENTS and byte_hi - byte_lo <= GSO_MAX_BYTES
        assert byte_hi - byte_lo == sum(sizes)
        covered += range(lo, hi)
    assert covered == list(range(len(packetized.payloads)))
    # the 200 kB slice: ~155 packets in a handful of system calls, not 155
    assert len(wire.batches) < 12
    # each packet sits after room for a 12-byte header and the extension
    for p, payload in enumerate(packetized.payloads):
        start = wire.offsets[p] + 12 + len(extension)
        assert bytes(wire.data[start : start + len(payload)]) == payload
    assert isinstance(wire, WireFrame)


def _lossy(viewer: ViewerPeer, *, payload_type: int, every: int, limit: int) -> dict[str, int]:
    """Drop every ``every``-th media packet of one payload type before the viewer's SRTP sees it."""
    transceiver = viewer.pc.getTransceivers()[0]
    connection: Any = transceiver.receiver.transport.transport._connection
    deliver = connection.data_received
    counts = {"seen": 0, "dropped": 0}

    def data_received(data: bytes, component: int) -> None:
        # RTP (not RTCP, DTLS or STUN) of that payload type; the header is in clear under SRTP
        if len(data) > 12 and 128 <= data[0] <= 191 and data[1] & 0x7F == payload_type:
            counts["seen"] += 1
            if counts["seen"] % every == 0 and counts["dropped"] < limit:
                counts["dropped"] += 1
                return
        deliver(data, component)

    connection.data_received = data_received
    return counts


async def test_a_viewer_losing_packets_gets_them_again_from_history_byte_for_byte(
    aac_clip: Path, source_video_units: list[bytes]
) -> None:
    edge = Edge(emit_event=lambda t, s, d: None)
    try:
        hub = edge.session_create("s1")
        await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
        alice = await join(hub, "alice")
        feed = hub.viewers["alice"].video
        assert feed is not None
        await wait_for(lambda: feed.sender.stats.packets_sent > 0)
        counts = _lossy(alice, payload_type=feed.sender._payload_type, every=4, limit=20)
        received_before = len(alice.frames("video"))
        await wait_for(lambda: counts["dropped"] >= 20, timeout=20)
        await wait_for(lambda: len(alice.frames("video")) >= received_before + len(source_video_units) + 5, timeout=20)
        sender = feed.sender
        assert sender.stats.nacks_received > 0
        assert sender.stats.retransmits >= counts["dropped"] // 2
        # every frame from the start of the loss on arrived whole and identical to the source
        received = [f.data for f in alice.frames("video")][received_before:]
        looped = source_video_units * 4
        start = looped.index(received[0])
        assert received[: len(source_video_units)] == looped[start : start + len(source_video_units)]
        await alice.close()
    finally:
        await edge.close()


async def test_a_big_keyframe_reaches_a_viewer_whole_in_gcm_srtp_and_few_system_calls() -> None:
    edge = Edge(emit_event=lambda t, s, d: None)
    try:
        hub = edge.session_create("s1")
        sps = bytes([0x67, 0x64, 0x00, 0x33]) + _nal(7, 12)[1:]
        # ~80 packets: a burst the stock viewer's default socket buffer holds (a 4K keyframe would not)
        keyframe = join_nal_units([sps, _nal(8, 6), _nal(5, 100_000)])
        hub.on_frame(EncodedFrame("video", keyframe, 0, True, time.time()))  # the profile viewers need
        alice = await join(hub, "alice")
        feed = hub.viewers["alice"].video
        assert feed is not None
        await wait_for(lambda: feed.sender.stats.frames_sent >= 1)
        sender = feed.sender
        path = sender._path()
        assert path is not None and path.fast is not None, "plain UDP pair: the direct path is used"
        calls_before, packets_before = path.fast.writer.syscalls, sender.stats.packets_sent
        for n in range(1, 5):
            hub.on_frame(EncodedFrame("video", keyframe, n * 3000, True, time.time()))
            await asyncio.sleep(0.033)
        # aiortc's jitter buffer hands a frame on when the next one starts: the last stays behind
        await wait_for(lambda: len(alice.frames("video")) >= 4)
        assert all(f.data == keyframe for f in alice.frames("video")), "every byte of every packet arrived"
        # aiortc offers the AEAD profiles first: both ends are aiortc, so GCM is what they agree on
        assert sender.srtp_profile.startswith("SRTP_AEAD_AES_")
        assert sender.stats.protect_errors == 0
        packets = sender.stats.packets_sent - packets_before
        assert packets == 4 * len(packetize(EncodedFrame("video", keyframe, 0, True)).payloads)
        if path.fast.writer.gso:
            # ~80 packets a frame in batches of up to ~48, not one datagram per call
            assert path.fast.writer.syscalls - calls_before <= packets // 20
        await alice.close()
    finally:
        await edge.close()
