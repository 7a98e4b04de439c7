"""One live session on the edge: its source or publisher, its viewers, talkback and recording.

``Edge`` (bottom of this module) holds the hubs of one edge process; the API and the benchmark
call it. A ``SessionHub`` receives encoded frames from a ``PyAVSource`` or from a WebRTC
publisher, packetizes each once, keeps the current GOP so a new viewer starts on a keyframe at
once, and offers each frame to every viewer's feeds without waiting on any of them. Keyframe
requests from viewers are relayed to the publisher at most once per ``KEYFRAME_INTERVAL`` for
all viewers together. Talkback from viewers allowed to talk goes to the publisher and to the
other viewers, never back to the talker, one talker at a time. A viewer that goes silent (see
``EdgePeerConnection.watch_presence``) has its feeds paused and restarts on the cached GOP when
it is heard again; one whose ICE fails is dropped. Recording runs on its own thread
(recorder_thread.py): the hub only queues frames for it.

Layers: every viewer starts on the source's own bytes. ``_adapt`` reads each viewer's estimate
(from its transport-cc feedback) a few times a second; a viewer whose estimate stays below what
the source needs moves to the lower layer (layer.py: the encoder's own second stream when the
room names one, ingested while the source is; a WebRTC publisher's own lower encoding when it
sends simulcast, the OR console's "h"; otherwise made once per session, in its own process,
only while someone needs it), and back when a probe shows room for the source. Switches happen
only at a keyframe of the target layer that is newer than anything the viewer got. The last
resort, for a link that cannot carry even the lower layer: "keyframes", the lower layer's
keyframes only (each stands alone, so nothing shown depends on a frame not sent), a still
picture every GOP while the sound goes on; probes move the viewer back up.

Never decodes or encodes video itself; never blocks on a viewer or on the disk.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame
from .guard import InputDrops
from .h264 import is_sps, profile_level_id, split_nal_units
from .ingest import PyAVSource, SourceError
from .layer import FeedLayer, Layer, LowerLayer, SimulcastLayer
from .peer import (
    EdgePeerConnection,
    SdpError,
    choose_publisher_video,
    choose_viewer_video,
    offer_media_kinds,
    offered_simulcast,
    restore_answer_profile,
)
from .protocol import PublisherOffer, RecordingStart, SourceAttach, ViewerOffer, feed_url_problem
from .receive import PassthroughReceiver
from .recorder_thread import RecorderThread
from .send import FrameFeed, PacketizedFrame, RtpStreamSender, packetize
from .tasks import cancel_and_wait

logger = logging.getLogger(__name__)

EventEmitter = Callable[[str, dict[str, Any]], None]

# Upstream keyframe requests, all viewers together: an encoder asked for an IDR every few
# hundred ms by a crowd of viewers would spend its whole bitrate on keyframes.
KEYFRAME_INTERVAL = 2.0
# The cached GOP is dropped beyond these (a source with a very long GOP), and viewers then wait
# for the next keyframe instead.
GOP_CACHE_MAX_FRAMES = 600
GOP_CACHE_MAX_BYTES = 64 * 1024 * 1024
# A talker holds the floor until this much silence.
TALK_FLOOR_RELEASE = 0.5
OPUS_FRAME = 960
# A viewer not heard from (RTCP reports come about every second) for this long counts as
# disconnected: its feeds pause until it is heard again, then restart on a keyframe.
VIEWER_SILENCE = 3.0
# Layers: a viewer whose estimate stays below what the source needs (plus headroom) for
# DOWN_AFTER seconds moves to the lower layer; one on the lower layer probes its link every
# PROBE_INTERVAL and moves back up when a probe shows room for the source with more headroom.
ADAPT_INTERVAL = 0.2
HEADROOM = 1.15
UP_HEADROOM = 1.1
# Down after this long below the source's own rate, or sooner while losing over LOSSY of the
# packets (a link that cannot carry the source); one delay spike alone is not a reason.
DOWN_AFTER = 2.0
DOWN_AFTER_LOSS = 0.6
LOSSY = 0.1
# Pacing: each viewer's bytes leave at its estimate, but never slower than this many times the
# rate of the layer it is on, so a keyframe still leaves within a few frame times.
PACE_FACTOR = 1.5
PROBE_INTERVAL = 2.0
UP_WAIT = 3.0
UP_WAIT_MAX = 60.0
# A switch down waits at most this for the lower layer's keyframe before giving up on it.
SWITCH_TIMEOUT = 4.0
LOWER_START_TIMEOUT = 15.0
# The lower layer stops once no viewer has needed it for this long.
LOWER_IDLE = 30.0
# Layers by how much they carry: "keyframes" is the lower layer's keyframes only.
FULL, LOWER, KEYFRAMES = "full", "lower", "keyframes"
_RANK = {KEYFRAMES: 0, LOWER: 1, FULL: 2}
# A viewer on the lower layer whose estimate stays clearly below that layer's rate (under
# KEYFRAMES_BELOW of it: one congestion cut, 0.85, is not enough) or that loses over LOSSY,
# this long, counted from its switch at the earliest, gets keyframes only.
KEYFRAMES_AFTER = 3.0
KEYFRAMES_BELOW = 0.8


class HubError(Exception):
    """A request the hub refuses; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Epoch:
    """Keeps a kind's pts continuous when the source changes (publisher reconnect, new URL)."""

    clock_rate: int
    offset: int | None = None
    last_out: int | None = None
    last_wall: float = 0.0

    def reset(self) -> None:
        self.offset = None

    def map(self, pts: int, wall: float) -> int:
        if self.offset is None:
            if self.last_out is None:
                self.offset = -pts
            else:
                # Continue from where the previous source stopped, plus the time that passed.
                gap = max(1, round((wall - self.last_wall) * self.clock_rate))
                self.offset = self.last_out + gap - pts
        out = pts + self.offset
        self.last_out, self.last_wall = out, wall
        return out


@dataclass
class Viewer:
    participant_id: str
    role: str
    pc: EdgePeerConnection
    can_talk: bool
    video: FrameFeed | None = None
    audio: FrameFeed | None = None
    talkback: FrameFeed | None = None
    talk_receiver: PassthroughReceiver | None = None
    joined_at: float = field(default_factory=time.time)
    active: bool = False
    last_bytes: int = 0
    last_sample: float = field(default_factory=time.monotonic)
    # the layer the viewer is sent ("full": the source's own bytes, "lower", or "keyframes":
    # the lower layer's keyframes only), and the one it is moving to at that layer's next keyframe
    layer: str = "full"
    target: str = "full"
    last_video_pts: int | None = None
    below_since: float | None = None
    switched_at: float = field(default_factory=time.monotonic)
    up_wait: float = UP_WAIT
    last_probe: float = 0.0
    switches: int = 0

    def feeds(self) -> list[FrameFeed]:
        return [f for f in (self.video, self.audio, self.talkback) if f is not None]


@dataclass
class Publisher:
    participant_id: str
    pc: EdgePeerConnection
    video_receiver: PassthroughReceiver | None = None
    # simulcast: the receiver of the publisher's lower encoding (the video receiver's is the full)
    lower_receiver: PassthroughReceiver | None = None
    audio_receiver: PassthroughReceiver | None = None
    talkback: FrameFeed | None = None
    up: bool = False


@dataclass
class HubCounters:
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    keyframe_requests_relayed: int = 0
    keyframe_requests_suppressed: int = 0
    talkback_frames: int = 0
    viewers_joined: int = 0
    viewers_left: int = 0
    viewers_paused: int = 0
    viewers_resumed: int = 0
    layer_switches_down: int = 0
    layer_switches_up: int = 0
    keyframes_only_switches: int = 0
    lower_layer_starts: int = 0


class SessionHub:
    """Everything live about one session on this edge."""

    def __init__(
        self,
        session_id: str,
        *,
        emit: EventEmitter,
        ice_loopback: bool = True,
        media_dir: Path | None = None,
        viewer_queue_frames: int = 120,
        profile_wait: float = 5.0,
        connect_timeout: float = 30.0,
        viewer_silence: float = VIEWER_SILENCE,
        drops: InputDrops | None = None,
    ) -> None:
        self.session_id = session_id
        self.drops = drops or InputDrops()
        self.emit = emit
        self.ice_loopback = ice_loopback
        self.media_dir = media_dir or Path("var/spool")
        self.viewer_queue_frames = viewer_queue_frames
        self.profile_wait = profile_wait
        self.connect_timeout = connect_timeout
        self.viewer_silence = viewer_silence
        self.source: PyAVSource | None = None
        self.publisher: Publisher | None = None
        self.viewers: dict[str, Viewer] = {}
        self.recorder: RecorderThread | None = None
        self.recording_id: str | None = None
        self.counters = HubCounters()
        self.video_profile_level_id: str | None = None
        self._profile_known = asyncio.Event()
        self._gop: list[PacketizedFrame] = []
        self._gop_bytes = 0
        self._gop_valid = False
        self._last_keyframe_request = -KEYFRAME_INTERVAL
        self._epochs = {"video": _Epoch(VIDEO_CLOCK), "audio": _Epoch(AUDIO_CLOCK)}
        # One RTP timestamp origin per kind for all viewers, so one clock mapping serves them all.
        self.rtp_origin = {"video": random.getrandbits(31), "audio": random.getrandbits(31)}
        self._last = {"video": (0, 0.0), "audio": (0, 0.0)}  # (pts, ingest_time)
        self._talker: str | None = None
        self._talker_last = 0.0
        self._talk_offset = 0
        self._talk_last_out: int | None = None
        self._talk_last_wall = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._segments_closed = 0
        self.lower: Layer | None = None
        # the source's second, lower stream (SourceAttach.lower_url), ingested as the lower layer
        self._lower_feed: SourceAttach | None = None
        self._lower_offset: int | None = None  # a lower layer's own pts -> the source's
        self._lower_last_pts: int | None = None
        self._lower_needed_at = 0.0
        self._video_sizes: list[tuple[float, int]] = []  # (ingest, bytes) of the last 2 s of source
        self._lower_keyframes: list[tuple[float, int]] = []  # (made, bytes) of the lower layer's last keyframes
        self._adapt_task: asyncio.Task[None] | None = None
        self.closed = False

    # --- frames in -----------------------------------------------------------------------

    def on_frame(self, frame: EncodedFrame) -> None:
        """A frame from the source or the publisher: fan out to everyone, record it."""
        self._take(frame, record=True)

    def on_live_frame(self, frame: EncodedFrame) -> None:
        """A publisher's video frame for the viewers: it reaches the recording on a path of its
        own (on_record_frame), which waits longer for late packets."""
        self._take(frame, record=False)

    def _take(self, frame: EncodedFrame, *, record: bool) -> None:
        if self.closed:
            return
        pts = self._epochs[frame.kind].map(frame.pts, frame.ingest_time or time.time())
        if pts != frame.pts:
            frame = EncodedFrame(frame.kind, frame.data, pts, frame.keyframe, frame.ingest_time)
        self._last[frame.kind] = (pts, frame.ingest_time)
        packetized = packetize(frame)
        if frame.kind == "video":
            self.counters.video_frames += 1
            if frame.keyframe:
                self.counters.keyframes += 1
                self._note_profile(frame)
                self._gop = [packetized]
                self._gop_bytes = len(frame.data)
                self._gop_valid = True
            elif self._gop_valid:
                self._gop.append(packetized)
                self._gop_bytes += len(frame.data)
                if len(self._gop) > GOP_CACHE_MAX_FRAMES or self._gop_bytes > GOP_CACHE_MAX_BYTES:
                    self._gop, self._gop_bytes, self._gop_valid = [], 0, False
            now = time.monotonic()
            sizes = self._video_sizes
            sizes.append((now, len(frame.data)))
            if now - sizes[0][0] > 2.0:
                del sizes[: max(1, len(sizes) // 8)]
            if self.lower is not None:
                self.lower.feed(frame)
            for viewer in self.viewers.values():
                if viewer.active and viewer.video is not None:
                    self._offer_video(viewer, packetized, "full")
        else:
            self.counters.audio_frames += 1
            for viewer in self.viewers.values():
                if viewer.active and viewer.audio is not None:
                    viewer.audio.offer(packetized)
        if record and self.recorder is not None:
            # Only a queue append: muxing, disk writes and fsyncs happen on the recorder's thread.
            self.recorder.write(frame)

    def on_record_frame(self, frame: EncodedFrame) -> None:
        """A publisher's video frame for the recording, complete even if it came too late live."""
        if self.closed or self.recorder is None:
            return
        pts = self._epochs[frame.kind].map(frame.pts, frame.ingest_time or time.time())
        self.recorder.write(EncodedFrame(frame.kind, frame.data, pts, frame.keyframe, frame.ingest_time))

    # --- layers --------------------------------------------------------------------------

    def _offer_video(self, viewer: Viewer, packetized: PacketizedFrame, layer: str) -> None:
        """Offer a frame of ``layer`` ("full" or "lower") to a viewer: on that layer, or switching
        to it here when it is a keyframe newer than anything the viewer got (a switch never shows
        a frame that depends on one the viewer did not get, nor goes back in time). A viewer on
        "keyframes" is offered the lower layer's keyframes only."""
        video = viewer.video
        assert video is not None
        pts = packetized.frame.pts
        if viewer.layer == viewer.target:
            if _made_of(viewer.layer) != layer or (viewer.layer == KEYFRAMES and not packetized.keyframe):
                return
            video.offer(packetized)
            viewer.last_video_pts = pts
            return
        # Moving: nothing more of the layer it leaves, the target's keyframe is coming.
        if _made_of(viewer.target) != layer or not packetized.keyframe:
            return
        if viewer.last_video_pts is not None and pts <= viewer.last_video_pts:
            return
        before, viewer.layer = viewer.layer, viewer.target
        viewer.switched_at = time.monotonic()
        viewer.switches += 1
        if _RANK[viewer.layer] > _RANK[before]:
            self.counters.layer_switches_up += 1
        else:
            self.counters.layer_switches_down += 1
        if viewer.layer == KEYFRAMES:
            self.counters.keyframes_only_switches += 1
        logger.info("session %s: viewer %s now on the %s layer", self.session_id, viewer.participant_id, viewer.layer)
        video.resume(fresh=True)  # whatever is queued of the other layer is stale now
        video.offer(packetized)
        viewer.last_video_pts = pts

    def _on_lower_frame(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        if self.lower is not None and not self.lower.source_pts:
            aligned = self._align_lower(frame)
            if aligned is None:
                return
            frame = aligned
        packetized = packetize(frame)
        if frame.keyframe:
            now = time.monotonic()
            sizes = self._lower_keyframes
            sizes.append((now, len(frame.data)))
            while len(sizes) > 2 and now - sizes[0][0] > 8.0:
                del sizes[0]
        for viewer in self.viewers.values():
            if viewer.active and viewer.video is not None:
                self._offer_video(viewer, packetized, LOWER)

    def _align_lower(self, frame: EncodedFrame) -> EncodedFrame | None:
        """A lower layer with timestamps of its own (a second feed): on the source's clock, by
        arrival time, so RTP time carries on across a switch. Anchored once and kept (both come
        from one encoder's clock), anchored again only when it drifts by over a second."""
        last_pts, last_wall = self._last["video"]
        if not last_wall:
            return None  # no source frame yet to line it up with
        expected = last_pts + round((frame.ingest_time - last_wall) * VIDEO_CLOCK)
        if self._lower_offset is None or abs(frame.pts + self._lower_offset - expected) > VIDEO_CLOCK:
            self._lower_offset = expected - frame.pts
        pts = frame.pts + self._lower_offset
        if self._lower_last_pts is not None and pts <= self._lower_last_pts:
            pts = self._lower_last_pts + 1  # never back in time within the layer
        self._lower_last_pts = pts
        return EncodedFrame(frame.kind, frame.data, pts, frame.keyframe, frame.ingest_time)

    def full_layer_bps(self) -> float:
        """What the source's video has carried over the last two seconds, in bit/s."""
        sizes = self._video_sizes
        if len(sizes) < 2:
            return 0.0
        span = max(sizes[-1][0] - sizes[0][0], 0.5)
        return sum(n for _, n in sizes) * 8 / span

    def keyframes_bps(self) -> float:
        """What the lower layer's keyframes alone carry, in bit/s (0 before two are known)."""
        sizes = self._lower_keyframes
        if len(sizes) < 2:
            return 0.0
        return sum(n for _, n in sizes[1:]) * 8 / max(sizes[-1][0] - sizes[0][0], 0.5)

    def _request_viewer_keyframe(self, viewer: Viewer) -> None:
        """A viewer lost its picture (PLI, or its queue overflowed): ask the layer it is on."""
        if _made_of(viewer.layer) == LOWER and self.lower is not None:
            self.lower.request_keyframe()
        else:
            self.request_keyframe()

    def _lower_viewers_to_source(self) -> None:
        """The lower layer is gone: its viewers move to the next source keyframe."""
        now = time.monotonic()
        for viewer in self.viewers.values():
            if _made_of(viewer.target) == LOWER or _made_of(viewer.layer) == LOWER:
                viewer.target = FULL
                viewer.switched_at = now

    def _new_lower(self) -> Layer:
        """The encoder's second stream when the source has one, the publisher's lower encoding
        when it sends simulcast, else the transcoder."""
        feed = self._lower_feed
        if feed is not None:
            return FeedLayer(url=feed.lower_url, on_frame=self._on_lower_frame, loop_file=feed.loop,
                             options=dict(feed.options))
        if self.publisher is not None and self.publisher.lower_receiver is not None:
            return SimulcastLayer(receiver=self.publisher.lower_receiver, on_frame=self._on_lower_frame)
        return LowerLayer(on_frame=self._on_lower_frame)

    async def _start_lower(self) -> None:
        if self.lower is not None:
            return
        self.lower = self._new_lower()
        self._lower_offset = self._lower_last_pts = None
        self.counters.lower_layer_starts += 1
        try:
            await self.lower.start()
        except OSError as exc:
            logger.error("session %s: the lower layer cannot start (%s)", self.session_id, exc)
            self.lower = None
            return
        if self.lower.keyframe_on_request:
            # The current GOP first, so the decoder can start at once instead of at the next keyframe.
            if self._gop_valid:
                for packetized in self._gop:
                    self.lower.feed(packetized.frame)
            self.lower.request_keyframe()

    async def _stop_lower(self) -> None:
        lower, self.lower = self.lower, None
        self._lower_keyframes = []
        if lower is not None:
            await lower.stop()

    async def _adapt(self) -> None:
        """Every ADAPT_INTERVAL: move viewers between layers by their estimates, probe, and run
        the lower layer only while someone needs it."""
        while True:
            await asyncio.sleep(ADAPT_INTERVAL)
            try:
                await self._adapt_once()
            except Exception:  # one bad turn must not end adaptation for the whole session
                logger.exception("session %s: layer adaptation failed", self.session_id)

    async def _adapt_once(self) -> None:
        """One turn of ``_adapt``."""
        now = time.monotonic()
        if self.lower is not None and not self.lower.running:
            # The lower layer's process died: its viewers go back to the source's next keyframe.
            logger.warning("session %s: the lower layer stopped (%s)", self.session_id, self.lower.stats.last_error)
            await self._stop_lower()
            for viewer in self.viewers.values():
                viewer.target = "full"
                viewer.switched_at = now
            self.request_keyframe()
        full = self.full_layer_bps()
        need = full * HEADROOM
        lower_bps = self.lower.stats.bitrate(now) if self.lower is not None else 0.0
        needed = False
        for viewer in list(self.viewers.values()):
            if viewer.video is None or not viewer.active:
                continue
            sender = viewer.video.sender
            estimator = sender.estimator
            if _made_of(viewer.target) == LOWER or _made_of(viewer.layer) == LOWER:
                needed = True
            if estimator is None or not estimator.stats.feedbacks or not need:
                continue
            estimate = estimator.estimate_bps
            layer_bps = {FULL: full, LOWER: lower_bps, KEYFRAMES: self.keyframes_bps()}[viewer.layer]
            viewer.video.pace_bps = max(estimate, layer_bps * PACE_FACTOR) if layer_bps else None
            if viewer.target == "full" and viewer.layer == "full":
                lossy = estimator.loss_fraction > LOSSY
                if estimate >= full and not lossy:
                    viewer.below_since = None
                    continue
                if viewer.below_since is None:
                    viewer.below_since = now
                if now - viewer.below_since >= (DOWN_AFTER_LOSS if lossy else DOWN_AFTER):
                    self._move_down(viewer, now)
                    needed = True
            elif viewer.target == "lower" and viewer.layer == "full":
                # counted from when the lower layer first produced, so its start-up is not held against it
                lower = self.lower
                since = viewer.switched_at
                first = lower.stats.first_output_at if lower is not None else None
                if first is not None:
                    since = max(since, first)
                elif lower is not None and lower.running and now - lower.stats.started_at < LOWER_START_TIMEOUT:
                    continue  # still starting
                if now - since > SWITCH_TIMEOUT:
                    # The lower layer never came: back to the source rather than nothing.
                    logger.warning("session %s: no lower layer for %s; staying on the source",
                                   self.session_id, viewer.participant_id)
                    viewer.target = "full"
                    viewer.below_since = None
                    viewer.switched_at = now
                    self.request_keyframe()
            elif viewer.layer == "lower" and viewer.target == "lower":
                below = estimate < lower_bps * KEYFRAMES_BELOW or estimator.loss_fraction > LOSSY
                if below and now - viewer.switched_at >= KEYFRAMES_AFTER:
                    if viewer.below_since is None:
                        viewer.below_since = now
                    if now - viewer.below_since >= KEYFRAMES_AFTER:
                        self._move_to_keyframes(viewer, now)
                        continue
                else:
                    viewer.below_since = None
                if now - viewer.switched_at < viewer.up_wait:
                    continue
                if estimate >= need * UP_HEADROOM:
                    viewer.target = "full"
                    viewer.switched_at = now
                    viewer.below_since = None
                    self.request_keyframe()
                elif now - viewer.last_probe >= PROBE_INTERVAL and estimator.signal != "overuse":
                    viewer.last_probe = now
                    sender.send_probe()
            elif viewer.layer == KEYFRAMES and viewer.target == KEYFRAMES:
                if now - viewer.switched_at < viewer.up_wait:
                    continue
                if estimate >= lower_bps * HEADROOM * UP_HEADROOM:
                    viewer.target = LOWER
                    viewer.switched_at = now
                    viewer.below_since = None
                    if self.lower is not None:
                        self.lower.request_keyframe()
                elif now - viewer.last_probe >= PROBE_INTERVAL and estimator.signal != "overuse":
                    viewer.last_probe = now
                    sender.send_probe()
        if needed:
            self._lower_needed_at = now
            if self.lower is None:
                await self._start_lower()
        elif self.lower is not None and self.lower.stop_when_idle and now - self._lower_needed_at > LOWER_IDLE:
            await self._stop_lower()

    def _move_down(self, viewer: Viewer, now: float) -> None:
        # A viewer that comes back down soon after going up waits longer before its next try.
        if viewer.switches and now - viewer.switched_at < 10.0:
            viewer.up_wait = min(UP_WAIT_MAX, viewer.up_wait * 2)
        viewer.target = "lower"
        viewer.switched_at = now
        viewer.below_since = None
        if self.lower is not None:
            self.lower.request_keyframe()

    def _move_to_keyframes(self, viewer: Viewer, now: float) -> None:
        """The last resort: the lower layer's keyframes only, from its next one (the sound goes on)."""
        if viewer.switches and now - viewer.switched_at < 10.0:
            viewer.up_wait = min(UP_WAIT_MAX, viewer.up_wait * 2)
        viewer.target = KEYFRAMES
        viewer.switched_at = now
        viewer.below_since = None

    def _note_profile(self, frame: EncodedFrame) -> None:
        for unit in split_nal_units(frame.data):
            if is_sps(unit):
                self.video_profile_level_id = profile_level_id(unit)
                self._profile_known.set()
                return

    def request_keyframe(self) -> None:
        """A viewer needs a keyframe: ask the publisher, at most once per KEYFRAME_INTERVAL."""
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_INTERVAL:
            self.counters.keyframe_requests_suppressed += 1
            return
        self._last_keyframe_request = now
        self.counters.keyframe_requests_relayed += 1
        publisher = self.publisher
        if publisher is not None and publisher.video_receiver is not None:
            publisher.video_receiver.request_keyframe()
        # A file or camera source cannot be asked; its next natural keyframe serves.

    # --- source --------------------------------------------------------------------------

    async def attach_source(self, attach: SourceAttach) -> None:
        """Ingest ``attach.url``; with ``attach.lower_url``, that second stream is the lower layer."""
        if self.publisher is not None:
            raise HubError("the session has a WebRTC publisher; drop it before attaching a source", 409)
        if attach.lower_url:
            problem = feed_url_problem(attach.lower_url)
            if problem is not None:
                raise HubError(f"lower_url: {problem}", 400)
            if attach.lower_url == attach.url:
                raise HubError("lower_url is the source itself; it must be the encoder's second, lower stream", 400)
        source = PyAVSource(
            url=attach.url,
            on_frame=self.on_frame,
            loop_file=attach.loop,
            options=dict(attach.options),
            on_state=self._on_source_state,
        )
        loop = asyncio.get_running_loop()
        try:
            # Opening blocks (network sources can take seconds): keep it off the event loop.
            size = await loop.run_in_executor(None, source.probe)
        except SourceError as exc:
            raise HubError(str(exc), 422) from None
        if attach.lower_url:
            lower = PyAVSource(url=attach.lower_url, on_frame=self.on_frame, options=dict(attach.options))
            try:
                lower_size = await loop.run_in_executor(None, lower.probe)
            except SourceError as exc:
                raise HubError(f"the lower feed: {exc}", 422) from None
            if lower_size[1] and size[1] and lower_size[1] >= size[1]:
                raise HubError(
                    f"the lower feed ({lower_size[0]}x{lower_size[1]}) is not smaller than the source "
                    f"({size[0]}x{size[1]}); it must be the encoder's lower stream", 422
                )
        await self.detach_source()
        self._new_video_source()
        self.source = source
        source.start()
        if attach.lower_url:
            self._lower_feed = attach
            await self._stop_lower()  # a transcoder of the previous source, if one ran
            await self._start_lower()

    async def detach_source(self) -> bool:
        """Stop the ingest source; False when there was none."""
        source, self.source = self.source, None
        if source is None:
            return False
        if self._lower_feed is not None:
            # The feed's second stream goes with it; its viewers return to the next source's
            # keyframe (the transcoder takes over if a viewer still needs a lower layer).
            self._lower_feed = None
            await self._stop_lower()
            self._lower_viewers_to_source()
        await source.stop()
        self.emit("publisher.down", {"kind": "source", "url": _redact(source.url)})
        return True

    def _new_video_source(self) -> None:
        """Forget what the previous source sent: its profile and its cached GOP.

        The room's feed and the OR console's camera differ in profile and size: a viewer who
        arrives after a switch must be offered the new source's profile (it waits for its first
        keyframe) and must not start on the old source's GOP.
        """
        self._epochs["video"].reset()
        self._epochs["audio"].reset()
        self.video_profile_level_id = None
        self._profile_known.clear()
        self._gop, self._gop_bytes, self._gop_valid = [], 0, False

    def _on_source_state(self, state: str) -> None:
        if self.source is None:
            return
        if state == "playing":
            self.emit("publisher.up", {"kind": "source", "url": _redact(self.source.url)})
        elif state in ("ended", "failed"):
            self.emit("publisher.down", {"kind": "source", "state": state, "error": self.source.stats.last_error})

    # --- publisher -----------------------------------------------------------------------

    async def add_publisher(self, offer: PublisherOffer, *, exclusive: bool = False) -> str:
        """Take ``offer``'s peer as the session's publisher, replacing the one before.

        ``exclusive`` (a WHIP client): refuse instead when someone else publishes, so a WHIP
        token can replace only the publisher it created itself.
        """
        if self.source is not None:
            raise HubError("the session has an ingest source; detach it before publishing", 409)
        self._check_exclusive(offer, exclusive)
        munged, choice = choose_publisher_video(_checked_sdp(offer.sdp))
        if choice is None:
            raise HubError("the publisher's offer has no video", 400)
        rids = offered_simulcast(munged)
        pc = EdgePeerConnection(ice_loopback=self.ice_loopback, drops=self.drops)
        directions = ["recvonly" if kind == "video" else "sendrecv" for kind in offer_media_kinds(munged)]
        try:
            answer = await pc.answer(munged, directions=directions, transport_feedback=True, simulcast=rids)
        except SdpError as exc:
            await pc.close()
            raise HubError(str(exc), 400) from None
        try:
            self._check_exclusive(offer, exclusive)  # again: another publisher may have come meanwhile
        except HubError:
            await pc.close()
            raise
        await self._remove_publisher()
        if offer.participant_id in self.viewers:
            # The console that watched the room's feed now publishes: its viewer peer is over.
            await self.remove_participant(offer.participant_id)
        publisher = Publisher(participant_id=offer.participant_id, pc=pc)
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if isinstance(receiver, PassthroughReceiver):
                receiver.on_frame = self.on_frame
                if transceiver.kind == "video" and publisher.video_receiver is None:
                    receiver.on_frame = self.on_live_frame
                    receiver.on_record = self.on_record_frame
                    publisher.video_receiver = receiver
                    if rids:
                        publisher.lower_receiver = receiver.layers.get(rids[1])
                elif transceiver.kind == "audio" and publisher.audio_receiver is None:
                    publisher.audio_receiver = receiver
                    sender = transceiver.sender
                    assert isinstance(sender, RtpStreamSender)
                    publisher.talkback = FrameFeed(sender=sender, rtp_origin=random.getrandbits(31), gated=False)
                    publisher.talkback.start()
        self._new_video_source()
        self.publisher = publisher
        if publisher.lower_receiver is not None:
            # Its own lower encoding is the lower layer from now on, in place of a transcoder.
            logger.info("session %s: the publisher sends simulcast %s", self.session_id, "/".join(rids))
            await self._stop_lower()
            await self._start_lower()
        self._watch(pc, offer.participant_id)
        self._spawn(self._publisher_up(publisher))
        return restore_answer_profile(answer, choice)

    def _check_exclusive(self, offer: PublisherOffer, exclusive: bool) -> None:
        if exclusive and self.publisher is not None and self.publisher.participant_id != offer.participant_id:
            raise HubError(
                "another publisher (the OR console or another WHIP client) is live in this session; "
                "it must stop first",
                409,
            )

    async def _publisher_up(self, publisher: Publisher) -> None:
        receiver = publisher.video_receiver
        while receiver is not None and receiver.stats.frames == 0:
            await asyncio.sleep(0.05)
        if self.publisher is publisher:
            publisher.up = True
            self.emit("publisher.up", {"kind": "webrtc", "participant_id": publisher.participant_id})

    # --- viewers -------------------------------------------------------------------------

    async def add_viewer(self, offer: ViewerOffer) -> str:
        sdp = _checked_sdp(offer.sdp)
        if offer.participant_id in self.viewers:
            await self.remove_participant(offer.participant_id)
        profile = await self._wait_profile()
        munged, choice = choose_viewer_video(sdp, profile)
        kinds = offer_media_kinds(munged)
        directions: list[str] = []
        audio_seen = 0
        for kind in kinds:
            if kind == "video":
                directions.append("sendonly")
            elif kind == "audio":
                # First audio: the room's sound, plus the viewer's voice if its role may talk.
                # Second audio: other people's talkback.
                directions.append("sendrecv" if audio_seen == 0 and offer.can_talk else "sendonly")
                audio_seen += 1
            else:
                directions.append("inactive")
        pc = EdgePeerConnection(ice_loopback=self.ice_loopback, drops=self.drops)
        try:
            answer = await pc.answer(munged, directions=directions, transport_cc=True)
        except SdpError as exc:
            await pc.close()
            raise HubError(str(exc), 400) from None
        viewer = Viewer(participant_id=offer.participant_id, role=offer.role, pc=pc, can_talk=offer.can_talk)
        audio_index = 0
        for transceiver in pc.getTransceivers():
            sender = transceiver.sender
            if not isinstance(sender, RtpStreamSender):
                continue
            if transceiver.kind == "video" and viewer.video is None:
                sender.on_keyframe_request = lambda v=viewer: self._request_viewer_keyframe(v)
                viewer.video = FrameFeed(
                    sender=sender,
                    rtp_origin=self.rtp_origin["video"],
                    gated=True,
                    capacity=self.viewer_queue_frames,
                    on_need_keyframe=lambda v=viewer: self._request_viewer_keyframe(v),
                )
            elif transceiver.kind == "audio":
                if audio_index == 0:
                    viewer.audio = FrameFeed(sender=sender, rtp_origin=self.rtp_origin["audio"], gated=False)
                    if offer.can_talk and isinstance(transceiver.receiver, PassthroughReceiver):
                        viewer.talk_receiver = transceiver.receiver
                        pid = offer.participant_id
                        transceiver.receiver.on_frame = lambda frame, pid=pid: self.on_talkback(pid, frame)
                else:
                    viewer.talkback = FrameFeed(sender=sender, rtp_origin=random.getrandbits(31), gated=False)
                audio_index += 1
        self.viewers[offer.participant_id] = viewer
        for feed in viewer.feeds():
            feed.start()
        self._watch(pc, offer.participant_id)
        pid = offer.participant_id

        def on_presence(state: str) -> None:
            self._on_viewer_presence(pid, pc, state)

        pc.watch_presence(silence=self.viewer_silence, on_change=on_presence)
        self._spawn(self._activate(viewer))
        if self._adapt_task is None:
            self._adapt_task = asyncio.ensure_future(self._adapt())
        self.counters.viewers_joined += 1
        self.emit("viewer.joined", {"participant_id": offer.participant_id, "role": offer.role})
        return restore_answer_profile(answer, choice)

    async def _wait_profile(self) -> str:
        if self.video_profile_level_id is None:
            try:
                await asyncio.wait_for(self._profile_known.wait(), timeout=self.profile_wait)
            except TimeoutError:
                raise HubError("the session has no video yet; try again when the source is up", 409) from None
        assert self.video_profile_level_id is not None
        return self.video_profile_level_id

    async def _activate(self, viewer: Viewer) -> None:
        """Once the viewer's media path is up: current GOP at once, then live frames."""
        senders = [f.sender for f in viewer.feeds()]
        try:
            await asyncio.wait_for(_all_set([s.ready for s in senders]), timeout=self.connect_timeout)
        except TimeoutError:
            # ICE or DTLS never completed: do not keep a viewer that will never get a frame.
            logger.info("session %s: viewer %s never connected", self.session_id, viewer.participant_id)
            if self.viewers.get(viewer.participant_id) is viewer:
                await self.remove_participant(viewer.participant_id)
            return
        if self.viewers.get(viewer.participant_id) is not viewer:
            return
        if viewer.video is not None:
            full = self.full_layer_bps()
            if full and viewer.video.sender.estimator is not None:
                # Paced from the start: the cached GOP must not hit a shallow link all at once.
                viewer.video.pace_bps = full * PACE_FACTOR
            if self._gop_valid and self._gop:
                # The burst must fit: room for the whole cached GOP plus the usual margin.
                viewer.video.capacity = max(self.viewer_queue_frames, len(self._gop) + self.viewer_queue_frames // 2)
                viewer.video.offer_many(self._gop)
                viewer.last_video_pts = self._gop[-1].frame.pts
            else:
                self.request_keyframe()
        viewer.active = True

    # --- talkback ------------------------------------------------------------------------

    def on_talkback(self, participant_id: str, frame: EncodedFrame) -> None:
        now = time.time()
        if self._talker is not None and self._talker != participant_id:
            if now - self._talker_last < TALK_FLOOR_RELEASE:
                return  # someone else has the floor (push-to-talk: one voice at a time)
        if self._talker != participant_id:
            # Floor changes hands: the outgoing talkback stream continues without a jump back.
            gap = max(OPUS_FRAME, round((now - self._talk_last_wall) * AUDIO_CLOCK)) if self._talk_last_out else 0
            base = (self._talk_last_out or 0) + gap
            self._talk_offset = base - frame.pts
            self._talker = participant_id
        self._talker_last = now
        out = EncodedFrame("audio", frame.data, frame.pts + self._talk_offset, False, frame.ingest_time)
        self._talk_last_out, self._talk_last_wall = out.pts, now
        self.counters.talkback_frames += 1
        packetized = packetize(out)
        if self.publisher is not None and self.publisher.talkback is not None:
            self.publisher.talkback.offer(packetized)
        for viewer in self.viewers.values():
            if viewer.participant_id != participant_id and viewer.active and viewer.talkback is not None:
                viewer.talkback.offer(packetized)

    # --- participants --------------------------------------------------------------------

    def _watch(self, pc: EdgePeerConnection, participant_id: str) -> None:
        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._drop_pc(pc, participant_id)

        @pc.on("iceconnectionstatechange")
        async def on_ice_state() -> None:
            if pc.iceConnectionState == "failed":
                await self._drop_pc(pc, participant_id)

    def _on_viewer_presence(self, participant_id: str, pc: EdgePeerConnection, state: str) -> None:
        """Pause a silent viewer's feeds; when it is heard again, restart it on a keyframe."""
        viewer = self.viewers.get(participant_id)
        if viewer is None or viewer.pc is not pc:
            return
        if state == "disconnected":
            logger.info("session %s: viewer %s went silent; pausing", self.session_id, participant_id)
            self.counters.viewers_paused += 1
            for feed in viewer.feeds():
                feed.pause()
            return
        logger.info("session %s: viewer %s is back; resuming on a keyframe", self.session_id, participant_id)
        self.counters.viewers_resumed += 1
        for feed in viewer.feeds():
            # What queued up while it was away is stale: drop it rather than burst it late.
            feed.resume(fresh=True)
            feed.sender.restart()
        video = viewer.video
        if video is not None and viewer.active:
            if _made_of(viewer.layer) == LOWER or _made_of(viewer.target) == LOWER:
                self._request_viewer_keyframe(viewer)
            elif self._gop_valid and self._gop:
                # The current GOP at once, as for a new viewer: a picture without waiting.
                video.capacity = max(self.viewer_queue_frames, len(self._gop) + self.viewer_queue_frames // 2)
                video.offer_many(self._gop)
                viewer.last_video_pts = self._gop[-1].frame.pts
            else:
                self.request_keyframe()

    async def _drop_pc(self, pc: EdgePeerConnection, participant_id: str) -> None:
        viewer = self.viewers.get(participant_id)
        if viewer is not None and viewer.pc is pc:
            await self.remove_participant(participant_id)
        elif self.publisher is not None and self.publisher.pc is pc:
            await self.remove_participant(participant_id)
        else:
            await pc.close()

    async def remove_participant(self, participant_id: str) -> bool:
        """Drop a viewer or the publisher at once; False when nobody has that id."""
        viewer = self.viewers.pop(participant_id, None)
        if viewer is not None:
            viewer.active = False
            for feed in viewer.feeds():
                await feed.stop()
            await viewer.pc.close()
            self.counters.viewers_left += 1
            if self._talker == participant_id:
                self._talker = None
            self.emit("viewer.left", {"participant_id": participant_id})
            return True
        if self.publisher is not None and self.publisher.participant_id == participant_id:
            return await self._remove_publisher()
        return False

    async def _remove_publisher(self) -> bool:
        publisher, self.publisher = self.publisher, None
        if publisher is None:
            return False
        if self.lower is not None and self.lower.kind == "simulcast":
            # Its lower encoding goes with it: viewers return to the next source's keyframe.
            await self._stop_lower()
            self._lower_viewers_to_source()
        if publisher.talkback is not None:
            await publisher.talkback.stop()
        await publisher.pc.close()
        self.emit("publisher.down", {"kind": "webrtc", "participant_id": publisher.participant_id})
        return True

    # --- recording -----------------------------------------------------------------------

    async def start_recording(self, start: RecordingStart) -> Path:
        if self.recorder is not None:
            raise HubError(f"recording {self.recording_id} is already running", 409)
        try:
            from .record import SEGMENT_FIELDS, Recorder, set_aside_unplayable
        except ImportError:
            raise HubError("recording is not available on this edge", 503) from None
        if not start.recording_id or "/" in start.recording_id or start.recording_id.startswith("."):
            raise HubError("recording_id must be a plain identifier", 400)
        # The media directory is the recordings spool the control plane reads: one folder per
        # recording, named by its id, so a segment's path is "<recording id>/<file>".
        directory = self.media_dir / start.recording_id
        directory.mkdir(parents=True, exist_ok=True)
        # A segment a crash left with nothing playable gives its number to the next one.
        set_aside_unplayable(directory)
        loop = asyncio.get_running_loop()
        recording_id = start.recording_id

        def segment_closed(info: dict[str, Any]) -> None:
            # Exactly the fields recordings.services.segment_register takes; the path relative to
            # the spool. The recorder may call from its own thread.
            data = {**{k: info[k] for k in SEGMENT_FIELDS}, "recording_public_id": recording_id,
                    "path": f"{recording_id}/{Path(info['path']).name}"}
            self._segments_closed += 1
            loop.call_soon_threadsafe(self.emit, "segment.closed", data)

        def failed(exc: BaseException) -> None:
            # A recorder failure must not stop the live stream: stop this recording only.
            logger.error("session %s: recorder failed (%s); recording stopped", self.session_id, exc)
            if self.recording_id == recording_id:
                self._spawn(self.stop_recording())

        # A recording resumed after an edge restart goes on in its folder: the count reported at
        # the stop covers the segments written before this edge started (closed or recovered).
        self._segments_closed = sum(1 for _ in directory.glob("seg-*.mp4"))
        self.recorder = RecorderThread(
            Recorder(
                directory, segment_seconds=float(start.segment_seconds), on_segment_closed=segment_closed,
                identity={"recording_id": recording_id, "session_id": self.session_id},
            ),
            on_error=failed,
            name=f"orstream-recorder-{recording_id}",
        )
        self.recording_id = recording_id
        self.emit("recording.started", {"recording_id": recording_id, "directory": str(directory)})
        return directory

    @property
    def segments_closed(self) -> int:
        """Segments of the current (or last) recording closed so far, as reported at its stop."""
        return self._segments_closed

    async def stop_recording(self) -> bool:
        recorder, self.recorder = self.recorder, None
        recording_id, self.recording_id = self.recording_id, None
        if recorder is None:
            return False
        await recorder.close()  # drains the queue, then trailer and fsync, on the recorder's thread
        await asyncio.sleep(0)  # let the last segment.closed (queued from that thread) go first
        # Every segment in the recording's folder, numbered 0..n-1: those of recorders before a
        # restart of the edge too, not only this recorder's.
        segments = getattr(recorder.recorder, "segment_count", self._segments_closed)
        self.emit(
            "recording.stopped",
            {"recording_id": recording_id, "recording_public_id": recording_id, "segments": segments},
        )
        return True

    # --- reports -------------------------------------------------------------------------

    def clock(self) -> dict[str, Any]:
        """RTP timestamp <-> ingest wall-clock of the latest frame of each kind, for all viewers."""
        out: dict[str, Any] = {"session_id": self.session_id, "now": time.time()}
        for kind, rate in (("video", VIDEO_CLOCK), ("audio", AUDIO_CLOCK)):
            pts, wall = self._last[kind]
            out[kind] = {
                "clock_rate": rate,
                "rtp_timestamp": (self.rtp_origin[kind] + pts) & 0xFFFFFFFF,
                "ingest_time": wall,
            }
        return out

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        viewers = []
        for viewer in self.viewers.values():
            sent = sum(f.sender.stats.bytes_sent for f in viewer.feeds())
            elapsed = max(now - viewer.last_sample, 1e-6)
            bitrate = (sent - viewer.last_bytes) * 8 / elapsed
            viewer.last_bytes, viewer.last_sample = sent, now
            video = viewer.video
            viewers.append(
                {
                    "participant_id": viewer.participant_id,
                    "role": viewer.role,
                    "connection": viewer.pc.connectionState,
                    "active": viewer.active,
                    "bitrate_bps": round(bitrate),
                    "bytes_sent": sent,
                    "packets_sent": sum(f.sender.stats.packets_sent for f in viewer.feeds()),
                    "loss": video.sender.stats.fraction_lost if video else 0.0,
                    "packets_lost": video.sender.stats.packets_lost if video else 0,
                    "rtt": video.sender.stats.rtt if video else None,
                    "lag_ms": round(video.stats.lag_avg * 1000, 1) if video else None,
                    "lag_max_ms": round(video.stats.lag_max * 1000, 1) if video else None,
                    "queued_frames": video.queued if video else 0,
                    "overflows": video.stats.overflows if video else 0,
                    "waiting_for_keyframe": video.waiting_for_keyframe if video else False,
                    "paused": video.paused if video else False,
                    "nacks": video.sender.stats.nacks_received if video else 0,
                    "retransmits": video.sender.stats.retransmits if video else 0,
                    **_estimate(video.sender if video else None),
                    "layer": viewer.layer,
                    "target_layer": viewer.target,
                    "layer_switches": viewer.switches,
                }
            )
        publisher = None
        if self.publisher is not None:
            receiver = self.publisher.video_receiver
            simulcast: dict[str, Any] | None = None
            if receiver is not None and receiver.layers:
                simulcast = {str(receiver.rid): dict(receiver.stats.__dict__)}
                simulcast.update({rid: dict(r.stats.__dict__) for rid, r in receiver.layers.items()})
            publisher = {
                "participant_id": self.publisher.participant_id,
                "connection": self.publisher.pc.connectionState,
                "video": dict(receiver.stats.__dict__) if receiver else None,
                # simulcast: each encoding's own receiver, by rid (the full one is "video")
                "simulcast": simulcast,
            }
        return {
            "session_id": self.session_id,
            "profile_level_id": self.video_profile_level_id,
            "source": self.source.stats.to_dict() if self.source else None,
            "publisher": publisher,
            "recording_id": self.recording_id,
            "recording": self.recorder.snapshot() if self.recorder is not None else None,
            "counters": dict(self.counters.__dict__),
            "gop_cached_frames": len(self._gop) if self._gop_valid else 0,
            "full_layer_bps": round(self.full_layer_bps()),
            "lower_layer": _lower_stats(self.lower),
            "viewers": viewers,
        }

    # --- lifecycle -----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop the source, drop every peer, close the recording; the hub is unusable after."""
        if self.closed:
            return
        await self.stop_recording()
        self.closed = True
        await self.detach_source()
        for participant_id in list(self.viewers):
            await self.remove_participant(participant_id)
        if self.publisher is not None:
            await self.remove_participant(self.publisher.participant_id)
        task, self._adapt_task = self._adapt_task, None
        await cancel_and_wait(task)
        await self._stop_lower()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _made_of(layer: str) -> str:
    """The layer whose frames a viewer's layer is made of: keyframes-only is the lower layer's."""
    return LOWER if layer == KEYFRAMES else layer


def _estimate(sender: RtpStreamSender | None) -> dict[str, Any]:
    """What the viewer's transport-cc feedback says its link carries (None without feedback)."""
    estimator = sender.estimator if sender is not None else None
    if estimator is None or not estimator.stats.feedbacks:
        return {"estimate_bps": None, "acked_bps": None, "congestion": None, "feedback_loss": None}
    return {
        "estimate_bps": round(estimator.estimate_bps),
        "acked_bps": round(estimator.acked_bps),
        "congestion": estimator.signal,
        "feedback_loss": round(estimator.loss_fraction, 4),
    }


def _lower_stats(lower: Layer | None) -> dict[str, Any] | None:
    if lower is None:
        return None
    stats = lower.stats
    return {
        # "transcoder" (the edge decodes and encodes the source), "feed" (the encoder's second
        # stream) or "simulcast" (the publisher's own lower encoding)
        "source": lower.kind,
        # False: a switch onto the layer waits for its next keyframe (keyframe_interval_s apart)
        "keyframe_on_request": lower.keyframe_on_request,
        "keyframe_interval_s": stats.keyframe_interval_s,
        "keyframe_requests": stats.keyframe_requests,
        "running": lower.running,
        "resolution": f"{lower.width}x{lower.height}",
        "bitrate_bps": round(stats.bitrate(time.monotonic())),
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "keyframes_out": stats.keyframes_out,
        "frames_skipped": stats.frames_skipped,
        "last_error": stats.last_error,
        "cpu_s": lower.cpu_seconds(),
    }


async def _all_set(events: list[asyncio.Event]) -> None:
    # A coroutine, not a bare gather handed to wait_for: when the hub cancels the wait, the
    # gather's CancelledError is then consumed here instead of logged as never retrieved.
    await asyncio.gather(*(event.wait() for event in events))


def _checked_sdp(sdp: str) -> str:
    if not isinstance(sdp, str) or not sdp.startswith("v=0") or "\nm=" not in sdp.replace("\r\n", "\n"):
        raise HubError("sdp is not a session description", 400)
    return sdp


def _redact(url: str) -> str:
    """A URL fit for logs and webhooks: no credentials."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class Edge:
    """The sessions of one edge process; what the API (and the benchmark) drive."""

    def __init__(self, *, emit_event: Callable[[str, str, dict[str, Any]], None], ice_loopback: bool = True,
                 media_dir: Path | None = None, viewer_queue_frames: int = 120) -> None:
        self.emit_event = emit_event
        self.ice_loopback = ice_loopback
        self.media_dir = media_dir or Path("var/spool")
        self.viewer_queue_frames = viewer_queue_frames
        self.sessions: dict[str, SessionHub] = {}
        # Malformed input dropped by every peer of every session (guard.py), for /metrics.
        self.drops = InputDrops()
        self._recovery: asyncio.Task[None] | None = None

    # --- start-up recovery -----------------------------------------------------------------

    def recovery_start(self) -> list[Path]:
        """At start-up: find the segments a crash of this edge left open in the spool (no
        manifest beside them), set aside those with nothing playable (so the numbering has no
        gap), and recover the others in a thread (trim the torn tail, write their manifest,
        report each as "segment.closed"), so they are registered like any other. Lists the
        folders synchronously, before any recorder starts again; returns the segments found."""
        try:
            from .record import set_aside_unplayable, unmanifested_segments
        except ImportError:  # an edge without PyAV records nothing
            return []
        pending: list[Path] = []
        if self.media_dir.is_dir():
            for folder in sorted(p for p in self.media_dir.iterdir() if p.is_dir()):
                try:
                    set_aside_unplayable(folder)
                    pending += unmanifested_segments(folder)
                except OSError as error:
                    logger.error("spool folder %s could not be checked: %s", folder.name, error)
        if pending:
            logger.warning("recovering %d segment(s) left open by an earlier edge process", len(pending))
            self._recovery = asyncio.ensure_future(self._recover(pending))
        return pending

    async def _recover(self, pending: list[Path]) -> None:
        from .record import RECORDING_INFO_NAME, read_manifest, recover_directory, segment_event

        by_folder: dict[Path, list[Path]] = {}
        for segment in pending:
            by_folder.setdefault(segment.parent, []).append(segment)
        for folder, segments in by_folder.items():
            manifests = await asyncio.to_thread(recover_directory, folder, segments)
            identity = read_manifest(folder / RECORDING_INFO_NAME) or {}
            session_id = str(identity.get("session_id", ""))
            if not session_id:
                logger.error("recovered segments in %s name no session; the control plane rebuilds them from the spool", folder.name)
                continue
            for manifest in manifests:
                self.emit_event("segment.closed", session_id, segment_event(manifest, folder.name))

    @property
    def recovering(self) -> bool:
        return self._recovery is not None and not self._recovery.done()

    def session_create(self, session_id: str) -> SessionHub:
        """The hub for session_id, created if new (idempotent: the control plane may retry)."""
        hub = self.sessions.get(session_id)
        if hub is None:

            def emit(type_: str, data: dict[str, Any], sid: str = session_id) -> None:
                self.emit_event(type_, sid, data)

            hub = SessionHub(
                session_id,
                emit=emit,
                ice_loopback=self.ice_loopback,
                media_dir=self.media_dir,
                viewer_queue_frames=self.viewer_queue_frames,
                drops=self.drops,
            )
            self.sessions[session_id] = hub
        return hub

    def session_get(self, session_id: str) -> SessionHub:
        hub = self.sessions.get(session_id)
        if hub is None:
            raise HubError(f"unknown session {session_id}", 404)
        return hub

    async def session_close(self, session_id: str) -> None:
        hub = self.sessions.pop(session_id, None)
        if hub is None:
            raise HubError(f"unknown session {session_id}", 404)
        await hub.close()

    async def close(self) -> None:
        if self._recovery is not None:
            await cancel_and_wait(self._recovery)
            self._recovery = None
        for session_id in list(self.sessions):
            await self.session_close(session_id)
