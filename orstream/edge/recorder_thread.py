"""The session recorder in a thread of its own, so disk I/O never stalls forwarding.

``Recorder.write`` muxes and writes to disk, and segment rotation and ``close`` fsync a file that
can be gigabytes: on the event loop either would hold up every viewer's packets. The hub hands
frames to ``RecorderThread.write`` instead, which only appends to a bounded queue; one thread
per recording drains it into the ``Recorder`` (record.py, unchanged and still single-threaded:
only this thread ever calls it).

Overflow policy (a disk slower than the stream): the frame that does not fit is dropped, and so
is every video frame after it up to the next keyframe, so the recording never holds a picture
that refers to a frame it lacks; audio resumes as soon as there is room. Both are counted.
A recorder error stops the thread and is reported once through ``on_error`` on the event loop.

Never decodes, never blocks the caller, never touches the Recorder from the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .frames import EncodedFrame

logger = logging.getLogger(__name__)

# A few seconds of 4K30 at 25 Mbit/s (a keyframe alone is up to 1.5 MB): room for a slow fsync
# at rotation without dropping anything, little enough not to matter for memory.
QUEUE_FRAMES = 600
QUEUE_BYTES = 48 * 1024 * 1024


@dataclass
class RecorderThreadStats:
    frames_queued: int = 0
    frames_dropped: int = 0  # overflow drops, including video skipped to the next keyframe
    overflows: int = 0
    max_queued_frames: int = 0
    max_queued_bytes: int = 0


class RecorderThread:
    """Feeds one ``Recorder`` from a bounded queue on a dedicated thread."""

    def __init__(
        self,
        recorder: Any,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        max_frames: int = QUEUE_FRAMES,
        max_bytes: int = QUEUE_BYTES,
        name: str = "orstream-recorder",
    ) -> None:
        self.recorder = recorder
        self.on_error = on_error
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.stats = RecorderThreadStats()
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: deque[EncodedFrame | None] = deque()
        self._bytes = 0
        self._skip_video = False
        self._closing = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- event loop side -------------------------------------------------------------------

    def write(self, frame: EncodedFrame) -> None:
        """Queue a frame for the recorder; never blocks (see the overflow policy above)."""
        stats = self.stats
        if self._closing or self.error is not None:
            return
        video = frame.kind == "video"
        if video and self._skip_video:
            if not frame.keyframe:
                stats.frames_dropped += 1
                return
        size = len(frame.data)
        with self._ready:
            if len(self._queue) >= self.max_frames or self._bytes + size > self.max_bytes:
                stats.frames_dropped += 1
                if video and not self._skip_video:
                    stats.overflows += 1
                    self._skip_video = True
                return
            if video:
                self._skip_video = False
            self._queue.append(frame)
            self._bytes += size
            stats.frames_queued += 1
            if len(self._queue) > stats.max_queued_frames:
                stats.max_queued_frames = len(self._queue)
            if self._bytes > stats.max_queued_bytes:
                stats.max_queued_bytes = self._bytes
            self._ready.notify()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def snapshot(self) -> dict[str, Any]:
        """Recorder counters plus the queue's, for the hub's stats (racy reads of ints: fine)."""
        out: dict[str, Any] = dict(getattr(self.recorder, "stats", {}) or {})
        out.update(self.stats.__dict__)
        out["queued_frames"] = len(self._queue)
        out["error"] = repr(self.error) if self.error else None
        return out

    async def close(self) -> None:
        """Write what is queued, close the recorder (trailer, fsync) and end the thread.

        Waits without blocking the event loop."""
        with self._ready:
            if not self._closing:
                self._closing = True
                self._queue.append(None)
                self._ready.notify()
        await self._loop.run_in_executor(None, self._thread.join)

    # --- recorder thread -------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            with self._ready:
                while not queue:
                    self._ready.wait()
                frame = queue.popleft()
                if frame is not None:
                    self._bytes -= len(frame.data)
            try:
                if frame is None:
                    self.recorder.close()
                    return
                if self.error is None:
                    self.recorder.write(frame)
            except BaseException as exc:  # report it, keep draining so close() still returns
                if self.error is None:
                    self.error = exc
                    logger.error("recorder failed", exc_info=exc)
                    if self.on_error is not None:
                        try:
                            self._loop.call_soon_threadsafe(self.on_error, exc)
                        except RuntimeError:  # the loop is gone (process shutting down)
                            pass
                if frame is None:
                    return
