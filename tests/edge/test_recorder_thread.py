"""The recorder's own thread: the event loop only queues; a stalled disk costs frames, not time."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import av

from orstream.edge.frames import EncodedFrame
from orstream.edge.h264 import has_idr, split_nal_units
from orstream.edge.record import Recorder
from orstream.edge.recorder_thread import RecorderThread


class StallingRecorder:
    """A real Recorder behind a gate: while the gate is shut, writes wait (a disk that stalls)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.gate = threading.Event()
        self.gate.set()
        self.written: list[EncodedFrame] = []
        self.threads: set[str] = set()

    def write(self, frame: EncodedFrame) -> None:
        self.gate.wait()
        self.threads.add(threading.current_thread().name)
        self.written.append(frame)
        self.recorder.write(frame)

    def close(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.recorder.close()

    @property
    def stats(self) -> dict[str, Any]:
        return self.recorder.stats


def _frames(units: list[bytes], count: int) -> list[EncodedFrame]:
    out = []
    for i in range(count):
        data = units[i % len(units)]
        out.append(EncodedFrame("video", data, i * 3000, has_idr(split_nal_units(data)), 1000.0 + i / 30))
    return out


async def test_a_stalled_disk_never_blocks_the_loop_and_video_resumes_on_a_keyframe(
    source_video_units: list[bytes], tmp_path: Path
) -> None:
    closed: list[dict[str, Any]] = []
    stalling = StallingRecorder(Recorder(tmp_path, segment_seconds=600, on_segment_closed=closed.append))
    thread = RecorderThread(stalling, max_frames=10)
    frames = _frames(source_video_units, 90)  # 3 s at 30 fps, a keyframe every 15 frames
    for frame in frames[:20]:
        thread.write(frame)
    await asyncio.sleep(0.3)
    stalling.gate.clear()  # the disk stalls
    started = time.monotonic()
    for frame in frames[20:70]:
        thread.write(frame)
    assert time.monotonic() - started < 0.05, "writes only queue, whatever the disk does"
    assert thread.stats.overflows >= 1 and thread.stats.frames_dropped > 0
    stalling.gate.set()
    await asyncio.sleep(0.3)
    for frame in frames[70:]:
        thread.write(frame)
    await thread.close()
    assert stalling.threads == {"orstream-recorder"}, "the recorder is only ever called from its thread"
    written = stalling.written
    assert len(written) + thread.stats.frames_dropped == 90
    # after every gap the recording restarts on a keyframe: no picture refers to a missing frame
    for before, after in zip(written, written[1:], strict=False):
        if after.pts - before.pts > 3000:
            assert after.keyframe
    assert len(closed) == 1 and closed[0]["video_frames"] == len(written)
    with av.open(str(tmp_path / Path(closed[0]["path"]).name)) as container:
        assert sum(1 for _ in container.demux(container.streams.video[0])) >= len(written)


async def test_a_recorder_error_is_reported_once_on_the_loop(tmp_path: Path) -> None:
    class Broken:
        def write(self, frame: EncodedFrame) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    errors: list[tuple[BaseException, bool]] = []
    loop_thread = threading.current_thread()
    thread = RecorderThread(
        Broken(), on_error=lambda exc: errors.append((exc, threading.current_thread() is loop_thread))
    )
    for i in range(5):
        thread.write(EncodedFrame("audio", b"\xfc" + bytes(20), i * 960))
    await thread.close()
    await asyncio.sleep(0)
    assert len(errors) == 1 and isinstance(errors[0][0], OSError) and errors[0][1]
