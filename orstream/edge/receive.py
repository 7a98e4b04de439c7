"""Receiving WebRTC media as encoded frames: the publisher's camera and viewers' talkback.

``PassthroughReceiver`` takes the place of aiortc's RTCRtpReceiver on the edge's transceivers
(see peer.py). Where aiortc would jitter-buffer, then decode in a thread, this one reassembles
each frame as soon as its marker packet and every packet before it are in, and hands the
encoded frame to ``on_frame``. It asks for lost packets (NACK) at once, gives up on a frame that
stays incomplete, and then drops everything up to the next keyframe while asking for one (PLI):
nothing downstream ever gets a frame that refers to a frame it did not get.

A recording may wait longer than a live picture: with ``on_record`` set, video frames also go,
in order, down a second path that waits up to ``RECORD_WAIT`` for a frame the live path gave up
(and keeps the frames after it that the live path dropped while waiting for a keyframe). NACKs
for a missing packet repeat every 1.5 round trips (measured from NACK to retransmission) until
a retransmission could no longer arrive within that wait: then it is lost for good.

Simulcast (a publisher sending one picture as several encodings, each on an SSRC of its own,
named by the rtp-stream-id header extension; aiortc routes them all to this one receiver):
after ``simulcast(rids)`` the receiver keeps the first rid's stream for itself and hands every
other rid's packets to a receiver of that encoding's own (``layers``), learning SSRC -> rid
from the extension (and repaired-rtp-stream-id for each encoding's retransmissions). Each
reassembles, NACKs, asks for keyframes (PLI to its own SSRC) and reports (RR) on its own
stream; the transport-wide arrivals are logged once, here, for all of them.

Never decodes. Sends RTCP receiver reports so the remote sender sees loss and RTT.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import clock
from aiortc.codecs import depayload, is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unwrap_rtx,
)
from aiortc.rtp import RTCP_RTPFB_NACK as NACK_FMT
from aiortc.stats import RTCInboundRtpStreamStats, RTCStatsReport

from .frames import EncodedFrame
from .h264 import ParameterSetKeeper, has_idr, join_nal_units, split_nal_units
from .tasks import cancel_and_wait
from .twcc import ArrivalLog

logger = logging.getLogger(__name__)

# How long an incomplete frame may wait for retransmissions before it is given up.
REORDER_WAIT = 0.25
# Frames in reassembly at once; a 4K keyframe is one frame of ~1,100 packets, so this bounds
# memory, not packets.
MAX_PENDING_FRAMES = 64
# Minimum spacing of our own PLIs upstream.
PLI_INTERVAL = 0.5
# How long the record path waits for a frame's missing packets (the live path: REORDER_WAIT).
RECORD_WAIT = 1.5
MAX_RECORD_FRAMES = 256
# A NACK is repeated after this many round trips, never sooner than NACK_RETRY_MIN.
NACK_RETRY_RTTS = 1.5
NACK_RETRY_MIN = 0.02
RTT_INITIAL = 0.1
MAX_MISSING = 1024

FrameCallback = Callable[[EncodedFrame], None]


@dataclass
class ReceiverStats:
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    keyframes: int = 0
    frames_dropped: int = 0
    nacks_sent: int = 0
    plis_sent: int = 0
    feedback_sent: int = 0
    nacks_repeated: int = 0
    # simulcast: packets of an encoding not (or not yet) known by its rid, dropped
    packets_unrouted: int = 0
    packets_lost_for_good: int = 0
    frames_recorded: int = 0
    frames_recovered_for_recording: int = 0
    frames_dropped_from_recording: int = 0
    rtt_ms: float = RTT_INITIAL * 1000
    last_sr_ntp: int = 0
    last_sr_rtp: int = 0
    last_sr_wall: float = 0.0


class _PartialFrame:
    __slots__ = ("timestamp", "parts", "marker_seq", "first_seen", "span")

    def __init__(self, timestamp: int, now: float) -> None:
        self.timestamp = timestamp
        self.parts: dict[int, bytes] = {}
        self.marker_seq: int | None = None
        # packets from the earliest one seen to the marker, minus one; kept up to date once the
        # marker is in, so checking a frame held up by a loss costs O(1) per arriving packet
        self.span = 0
        self.first_seen = now


class _Unwrapper:
    """32-bit RTP timestamps to an ever-increasing count from the first one."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last = 0
        self.cycles = 0

    def unwrap(self, timestamp: int) -> int:
        if self.first is None:
            self.first = self.last = timestamp
        if timestamp < self.last and self.last - timestamp > 0x80000000:
            self.cycles += 1 << 32
        elif timestamp > self.last and timestamp - self.last > 0x80000000:
            return timestamp - self.first + self.cycles - (1 << 32)  # a late packet from before a wrap
        self.last = timestamp
        return timestamp - self.first + self.cycles


def _starts_nal_unit(payload: bytes) -> bool:
    """An RTP H.264 payload that begins a NAL unit: single NAL, STAP-A, or the first FU-A fragment."""
    if len(payload) < 2:
        return False
    kind = payload[0] & 0x1F
    return 1 <= kind <= 24 or (kind == 28 and bool(payload[1] & 0x80))


def _seq_lt(a: int, b: int) -> bool:
    return a != b and ((b - a) & 0xFFFF) < 0x8000


class PassthroughReceiver:
    """The edge's receiver for one m-line of one peer (takes aiortc RTCRtpReceiver's place)."""

    def __init__(self, *, kind: str, transport: RTCDtlsTransport) -> None:
        self.kind = kind
        self._enabled = True
        self._track: Any = None
        self._transport = transport
        self.on_frame: FrameCallback | None = None
        self.stats = ReceiverStats()
        self._codecs: dict[int, RTCRtpCodecParameters] = {}
        self._rtx_ssrc: dict[int, int] = {}
        self._rtcp_ssrc: int | None = None
        self._media_ssrc: int | None = None
        self._started = False
        self._rtcp_task: asyncio.Task[None] | None = None
        self._streams: dict[int, StreamStatistics] = {}
        self._nacking = kind == "video"
        self._max_seq: int | None = None
        self._missing: dict[int, list[float]] = {}  # seq -> [first missed, last NACKed] (monotonic)
        self._rtt = RTT_INITIAL
        # The record path (video only, when on_record is set): frames by unwrapped timestamp,
        # complete (EncodedFrame) or still waiting for packets (_PartialFrame), in order.
        self.on_record: FrameCallback | None = None
        self._record: dict[int, EncodedFrame | _PartialFrame] = {}
        self._record_need_keyframe = True
        self._last_recorded_ts: int | None = None
        self._unwrapper = _Unwrapper()
        self._pending: dict[int, _PartialFrame] = {}  # by unwrapped timestamp, insertion order
        self._recent_markers: set[int] = set()
        self._marker_order: list[int] = []
        self._last_emitted_ts: int | None = None
        self._last_audio_seq: int | None = None
        self._first_seq: int | None = None
        self._need_keyframe = True
        self._last_pli = 0.0
        self._keeper = ParameterSetKeeper()
        self._lsr: dict[int, int] = {}
        self._lsr_time: dict[int, float] = {}
        self.profile_level_id: str | None = None
        # Set by the peer when the publisher numbers its packets transport-wide (one log per
        # transport, shared by its receivers; the video receiver sends the feedback).
        self.arrivals: ArrivalLog | None = None
        # Simulcast: this receiver's own rid, the other encodings' receivers by rid, and which
        # receiver each SSRC (media or retransmission) belongs to.
        self.rid: str | None = None
        self.layers: dict[str, PassthroughReceiver] = {}
        self._ssrc_owner: dict[int, PassthroughReceiver] = {}
        self._registered = False

    # --- what aiortc calls ---------------------------------------------------------------

    @property
    def track(self) -> Any:
        return self._track

    @property
    def transport(self) -> RTCDtlsTransport:
        return self._transport

    def setTransport(self, transport: RTCDtlsTransport) -> None:  # noqa: N802
        self._transport = transport

    def _set_rtcp_ssrc(self, ssrc: int) -> None:
        self._rtcp_ssrc = ssrc

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if self._started:
            return
        self._started = True
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                self._codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        self._transport._register_rtp_receiver(self, parameters)
        self._registered = True
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())
        if self.kind == "video":
            self.request_keyframe()
        for layer in self.layers.values():
            layer._codecs = dict(self._codecs)
            layer._start_layer()

    def simulcast(self, rids: list[str]) -> None:
        """The publisher sends these encodings (rid), the first one this receiver's own; the
        others each get a receiver of their own (``layers``), on the same transport."""
        self.rid = rids[0]
        for rid in rids[1:]:
            layer = PassthroughReceiver(kind=self.kind, transport=self._transport)
            layer.rid = rid
            layer._codecs = dict(self._codecs)
            layer._rtcp_ssrc = self._rtcp_ssrc
            self.layers[rid] = layer
            if self._started:
                layer._start_layer()

    def _start_layer(self) -> None:
        if self._started:
            return
        self._started = True
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._registered:
            self._transport._unregister_rtp_receiver(self)
            self._registered = False
        task, self._rtcp_task = self._rtcp_task, None
        await cancel_and_wait(task)
        for layer in self.layers.values():
            await layer.stop()

    def _handle_disconnect(self) -> None:
        pass

    async def getStats(self) -> RTCStatsReport:  # noqa: N802
        report = RTCStatsReport()
        for ssrc, stream in self._streams.items():
            report.add(
                RTCInboundRtpStreamStats(
                    timestamp=clock.current_datetime(),
                    type="inbound-rtp",
                    id=f"inbound-rtp_{id(self)}_{ssrc}",
                    ssrc=ssrc,
                    kind=self.kind,
                    transportId=self._transport._stats_id,
                    packetsReceived=stream.packets_received,
                    packetsLost=stream.packets_lost,
                    jitter=stream.jitter,
                )
            )
        return report

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            owner = self._ssrc_owner.get(packet.ssrc)
            if owner is not None and owner is not self:
                await owner._handle_rtcp_packet(packet)  # another encoding's sender report
                return
            info = packet.sender_info
            self._lsr[packet.ssrc] = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
            self._lsr_time[packet.ssrc] = time.time()
            self.stats.last_sr_ntp = info.ntp_timestamp
            self.stats.last_sr_rtp = info.rtp_timestamp
            self.stats.last_sr_wall = time.time()
        elif isinstance(packet, RtcpByePacket):
            pass

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        if self.arrivals is not None and packet.extensions.transport_sequence_number is not None:
            self.arrivals.note(
                packet.extensions.transport_sequence_number, int(time.monotonic() * 1e6)
            )
        if self.layers:
            owner = self._owner(packet, codec)
            if owner is None:
                self.stats.packets_unrouted += 1
                return
            if owner is not self:
                await owner._handle_rtp_packet(packet, arrival_time_ms)
                return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        retransmitted = is_rtx(codec)
        if retransmitted:
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        self._media_ssrc = packet.ssrc
        self.stats.packets += 1
        self.stats.bytes += len(packet.payload)
        if self._nacking:
            self._note_sequence(packet.sequence_number, retransmitted)
        if self.kind == "audio":
            self._handle_audio(packet)
        else:
            self._handle_video(packet, codec)

    def _owner(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> PassthroughReceiver | None:
        """Simulcast: the receiver of the encoding ``packet`` belongs to, learnt from its rid."""
        owner = self._ssrc_owner.get(packet.ssrc)
        if owner is not None:
            return owner
        if is_rtx(codec):
            rid = packet.extensions.repaired_rtp_stream_id
            owner = self._by_rid(rid)
            if owner is None or owner._media_ssrc is None:
                return None  # its encoding's own packets first: the RTX SSRC maps onto theirs
            owner._rtx_ssrc[packet.ssrc] = owner._media_ssrc
        else:
            owner = self._by_rid(packet.extensions.rtp_stream_id)
            if owner is None:
                return None
        self._ssrc_owner[packet.ssrc] = owner
        return owner

    def _by_rid(self, rid: str | None) -> PassthroughReceiver | None:
        if rid is None:
            return None
        return self if rid == self.rid else self.layers.get(rid)

    # --- frames --------------------------------------------------------------------------

    def _emit(self, frame: EncodedFrame) -> None:
        self.stats.frames += 1
        if frame.keyframe:
            self.stats.keyframes += 1
        if self.on_frame is not None:
            self.on_frame(frame)

    def _handle_audio(self, packet: RtpPacket) -> None:
        # One Opus packet per RTP packet; a late one is useless to a live listener.
        if self._last_audio_seq is not None and not _seq_lt(self._last_audio_seq, packet.sequence_number):
            return
        self._last_audio_seq = packet.sequence_number
        if not packet.payload:
            return
        pts = self._unwrapper.unwrap(packet.timestamp)
        self._emit(EncodedFrame(kind="audio", data=packet.payload, pts=pts, ingest_time=time.time()))

    def _handle_video(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> None:
        ts = self._unwrapper.unwrap(packet.timestamp)
        if self._last_emitted_ts is not None and ts <= self._last_emitted_ts:
            if self.on_record is None or (self._last_recorded_ts is not None and ts <= self._last_recorded_ts):
                return  # a retransmission for a frame already out, or given up
            # Given up live (or lost whole, so the live path never knew it): the recording waits.
            late = self._record.get(ts)
            if late is None:
                late = self._record[ts] = _PartialFrame(ts, time.time())
            if isinstance(late, _PartialFrame):
                self._add_part(late, packet, codec)
                self._release_record(time.time())
            return
        if self._first_seq is None:
            self._first_seq = packet.sequence_number
            if _starts_nal_unit(packet.payload):
                # Senders start a stream on a frame boundary: take the very first packet as the
                # start of a frame instead of throwing the first GOP away.
                self._remember_marker((packet.sequence_number - 1) & 0xFFFF)
        now = time.time()
        partial = self._pending.get(ts)
        if partial is None:
            partial = self._pending[ts] = _PartialFrame(ts, now)
        if self._add_part(partial, packet, codec):
            self._release(now)

    def _add_part(self, partial: _PartialFrame, packet: RtpPacket, codec: RTCRtpCodecParameters) -> bool:
        seq = packet.sequence_number
        try:
            partial.parts[seq] = depayload(codec, packet.payload) if packet.payload else b""
        except ValueError:
            return False
        if packet.marker:
            partial.marker_seq = seq
            # the earliest packet is the one farthest behind the marker, modulo 2^16
            partial.span = max((seq - s) & 0xFFFF for s in partial.parts)
            self._remember_marker(seq)
        elif partial.marker_seq is not None:
            behind = (partial.marker_seq - seq) & 0xFFFF
            if behind > partial.span:
                partial.span = behind
        return True

    def _remember_marker(self, seq: int) -> None:
        self._recent_markers.add(seq)
        self._marker_order.append(seq)
        if len(self._marker_order) > 256:
            self._recent_markers.discard(self._marker_order.pop(0))

    def _complete(self, partial: _PartialFrame) -> bool:
        if partial.marker_seq is None:
            return False
        if partial.span + 1 != len(partial.parts):
            return False
        first = (partial.marker_seq - partial.span) & 0xFFFF
        # Only when the packet before the first one ended a frame do we know the start is here.
        return ((first - 1) & 0xFFFF) in self._recent_markers

    def _release(self, now: float) -> None:
        """Emit, in timestamp order, every frame at the head that is complete or given up."""
        while self._pending:
            ts = min(self._pending)
            partial = self._pending[ts]
            if self._complete(partial):
                del self._pending[ts]
                self._last_emitted_ts = ts
                self._deliver(partial)
                continue
            newer_waiting = len(self._pending) > 1
            too_old = now - partial.first_seen > REORDER_WAIT
            if (newer_waiting and too_old) or len(self._pending) > MAX_PENDING_FRAMES:
                del self._pending[ts]
                self._last_emitted_ts = ts
                self.stats.frames_dropped += 1
                self._need_keyframe = True
                self.request_keyframe()
                if self.on_record is not None:
                    self._record[ts] = partial  # the recording waits longer for it
                continue
            break
        if self._record:
            self._release_record(now)

    def _release_record(self, now: float) -> None:
        """Record, in timestamp order, every frame at the head that is complete or given up."""
        record = self._record
        while record:
            ts = min(record)
            item = record[ts]
            if isinstance(item, _PartialFrame):
                if self._complete(item):
                    frame = self._assemble(item)
                    self.stats.frames_recovered_for_recording += 1
                elif (len(record) > 1 and now - item.first_seen > RECORD_WAIT) or len(record) > MAX_RECORD_FRAMES:
                    del record[ts]
                    if self._last_recorded_ts is None or ts > self._last_recorded_ts:
                        self._last_recorded_ts = ts  # a packet of it arriving later is not waited for again
                    self.stats.frames_dropped_from_recording += 1
                    self._record_need_keyframe = True
                    continue
                else:
                    break
            else:
                frame = item
            del record[ts]
            if self._last_recorded_ts is not None and ts <= self._last_recorded_ts:
                continue
            self._last_recorded_ts = ts
            if self._record_need_keyframe and not frame.keyframe:
                continue
            self._record_need_keyframe = False
            self.stats.frames_recorded += 1
            if self.on_record is not None:
                self.on_record(frame)

    def _assemble(self, partial: _PartialFrame) -> EncodedFrame:
        marker = partial.marker_seq
        assert marker is not None
        order = sorted(partial.parts, key=lambda s: -((marker - s) & 0xFFFF))
        data = b"".join(partial.parts[s] for s in order)
        units = self._keeper.fix(split_nal_units(data))
        if self._keeper.profile_level_id:
            self.profile_level_id = self._keeper.profile_level_id
        return EncodedFrame(
            kind="video", data=join_nal_units(units), pts=partial.timestamp, keyframe=has_idr(units),
            ingest_time=partial.first_seen,  # a late frame keeps (about) its own arrival time
        )

    def _deliver(self, partial: _PartialFrame) -> None:
        frame = self._assemble(partial)
        frame = EncodedFrame(frame.kind, frame.data, frame.pts, frame.keyframe, time.time())
        if self.on_record is not None:
            self._record[partial.timestamp] = frame
        if self._need_keyframe and not frame.keyframe:
            self.stats.frames_dropped += 1
            self.request_keyframe()
            return
        self._need_keyframe = False
        self._emit(frame)

    # --- RTCP ----------------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the remote encoder for a keyframe (PLI), at most every PLI_INTERVAL."""
        now = time.monotonic()
        if self._media_ssrc is None or self._rtcp_ssrc is None or now - self._last_pli < PLI_INTERVAL:
            return
        self._last_pli = now
        self.stats.plis_sent += 1
        self._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=self._media_ssrc))

    def _note_sequence(self, seq: int, retransmitted: bool) -> None:
        """Track missing video packets: NACK a new gap at once; a retransmission that fills one
        is a round-trip sample (from its last NACK)."""
        now = time.monotonic()
        if self._max_seq is None:
            self._max_seq = seq
            return
        ahead = (seq - self._max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            lost = [(self._max_seq + i) & 0xFFFF for i in range(1, ahead)]
            self._max_seq = seq
            if lost:
                for missing in lost[-MAX_MISSING:]:
                    self._missing[missing] = [now, now]
                while len(self._missing) > MAX_MISSING:
                    del self._missing[next(iter(self._missing))]
                self._send_nack(self._media_ssrc or 0, lost[-MAX_MISSING:])
            return
        entry = self._missing.pop(seq, None)
        if entry is not None and retransmitted:
            self._rtt = 0.875 * self._rtt + 0.125 * min(now - entry[1], 2.0)
            self.stats.rtt_ms = round(self._rtt * 1000, 1)

    def _repeat_nacks(self) -> None:
        """Ask again for packets still missing after 1.5 round trips; give a packet up once a
        retransmission asked now could no longer arrive within the longest wait for it."""
        if not self._missing:
            return
        now = time.monotonic()
        wait = RECORD_WAIT if self.on_record is not None else REORDER_WAIT
        retry = max(NACK_RETRY_MIN, NACK_RETRY_RTTS * self._rtt)
        again: list[int] = []
        for seq, entry in list(self._missing.items()):
            if now - entry[0] + self._rtt > wait:
                del self._missing[seq]
                self.stats.packets_lost_for_good += 1
            elif now - entry[1] >= retry:
                entry[1] = now
                again.append(seq)
        if again:
            self.stats.nacks_repeated += 1
            self._send_nack(self._media_ssrc or 0, again)

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        if self._rtcp_ssrc is None or not lost:
            return
        packet = RtcpRtpfbPacket(fmt=NACK_FMT, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc)
        packet.lost = lost
        self.stats.nacks_sent += 1
        self._send_rtcp(packet)

    def _send_transport_feedback(self) -> None:
        """Tell the publisher which of its packets arrived and when (every ~50 ms, batched), so
        its congestion control can probe and ramp up in seconds."""
        assert self.arrivals is not None
        if self._rtcp_ssrc is None:
            return
        # Simulcast: any encoding's SSRC will do (the feedback covers all the transport's packets),
        # but not 0 while the full encoding has not started.
        media_ssrc = self._media_ssrc or next((x._media_ssrc for x in self.layers.values() if x._media_ssrc), 0)
        for packet in self.arrivals.feedback(sender_ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc):
            self.stats.feedback_sent += 1
            self._send_rtcp(packet)

    def _send_rtcp(self, packet: Any) -> None:
        dtls = self._transport
        if dtls.state != "connected":
            return
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return
        pair.protocol.transport.sendto(dtls._tx_srtp.protect_rtcp(bytes(packet)), pair.remote_addr)

    async def _run_rtcp(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(0.05)
            tick += 1
            # Frames stuck behind a lost packet are given up even if nothing newer arrives.
            if self._pending:
                self._release(time.time())
            elif self._record:
                self._release_record(time.time())
            if self._nacking:
                self._repeat_nacks()
            if self._need_keyframe and self.kind == "video":
                self.request_keyframe()
            if self.arrivals is not None and self.kind == "video":
                self._send_transport_feedback()
            if tick % 20:
                continue  # receiver reports about once a second
            reports = []
            for ssrc, stream in self._streams.items():
                lsr = self._lsr.get(ssrc, 0)
                dlsr = 0
                if ssrc in self._lsr_time:
                    delay = time.time() - self._lsr_time[ssrc]
                    if 0 < delay < 65536:
                        dlsr = int(delay * 65536)
                reports.append(
                    RtcpReceiverInfo(
                        ssrc=ssrc,
                        fraction_lost=stream.fraction_lost,
                        packets_lost=stream.packets_lost,
                        highest_sequence=stream.max_seq or 0,
                        jitter=stream.jitter,
                        lsr=lsr,
                        dlsr=dlsr,
                    )
                )
            if self._rtcp_ssrc is not None and reports:
                self._send_rtcp(RtcpRrPacket(ssrc=self._rtcp_ssrc, reports=reports))
