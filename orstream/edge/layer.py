"""A lower layer of a session's video, made once for every viewer whose link cannot take the source.

Where it comes from, cheapest first: the encoder's own second stream (``FeedLayer``: a room's
``lower_ingest_url``, ingested like the source, no decode), or, for an encoder with one stream,
the edge transcoding the source (``LowerLayer``). The hub drives both through the same members
(``Layer``).

A hardware OR encoder often sends one high-bitrate layer with no droppable frames, so a viewer behind a
5-10 Mbit/s link can only be served by decoding the source and encoding it again smaller. The hub
(hub.py) starts a ``LowerLayer`` when the first viewer needs it and stops it when none has for a
while; it feeds every source video frame in and gets H.264 frames of the lower layer back, with
the source's pts and ingest time, so the viewer's RTP timestamps and the latency badge carry on
across a switch. ``request_keyframe`` makes the next frame an IDR: the hub asks for one whenever a
viewer is about to switch onto this layer.

The decoding and encoding run in a child process (``python -m orstream.edge.layer``), never on
the edge's event loop, which only writes frames to a pipe and reads frames back; a child that
falls behind loses whole GOPs of input (it restarts on the next source keyframe), never the
forwarding loop's time. The full layer is never touched: its viewers get the source's bytes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO, Protocol

from .frames import EncodedFrame
from .tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# record: data length, flags, pts (90 kHz), ingest time; then the data
_RECORD = struct.Struct("!IBqd")
FLAG_KEYFRAME = 1
FLAG_FORCE_IDR = 2
WIDTH, HEIGHT = 1280, 720
BITRATE = 2_500_000
FPS = 30
# Input the child has not yet read beyond this means it is not keeping up: drop to the next
# source keyframe (half a second of 4K at 25 Mbit/s is ~1.5 MB), so the layer never lags far.
MAX_BACKLOG_BYTES = 1536 * 1024


@dataclass
class LayerStats:
    frames_in: int = 0
    frames_out: int = 0
    keyframes_out: int = 0
    frames_skipped: int = 0
    keyframe_requests: int = 0
    restarts: int = 0
    started_at: float = 0.0
    first_output_at: float | None = None
    bytes_out: int = 0
    last_error: str = ""
    recent: list[tuple[float, int]] = field(default_factory=list)
    last_keyframe_at: float | None = None
    # seconds between the layer's last two keyframes: how long a switch onto it may wait
    keyframe_interval_s: float | None = None

    def note(self, length: int, keyframe: bool) -> None:
        """One frame of the layer went out."""
        now = time.monotonic()
        self.frames_out += 1
        if self.first_output_at is None:
            self.first_output_at = now
        self.bytes_out += length
        self.recent.append((now, length))
        if keyframe:
            self.keyframes_out += 1
            if self.last_keyframe_at is not None:
                self.keyframe_interval_s = round(now - self.last_keyframe_at, 2)
            self.last_keyframe_at = now

    def bitrate(self, now: float) -> float:
        """What the layer sent over the last two seconds, in bit/s."""
        recent = [(t, n) for t, n in self.recent if now - t <= 2.0]
        self.recent = recent
        if len(recent) < 2:
            return float(BITRATE)
        return sum(n for _, n in recent) * 8 / max(recent[-1][0] - recent[0][0], 0.5)


class Layer(Protocol):
    """What the hub needs of a lower layer, whatever makes it."""

    # "transcoder", "feed" or "simulcast", for the stats
    kind: str
    # whether request_keyframe reaches whoever makes the layer (else a switch waits for the next one)
    keyframe_on_request: bool
    # whether the layer's pts are the source's own (else the hub lines them up by arrival time)
    source_pts: bool
    # whether it is worth stopping when no viewer has needed it for a while
    stop_when_idle: bool
    stats: LayerStats
    running: bool

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def feed(self, frame: EncodedFrame) -> None: ...

    def request_keyframe(self) -> None: ...

    def cpu_seconds(self) -> float | None: ...


class LowerLayer:
    """The child process making the lower layer, and the pipes to it."""

    kind = "transcoder"
    keyframe_on_request = True
    source_pts = True
    stop_when_idle = True  # it costs most of a core

    def __init__(self, *, on_frame: Callable[[EncodedFrame], None], width: int = WIDTH, height: int = HEIGHT,
                 bitrate: int = BITRATE) -> None:
        self.on_frame = on_frame
        self._size = (width, height)
        self.bitrate = bitrate
        self.stats = LayerStats()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._skipping = True  # until the first source keyframe: the decoder needs one to start
        self.running = False

    @property
    def width(self) -> int:
        return self._size[0]

    @property
    def height(self) -> int:
        return self._size[1]

    async def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.stats.started_at = time.monotonic()
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orstream.edge.layer",
            str(self.width), str(self.height), str(self.bitrate),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        self._skipping = True
        self._reader = asyncio.ensure_future(self._read(self._process))

    def cpu_seconds(self) -> float | None:
        """CPU time the child has used so far (Linux /proc), for the cost figures."""
        process = self._process
        if process is None:
            return None
        try:
            fields = open(f"/proc/{process.pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def feed(self, frame: EncodedFrame) -> None:
        """A source video frame (never blocks: a backlog drops input up to the next keyframe)."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        transport: Any = process.stdin.transport
        if transport.get_write_buffer_size() > MAX_BACKLOG_BYTES:
            self._skipping = True
        if self._skipping:
            if not frame.keyframe or transport.get_write_buffer_size() > MAX_BACKLOG_BYTES // 2:
                self.stats.frames_skipped += 1
                return
            self._skipping = False
        self.stats.frames_in += 1
        flags = FLAG_KEYFRAME if frame.keyframe else 0
        process.stdin.write(_RECORD.pack(len(frame.data), flags, frame.pts, frame.ingest_time) + frame.data)

    def request_keyframe(self) -> None:
        """The next frame the child encodes is an IDR."""
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        self.stats.keyframe_requests += 1
        process.stdin.write(_RECORD.pack(0, FLAG_FORCE_IDR, 0, 0.0))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while True:
                head = await process.stdout.readexactly(_RECORD.size)
                length, flags, pts, ingest = _RECORD.unpack(head)
                data = await process.stdout.readexactly(length)
                keyframe = bool(flags & FLAG_KEYFRAME)
                self.stats.note(length, keyframe)
                try:
                    self.on_frame(EncodedFrame("video", data, pts, keyframe, ingest))
                except Exception:  # a failing listener must not stop the layer
                    logger.exception("lower layer listener failed")
        except asyncio.IncompleteReadError:
            if self.running:
                self.stats.last_error = f"the lower-layer process exited ({process.returncode})"
                logger.warning("lower layer process ended unexpectedly")
                self.running = False

    async def stop(self) -> None:
        self.running = False
        process, self._process = self._process, None
        reader, self._reader = self._reader, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=2.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        await cancel_and_wait(reader)


class FeedLayer:
    """The lower layer as the encoder's own second, lower stream (a room's ``lower_ingest_url``).

    Ingested like the source (ingest.py: demux only, in a thread), so it costs the edge next to
    nothing (``cpu_seconds`` is the demuxing thread's CPU time). An RTSP or MPEG-TS encoder cannot
    be asked for a keyframe: a viewer moving onto this layer waits for the encoder's next one,
    at most the hub's switch wait (``keyframe_interval_s`` in the stats says how long it is). Its
    timestamps are the feed's own: the hub lines them up with the source's by arrival time.
    """

    kind = "feed"
    keyframe_on_request = False
    source_pts = False
    # Started with the source and kept while it runs: a demux costs little, and starting it
    # only when a viewer needs it would add the feed's connection time to the keyframe wait.
    stop_when_idle = False

    def __init__(self, *, url: str, on_frame: Callable[[EncodedFrame], None], loop_file: bool = False,
                 options: dict[str, str] | None = None) -> None:
        from .ingest import PyAVSource  # PyAV: not needed by the transcoder's child process

        self.on_frame = on_frame
        self.stats = LayerStats()
        self.running = False
        self.source = PyAVSource(
            url=url, on_frame=self._take, loop_file=loop_file, options=dict(options or {}), on_state=self._on_state
        )

    @property
    def width(self) -> int:
        return self.source.stats.width

    @property
    def height(self) -> int:
        return self.source.stats.height

    async def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.stats.started_at = time.monotonic()
        self.source.start()

    def _on_state(self, state: str) -> None:
        if state in ("ended", "failed") and self.running:
            self.stats.last_error = f"the lower feed {state}: {self.source.stats.last_error}".rstrip(": ")
            logger.warning("%s", self.stats.last_error)
            self.running = False

    def _take(self, frame: EncodedFrame) -> None:
        if frame.kind != "video" or not self.running:
            return  # the source's sound is the session's sound
        self.stats.note(len(frame.data), frame.keyframe)
        try:
            self.on_frame(frame)
        except Exception:  # a failing listener must not stop the layer
            logger.exception("lower layer listener failed")

    def feed(self, frame: EncodedFrame) -> None:
        """The encoder makes this layer from its own picture: the source's frames are not needed."""

    def request_keyframe(self) -> None:
        """Counted only: the request cannot reach the encoder's stream."""
        self.stats.keyframe_requests += 1

    def cpu_seconds(self) -> float | None:
        return self.source.stats.cpu_s

    async def stop(self) -> None:
        self.running = False
        await self.source.stop()


class SimulcastLayer:
    """The lower layer as a WebRTC publisher's own lower encoding (simulcast, e.g. the OR
    console's "h"), reassembled by its receiver (receive.py); no decode, no encode on the edge.
    A keyframe request is a PLI to that encoding's SSRC. Its RTP timestamps have an origin of
    their own: the hub lines them up with the source's by arrival time."""

    kind = "simulcast"
    keyframe_on_request = True
    source_pts = False
    # The publisher sends it whether or not a viewer takes it: nothing to save by stopping.
    stop_when_idle = False

    def __init__(self, *, receiver: Any, on_frame: Callable[[EncodedFrame], None]) -> None:
        self.receiver = receiver  # a PassthroughReceiver (not imported: aiortc stays out of the child)
        self.on_frame = on_frame
        self.stats = LayerStats()
        self.running = False
        self._size = (0, 0)

    @property
    def width(self) -> int:
        return self._size[0]

    @property
    def height(self) -> int:
        return self._size[1]

    async def start(self) -> None:
        self.running = True
        self.stats.started_at = time.monotonic()
        self.receiver.on_frame = self._take
        self.receiver.request_keyframe()

    def _take(self, frame: EncodedFrame) -> None:
        if not self.running:
            return
        if frame.keyframe:
            from .h264 import picture_size, split_nal_units

            self._size = picture_size(split_nal_units(frame.data)) or self._size
        self.stats.note(len(frame.data), frame.keyframe)
        try:
            self.on_frame(frame)
        except Exception:  # a failing listener must not stop the layer
            logger.exception("lower layer listener failed")

    def feed(self, frame: EncodedFrame) -> None:
        """The publisher encodes this layer itself: the source's frames are not needed."""

    def request_keyframe(self) -> None:
        self.stats.keyframe_requests += 1
        self.receiver.request_keyframe()

    def cpu_seconds(self) -> float | None:
        return 0.0  # reassembled on the event loop like the source, no process or thread of its own

    async def stop(self) -> None:
        self.running = False
        self.receiver.on_frame = None


# --- the child process ----------------------------------------------------------------------


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def run_child(width: int, height: int, bitrate: int, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Decode source frames from ``stdin``, encode them at ``width``x``height``, write to ``stdout``."""
    import av
    from av.video.frame import PictureType

    decoder = av.CodecContext.create("h264", "r")
    # Two frame threads: a 4K frame takes ~25 ms to decode on one core of a small machine, too
    # close to the 33 ms a frame lasts; one frame of extra delay is the price. The deblocking
    # filter is skipped: its cost is a fifth of the decode, and the picture is shrunk to a third.
    decoder.thread_type = "FRAME"
    decoder.thread_count = 2
    decoder.options = {"skip_loop_filter": "all", "flags2": "+fast"}
    encoder: Any = None
    index = 0
    pending: dict[int, tuple[int, float]] = {}
    force = False

    def open_encoder(source_width: int, source_height: int) -> Any:
        nonlocal width, height
        # never larger than the source: a small source is shrunk to half instead
        if source_height <= height:
            width, height = source_width // 2, source_height // 2
        width, height = width - width % 2, height - height % 2
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = Fraction(1, FPS)
        enc.framerate = Fraction(FPS, 1)
        enc.bit_rate = bitrate
        enc.gop_size = 2 * FPS
        enc.options = {
            "preset": "ultrafast",  # ~6 ms a 720p frame; the decode of 4K costs 25
            "tune": "zerolatency",
                        # A short VBV: keyframes stay small enough for a shallow link.
            "maxrate": str(bitrate),
            "bufsize": str(bitrate // 2),
            "x264-params": "bframes=0:scenecut=0:forced-idr=1:repeat-headers=1:annexb=1",
        }
        enc.open()
        return enc

    while True:
        head = _read_exact(stdin, _RECORD.size)
        if head is None:
            return
        length, flags, pts, ingest = _RECORD.unpack(head)
        if flags & FLAG_FORCE_IDR:
            force = True
            continue
        data = _read_exact(stdin, length)
        if data is None:
            return
        try:
            frames = decoder.decode(av.Packet(data))
        except av.FFmpegError:
            continue  # a broken input frame: the next ones (or the next keyframe) recover
        for frame in frames:
            if encoder is None:
                encoder = open_encoder(frame.width, frame.height)
            picture = frame.reformat(width=width, height=height, format="yuv420p", interpolation="FAST_BILINEAR")
            picture.pts = index
            picture.time_base = Fraction(1, FPS)
            pending[index] = (pts, ingest)
            index += 1
            if force:
                picture.pict_type = PictureType.I
                force = False
            for packet in encoder.encode(picture):
                source_pts, source_ingest = pending.pop(int(packet.pts), (pts, ingest))
                payload = bytes(packet)
                out_flags = FLAG_KEYFRAME if packet.is_keyframe else 0
                stdout.write(_RECORD.pack(len(payload), out_flags, source_pts, source_ingest) + payload)
                stdout.flush()
            for stale in [k for k in pending if k < index - 8]:
                del pending[stale]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    width, height, bitrate = (int(a) for a in args[:3])
    try:
        run_child(width, height, bitrate, sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return 0



if __name__ == "__main__":
    sys.exit(main())
