"""A session hub with real aiortc viewers on loopback: what reaches each viewer, and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.hub import Edge, SessionHub
from orstream.edge.protocol import SourceAttach, ViewerOffer

from .peers import RecordingDecoder, ViewerPeer, as_high_profile_offer, viewer_accept, viewer_offer


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


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


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
