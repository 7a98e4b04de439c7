"""A viewer whose network drops out: paused while silent, back on a keyframe, dropped on failure.

Real aiortc viewers on loopback; the outage is a switch on the viewer's own sockets (nothing in
or out), the way a Wi-Fi drop looks from the edge.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.hub import Edge
from orstream.edge.protocol import SourceAttach

from .peers import RecordingDecoder, ViewerPeer
from .test_hub import join, wait_for


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


class Outage:
    """While ``on``, the viewer's UDP sockets neither send nor deliver anything."""

    def __init__(self, viewer: ViewerPeer) -> None:
        self.on = False
        connection: Any = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection
        for protocol in connection._protocols:
            received = protocol.datagram_received
            transport = protocol.transport
            sendto = transport.sendto

            def datagram_received(data: bytes, addr: Any, _inner: Any = received) -> None:
                if not self.on:
                    _inner(data, addr)

            def send(data: bytes, addr: Any = None, _inner: Any = sendto) -> None:
                if not self.on:
                    _inner(data, addr)

            protocol.datagram_received = datagram_received
            transport.sendto = send


def _continuous_or_keyframe(received: list[Any]) -> int:
    """Check every frame follows the one before (one frame period later on the RTP clock) or is a
    keyframe; count the jumps. RTP time, not content: the source loops every 2 s, so an outage of
    exactly one loop would look continuous by content."""
    jumps = 0
    for before, after in zip(received, received[1:], strict=False):
        if (after.timestamp - before.timestamp) % 2**32 > FRAME_TICKS * 3 // 2:
            jumps += 1
            assert has_idr(split_nal_units(after.data)), "after a gap the viewer restarts on a keyframe"
    return jumps


FRAME_TICKS = 90_000 // 30


async def test_a_silent_viewer_is_paused_then_resumed_on_a_keyframe(
    aac_clip: Path,
) -> None:
    edge = Edge(emit_event=lambda t, s, d: None)
    try:
        hub = edge.session_create("s1")
        hub.viewer_silence = 1.0
        await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
        alice = await join(hub, "alice")
        bob = await join(hub, "bob")
        outage = Outage(alice)
        feed = hub.viewers["alice"].video
        assert feed is not None
        await wait_for(lambda: len(alice.frames("video")) > 20)
        outage.on = True
        await wait_for(lambda: feed.paused, timeout=5)
        assert all(f.paused for f in hub.viewers["alice"].feeds())
        assert not hub.viewers["bob"].video.paused  # type: ignore[union-attr]
        sent = sum(f.sender.stats.packets_sent for f in hub.viewers["alice"].feeds())
        bob_frames = len(bob.frames("video"))
        await asyncio.sleep(1.5)
        assert sum(f.sender.stats.packets_sent for f in hub.viewers["alice"].feeds()) == sent, "nothing sent into the void"
        # 45 frames in 1.5 s at 30 fps; a loaded CI machine gets a third of a second of slack.
        assert len(bob.frames("video")) - bob_frames >= 35, "the others carry on in real time"
        assert hub.stats()["viewers"][0]["paused"]
        before = len(alice.frames("video"))  # all from before the outage
        outage.on = False
        await wait_for(lambda: not feed.paused, timeout=5)
        # Alice's pause and resume are counted (bob, slow to answer on a loaded machine, may add his own).
        assert hub.counters.viewers_paused >= 1 and hub.counters.viewers_resumed >= 1
        assert hub.counters.viewers_paused - hub.counters.viewers_resumed <= 1
        back = len(alice.frames("video"))
        await wait_for(lambda: len(alice.frames("video")) > back + 30)
        # Not the frames lost before the pause, repaired late: they are stale.
        resumed = alice.frames("video")[before:]
        assert has_idr(split_nal_units(resumed[0].data)), "a resumed viewer restarts on a keyframe"
        assert _continuous_or_keyframe(alice.frames("video")) >= 1, "the frames of the outage were skipped"
        assert "alice" in hub.viewers
        await alice.close()
        await bob.close()
    finally:
        await edge.close()


async def test_a_viewer_whose_ice_fails_is_dropped(aac_clip: Path) -> None:
    edge = Edge(emit_event=lambda t, s, d: None)
    try:
        hub = edge.session_create("s1")
        await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
        alice = await join(hub, "alice")
        await wait_for(lambda: len(alice.frames("video")) > 5)
        pc = hub.viewers["alice"].pc
        # What aioice does after its consent checks go unanswered for ~30 s: close the connection,
        # which aiortc reports as ICE "failed".
        connection: Any = pc.getTransceivers()[0].receiver.transport.transport._connection
        await connection.close()
        await wait_for(lambda: "alice" not in hub.viewers, timeout=5)
        assert hub.counters.viewers_left == 1
        await alice.close()
    finally:
        await edge.close()
