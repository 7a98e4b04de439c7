"""Sending encoded frames to viewers: packetize once, then per viewer only a header, SRTP, a send.

The hub packetizes each frame once (``packetize``) and offers the result to every viewer's
``FrameFeed``: a bounded queue drained by one task per feed, which gates on keyframes and
survives overflow by flushing and waiting for the next keyframe. ``RtpStreamSender`` stands in
for aiortc's RTCRtpSender on the edge's transceivers: it writes RTP headers for its own SSRC and
sequence numbers, protects with the viewer's SRTP context and hands datagrams straight to the
ICE-selected socket; it answers NACKs from a 4,096-packet history and passes PLI/FIR to the hub.

Never encodes, never decodes, never waits on a slow viewer while serving the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)
from aiortc.stats import RTCOutboundRtpStreamStats, RTCStatsReport

from .frames import EncodedFrame
from .h264 import split_nal_units

logger = logging.getLogger(__name__)

# A 4K IDR is ~1,100 packets; the history must still hold all of it when the NACKs come back.
NACK_HISTORY = 4096
MID_EXTENSION_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
# Packets sent per feed before yielding to the event loop, so one viewer's keyframe burst
# does not hold up receiving or other viewers.
PACKETS_PER_SLICE = 64
RTT_ALPHA = 0.85


@dataclass(frozen=True, slots=True)
class PacketizedFrame:
    """One frame cut into RTP payloads, shared read-only by every viewer."""

    frame: EncodedFrame
    payloads: tuple[bytes, ...]

    @property
    def keyframe(self) -> bool:
        return self.frame.keyframe


def packetize(frame: EncodedFrame) -> PacketizedFrame:
    """RTP payloads for a frame: RFC 6184 (single NAL, STAP-A, FU-A) for H.264, as-is for Opus."""
    if frame.kind == "video":
        payloads = tuple(H264Encoder._packetize(split_nal_units(frame.data)))
    else:
        payloads = (frame.data,)
    return PacketizedFrame(frame=frame, payloads=payloads)


def _mid_extension(ext_id: int, mid: str) -> bytes:
    """A one-byte-header RTP extension block carrying the MID (RFC 8285)."""
    value = mid.encode()
    element = bytes([(ext_id << 4) | (len(value) - 1)]) + value
    element += b"\x00" * (-len(element) % 4)
    return struct.pack("!HH", 0xBEDE, len(element) // 4) + element


@dataclass
class SenderStats:
    packets_sent: int = 0
    bytes_sent: int = 0
    frames_sent: int = 0
    nacks_received: int = 0
    retransmits: int = 0
    keyframe_requests: int = 0
    fraction_lost: float = 0.0
    packets_lost: int = 0
    jitter: int = 0
    rtt: float | None = None


class RtpStreamSender:
    """The edge's sender for one m-line of one peer (takes aiortc RTCRtpSender's place).

    aiortc drives it through ``send``/``stop`` and routes RTCP to ``_handle_rtcp_packet``;
    the feed calls ``send_frame``.
    """

    def __init__(self, *, kind: str, transport: RTCDtlsTransport) -> None:
        self.kind = kind
        self._ssrc = random.getrandbits(32) or 1
        self._rtx_ssrc = random.getrandbits(32) or 1
        self._stream_id = ""
        self._track_id = f"orstream-{kind}-{self._ssrc:08x}"
        self._enabled = True
        self.track: Any = None
        self._transport = transport
        self.on_keyframe_request: Callable[[], None] | None = None
        self.stats = SenderStats()
        self._started = False
        self._payload_type = 0
        self._rtx_payload_type: int | None = None
        self._rtx_seq = random.getrandbits(15)
        self._seq = random.getrandbits(15)  # lower half: no wrap early in a call (SRTP index)
        self._extension = b""
        self._cname = ""
        # history: index seq % NACK_HISTORY -> (seq, packet without SRTP)
        self._history: list[tuple[int, bytes] | None] = [None] * NACK_HISTORY
        self._rtcp_task: asyncio.Task[None] | None = None
        # sender report mapping: last RTP timestamp sent and the wall-clock it stands for
        self._last_rtp_timestamp = 0
        self._last_media_time = 0.0
        self._clock_rate = 90_000 if kind == "video" else 48_000
        self._lsr: int | None = None
        self._lsr_time: float | None = None
        self.ready = asyncio.Event()

    # --- what aiortc calls ---------------------------------------------------------------

    @property
    def transport(self) -> RTCDtlsTransport:
        return self._transport

    def setTransport(self, transport: RTCDtlsTransport) -> None:  # noqa: N802 (aiortc's name)
        self._transport = transport

    def replaceTrack(self, track: Any) -> None:  # noqa: N802
        self.track = track

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        if self._started:
            return
        self._started = True
        codec = parameters.codecs[0]
        self._payload_type = codec.payloadType or 0
        self._cname = parameters.rtcp.cname or ""
        for other in parameters.codecs:
            if other.mimeType.lower().endswith("/rtx") and other.parameters.get("apt") == codec.payloadType:
                self._rtx_payload_type = other.payloadType
        for ext in parameters.headerExtensions:
            if ext.uri == MID_EXTENSION_URI and parameters.muxId:
                self._extension = _mid_extension(ext.id, parameters.muxId)
        self._transport._register_rtp_sender(self, parameters)
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self.ready.set()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._transport._unregister_rtp_sender(self)
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
            try:
                await self._rtcp_task
            except asyncio.CancelledError:
                pass
            self._rtcp_task = None
        self._send_rtcp([RtcpByePacket(sources=[self._ssrc])])

    async def getStats(self) -> RTCStatsReport:  # noqa: N802
        report = RTCStatsReport()
        report.add(
            RTCOutboundRtpStreamStats(
                timestamp=clock.current_datetime(),
                type="outbound-rtp",
                id=f"outbound-rtp_{id(self)}",
                ssrc=self._ssrc,
                kind=self.kind,
                transportId=self._transport._stats_id,
                packetsSent=self.stats.packets_sent,
                bytesSent=self.stats.bytes_sent,
                trackId=self._track_id,
            )
        )
        return report

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc != self._ssrc:
                    continue
                self.stats.fraction_lost = report.fraction_lost / 256
                self.stats.packets_lost = report.packets_lost
                self.stats.jitter = report.jitter
                if self._lsr == report.lsr and report.dlsr and self._lsr_time is not None:
                    rtt = time.time() - self._lsr_time - report.dlsr / 65536
                    prev = self.stats.rtt
                    self.stats.rtt = rtt if prev is None else RTT_ALPHA * prev + (1 - RTT_ALPHA) * rtt
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.stats.nacks_received += 1
            for seq in packet.lost:
                self._retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.stats.keyframe_requests += 1
            if self.on_keyframe_request is not None:
                self.on_keyframe_request()

    # --- the send path -------------------------------------------------------------------

    def _datagram_path(self) -> tuple[Any, Any, Any] | None:
        """(srtp session, datagram transport, remote address), or None while not connected."""
        dtls = self._transport
        if dtls.state != "connected":
            return None
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return None
        return dtls._tx_srtp, pair.protocol.transport, pair.remote_addr

    def write_buffer_size(self) -> int:
        path = self._datagram_path()
        return path[1].get_write_buffer_size() if path else 0

    def send_payloads(
        self,
        payloads: tuple[bytes, ...] | list[bytes],
        rtp_timestamp: int,
        media_time: float,
        *,
        ends_frame: bool = True,
    ) -> int:
        """Send payloads of one frame; with ends_frame the last carries the marker bit."""
        path = self._datagram_path()
        if path is None or not self._started:
            return 0
        srtp, datagrams, addr = path
        first = 0x90 if self._extension else 0x80
        pt = self._payload_type
        ssrc = self._ssrc
        ext = self._extension
        history = self._history
        pack = struct.pack
        seq = self._seq
        sent_bytes = 0
        last = len(payloads) - 1 if ends_frame else -1
        for i, payload in enumerate(payloads):
            header = pack("!BBHII", first, pt | (0x80 if i == last else 0), seq, rtp_timestamp, ssrc)
            packet = header + ext + payload
            history[seq % NACK_HISTORY] = (seq, packet)
            datagrams.sendto(srtp.protect(packet), addr)
            sent_bytes += len(payload)
            seq = (seq + 1) & 0xFFFF
        self._seq = seq
        count = len(payloads)
        self.stats.packets_sent += count
        self.stats.bytes_sent += sent_bytes
        if ends_frame:
            self.stats.frames_sent += 1
        self._last_rtp_timestamp = rtp_timestamp
        self._last_media_time = media_time
        return count

    def _retransmit(self, seq: int) -> None:
        entry = self._history[seq % NACK_HISTORY]
        path = self._datagram_path()
        if entry is None or entry[0] != seq or path is None:
            return
        srtp, datagrams, addr = path
        packet = entry[1]
        if self._rtx_payload_type is not None:
            # RFC 4588: same header on the RTX SSRC, original sequence number before the payload.
            header_len = 12 + len(self._extension)
            header = struct.pack(
                "!BBHII", packet[0], (packet[1] & 0x80) | self._rtx_payload_type, self._rtx_seq,
                struct.unpack_from("!I", packet, 4)[0], self._rtx_ssrc,
            )
            packet = header + packet[12:header_len] + struct.pack("!H", seq) + packet[header_len:]
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        datagrams.sendto(srtp.protect(packet), addr)
        self.stats.retransmits += 1

    def _send_rtcp(self, packets: list[Any]) -> None:
        path = self._datagram_path()
        if path is None:
            return
        srtp, datagrams, addr = path
        datagrams.sendto(srtp.protect_rtcp(b"".join(bytes(p) for p in packets)), addr)

    async def _run_rtcp(self) -> None:
        while True:
            await asyncio.sleep(0.5 + random.random())
            if not self.stats.packets_sent:
                continue
            # The SR maps wall-clock to this stream's RTP clock; browsers use it to line up
            # audio with video, so it extrapolates from the media time of the last frame sent.
            now = time.time()
            rtp_now = self._last_rtp_timestamp + int((now - self._last_media_time) * self._clock_rate)
            ntp = clock.current_ntp_time()
            packets: list[Any] = [
                RtcpSrPacket(
                    ssrc=self._ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=ntp,
                        rtp_timestamp=rtp_now & 0xFFFFFFFF,
                        packet_count=self.stats.packets_sent & 0xFFFFFFFF,
                        octet_count=self.stats.bytes_sent & 0xFFFFFFFF,
                    ),
                )
            ]
            if self._cname:
                packets.append(
                    RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=self._ssrc, items=[(1, self._cname.encode())])])
                )
            self._lsr = (ntp >> 16) & 0xFFFFFFFF
            self._lsr_time = now
            self._send_rtcp(packets)


@dataclass
class FeedStats:
    frames_offered: int = 0
    frames_dropped: int = 0
    overflows: int = 0
    lag_last: float = 0.0
    lag_avg: float = 0.0
    lag_max: float = 0.0


@dataclass
class FrameFeed:
    """One viewer's bounded queue of frames for one sender, drained by its own task.

    ``rtp_origin``: added to every frame's pts to make its RTP timestamp; the hub uses one
    origin per session and kind so that one clock mapping serves every viewer.
    ``gated``: video must start, and restart after a loss, on a keyframe.
    """

    sender: RtpStreamSender
    rtp_origin: int
    gated: bool = True
    capacity: int = 120
    on_need_keyframe: Callable[[], None] | None = None
    # a viewer whose socket has this much unsent data is treated as stalled
    max_write_buffer: int = 2 * 1024 * 1024
    stats: FeedStats = field(default_factory=FeedStats)
    _queue: deque[PacketizedFrame] = field(default_factory=deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting_for_keyframe: bool = True
    _paused: bool = False
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    @property
    def waiting_for_keyframe(self) -> bool:
        return self.gated and self._waiting_for_keyframe

    def offer(self, packetized: PacketizedFrame) -> None:
        """Queue a frame without ever blocking the caller (the hub, serving everyone)."""
        self.stats.frames_offered += 1
        if self.gated and self._waiting_for_keyframe:
            if not packetized.keyframe:
                self.stats.frames_dropped += 1
                return
            self._waiting_for_keyframe = False
        if len(self._queue) >= self.capacity:
            # Overflow: whatever is queued is already late. Drop it all and restart at the next
            # keyframe, so the viewer never decodes a picture built on a frame it did not get.
            self.stats.overflows += 1
            self.stats.frames_dropped += len(self._queue) + 1
            self._queue.clear()
            if self.gated:
                self._waiting_for_keyframe = True
                if self.on_need_keyframe is not None:
                    self.on_need_keyframe()
                return
        self._queue.append(packetized)
        self._wakeup.set()

    def offer_many(self, frames: list[PacketizedFrame]) -> None:
        for packetized in frames:
            self.offer(packetized)

    def pause(self) -> None:
        """Stop draining (ICE disconnected, or a test standing in for a stuck viewer)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        await self.sender.ready.wait()
        while True:
            if self._paused or not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.sender.write_buffer_size() > self.max_write_buffer:
                await asyncio.sleep(0.005)
                continue
            packetized = self._queue.popleft()
            frame = packetized.frame
            payloads = packetized.payloads
            rtp_timestamp = (self.rtp_origin + frame.pts) & 0xFFFFFFFF
            if len(payloads) <= PACKETS_PER_SLICE:
                self.sender.send_payloads(payloads, rtp_timestamp, frame.ingest_time)
            else:
                # Big keyframes leave in slices, the marker bit only on the real last packet.
                for start in range(0, len(payloads), PACKETS_PER_SLICE):
                    chunk = payloads[start : start + PACKETS_PER_SLICE]
                    ends = start + PACKETS_PER_SLICE >= len(payloads)
                    self.sender.send_payloads(chunk, rtp_timestamp, frame.ingest_time, ends_frame=ends)
                    if not ends:
                        await asyncio.sleep(0)
            lag = time.time() - frame.ingest_time
            stats = self.stats
            stats.lag_last = lag
            stats.lag_avg = lag if stats.lag_avg == 0 else 0.95 * stats.lag_avg + 0.05 * lag
            stats.lag_max = max(stats.lag_max, lag)
            # Let other feeds and the receive path run between frames.
            await asyncio.sleep(0)
