"""Stream copy into DICOM video parts, for streams with B-frames too (an HEVC copy)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from hospital import video


def _hevc_clip(path: Path, *, frames: int = 48) -> Path:
    """A small HEVC clip with B-frames and a keyframe every 12 frames (x265's defaults otherwise)."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx265", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "ultrafast", "x265-params": "log-level=error:keyint=12:min-keyint=12:bframes=3:scenecut=0"}
        for index in range(frames):
            frame = av.VideoFrame(320, 240, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 5) % 256]) * plane.buffer_size)
            frame.pts, frame.time_base = index, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_an_hevc_stream_with_b_frames_is_copied_whole_and_decodes(tmp_path: Path) -> None:
    source = _hevc_clip(tmp_path / "hevc.mp4")
    facts = video.video_facts(str(source))
    assert (facts.codec, str(video.transfer_syntax_for(facts))) == ("hevc", "1.2.840.10008.1.2.4.107")

    parts = video.parts_write([str(source), str(source)], tmp_path / "parts", max_bytes=10**9)

    assert len(parts) == 1 and parts[0].frames == 96
    with av.open(str(parts[0].path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 96
