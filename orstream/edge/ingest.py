"""Sources that PyAV can open, turned into EncodedFrames without decoding video.

The hub of a session owns one ``PyAVSource`` when the control plane attaches a source URL (a file,
looped; rtsp://; srt://; udp:// MPEG-TS; a V4L2 device that emits H.264). A source of raw
pictures (a raw V4L2 camera, a lavfi test pattern such as ``testsrc2=size=3840x2160:rate=30`` with
``options={"format": "lavfi"}``) is encoded once, by x264 at zero latency, and from then on is an
H.264 source like any other. Demuxing runs in a
thread of its own, because PyAV blocks; frames reach the event loop through
``call_soon_threadsafe``. File sources are paced by their timestamps so they play in real time;
live sources are paced by the network.

Never decodes an encoded video stream. Audio is passed through when it is Opus and transcoded to Opus otherwise
(AAC from cameras), which is cheap next to video.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.container
from av.bitstream import BitStreamFilterContext

from .frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame
from .h264 import ParameterSetKeeper, has_idr, join_nal_units, split_nal_units
from .protocol import FEED_SCHEMES

logger = logging.getLogger(__name__)

FrameSink = Callable[[EncodedFrame], None]
StateSink = Callable[[str], None]

LIVE_SCHEMES = FEED_SCHEMES
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
OPUS_FRAME_SAMPLES = 960  # 20 ms at 48 kHz, what browsers send and expect


class SourceError(Exception):
    """A source that cannot be used: unopenable, or carrying a codec the edge cannot forward."""


def is_live_url(url: str) -> bool:
    return url.lower().startswith(LIVE_SCHEMES) or url.startswith("/dev/")


@dataclass
class SourceStats:
    state: str = "new"  # new, connecting, playing, ended, failed, stopped
    video_frames: int = 0
    audio_frames: int = 0
    loops: int = 0
    reconnects: int = 0
    last_error: str = ""
    profile_level_id: str | None = None
    width: int = 0
    height: int = 0
    # CPU time of the demuxing thread so far (this source's own cost on the edge)
    cpu_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Timeline:
    """Maps a container's timestamps to the edge's continuous clock, across loops and reconnects."""

    base_seconds: float = 0.0  # added to container time in the current pass
    pass_start: float | None = None  # first container time seen in the current pass
    end_seconds: float = 0.0  # latest (pts + duration) produced, on the edge's clock

    def begin_pass(self) -> None:
        # The next pass starts where the previous one ended, so pts stay increasing.
        self.pass_start = None

    def to_edge_seconds(self, container_seconds: float) -> float:
        if self.pass_start is None:
            self.pass_start = container_seconds
            self.base_seconds = self.end_seconds - container_seconds
        return container_seconds + self.base_seconds

    def advance(self, edge_seconds_end: float) -> None:
        self.end_seconds = max(self.end_seconds, edge_seconds_end)


class _OpusTranscoder:
    """AAC (or any audio) to 20 ms Opus packets; audio only, video is never decoded."""

    def __init__(self, stream: av.audio.stream.AudioStream) -> None:
        source: Any = stream.codec_context
        self.decoder: Any = av.CodecContext.create(source.name, "r")
        if source.extradata:
            self.decoder.extradata = source.extradata
        self.decoder.sample_rate = source.sample_rate
        self.decoder.layout = source.layout
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_CLOCK, frame_size=OPUS_FRAME_SAMPLES)
        self.encoder: Any = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate = AUDIO_CLOCK
        self.encoder.layout = "stereo"
        self.encoder.format = "s16"
        self.encoder.time_base = Fraction(1, AUDIO_CLOCK)
        self.encoder.options = {"application": "lowdelay", "frame_duration": "20"}
        self.next_pts: int | None = None

    def transcode(self, packet: av.Packet, edge_pts: int) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        if self.next_pts is None:
            self.next_pts = edge_pts
        for frame in self.decoder.decode(packet):
            for resampled in self.resampler.resample(frame):
                resampled.pts = self.next_pts
                resampled.time_base = Fraction(1, AUDIO_CLOCK)
                self.next_pts += resampled.samples
                for encoded in self.encoder.encode(resampled):
                    if encoded.pts is not None:
                        out.append((int(encoded.pts), bytes(encoded)))
        return out

    def resync(self) -> None:
        """After a reconnect, anchor the next output on the new pass's timestamps."""
        self.next_pts = None


# Raw picture formats the edge encodes itself; anything else that is not H.264 is refused.
RAW_VIDEO_CODECS = frozenset({"rawvideo", "wrapped_avframe"})


class _RawEncoder:
    """Raw pictures encoded once to H.264: x264 ultrafast at zero latency (no lookahead, no
    B-frames, one packet out per picture in), a keyframe every second with SPS/PPS in front."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        self.context = av.CodecContext.create("libx264", "w")
        self.context.width = stream.codec_context.width
        self.context.height = stream.codec_context.height
        self.context.pix_fmt = "yuv420p"
        self.context.time_base = Fraction(1, VIDEO_CLOCK)
        self.context.framerate = rate
        self.context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "bf": "0",
            "g": str(max(1, round(rate))),
            "x264-params": "repeat-headers=1",
        }

    def encode(self, packet: av.Packet, edge_seconds: float) -> list[bytes]:
        out: list[bytes] = []
        for picture in packet.decode():
            if not isinstance(picture, av.VideoFrame):
                continue
            if picture.format.name != "yuv420p":
                picture = picture.reformat(format="yuv420p")
            picture.pts = round(edge_seconds * VIDEO_CLOCK)
            picture.time_base = Fraction(1, VIDEO_CLOCK)
            out += [bytes(encoded) for encoded in self.context.encode(picture)]
        return out


@dataclass
class PyAVSource:
    """Any URL PyAV opens, demuxed in a thread, delivered as EncodedFrames on the event loop.

    ``realtime``: pace by timestamps (files); defaults to True for non-live URLs.
    """

    url: str
    on_frame: FrameSink
    loop_file: bool = False
    options: dict[str, str] = field(default_factory=dict)
    realtime: bool | None = None
    on_state: StateSink | None = None
    stats: SourceStats = field(default_factory=SourceStats)
    _event_loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ended: asyncio.Event | None = None

    @property
    def live(self) -> bool:
        return is_live_url(self.url)

    def probe(self) -> tuple[int, int]:
        """Open the source once and check its codecs; raises SourceError with a reason.
        Returns the video's width and height (0, 0 when the container does not say)."""
        container = self._open()
        try:
            self._check_streams(container)
            context = container.streams.video[0].codec_context
            return int(context.width or 0), int(context.height or 0)
        finally:
            container.close()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("source already started")
        self._event_loop = asyncio.get_running_loop()
        self._ended = asyncio.Event()
        if self.realtime is None:
            self.realtime = not self.live
        self._thread = threading.Thread(target=self._run, name=f"ingest:{self.url[:40]}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)
        self._set_state("stopped")

    async def wait_ended(self) -> None:
        assert self._ended is not None
        await self._ended.wait()

    # --- thread side -------------------------------------------------------------------------

    def _open(self) -> av.container.InputContainer:
        options = dict(self.options)
        fmt = options.pop("format", None)
        if self.url.startswith("rtsp"):
            # Give up on a dead camera instead of blocking the thread forever (microseconds).
            options.setdefault("timeout", "5000000")
        try:
            return av.open(self.url, mode="r", format=fmt, options=options, timeout=(10.0, 5.0))
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open source: {exc}") from None

    def _check_streams(self, container: av.container.InputContainer) -> None:
        if not container.streams.video:
            raise SourceError("source has no video stream")
        codec = container.streams.video[0].codec_context.name
        if codec != "h264" and codec not in RAW_VIDEO_CODECS:
            raise SourceError(
                f"video codec {codec} is not forwarded; the source must send H.264 (or raw pictures, encoded here)"
            )

    def _set_state(self, state: str) -> None:
        self.stats.state = state
        if self.on_state is not None and self._event_loop is not None and not self._event_loop.is_closed():
            self._event_loop.call_soon_threadsafe(self.on_state, state)

    def _deliver(self, frame: EncodedFrame) -> None:
        loop = self._event_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.on_frame, frame)

    def _run(self) -> None:
        timeline = _Timeline()
        keeper = ParameterSetKeeper()
        attempt = 0
        try:
            while not self._stop.is_set():
                self._set_state("connecting")
                try:
                    container = self._open()
                    self._check_streams(container)
                except SourceError as exc:
                    self.stats.last_error = str(exc)
                    if not self.live or attempt >= len(RECONNECT_DELAYS):
                        self._set_state("failed")
                        return
                    self._stop.wait(RECONNECT_DELAYS[attempt])
                    attempt += 1
                    self.stats.reconnects += 1
                    continue
                attempt = 0
                try:
                    self._play(container, timeline, keeper)
                except av.FFmpegError as exc:
                    self.stats.last_error = str(exc)
                    logger.warning("source %s failed: %s", self.url, exc)
                finally:
                    container.close()
                if self._stop.is_set():
                    return
                if not self.live:
                    self._set_state("ended")
                    return
                # A live source that ended or broke: reconnect, timestamps carry on.
                self.stats.reconnects += 1
                self._stop.wait(RECONNECT_DELAYS[0])
        finally:
            loop = self._event_loop
            if loop is not None and not loop.is_closed() and self._ended is not None:
                loop.call_soon_threadsafe(self._ended.set)

    def _play(
        self, container: av.container.InputContainer, timeline: _Timeline, keeper: ParameterSetKeeper
    ) -> None:
        """Demux the container; with loop_file, seek back and go round until stopped."""
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        self.stats.width = video.codec_context.width
        self.stats.height = video.codec_context.height
        streams = [video] + ([audio] if audio is not None else [])
        transcoder = None
        if audio is not None and audio.codec_context.name != "opus":
            transcoder = _OpusTranscoder(audio)
        self._set_state("playing")
        pacer = _Pacer(enabled=bool(self.realtime))
        raw = _RawEncoder(video) if video.codec_context.name in RAW_VIDEO_CODECS else None
        while not self._stop.is_set():
            annexb = BitStreamFilterContext("h264_mp4toannexb", video) if raw is None else None
            timeline.begin_pass()
            if transcoder is not None:
                transcoder.resync()
            for packet in container.demux(streams):
                if self._stop.is_set():
                    return
                if packet.pts is None or packet.stream is None or packet.time_base is None:
                    continue  # the flush packet at the end of each stream
                seconds = timeline.to_edge_seconds(float(packet.pts * packet.time_base))
                duration = float(packet.duration * packet.time_base) if packet.duration else 0.0
                timeline.advance(seconds + duration)
                pacer.wait_until(seconds, self._stop)
                now = time.time()
                self.stats.cpu_s = time.thread_time()
                if packet.stream.index == video.index:
                    if raw is not None:
                        encoded = raw.encode(packet, seconds)
                    else:
                        assert annexb is not None
                        encoded = [bytes(f) for f in annexb.filter(packet)]
                    for access_unit in encoded:
                        units = keeper.fix(split_nal_units(access_unit))
                        if not units:
                            continue
                        if keeper.profile_level_id:
                            self.stats.profile_level_id = keeper.profile_level_id
                        self.stats.video_frames += 1
                        self._deliver(
                            EncodedFrame(
                                kind="video",
                                data=join_nal_units(units),
                                pts=round(seconds * VIDEO_CLOCK),
                                keyframe=has_idr(units),
                                ingest_time=now,
                            )
                        )
                elif transcoder is None:
                    self.stats.audio_frames += 1
                    self._deliver(
                        EncodedFrame(kind="audio", data=bytes(packet), pts=round(seconds * AUDIO_CLOCK), ingest_time=now)
                    )
                else:
                    for pts, data in transcoder.transcode(packet, round(seconds * AUDIO_CLOCK)):
                        self.stats.audio_frames += 1
                        self._deliver(EncodedFrame(kind="audio", data=data, pts=pts, ingest_time=now))
            if not self.loop_file or self.live:
                return
            self.stats.loops += 1
            container.seek(0)
        return


@dataclass
class _Pacer:
    """Sleeps so that a frame at edge time t leaves at wall time origin + t (file sources)."""

    enabled: bool
    wall_origin: float | None = None
    edge_origin: float = 0.0
    # A source read late (a slow disk, a paused VM) re-anchors instead of bursting to catch up.
    max_lateness: float = 1.0

    def wait_until(self, edge_seconds: float, stop: threading.Event) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.wall_origin is None:
            self.wall_origin, self.edge_origin = now, edge_seconds
            return
        due = self.wall_origin + (edge_seconds - self.edge_origin)
        delay = due - now
        if delay > 0:
            stop.wait(delay)
        elif -delay > self.max_lateness:
            self.wall_origin, self.edge_origin = now, edge_seconds
