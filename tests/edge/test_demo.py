"""The demo clip generator: the stream shape the edge relies on, and events where they were asked."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from fractions import Fraction

import av
import pytest

from orstream.edge import demo
from tests.edge.test_record import beep_onsets, flash_times

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.generate(
        tmp_path_factory.mktemp("demo") / "clip.mp4",
        width=320,
        height=240,
        fps=30,
        seconds=3.0,
        bitrate=500_000,
        gop_seconds=0.5,
        flash_at=(1.2,),
        beep_at=(2.0,),
    )


def test_clip_has_the_requested_size_rate_and_length(clip: pathlib.Path) -> None:
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        assert video.average_rate == 30
        assert video.codec_context.name == "h264"
        assert video.codec_context.profile == "High"
        pictures = list(container.decode(video=0))
    assert len(pictures) == 90
    assert [round(p.time * 30) for p in pictures] == list(range(90))


def test_clip_has_no_b_frames(clip: pathlib.Path) -> None:
    with av.open(str(clip)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    pts = [p.pts for p in packets]
    assert pts == [p.dts for p in packets]
    # Decode order is presentation order.
    assert all(a is not None and b is not None and b > a for a, b in zip(pts, pts[1:], strict=False))


def test_keyframes_come_every_gop_and_nowhere_else(clip: pathlib.Path) -> None:
    with av.open(str(clip)) as container:
        keyframes = [i for i, p in enumerate(p for p in container.demux(video=0) if p.size) if p.is_keyframe]
    # gop_seconds=0.5 at 30 fps; the flash at 1.2 s must not add a scene-cut keyframe.
    assert keyframes == [0, 15, 30, 45, 60, 75]


def test_audio_is_opus_at_48_khz_for_the_whole_clip(clip: pathlib.Path) -> None:
    with av.open(str(clip)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "opus"
        assert audio.rate == 48_000
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples - 3 * 48_000) <= 960


def test_flash_and_beep_are_where_they_were_asked(clip: pathlib.Path) -> None:
    assert flash_times(clip) == [pytest.approx(1.2, abs=0.001)]
    assert beep_onsets(clip) == [pytest.approx(2.0, abs=0.002)]


def test_bitrate_is_near_the_target_even_for_a_synthetic_pattern(tmp_path: pathlib.Path) -> None:
    # The noise band is what makes a synthetic clip cost real bits (the edge's load tests need
    # a 4K-like bitrate); a plain pattern would land far below the target.
    path = demo.generate(tmp_path / "rate.mp4", width=640, height=360, fps=30, seconds=2.0, bitrate=2_000_000)
    with av.open(str(path)) as container:
        video_bytes = sum(p.size for p in container.demux(video=0))
    assert 0.7 * 2_000_000 <= video_bytes * 8 / 2.0 <= 1.3 * 2_000_000


def test_cli_writes_a_playable_clip(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "cli.mp4"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "orstream.edge.demo",
            str(out),
            "--width",
            "160",
            "--height",
            "120",
            "--fps",
            "10",
            "--seconds",
            "1",
            "--flash-at",
            "0.5",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (160, 120)
        assert video.time_base is not None and video.average_rate == Fraction(10)
        assert len(list(container.decode(video=0))) == 10
    assert flash_times(out) == [pytest.approx(0.5, abs=0.001)]
