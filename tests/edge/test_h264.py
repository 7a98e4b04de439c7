"""H.264 facts read from access units, and a publisher whose parameter sets are malformed."""

from __future__ import annotations

import pytest

from bench.fuzz import PacketTrack
from orstream.edge.h264 import (
    ParameterSetKeeper,
    join_nal_units,
    nal_type,
    picture_size,
    profile_level_id,
    split_nal_units,
)
from orstream.edge.hub import Edge
from orstream.edge.protocol import PublisherOffer

from .peers import RecordingDecoder, publisher_accept, publisher_offer, wait_for

SHORT_SPS = b"\x67\x64\x00"  # an SPS NAL header and two bytes: no level_idc


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


def with_short_sps(access_unit: bytes) -> bytes:
    return join_nal_units([SHORT_SPS if nal_type(u) == 7 else u for u in split_nal_units(access_unit)])


def test_a_short_sps_is_neither_kept_nor_read() -> None:
    keeper = ParameterSetKeeper()
    keeper.fix([SHORT_SPS, b"\x68\xce", b"\x65\x88"])
    assert keeper.sps is None and keeper.profile_level_id is None
    keeper.fix([b"\x67\x64\x00\x1f\xac", b"\x68\xce", b"\x65\x88"])
    assert keeper.profile_level_id == "64001f"
    keeper.fix([SHORT_SPS])
    assert keeper.profile_level_id == "64001f", "a later truncated SPS does not replace a good one"
    with pytest.raises(ValueError):
        profile_level_id(SHORT_SPS)


async def test_a_publisher_sending_a_short_sps_keeps_publishing(source_video_units: list[bytes]) -> None:
    edge = Edge(emit_event=lambda t, s, d: None)
    hub = edge.session_create("s1")
    keyframe = source_video_units[0]
    # Two seconds of keyframes with a truncated SPS, then the clip itself.
    units = [with_short_sps(keyframe)] * 60 + source_video_units * 20
    publisher = await publisher_offer(video=PacketTrack(units))
    answer = await hub.add_publisher(PublisherOffer(participant_id="console", sdp=publisher.pc.localDescription.sdp))
    await publisher_accept(publisher, answer)
    try:
        await wait_for(lambda: hub.counters.video_frames >= 20)
        # The frames with the short SPS came through, none was dropped as a receive-path
        # failure; then the real SPS gives the profile.
        assert edge.drops.counts["rtp"] == 0 and hub.video_profile_level_id is None
        await wait_for(lambda: hub.video_profile_level_id is not None, timeout=15)
        assert hub.video_profile_level_id.startswith("64")
        frames = hub.counters.video_frames
        await wait_for(lambda: hub.counters.video_frames > frames + 20)
        assert hub.publisher is not None and hub.publisher.pc.connectionState == "connected"
    finally:
        await publisher.close()
        await edge.close()


@pytest.mark.parametrize(("width", "height", "profile"), [(1280, 720, "high"), (1920, 1080, "baseline"), (3840, 2160, "high"), (640, 360, "main")])
def test_the_picture_size_is_read_from_the_sps(width: int, height: int, profile: str) -> None:
    from fractions import Fraction

    import av

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"profile": profile, "x264-params": "repeat-headers=1:annexb=1"}
    picture = av.VideoFrame(width, height, "yuv420p")
    picture.pts = 0
    packets = [*encoder.encode(picture), *encoder.encode(None)]
    assert picture_size(split_nal_units(bytes(packets[0]))) == (width, height)
    assert picture_size(split_nal_units(bytes(packets[0]))[-1:]) is None, "no SPS, no size"
