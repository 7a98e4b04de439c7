"""A session hub with real aiortc viewers on loopback: what reaches each viewer, and when."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.hub import Edge, SessionHub
from orstream.edge.protocol import SourceAttach, ViewerOffer

from .peers import RecordingDecoder, ViewerPeer, as_high_profile_offer, viewer_accept, viewer_offer, wait_for


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Test viewers are stock aiortc peers that keep encoded frames instead of decoding them.
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    events: list[tuple[str, str, dict[str, Any]]] = []
    edge = Edge(emit_event=lambda t, s, d: events.append((t, s, d)))
    edge.events = events  # type: ignore[attr-defined]
    yield edge
    await edge.close()


async def join(hub: SessionHub, participant_id: str, role: str = "resident", **kwargs: Any) -> ViewerPeer:
    viewer = await viewer_offer(**kwargs)
    offer = ViewerOffer(participant_id=participant_id, role=role, sdp=as_high_profile_offer(viewer.pc.localDescription.sdp))
    answer = await hub.add_viewer(offer)
    await viewer_accept(viewer, answer)
    await viewer.connected()
    return viewer


async def test_viewer_gets_the_source_access_units_byte_for_byte_and_audio(
    edge: Edge, aac_clip: Path, source_video_units: list[bytes]
) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    viewer = await join(hub, "alice")
    # one full pass of the clip and a bit
    await wait_for(lambda: len(viewer.frames("video")) >= len(source_video_units) + 5, timeout=15)
    received = [f.data for f in viewer.frames("video")]
    assert has_idr(split_nal_units(received[0])), "the first frame a viewer gets is a keyframe"
    # The viewer joined mid-clip: what it got is a run of the looped source, identical bytes.
    loop_of_source = source_video_units * 3
    start = loop_of_source.index(received[0])
    assert received[: len(source_video_units)] == loop_of_source[start : start + len(source_video_units)]
    assert len(viewer.frames("audio")) > 20
    stats = hub.stats()
    assert stats["viewers"][0]["packets_sent"] > 0
    assert stats["profile_level_id"].startswith("64")
    assert "profile-level-id=" + stats["profile_level_id"] in viewer.answer_sdp
    await viewer.close()


async def test_late_joiner_starts_on_a_keyframe_at_once(edge: Edge, aac_clip: Path, source_video_units: list[bytes]) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    first = await join(hub, "alice")
    await wait_for(lambda: len(first.frames("video")) > 20)  # well into a GOP (15 frames)
    joined = time.time()
    late = await join(hub, "bob")
    await wait_for(lambda: len(late.frames("video")) >= 20)
    frames = late.frames("video")
    assert has_idr(split_nal_units(frames[0].data))
    # the cached GOP arrives as a burst: a picture without waiting for the next keyframe
    assert frames[0].at - joined < 1.0
    looped = source_video_units * 4
    start = looped.index(frames[0].data)
    assert [f.data for f in frames[:20]] == looped[start : start + 20], "no frame missing after the keyframe"
    await first.close()
    await late.close()


async def test_a_stalled_viewer_does_not_slow_a_fast_one(aac_clip: Path) -> None:
    edge = Edge(emit_event=lambda t, s, d: None, viewer_queue_frames=10)
    try:
        hub = edge.session_create("s1")
        await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
        fast = await join(hub, "alice")
        slow = await join(hub, "bob")
        await wait_for(lambda: len(slow.frames("video")) > 5 and len(fast.frames("video")) > 5)
        stalled_feed = hub.viewers["bob"].video
        assert stalled_feed is not None
        stalled_feed.pause()
        await asyncio.sleep(0.1)
        sent_before_pause = stalled_feed.sender.stats.frames_sent
        before_fast, before_slow = len(fast.frames("video")), len(slow.frames("video"))
        await asyncio.sleep(1.5)
        during_fast = len(fast.frames("video")) - before_fast
        assert during_fast >= 35, "the fast viewer kept real time (30 fps) while the other was stalled"
        assert len(slow.frames("video")) - before_slow <= 1
        assert stalled_feed.stats.overflows >= 1 and stalled_feed.queued <= 10
        lag = hub.stats()["viewers"][0]
        assert lag["participant_id"] == "alice" and lag["lag_ms"] < 100
        stalled_feed.resume()
        await wait_for(lambda: len(slow.frames("video")) > sent_before_pause + 5)
        # (the viewer's jitter buffer held the last frame before the stall until now)
        after = slow.frames("video")[sent_before_pause:]
        assert has_idr(split_nal_units(after[0].data)), "after an overflow the viewer restarts on a keyframe"
        await fast.close()
        await slow.close()
    finally:
        await edge.close()


async def test_webrtc_publisher_is_forwarded_and_talkback_reaches_it_but_not_the_talker(
    edge: Edge, ts_clip: Path
) -> None:
    from aiortc.mediastreams import AudioStreamTrack

    from orstream.edge.protocol import PublisherOffer

    from .peers import publisher_accept, publisher_offer

    hub = edge.session_create("s2")
    publisher = await publisher_offer(str(ts_clip))
    answer = await hub.add_publisher(PublisherOffer(participant_id="or-1", sdp=publisher.pc.localDescription.sdp))
    # the edge tells the publisher it may send up to level 5.2 (4K60)
    assert re.search(r"profile-level-id=42[0-9a-f]{2}34", answer)
    await publisher_accept(publisher, answer)
    await wait_for(lambda: hub.video_profile_level_id is not None)

    mentor = await join(hub, "mentor-1", role="mentor", audio_tracks=2, talk_track=AudioStreamTrack())
    resident = await join(hub, "resident-1", role="resident", audio_tracks=2, talk_track=AudioStreamTrack())
    coordinator = await join(hub, "coord-1", role="coordinator", audio_tracks=2, talk_track=AudioStreamTrack())
    await wait_for(lambda: len(resident.frames("video")) > 10 and len(mentor.frames("video")) > 10)
    await wait_for(lambda: hub.counters.talkback_frames > 10)
    await wait_for(lambda: len(resident.frames("audio", 1)) > 10)
    await wait_for(lambda: len(publisher.frames("audio")) > 10)

    # the publisher's frames arrived as they were sent: keyframe first, nothing decoded on the way
    assert has_idr(split_nal_units(resident.frames("video")[0].data))
    assert hub.publisher is not None and hub.publisher.video_receiver is not None
    assert hub.publisher.video_receiver.stats.frames_dropped == 0
    # talkback: publisher and the other viewer hear the mentor, the mentor does not hear itself
    assert mentor.frames("audio", 1) == []
    # a resident may not talk: its offer's sendrecv audio is answered sendonly by the edge
    assert "a=sendonly" in resident.answer_sdp.split("m=audio")[1]
    # nor a coordinator, whose live view only monitors, whatever its offer asks for
    assert "a=sendonly" in coordinator.answer_sdp.split("m=audio")[1]
    assert hub.viewers["coord-1"].talk_receiver is None
    assert "a=sendrecv" in hub_answer_audio(mentor)
    assert hub.counters.talkback_frames > 10
    assert hub.viewers["resident-1"].talk_receiver is None

    # the publisher's access units reach viewers byte for byte
    import av

    from orstream.edge.h264 import join_nal_units

    with av.open(str(ts_clip)) as container:
        sent = [join_nal_units(split_nal_units(bytes(p))) for p in container.demux(container.streams.video[0]) if p.size]
    got = [f.data for f in resident.frames("video")]
    start = sent.index(got[0])
    assert got == sent[start : start + len(got)]

    # keyframe requests from any number of viewers reach the publisher at most once per 2 s
    receiver = hub.publisher.video_receiver
    plis, suppressed = receiver.stats.plis_sent, hub.counters.keyframe_requests_suppressed
    for _ in range(5):
        hub.request_keyframe()
    assert receiver.stats.plis_sent - plis <= 1
    assert hub.counters.keyframe_requests_suppressed - suppressed >= 4
    await mentor.close()
    await resident.close()
    await coordinator.close()
    await publisher.close()


def hub_answer_audio(viewer: ViewerPeer) -> str:
    return viewer.answer_sdp.split("m=audio")[1]


async def test_a_switch_from_the_room_feed_to_the_console_camera_starts_new_viewers_on_the_camera(
    edge: Edge, aac_clip: Path, ts_clip: Path
) -> None:
    """The OR console watched the room's feed, then publishes its camera: its viewer peer goes,
    and a viewer who arrives before the camera's first keyframe waits for it, is offered the
    camera's profile and starts on the camera's keyframe, never on the feed's cached GOP."""
    import av

    from orstream.edge.h264 import join_nal_units
    from orstream.edge.protocol import PublisherOffer

    from .peers import publisher_accept, publisher_offer

    hub = edge.session_create("switch")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    console = await join(hub, "or-1", role="surgeon", audio_tracks=2)
    await wait_for(lambda: len(console.frames("video")) > 5 and hub.stats()["gop_cached_frames"] > 0)

    assert await hub.detach_source() is True
    assert await hub.detach_source() is False
    camera = await publisher_offer(str(ts_clip))
    answer = await hub.add_publisher(PublisherOffer(participant_id="or-1", sdp=camera.pc.localDescription.sdp))
    assert "or-1" not in hub.viewers, "the console's own viewer peer outlived its switch to the camera"
    assert hub.video_profile_level_id is None and hub.stats()["gop_cached_frames"] == 0

    # The mentor's offer is in before the camera sends anything: it waits for the camera's keyframe.
    mentor_joins = asyncio.ensure_future(join(hub, "mentor-1", role="mentor"))
    await asyncio.sleep(0.2)
    assert not mentor_joins.done()
    await publisher_accept(camera, answer)
    mentor = await mentor_joins
    await wait_for(lambda: len(mentor.frames("video")) > 5)

    with av.open(str(ts_clip)) as container:
        sent = [join_nal_units(split_nal_units(bytes(p))) for p in container.demux(container.streams.video[0]) if p.size]
    first = mentor.frames("video")[0].data
    assert has_idr(split_nal_units(first)) and first in sent, "the new viewer started on the room feed's GOP"
    await mentor.close()
    await console.close()
    await camera.close()
