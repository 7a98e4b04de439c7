"""Raw pictures (a test pattern here, a raw V4L2 camera in an OR) are encoded once and forwarded
as H.264 like any other source."""

from __future__ import annotations

import asyncio
import time

import av

from orstream.edge.frames import EncodedFrame
from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.ingest import PyAVSource


async def test_a_test_pattern_becomes_a_decodable_h264_stream_starting_on_a_keyframe():
    frames: list[EncodedFrame] = []
    source = PyAVSource(url="testsrc2=size=320x240:rate=30", on_frame=frames.append, options={"format": "lavfi"})
    source.probe()
    source.start()
    deadline = time.monotonic() + 10
    while sum(f.kind == "video" for f in frames) < 45 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await source.stop()
    video = [f for f in frames if f.kind == "video"]
    assert len(video) >= 45
    assert video[0].keyframe and has_idr(split_nal_units(video[0].data))
    assert sum(f.keyframe for f in video) >= 2, "a keyframe every second"
    assert [f.pts for f in video] == sorted({f.pts for f in video}), "increasing timestamps"
    assert abs((video[30].pts - video[0].pts) - 90_000) <= 3_000, "paced at 30 fps on the 90 kHz clock"
    assert source.stats.profile_level_id is not None and source.stats.profile_level_id.startswith("42")

    decoder = av.CodecContext.create("h264", "r")
    pictures = [p for f in video for packet in decoder.parse(f.data) for p in decoder.decode(packet)]
    pictures += list(decoder.decode(None))
    assert len(pictures) >= len(video) - 1
    assert (pictures[0].width, pictures[0].height) == (320, 240)
