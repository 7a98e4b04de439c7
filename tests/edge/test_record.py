"""The recorder, fed with frames demuxed from real demo clips and checked by decoding its files."""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import av
import pytest
from av.bitstream import BitStreamFilterContext

from orstream.edge import demo
from orstream.edge.frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame
from orstream.edge.record import Recorder, file_sha256, opus_packet_samples, recover_segment

REPO = pathlib.Path(__file__).resolve().parents[2]
FPS = 25
# Arbitrary RTP clock origins, as a real sender picks them: the recorder must not assume 0.
VIDEO_RTP_OFFSET = 1_234_567_890
AUDIO_RTP_OFFSET = 987_654
WALL_START = 1_700_000_000.0
# Network + ingest delay of the first frame of each kind; the recorder's A/V mapping rests on it.
ARRIVAL_DELAY = 0.040


def clip_frames(
    path: pathlib.Path, *, jitter: float = 0.0, seed: int = 1, skip_video: int = 0
) -> Iterator[EncodedFrame]:
    """Frames as the edge hands them over: Annex-B video (SPS/PPS before IDRs), Opus packets,
    each kind on its own RTP clock, ingest_time = capture time + delay (+ jitter after the first
    frame of each kind, which the recorder must ignore)."""
    rng = random.Random(seed)
    container = av.open(str(path))
    video = container.streams.video[0]
    annexb = BitStreamFilterContext("h264_mp4toannexb", video)
    seen: set[str] = set()
    video_index = 0

    def stamp(kind: str, media_seconds: float) -> float:
        extra = rng.uniform(0, jitter) if kind in seen else 0.0
        seen.add(kind)
        return WALL_START + media_seconds + ARRIVAL_DELAY + extra

    try:
        for packet in container.demux():
            if packet.stream.type == "video":
                for unit in annexb.filter(packet):
                    video_index += 1
                    if video_index <= skip_video:
                        continue
                    assert unit.pts is not None and unit.time_base is not None
                    seconds = float(unit.pts * unit.time_base)
                    yield EncodedFrame(
                        kind="video",
                        data=bytes(unit),
                        pts=VIDEO_RTP_OFFSET + round(seconds * VIDEO_CLOCK),
                        keyframe=unit.is_keyframe,
                        ingest_time=stamp("video", seconds),
                    )
            elif packet.stream.type == "audio" and packet.size:
                assert packet.pts is not None
                # The clip's first Opus packet has pts -312 (encoder pre-skip): decoded sample
                # k of packet p then plays at p.pts + k, the same convention the recorder keeps.
                seconds = float(packet.pts * packet.time_base)
                yield EncodedFrame(
                    kind="audio",
                    data=bytes(packet),
                    pts=AUDIO_RTP_OFFSET + packet.pts,
                    ingest_time=stamp("audio", seconds),
                )
    finally:
        container.close()


def make_clip(path: pathlib.Path, **options: Any) -> pathlib.Path:
    settings: dict[str, Any] = dict(width=320, height=240, fps=FPS, bitrate=400_000, gop_seconds=1.0)
    settings.update(options)
    return demo.generate(path, **settings)


def source_video_count(path: pathlib.Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def decoded_video_times(path: pathlib.Path) -> list[tuple[float, float]]:
    """(time, mean luma) of every decoded picture."""
    out: list[tuple[float, float]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            luma = bytes(frame.planes[0])
            out.append((float(frame.time), sum(luma[::97]) / len(luma[::97])))
    return out


def flash_times(path: pathlib.Path) -> list[float]:
    # The pattern's mean luma hardly changes from frame to frame; a white frame lifts it by far
    # more than 50 even when a rate-limited P-frame decodes it somewhat grey.
    times = decoded_video_times(path)
    typical = statistics.median(mean for _, mean in times)
    return [t for t, mean in times if mean > typical + 50]


def beep_onsets(path: pathlib.Path) -> list[float]:
    """Times where the decoded audio first exceeds half the beep amplitude after a quiet stretch."""
    threshold = int(0.5 * demo.BEEP_AMPLITUDE * 32767)
    onsets: list[float] = []
    last_loud = -1.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_CLOCK)
        for frame in container.decode(stream):
            assert frame.pts is not None and frame.time_base is not None
            start = float(frame.pts * frame.time_base)
            for out in resampler.resample(frame):
                samples = memoryview(bytes(out.planes[0])).cast("h")[: out.samples]
                for i, value in enumerate(samples):
                    if abs(value) >= threshold:
                        now = start + i / AUDIO_CLOCK
                        if now - last_loud > 0.5:
                            onsets.append(now)
                        last_loud = now
    return onsets


@pytest.fixture(scope="module")
def clip_4s(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "four.mp4", seconds=4.0)


@pytest.fixture(scope="module")
def sync_clip(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    # On frame boundaries at 25 fps, so picture and sound events coincide exactly in the source.
    moments = (0.92, 2.72, 4.32)
    return make_clip(
        tmp_path_factory.mktemp("clips") / "sync.mp4", seconds=5.0, flash_at=moments, beep_at=moments
    )


def test_recording_keeps_every_video_frame_and_decodes_end_to_end(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    closed: list[dict[str, Any]] = []
    recorder = Recorder(tmp_path, on_segment_closed=closed.append)
    for frame in clip_frames(clip_4s):
        recorder.write(frame)
    recorder.close()

    expected = source_video_count(clip_4s)
    assert [pathlib.Path(info["path"]).name for info in closed] == ["seg-00000.mp4"]
    assert recorder.video_frames_written == expected
    with av.open(closed[0]["path"]) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "opus"
        pictures = list(container.decode(video=0))
    assert len(pictures) == expected
    assert (pictures[0].width, pictures[0].height) == (320, 240)
    with av.open(closed[0]["path"]) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    # Four seconds of sound, give or take the packets straddling the first keyframe.
    assert abs(samples / AUDIO_CLOCK - 4.0) < 0.05
    info = closed[0]
    assert info["video_frames"] == expected
    assert info["audio_frames"] == recorder.audio_frames_written
    assert (info["width"], info["height"], info["fps"]) == (320, 240, FPS)
    assert abs(info["duration"] - 4.0) < 0.05
    assert (info["video_codec"], info["audio_codec"]) == ("h264", "opus")
    assert recorder.segments_closed == 1
    assert recorder.stats["video_frames_written"] == expected
    assert recorder.stats["bytes_written"] == info["size"]
    assert recorder.stats["current_segment"] is None


def test_segments_rotate_at_keyframes_and_report_their_sha256(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    closed: list[dict[str, Any]] = []
    # 1.5 s asks for a cut mid-GOP: the cut must wait for the keyframe at 2 s.
    with Recorder(tmp_path, segment_seconds=1.5, on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(clip_4s):
            recorder.write(frame)

    assert [info["index"] for info in closed] == [0, 1]
    assert sorted(p.name for p in tmp_path.glob("seg-*.mp4")) == ["seg-00000.mp4", "seg-00001.mp4"]
    for info in closed:
        path = pathlib.Path(info["path"])
        assert info["sha256"] == file_sha256(path)
        assert info["size"] == path.stat().st_size
        assert abs(info["duration"] - 2.0) < 0.05
        with av.open(str(path)) as container:
            packets = [p for p in container.demux(video=0) if p.size]
            assert packets[0].is_keyframe and packets[0].pts == 0
        with av.open(str(path)) as container:
            assert len(list(container.decode(video=0))) == info["video_frames"] == 2 * FPS
    assert sum(info["video_frames"] for info in closed) == source_video_count(clip_4s)


def test_a_new_resolution_starts_a_new_segment(tmp_path: pathlib.Path) -> None:
    large = make_clip(tmp_path / "large.mp4", seconds=2.0)
    small = make_clip(tmp_path / "small.mp4", seconds=2.0, width=160, height=120)
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path / "rec", on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(large):
            recorder.write(frame)
        # The camera switches mode: same session, timestamps go on, new SPS/PPS.
        for frame in clip_frames(small):
            clock = VIDEO_CLOCK if frame.kind == "video" else AUDIO_CLOCK
            recorder.write(
                EncodedFrame(
                    frame.kind, frame.data, frame.pts + 2 * clock, frame.keyframe, frame.ingest_time + 2
                )
            )

    assert [(info["width"], info["height"]) for info in closed] == [(320, 240), (160, 120)]
    for info in closed:
        with av.open(info["path"]) as container:
            pictures = list(container.decode(video=0))
        assert len(pictures) == info["video_frames"] == 2 * FPS
        assert (pictures[-1].width, pictures[-1].height) == (info["width"], info["height"])


def test_video_before_the_first_keyframe_is_not_recorded(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(clip_4s, skip_video=5):
            recorder.write(frame)

    # The recording starts at the keyframe at 1 s; 5 + 20 frames of the first GOP are gone.
    assert closed[0]["video_frames"] == source_video_count(clip_4s) - FPS
    times = decoded_video_times(pathlib.Path(closed[0]["path"]))
    assert times[0][0] == 0.0
    assert recorder.frames_dropped >= FPS - 5


@pytest.mark.parametrize("segment_seconds", [600.0, 2.0])
def test_flash_and_beep_stay_within_20_ms_of_each_other(
    sync_clip: pathlib.Path, tmp_path: pathlib.Path, segment_seconds: float
) -> None:
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, segment_seconds=segment_seconds, on_segment_closed=closed.append) as recorder:
        # Later frames arrive up to 30 ms late: timing must follow pts, not arrival.
        for frame in clip_frames(sync_clip, jitter=0.030):
            recorder.write(frame)

    pairs = 0
    for info in closed:
        flashes = flash_times(pathlib.Path(info["path"]))
        beeps = beep_onsets(pathlib.Path(info["path"]))
        assert len(flashes) == len(beeps)
        for flash, beep in zip(flashes, beeps, strict=True):
            assert abs(beep - flash) <= 0.020, (info["path"], flash, beep)
            pairs += 1
    assert pairs == 3
    # The recording starts at the first keyframe, i.e. at the clip's 0 s.
    assert flash_times(pathlib.Path(closed[0]["path"]))[0] == pytest.approx(0.92, abs=0.001)


def test_audio_clock_offset_is_taken_from_arrival_not_from_pts(
    sync_clip: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """If audio reaches the edge 100 ms later than video for the same instant (and both kinds'
    clocks are unrelated), the recording follows the arrival mapping: the beep lands 100 ms
    after the flash. This documents the assumption rather than hiding it."""
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(sync_clip):
            if frame.kind == "audio":
                frame = EncodedFrame("audio", frame.data, frame.pts, False, frame.ingest_time + 0.100)
            recorder.write(frame)
    path = pathlib.Path(closed[0]["path"])
    offsets = [beep - flash for flash, beep in zip(flash_times(path), beep_onsets(path), strict=True)]
    assert len(offsets) == 3
    assert all(abs(offset - 0.100) <= 0.010 for offset in offsets), offsets


def test_muxing_does_not_touch_the_callers_frames(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    frames = list(clip_frames(clip_4s))
    before = [(f.pts, f.data) for f in frames]
    with Recorder(tmp_path) as recorder:
        for frame in frames:
            recorder.write(frame)
    assert [(f.pts, f.data) for f in frames] == before


def test_repeated_video_timestamps_still_give_increasing_dts(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, on_segment_closed=closed.append) as recorder:
        previous: EncodedFrame | None = None
        for frame in clip_frames(clip_4s):
            if frame.kind == "video" and previous is not None and not frame.keyframe and frame.pts % 7 == 0:
                # A sender glitch: this frame carries the previous frame's timestamp.
                frame = EncodedFrame("video", frame.data, previous.pts, False, frame.ingest_time)
            if frame.kind == "video":
                previous = frame
            recorder.write(frame)
    assert recorder.timestamps_repaired > 0
    with av.open(closed[0]["path"]) as container:
        dts = [p.dts for p in container.demux(video=0) if p.size]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert len(dts) == source_video_count(clip_4s)


def test_a_restarted_recorder_continues_the_numbering(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    for _ in range(2):
        with Recorder(tmp_path) as recorder:
            for frame in clip_frames(clip_4s):
                recorder.write(frame)
    assert sorted(p.name for p in tmp_path.glob("seg-*.mp4")) == ["seg-00000.mp4", "seg-00001.mp4"]


def test_opus_packet_durations_come_from_the_toc_byte() -> None:
    assert opus_packet_samples(bytes([0xFC])) == 960  # CELT FB 20 ms, one frame
    assert opus_packet_samples(bytes([15 << 3])) == 960  # hybrid FB 20 ms
    assert opus_packet_samples(bytes([11 << 3 | 1])) == 2 * 2880  # SILK 60 ms, two frames
    assert opus_packet_samples(bytes([30 << 3 | 3, 0x03])) == 3 * 480  # CELT 10 ms, code 3, three frames
    assert opus_packet_samples(b"") == 0
    assert opus_packet_samples(bytes([11 << 3 | 3, 0x3F])) == 0  # over 120 ms: malformed


CHILD = textwrap.dedent(
    """
    import pathlib, sys, time
    sys.path.insert(0, {repo!r})
    from tests.edge.test_record import clip_frames
    from orstream.edge.record import Recorder

    clip, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    recorder = Recorder(out, fragment_seconds=2.0)
    frames = list(clip_frames(clip))
    start = time.monotonic()
    origin = frames[0].ingest_time
    reported = 0
    for frame in frames:
        media = frame.ingest_time - origin
        # Real time, as from a camera.
        delay = start + media - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        recorder.write(frame)
        if frame.kind == "video" and media >= reported + 0.5:
            reported = media
            print(f"{{media:.3f}}", flush=True)
    print("done", flush=True)
    time.sleep(60)
    """
)


def test_recording_survives_kill_9_missing_at_most_two_seconds(tmp_path: pathlib.Path) -> None:
    # A GOP of 5 s: fragments must be cut by time too, or nothing would reach the disk by 4.5 s.
    clip = make_clip(tmp_path / "long-gop.mp4", seconds=8.0, gop_seconds=5.0)
    out = tmp_path / "rec"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=str(REPO)), str(clip), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    written = 0.0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            assert line.strip() != "done", "the child finished before it could be killed"
            written = float(line)
            if written >= 4.5:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert written >= 4.5

    segment = out / "seg-00000.mp4"
    times = [t for t, _ in decoded_video_times(segment)]
    assert times, "nothing decodable survived"
    survived = times[-1] + 1 / FPS
    assert written - survived <= 2.0 + 1 / FPS, (written, survived)
    # Frames decode in order from the first keyframe.
    assert times == sorted(times) and times[0] == 0.0
    with av.open(str(segment)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0

    # Recovery cuts the torn fragment (if the kill left one) and keeps every decodable frame.
    info = recover_segment(segment)
    assert info is not None
    assert info["sha256"] == file_sha256(segment) and info["size"] == segment.stat().st_size
    assert info["index"] == 0
    assert [t for t, _ in decoded_video_times(segment)] == times


def test_recovering_a_complete_segment_changes_nothing(clip_4s: pathlib.Path, tmp_path: pathlib.Path) -> None:
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(clip_4s):
            recorder.write(frame)
    info = recover_segment(pathlib.Path(closed[0]["path"]))
    assert info is not None
    assert (info["sha256"], info["size"], info["truncated_bytes"]) == (
        closed[0]["sha256"],
        closed[0]["size"],
        0,
    )


def test_a_torn_last_fragment_is_cut_at_the_previous_fragment(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path / "rec", on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(clip_4s):
            recorder.write(frame)
    torn = tmp_path / "seg-00007.mp4"
    data = pathlib.Path(closed[0]["path"]).read_bytes()
    torn.write_bytes(data[: len(data) * 4 // 5])

    info = recover_segment(torn)

    assert info is not None and info["index"] == 7 and info["truncated_bytes"] > 0
    times = [t for t, _ in decoded_video_times(torn)]
    # One-second GOPs, one fragment each: whole seconds survive, nothing after the cut.
    assert len(times) % FPS == 0 and 0 < len(times) < closed[0]["video_frames"]
    assert torn.stat().st_size == info["size"]


def test_a_segment_killed_before_its_first_fragment_is_unrecoverable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "seg-00001.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypisom")
    assert recover_segment(path) is None


def test_audio_that_starts_after_the_first_picture_keeps_its_place(
    sync_clip: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The MP4 must say the audio track starts late (an edit list); without it the first audio
    sample would be pulled to 0 s."""
    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path, on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(sync_clip):
            if frame.kind == "audio" and frame.pts - AUDIO_RTP_OFFSET < 0.3 * AUDIO_CLOCK:
                continue
            recorder.write(frame)
    with av.open(closed[0]["path"]) as container:
        first = next(container.decode(audio=0))
    assert first.pts is not None
    # The first packet kept is the one at 0.3 s (+ the clip's -312 sample pre-skip shift).
    assert abs(float(first.pts * first.time_base) - 0.3) <= 0.021
    assert float(first.pts * first.time_base) >= 0.28


@pytest.mark.e2e
async def test_chromium_plays_a_recording_and_a_recovered_crash_segment(
    clip_4s: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A missing browser is a failure: `make test` installs Debian's Chromium first.
    chromium = shutil.which("chromium")
    assert chromium is not None, "Chromium is not installed: run `make browser`"
    from playwright.async_api import async_playwright

    closed: list[dict[str, Any]] = []
    with Recorder(tmp_path / "rec", on_segment_closed=closed.append) as recorder:
        for frame in clip_frames(clip_4s):
            recorder.write(frame)
    shutil.copy(closed[0]["path"], tmp_path / "full.mp4")
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "torn.mp4").write_bytes(data[: len(data) * 4 // 5])
    shutil.copy(tmp_path / "torn.mp4", tmp_path / "recovered.mp4")
    assert recover_segment(tmp_path / "recovered.mp4") is not None

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    play = """async (src) => {
      const v = document.createElement('video');
      v.muted = true; v.src = src; document.body.appendChild(v);
      const outcome = await new Promise(done => {
        v.onerror = () => done('error'); v.onended = () => done('ended');
        v.onloadedmetadata = () => { v.playbackRate = 4; v.play(); };
        setTimeout(() => done('timeout'), 15000);
      });
      return {outcome, time: v.currentTime, width: v.videoWidth,
              frames: v.getVideoPlaybackQuality().totalVideoFrames, audio: v.webkitAudioDecodedByteCount};
    }"""
    results: dict[str, Any] = {}
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
            )
            page = await browser.new_page()
            await page.goto(base)
            for name in ("full.mp4", "torn.mp4", "recovered.mp4"):
                results[name] = await page.evaluate(play, base + name)
            await browser.close()
    finally:
        server.shutdown()
        server.server_close()

    full, torn, recovered = results["full.mp4"], results["torn.mp4"], results["recovered.mp4"]
    assert full["outcome"] == "ended" and full["width"] == 320 and full["audio"] > 0
    assert full["time"] == pytest.approx(4.0, abs=0.05)
    # Unrepaired, Chromium stops with a decode error at the torn fragment; repaired, it ends.
    assert torn["outcome"] == "error"
    assert recovered["outcome"] == "ended" and 2.0 <= recovered["time"] < full["time"]
