"""Small generated clips and loopback-friendly ICE for the edge tests (4K belongs in the benchmark)."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

CLIP_FPS = 30
CLIP_GOP = 15  # a keyframe every half second keeps late-joiner tests short


def make_clip(
    path: Path, *, seconds: float = 2.0, audio_codec: str = "aac", width: int = 320, height: int = 240
) -> Path:
    """An H.264 High-profile clip without B-frames, plus a 440 Hz tone."""
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=CLIP_FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {
        "bf": "0",
        "g": str(CLIP_GOP),
        "keyint_min": str(CLIP_GOP),
        "sc_threshold": "0",
        "preset": "veryfast",
        "profile": "high",
    }
    audio = container.add_stream(audio_codec, rate=48000)
    audio.layout = "stereo"
    frames = int(seconds * CLIP_FPS)
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for k, plane in enumerate(frame.planes):
            row = bytes((i * 7 + k * 50 + x * 3) % 256 for x in range(plane.line_size))
            plane.update(row * (plane.buffer_size // plane.line_size))
        frame.pts = i
        for packet in video.encode(frame):
            container.mux(packet)
    samples_per_frame = 960 if audio_codec == "libopus" else 1024
    t = 0
    while t < seconds * 48000:
        pcm = b"".join(
            struct.pack("<hh", s, s)
            for s in (int(6000 * math.sin(2 * math.pi * 440 * (t + j) / 48000)) for j in range(samples_per_frame))
        )
        chunk = av.AudioFrame(format="s16", layout="stereo", samples=samples_per_frame)
        chunk.planes[0].update(pcm)
        chunk.sample_rate = 48000
        chunk.pts = t
        for packet in audio.encode(chunk):
            container.mux(packet)
        t += samples_per_frame
    for packet in video.encode():
        container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def aac_clip(clip_dir: Path) -> Path:
    return make_clip(clip_dir / "aac.mp4", audio_codec="aac")


@pytest.fixture(scope="session")
def opus_clip(clip_dir: Path) -> Path:
    return make_clip(clip_dir / "opus.mkv", audio_codec="libopus")


@pytest.fixture(scope="session")
def source_video_units(aac_clip: Path) -> list[bytes]:
    """The clip's access units in the edge's canonical Annex-B form, read independently of ingest."""
    from bench.fuzz import annexb_units

    return annexb_units(aac_clip)


@pytest.fixture(scope="session")
def ts_clip(clip_dir: Path) -> Path:
    """MPEG-TS carries Annex-B as is: what a WebRTC publisher can send without a bitstream filter."""
    return make_clip(clip_dir / "publisher.ts", seconds=4.0, audio_codec="aac")


@pytest.fixture
def secret() -> Iterator[str]:
    yield "test-edge-secret"
