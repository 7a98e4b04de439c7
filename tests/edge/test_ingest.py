"""Ingest: files and streams become EncodedFrames without decoding video."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from orstream.edge.frames import EncodedFrame
from orstream.edge.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_nal_units
from orstream.edge.ingest import PyAVSource, SourceError


async def collect(source: PyAVSource, seconds: float) -> list[EncodedFrame]:
    source.start()
    try:
        await asyncio.wait_for(source.wait_ended(), timeout=seconds)
    except TimeoutError:
        pass
    await source.stop()
    return []


async def test_file_source_plays_in_real_time_with_identical_access_units(
    aac_clip: Path, source_video_units: list[bytes]
) -> None:
    frames: list[EncodedFrame] = []
    source = PyAVSource(url=str(aac_clip), on_frame=frames.append)
    started = time.monotonic()
    await collect(source, 10)
    elapsed = time.monotonic() - started
    video = [f for f in frames if f.kind == "video"]
    audio = [f for f in frames if f.kind == "audio"]
    assert source.stats.state == "stopped"
    assert [f.data for f in video] == source_video_units
    # 2 s of media, paced by timestamps: not read as fast as the disk allows
    assert 1.7 < elapsed < 3.5
    assert video[0].keyframe and sum(f.keyframe for f in video) == 4
    pts = [f.pts for f in video]
    assert pts[0] >= 0 and all(b - a == 3000 for a, b in zip(pts, pts[1:], strict=False))
    # AAC was transcoded to 20 ms Opus packets on the 48 kHz clock
    assert len(audio) >= 90
    assert all(b - a == 960 for a, b in zip([f.pts for f in audio], [f.pts for f in audio][1:], strict=False))
    assert source.stats.profile_level_id is not None and source.stats.profile_level_id.startswith("64")


async def test_every_idr_is_preceded_by_sps_and_pps(aac_clip: Path) -> None:
    frames: list[EncodedFrame] = []
    source = PyAVSource(url=str(aac_clip), on_frame=frames.append, realtime=False)
    await collect(source, 10)
    keyframes = [f for f in frames if f.keyframe]
    assert keyframes
    for frame in keyframes:
        types = [nal_type(u) for u in split_nal_units(frame.data)]
        idr = types.index(NAL_IDR)
        assert NAL_SPS in types[:idr] and NAL_PPS in types[:idr]


async def test_looped_file_keeps_timestamps_increasing(aac_clip: Path) -> None:
    frames: list[EncodedFrame] = []
    source = PyAVSource(url=str(aac_clip), on_frame=frames.append, loop_file=True, realtime=False)
    source.start()
    while source.stats.loops < 2:
        await asyncio.sleep(0.02)
    await source.stop()
    video = [f.pts for f in frames if f.kind == "video"]
    audio = [f.pts for f in frames if f.kind == "audio"]
    assert source.stats.loops >= 2
    # At a loop the clock moves on by at most a fraction of a frame more than usual (the longer
    # of the two tracks sets the restart point, keeping audio and video together).
    assert all(3000 <= b - a < 4500 for a, b in zip(video, video[1:], strict=False)), "video pts jump at a loop"
    assert all(960 <= b - a < 3 * 960 for a, b in zip(audio, audio[1:], strict=False)), "audio overlaps or jumps"
    assert video[-1] > 2 * 90_000 * 1.9


async def test_opus_audio_is_passed_through(opus_clip: Path) -> None:
    import av

    frames: list[EncodedFrame] = []
    source = PyAVSource(url=str(opus_clip), on_frame=frames.append, realtime=False)
    await collect(source, 10)
    with av.open(str(opus_clip)) as container:
        originals = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    assert [f.data for f in frames if f.kind == "audio"] == originals


async def test_a_source_without_h264_is_refused(tmp_path: Path) -> None:
    import av

    path = tmp_path / "vp8.webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    source = PyAVSource(url=str(path), on_frame=lambda f: None)
    with pytest.raises(SourceError, match="vp8"):
        source.probe()
    with pytest.raises(SourceError, match="cannot open"):
        PyAVSource(url=str(tmp_path / "missing.mp4"), on_frame=lambda f: None).probe()
