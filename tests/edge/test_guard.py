"""Junk on the edge's public UDP ports: dropped with at most a line a minute, the viewer unharmed."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orstream.edge.guard import InputDrops
from orstream.edge.hub import Edge
from orstream.edge.protocol import SourceAttach

from .peers import RecordingDecoder, viewer_join, wait_for


@pytest.fixture(autouse=True)
def recording_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aiortc.rtcrtpreceiver.get_decoder", lambda codec: RecordingDecoder())


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    edge = Edge(emit_event=lambda t, s, d: None)
    yield edge
    await edge.close()


def edge_port(answer_sdp: str) -> int:
    """The UDP port of the edge's loopback host candidate in its answer."""
    match = re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer_sdp)
    assert match, "the edge offers a loopback host candidate"
    return int(match.group(1))


def short_ice_controlling() -> bytes:
    """28 bytes: a STUN binding request whose ICE-CONTROLLING carries 4 bytes instead of 8
    (aioice's parser raises struct.error on it)."""
    header = struct.pack("!HHI12s", 0x0001, 8, 0x2112A442, b"\x01" * 12)
    return header + struct.pack("!HH", 0x802A, 4) + b"\x00\x00\x00\x01"


async def test_a_flood_of_malformed_stun_writes_one_line_and_the_viewer_keeps_its_picture(
    edge: Edge, aac_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub = edge.session_create("s1")
    await hub.attach_source(SourceAttach(url=str(aac_clip), loop=True))
    viewer = await viewer_join(hub, "alice")
    await wait_for(lambda: len(viewer.frames("video")) > 10)
    port = edge_port(viewer.answer_sdp)
    junk = [
        short_ice_controlling(),
        b"",  # empty: would end aiortc's DTLS receive loop (IndexError)
        b"\x80\x60" + b"\x00" * 10,  # RTP-looking, from an address ICE never saw
        b"\x17\xfe\xfd" + b"\x00" * 20,  # DTLS-looking, likewise
    ]
    caplog.clear()
    caplog.set_level(logging.INFO)
    before = len(viewer.frames("video"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(1000):
            sock.sendto(junk[i % len(junk)], ("127.0.0.1", port))
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # let the edge read its socket buffer
    finally:
        sock.close()
    await asyncio.sleep(1.0)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in caplog.records), "no traceback for a malformed datagram"
    assert len(records) <= 3, [r.getMessage() for r in records]  # one line per kind of junk at most
    assert edge.drops.counts["stun"] >= 200 and edge.drops.counts["datagram"] >= 700
    # The viewer's connection survived and its picture went on.
    assert viewer.pc.connectionState == "connected"
    await wait_for(lambda: len(viewer.frames("video")) > before + 30)
    assert hub.stats()["viewers"][0]["connection"] == "connected"
    await viewer.close()


def test_drops_are_logged_once_per_interval_with_what_was_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    drops = InputDrops(interval=0.2)
    for _ in range(100):
        drops.drop("rtp", "ValueError at rtp.py:1", ("198.51.100.7", 4000))
    assert drops.counts["rtp"] == 100 and len(caplog.records) == 1
    assert "from 198.51.100.7:4000" in caplog.records[0].getMessage()
    time.sleep(0.25)
    drops.drop("rtp", "ValueError at rtp.py:1")
    assert len(caplog.records) == 2 and "99 more dropped" in caplog.records[1].getMessage()
