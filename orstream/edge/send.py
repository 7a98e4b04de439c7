"""Sending encoded frames to viewers: packetize once, then per viewer only a header, SRTP, a send.

The hub packetizes each frame once (``packetize``: RFC 6184, FU-A fragments all of one size but
the last) and offers the result to every viewer's ``FrameFeed``: a bounded queue drained by one
task per feed, which gates on keyframes and survives overflow by flushing and waiting for the
next keyframe. An idle feed sends a small frame at once, inside ``offer``; big frames leave from
its task in slices, so feeds take turns on the event loop.

``RtpStreamSender`` stands in for aiortc's RTCRtpSender on the edge's transceivers. Its hot path
(``_send_wire``) works on a ``WireFrame``: the frame's packets laid end to end once per header
shape, each followed by room for its SRTP tag and shared by all viewers. Per viewer and GSO batch
it copies the batch into a scratch buffer, writes each packet's 12-byte header (its own SSRC and
sequence numbers), has libsrtp protect each packet in place with the viewer's DTLS-SRTP context,
and sends the batch of equal-size datagrams to the ICE-selected socket with one ``sendmsg``
(udp.py). No Python object is made per packet. TURN paths, unknown SRTP profiles or a missing
libsrtp binding take the plain path (one ``protect`` and ``sendto`` per packet). NACKs are
answered from a history of the last 4,096 packets kept as (first sequence number, frame)
entries, rebuilt from the shared payloads when asked for; PLI/FIR go to the hub. Where the
viewer negotiated transport-wide-cc, every video packet carries a transport-wide sequence number
written by the same ``pack_into`` as its header, each batch is noted once in a ``SendHistory``, and
the viewer's transport-cc feedback feeds its ``BandwidthEstimator`` (twcc.py); ``send_probe``
sends a cluster of RTX copies to measure room above the media.

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

import numpy as np
from aiortc import clock
from aiortc.codecs.h264 import NAL_TYPE_FU_A, PACKET_MAX, H264Encoder
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
from .tasks import cancel_and_wait
from .twcc import TWCC_URI, BandwidthEstimator, SendHistory, parse_feedback
from .udp import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, DatagramWriter, writer_for

logger = logging.getLogger(__name__)

# A 4K IDR is ~1,100 packets; the history must still hold all of it when the NACKs come back.
NACK_HISTORY = 4096
# A restarted stream's sequence numbers skip this far: past any receiver's jitter buffer (aiortc
# keeps 512 video packets) and NACK list (libwebrtc clears over 1,000 and asks for a keyframe).
RESTART_SEQ_SKIP = 1024
MID_EXTENSION_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
# Packets sent per feed before yielding to the event loop, so one viewer's keyframe burst
# does not hold up receiving or other viewers.
PACKETS_PER_SLICE = 128
RTT_ALPHA = 0.85
_RTP_HEADER = struct.Struct("!BBHII")
# The RTP header and a one-byte-header extension block whose first element is the transport-wide
# sequence number (RFC 8285): one pack_into writes both, so numbering costs nothing extra per packet.
_RTP_HEADER_TWCC = struct.Struct("!BBHIIHHBH")
# Probe clusters: redundant packets (RTX of recent ones) sent back to back, sized above a
# shallow link's token bucket so the later half of the cluster arrives at the link's own rate.
PROBE_PACKETS = 110
# A paced feed's bucket: one full GSO batch, so batches stay whole and bursts stay this small.
PACE_BUCKET_BYTES = 64_000
# Over this share of packets lost (transport-cc), NACKs are not answered: the loss is congestion.
CONGESTED_LOSS = 0.2

# Bytes libsrtp appends to each packet under each DTLS-SRTP profile aiortc can negotiate. aiortc
# offers the AEAD (GCM) profiles first, and GCM protects in ~1.45 us against ~2.3 us for CM-SHA1.
SRTP_TAG_LEN = {
    b"SRTP_AEAD_AES_256_GCM": 16,
    b"SRTP_AEAD_AES_128_GCM": 16,
    b"SRTP_AES128_CM_SHA1_80": 10,
    b"SRTP_AES128_CM_SHA1_32": 4,
}
# Room for one GSO batch plus the largest packet libsrtp may grow past it.
SCRATCH_BYTES = GSO_MAX_BYTES + 2048

try:
    # pylibsrtp's Session.protect allocates an int, copies in and copies out per packet; the
    # edge calls libsrtp itself to protect in place in its own buffer. Private to pylibsrtp 1.x:
    # if it moves, every viewer takes the plain path instead.
    from pylibsrtp._binding import ffi as _ffi  # type: ignore[import-not-found]
    from pylibsrtp._binding import lib as _srtp_lib  # type: ignore[import-not-found]

    _srtp_protect: Any = _srtp_lib.srtp_protect
except ImportError:  # pragma: no cover
    _ffi = None
    _srtp_protect = None


class _FastPath:
    """In-place SRTP in a scratch buffer and a direct socket writer, for one session and pair."""

    __slots__ = ("session", "ctx", "lenp", "scratch", "buffer", "view", "tag_len", "writer")

    def __init__(self, session: Any, tag_len: int, writer: DatagramWriter) -> None:
        assert _ffi is not None
        self.session = session  # keeps the libsrtp context alive
        self.ctx = session._srtp[0]
        self.lenp = _ffi.new("int *")
        self.scratch = _ffi.new("char[]", SCRATCH_BYTES)
        self.buffer = _ffi.buffer(self.scratch)
        self.view = memoryview(self.buffer)
        self.tag_len = tag_len
        self.writer = writer


class _Path:
    """The viewer's SRTP session and ICE-selected pair, and the fast path over them if possible."""

    __slots__ = ("session", "transport", "addr", "profile", "fast")

    def __init__(self, dtls: RTCDtlsTransport, transport: Any, addr: tuple[Any, ...]) -> None:
        self.session = dtls._tx_srtp
        self.transport = transport
        self.addr = addr
        try:
            self.profile: str = dtls._ssl.get_selected_srtp_profile().decode()  # type: ignore[union-attr]
        except Exception:  # aiortc internals moved: the plain path still works
            self.profile = ""
        self.fast: _FastPath | None = None
        tag_len = SRTP_TAG_LEN.get(self.profile.encode())
        writer = writer_for(transport, addr)
        if tag_len is not None and writer is not None and _srtp_protect is not None and hasattr(self.session, "_srtp"):
            self.fast = _FastPath(self.session, tag_len, writer)


class WireFrame:
    """A frame's RTP packets laid end to end for one header shape, each followed by room for its
    SRTP tag, so that after in-place protection a run of packets is exactly what one GSO
    ``sendmsg`` sends.

    Built once per frame and header shape (extension bytes, tag length), shared by every viewer
    with that shape. ``batches`` are runs of equal-size packets (the last of a run may be
    shorter): (first packet, end packet, first byte, end byte, segment size).
    """

    __slots__ = ("data", "offsets", "lengths", "batches", "starts", "header_len", "tag_len")

    def __init__(self, payloads: tuple[bytes, ...], extension: bytes, tag_len: int) -> None:
        header = bytes(12) + extension
        pad = bytes(tag_len)
        parts: list[bytes] = []
        offsets: list[int] = []
        lengths: list[int] = []
        pos = 0
        for payload in payloads:
            parts += (header, payload, pad)
            length = len(header) + len(payload)
            offsets.append(pos)
            lengths.append(length)
            pos += length + tag_len
        self.data = memoryview(b"".join(parts))
        self.offsets = offsets
        self.lengths = lengths
        self.header_len = len(header)
        self.tag_len = tag_len
        batches: list[tuple[int, int, int, int, int]] = []
        count = len(payloads)
        i = 0
        while i < count:
            segment = lengths[i] + tag_len
            limit = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // segment))
            j = i + 1
            while j < count and j - i < limit:
                size = lengths[j] + tag_len
                if size > segment:
                    break
                j += 1
                if size < segment:
                    break  # a shorter datagram can only end a GSO batch
            batches.append((i, j, offsets[i], offsets[j - 1] + lengths[j - 1] + tag_len, segment))
            i = j
        self.batches = batches
        self.starts = {batch[0]: k for k, batch in enumerate(batches)}


@dataclass(frozen=True, slots=True)
class PacketizedFrame:
    """One frame cut into RTP payloads, shared read-only by every viewer."""

    frame: EncodedFrame
    payloads: tuple[bytes, ...]
    # payload bytes of all its packets (what RTCP sender reports count)
    size: int = 0
    # (extension, tag length) -> layout; filled on first use by a viewer with that header shape
    wires: dict[tuple[bytes, int], WireFrame] = field(default_factory=dict, compare=False, repr=False)

    @property
    def keyframe(self) -> bool:
        return self.frame.keyframe

    def wire(self, extension: bytes, tag_len: int) -> WireFrame:
        key = (extension, tag_len)
        wire = self.wires.get(key)
        if wire is None:
            wire = self.wires[key] = WireFrame(self.payloads, extension, tag_len)
        return wire


def _fu_a(nal: bytes) -> list[bytes]:
    """RFC 6184 FU-A fragments, all the same size but the last.

    aiortc spreads a NAL unit evenly (sizes differing by one byte); equal sizes let a run of
    fragments leave as one GSO batch of equal-size datagrams.
    """
    indicator = (nal[0] & 0xE0) | NAL_TYPE_FU_A
    kind = nal[0] & 0x1F
    size = PACKET_MAX - 2
    middle = bytes((indicator, kind))
    out = []
    end = len(nal)
    for start in range(1, end, size):
        stop = start + size
        if start == 1:
            head = bytes((indicator, kind | 0x80))
        elif stop >= end:
            head = bytes((indicator, kind | 0x40))
        else:
            head = middle
        out.append(head + nal[start:stop])
    if len(out) == 1:  # cannot happen for a NAL unit longer than PACKET_MAX, kept for safety
        out[0] = bytes((indicator, kind | 0xC0)) + nal[1:]
    return out


def packetize_h264(units: list[bytes]) -> list[bytes]:
    """RTP payloads for H.264 NAL units: single NAL or STAP-A (aiortc's), FU-A of equal sizes."""
    out: list[bytes] = []
    it = iter(units)
    unit = next(it, None)
    while unit is not None:
        if len(unit) > PACKET_MAX:
            out.extend(_fu_a(unit))
            unit = next(it, None)
        else:
            packet, unit = H264Encoder._packetize_stap_a(unit, it)
            out.append(packet)
    return out


def packetize(frame: EncodedFrame) -> PacketizedFrame:
    """RTP payloads for a frame: RFC 6184 (single NAL, STAP-A, FU-A) for H.264, as-is for Opus."""
    if frame.kind == "video":
        payloads = tuple(packetize_h264(split_nal_units(frame.data)))
    else:
        payloads = (frame.data,)
    return PacketizedFrame(frame=frame, payloads=payloads, size=sum(map(len, payloads)))


def _extension_block(*, mid_id: int | None, mid: str, twcc_id: int | None) -> bytes:
    """A one-byte-header RTP extension block (RFC 8285): the transport-wide sequence number
    first (its two bytes at packet offset 17, rewritten per packet), then the MID."""
    element = b""
    if twcc_id is not None:
        element += bytes([(twcc_id << 4) | 1]) + b"\x00\x00"
    if mid_id is not None and mid:
        value = mid.encode()
        element += bytes([(mid_id << 4) | (len(value) - 1)]) + value
    if not element:
        return b""
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
    protect_errors: int = 0
    feedbacks: int = 0
    feedback_errors: int = 0
    probes_sent: int = 0
    nacks_ignored: int = 0


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
        self._twcc_id: int | None = None
        # transport-wide numbering and the estimate made from the viewer's feedback (video only)
        self.history: SendHistory | None = None
        self.estimator: BandwidthEstimator | None = None
        self._probe: tuple[int, int] | None = None  # first and last number of the probe in flight
        self._probe_arrivals: list[tuple[float, int]] = []
        self._probe_sent_at = 0.0
        self.on_probe_result: Callable[[float], None] | None = None
        self._cname = ""
        # NACK history, one entry per send call: (first seq, first packet index, packets,
        # frame, RTP timestamp); the packets are rebuilt from the shared payloads on a NACK.
        self._history: deque[tuple[int, int, int, PacketizedFrame, int]] = deque()
        self._history_packets = 0
        self._path_cache: _Path | None = None
        self.srtp_profile = ""
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
        mid_id: int | None = None
        for ext in parameters.headerExtensions:
            if ext.uri == MID_EXTENSION_URI and parameters.muxId:
                mid_id = ext.id
            elif ext.uri == TWCC_URI and self.kind == "video" and 0 < ext.id < 15:
                self._twcc_id = ext.id
        self._extension = _extension_block(mid_id=mid_id, mid=parameters.muxId or "", twcc_id=self._twcc_id)
        if self._twcc_id is not None:
            self.history = SendHistory()
            self.estimator = BandwidthEstimator()
        self._transport._register_rtp_sender(self, parameters)
        self._rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self.ready.set()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._transport._unregister_rtp_sender(self)
        task, self._rtcp_task = self._rtcp_task, None
        await cancel_and_wait(task)
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
            estimator = self.estimator
            if estimator is not None and estimator.loss_fraction > CONGESTED_LOSS:
                # The link is losing this much because it is full: resending would only add to
                # the load that is losing packets. The viewer recovers at the next keyframe.
                self.stats.nacks_ignored += 1
                return
            for seq in packet.lost:
                self._retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.stats.keyframe_requests += 1
            if self.on_keyframe_request is not None:
                self.on_keyframe_request()

    # --- the send path -------------------------------------------------------------------

    def _path(self) -> _Path | None:
        """How to reach the viewer right now, or None while not connected.

        Rebuilt only when the DTLS session or the ICE-selected pair changes (an ICE restart),
        so a batch costs a few attribute reads here.
        """
        dtls = self._transport
        if dtls.state != "connected":
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return None
        transport = pair.protocol.transport
        if transport is None:
            return None
        path = self._path_cache
        if (
            path is not None
            and path.session is dtls._tx_srtp
            and path.transport is transport
            and path.addr == pair.remote_addr
        ):
            return path
        path = self._path_cache = _Path(dtls, transport, pair.remote_addr)
        self.srtp_profile = path.profile
        return path

    def write_buffer_size(self) -> int:
        path = self._path()
        return path.transport.get_write_buffer_size() if path else 0

    def send_frame(
        self,
        packetized: PacketizedFrame,
        rtp_timestamp: int,
        media_time: float,
        *,
        start: int = 0,
        max_packets: int | None = None,
    ) -> int:
        """Send a frame's packets from index ``start``, about ``max_packets`` of them (whole GSO
        batches); the last packet of the frame carries the marker bit.

        Returns the index of the next packet to send: ``len(payloads)`` once the frame is out,
        also when the viewer is not connected (the frame is skipped, as a lost one would be).
        """
        payloads = packetized.payloads
        count = len(payloads)
        path = self._path()
        if path is None or not self._started or start >= count:
            return count
        end = count if max_packets is None else min(count, start + max(1, max_packets))
        first_seq = self._seq
        if path.fast is not None:
            wire = packetized.wire(self._extension, path.fast.tag_len)
            batch = wire.starts.get(start)
            if batch is not None:
                done = self._send_wire(path.fast, wire, batch, end, rtp_timestamp)
            else:  # the path turned fast mid-frame: finish this frame the plain way
                done = self._send_plain(path, payloads, start, count, rtp_timestamp)
        else:
            done = self._send_plain(path, payloads, start, end, rtp_timestamp)
        sent = done - start
        # NACK history: one entry per call, not per packet; the payloads are the shared ones.
        self._history.append((first_seq, start, sent, packetized, rtp_timestamp))
        self._history_packets += sent
        while self._history_packets - self._history[0][2] >= NACK_HISTORY:
            self._history_packets -= self._history.popleft()[2]
        stats = self.stats
        stats.packets_sent += sent
        if done >= count:
            # counted per frame, not per slice: summing sizes per packet would cost more than the send
            stats.bytes_sent += packetized.size
            stats.frames_sent += 1
        self._last_rtp_timestamp = rtp_timestamp
        self._last_media_time = media_time
        return done

    def _send_wire(self, fast: _FastPath, wire: WireFrame, batch: int, end: int, rtp_timestamp: int) -> int:
        """The hot path: per batch one copy of the shared layout into scratch, per packet a
        header write and an in-place SRTP protect, per batch one ``sendmsg``."""
        batches = wire.batches
        offsets = wire.offsets
        lengths = wire.lengths
        data = wire.data
        scratch = fast.scratch
        buffer = fast.buffer
        view = fast.view
        lenp = fast.lenp
        ctx = fast.ctx
        protect = _srtp_protect
        writer = fast.writer
        first_byte = 0x90 if self._extension else 0x80
        pt = self._payload_type
        marker_pt = pt | 0x80
        ssrc = self._ssrc
        last = len(offsets) - 1
        seq = self._seq
        done = batches[batch][0]
        history = self.history
        if history is not None:
            pack_twcc = _RTP_HEADER_TWCC.pack_into
            words = len(self._extension) // 4 - 1
            id_byte = self._extension[4]
            now = time.monotonic()
        for lo, hi, byte_lo, byte_hi, segment in batches[batch:]:
            if lo >= end:  # budget spent (the first batch always goes: end > start)
                break
            size = byte_hi - byte_lo
            view[:size] = data[byte_lo:byte_hi]
            failed = 0
            if history is None:
                pack_into = _RTP_HEADER.pack_into
                for p in range(lo, hi):
                    off = offsets[p] - byte_lo
                    pack_into(buffer, off, first_byte, marker_pt if p == last else pt, seq, rtp_timestamp, ssrc)
                    lenp[0] = lengths[p]
                    failed |= protect(ctx, scratch + off, lenp)
                    seq = (seq + 1) & 0xFFFF
            else:
                # One note per batch: its packets share a send time and (but the last) a size.
                tseq = history.note(hi - lo, segment - wire.tag_len, now)
                for p in range(lo, hi):
                    off = offsets[p] - byte_lo
                    pack_twcc(buffer, off, first_byte, marker_pt if p == last else pt, seq, rtp_timestamp, ssrc,
                              0xBEDE, words, id_byte, tseq & 0xFFFF)
                    lenp[0] = lengths[p]
                    failed |= protect(ctx, scratch + off, lenp)
                    seq = (seq + 1) & 0xFFFF
                    tseq += 1
            done = hi
            if failed or lenp[0] != lengths[hi - 1] + wire.tag_len:
                # Never put a packet on the wire that libsrtp did not protect as laid out.
                self.stats.protect_errors += 1
                continue
            writer.send_batch(view[:size], segment, hi - lo)
        self._seq = seq
        return done

    def _send_plain(self, path: _Path, payloads: tuple[bytes, ...], start: int, end: int, rtp_timestamp: int) -> int:
        """One packet at a time through aioice's transport: TURN relays and other odd paths."""
        first_byte = 0x90 if self._extension else 0x80
        pt = self._payload_type
        ssrc = self._ssrc
        ext = self._extension
        last = len(payloads) - 1
        pack = _RTP_HEADER.pack
        protect = path.session.protect
        sendto = path.transport.sendto
        addr = path.addr
        seq = self._seq
        for p in range(start, end):
            header = pack(first_byte, pt | 0x80 if p == last else pt, seq, rtp_timestamp, ssrc)
            sendto(protect(header + self._numbered(ext, len(payloads[p])) + payloads[p]), addr)
            seq = (seq + 1) & 0xFFFF
        self._seq = seq
        return end

    def _numbered(self, ext: bytes, payload_len: int, *, probe: bool = False) -> bytes:
        """The extension block with the next transport-wide number in it (one packet's worth)."""
        history = self.history
        if history is None:
            return ext
        tseq = history.note(1, 12 + len(ext) + payload_len, time.monotonic(), probe)
        return ext[:5] + struct.pack("!H", tseq & 0xFFFF) + ext[7:]

    def restart(self) -> None:
        """Start afresh after an outage: forget every packet sent so far (NACKs and probes never
        resend them: what the viewer lost before the pause is stale) and move the sequence
        number far past them, so the receiver gives up on that gap at once instead of holding
        the new keyframe behind it waiting for repairs that never come."""
        self._history.clear()
        self._history_packets = 0
        self._seq = (self._seq + RESTART_SEQ_SKIP) & 0xFFFF

    def _lookup(self, seq: int) -> tuple[PacketizedFrame, int, int] | None:
        """(frame, packet index, RTP timestamp) of a sequence number still in the history."""
        for first_seq, start, count, packetized, rtp_timestamp in reversed(self._history):
            delta = (seq - first_seq) & 0xFFFF
            if delta < count:
                return packetized, start + delta, rtp_timestamp
        return None

    def _retransmit(self, seq: int, *, probe: bool = False) -> None:
        found = self._lookup(seq)
        path = self._path()
        if found is None or path is None:
            return
        packetized, index, rtp_timestamp = found
        payloads = packetized.payloads
        marker = 0x80 if index == len(payloads) - 1 else 0
        first_byte = 0x90 if self._extension else 0x80
        if self._rtx_payload_type is not None:
            # RFC 4588: same header on the RTX SSRC, original sequence number before the payload.
            header = _RTP_HEADER.pack(
                first_byte, marker | self._rtx_payload_type, self._rtx_seq, rtp_timestamp, self._rtx_ssrc
            )
            ext = self._numbered(self._extension, 2 + len(payloads[index]), probe=probe)
            packet = header + ext + struct.pack("!H", seq) + payloads[index]
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        else:
            header = _RTP_HEADER.pack(first_byte, marker | self._payload_type, seq, rtp_timestamp, self._ssrc)
            packet = header + self._numbered(self._extension, len(payloads[index]), probe=probe) + payloads[index]
        path.transport.sendto(path.session.protect(packet), path.addr)
        if not probe:
            self.stats.retransmits += 1

    # --- congestion control ------------------------------------------------------------

    def handle_transport_feedback(self, fci: bytes) -> None:
        """One transport-cc feedback from the viewer (from the sender SSRC on): feed the estimate.

        Called once per feedback packet (about every 50-100 ms), never per media packet.
        """
        history, estimator = self.history, self.estimator
        if history is None or estimator is None:
            return
        try:
            feedback = parse_feedback(fci[8:])
        except ValueError:
            self.stats.feedback_errors += 1
            return
        self.stats.feedbacks += 1
        first = history.unwrap(feedback.base)
        count = feedback.count
        if not count:
            return
        # All of it at once: which packets these were (send time, size) from the history arrays;
        # never a Python object per packet.
        sent, sizes = history.window(first, count)
        arrival = feedback.arrival_us / 1e6
        received = feedback.received
        lost = feedback.lost
        now = time.monotonic()
        if lost == 0 and sizes.min() > 0:  # the usual case: all arrived, all media, all known
            estimator.on_feedback(sent, arrival, sizes, 0, now)
        else:
            probe = self._probe
            got = sizes[received]
            if probe is not None:
                probes = got < 0
                if probes.any():
                    self._probe_arrivals.extend(zip(arrival[probes].tolist(), (-got[probes]).tolist(), strict=True))
            media = got > 0
            # lost media packets: those neither probes nor unknown
            lost = int(np.count_nonzero(sizes > 0)) - int(np.count_nonzero(media))
            estimator.on_feedback(sent[received][media], arrival[media], got[media], lost, now)
        probe = self._probe
        probe_arrivals = self._probe_arrivals
        seq = first + count
        if probe is not None and seq > probe[1]:
            # the feedback has reached past the cluster's last packet: every arrival is known
            self._probe = None
            self._probe_arrivals = []
            bps = _probe_rate(probe_arrivals)
            if probe_arrivals:
                earliest = min(a for a, _ in probe_arrivals)
                logger.info("probe: %d of %d packets, %.0f kbit/s, arrivals (ms) %s", len(probe_arrivals),
                            probe[1] - probe[0] + 1, bps / 1000,
                            [round((a - earliest) * 1000, 1) for a, _ in sorted(probe_arrivals)][::10])
            if bps:
                estimator.probe_result(bps, now)
                if self.on_probe_result is not None:
                    self.on_probe_result(bps)

    def send_probe(self, packets: int = PROBE_PACKETS) -> bool:
        """A cluster of redundant packets (RTX copies of the latest ones) back to back, so the
        viewer's feedback shows what its link can carry above the media. False if not possible."""
        if self._probe is not None and time.monotonic() - self._probe_sent_at > 1.0:
            self._probe = None  # its feedback never came (lost with the cluster): try again
        if self.history is None or self._rtx_payload_type is None or self._probe is not None:
            return False
        if self._path() is None or not self._history:
            return False
        first = self.history.next_seq
        sent = 0
        latest = self._seq
        for back in range(1, NACK_HISTORY):
            if sent >= packets:
                break
            seq = (latest - back) & 0xFFFF
            found = self._lookup(seq)
            if found is None:
                break
            if len(found[0].payloads[found[1]]) < 600:
                continue  # small packets would make the cluster long in packets, short in bytes
            self._retransmit(seq, probe=True)
            sent += 1
        if sent < packets // 2:
            return False
        self._probe = (first, self.history.next_seq - 1)
        self._probe_sent_at = time.monotonic()
        self._probe_arrivals = []
        self.stats.probes_sent += 1
        return True

    def _send_rtcp(self, packets: list[Any]) -> None:
        path = self._path()
        if path is None:
            return
        path.transport.sendto(path.session.protect_rtcp(b"".join(bytes(p) for p in packets)), path.addr)

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


def _probe_rate(arrivals: list[tuple[float, int]]) -> float:
    """The rate a probe cluster arrived at, from its later part only: the first packets may pass
    a link's token bucket at once and would read as a much faster link than it is."""
    if len(arrivals) < 20:
        return 0.0
    arrivals = sorted(arrivals)
    k = int(len(arrivals) * 0.55)
    span = arrivals[-1][0] - arrivals[k][0]
    if span <= 0.002:
        span = 0.002  # faster than the receiver's clock resolution shows
    return sum(size for _, size in arrivals[k + 1 :]) * 8 / span


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
    ``slice_packets``: packets sent before yielding to the event loop. An idle feed sends a
    frame this small at once, inside ``offer`` (a task switch costs more than a P-frame's
    packets); bigger frames (keyframes, the cached GOP at join) leave from the task in slices,
    so feeds take turns and one viewer's burst never holds up the others or the receive path.
    """

    sender: RtpStreamSender
    rtp_origin: int
    gated: bool = True
    capacity: int = 120
    on_need_keyframe: Callable[[], None] | None = None
    # a viewer whose socket has this much unsent data is treated as stalled
    max_write_buffer: int = 2 * 1024 * 1024
    slice_packets: int = PACKETS_PER_SLICE
    # Pacing: bytes leave at most at this rate (None: as fast as the event loop sends them). The
    # hub sets it from the viewer's estimate, so keyframes and the join burst are spread over
    # tens of ms instead of overflowing a shallow link's buffer; GSO batches stay whole.
    pace_bps: float | None = None
    stats: FeedStats = field(default_factory=FeedStats)
    _tokens: float = PACE_BUCKET_BYTES
    _token_time: float = 0.0
    _queue: deque[PacketizedFrame] = field(default_factory=deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting_for_keyframe: bool = True
    _paused: bool = False
    # the task holds a frame it has partly sent: nothing may overtake it
    _busy: bool = False
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @property
    def waiting_for_keyframe(self) -> bool:
        return self.gated and self._waiting_for_keyframe

    @property
    def paused(self) -> bool:
        return self._paused

    def offer(self, packetized: PacketizedFrame) -> None:
        """Queue (or send at once) a frame without ever blocking the caller (the hub, serving everyone)."""
        self.stats.frames_offered += 1
        if self.gated and self._waiting_for_keyframe:
            if not packetized.keyframe:
                self.stats.frames_dropped += 1
                return
            self._waiting_for_keyframe = False
        queue = self._queue
        if len(queue) >= self.capacity:
            # Overflow: whatever is queued is already late. Drop it all and restart at the next
            # keyframe, so the viewer never decodes a picture built on a frame it did not get.
            self.stats.overflows += 1
            self.stats.frames_dropped += len(queue) + 1
            queue.clear()
            if self.gated:
                self._waiting_for_keyframe = True
                if self.on_need_keyframe is not None:
                    self.on_need_keyframe()
                return
        if (
            not queue
            and not self._busy
            and not self._paused
            and self._task is not None
            and self.sender.ready.is_set()
            and len(packetized.payloads) <= self.slice_packets
            and self.sender.write_buffer_size() <= self.max_write_buffer
            and self._take_tokens(packetized.size)
        ):
            self._send_whole(packetized)
            return
        queue.append(packetized)
        self._wakeup.set()

    def offer_many(self, frames: list[PacketizedFrame]) -> None:
        for packetized in frames:
            self.offer(packetized)

    def pause(self) -> None:
        """Stop draining (ICE disconnected, or a test standing in for a stuck viewer).

        Frames keep being queued; past ``capacity`` the queue is dropped as on any overflow.
        """
        self._paused = True

    def resume(self, *, fresh: bool = False) -> None:
        """Drain again. ``fresh``: drop what queued up meanwhile and, for video, restart on the
        next keyframe (the viewer missed frames that cannot be repaired; a stale burst would
        only add lag). The caller decides how to get that keyframe (cached GOP or a request).
        """
        if fresh:
            if self._queue:
                self.stats.frames_dropped += len(self._queue)
                self._queue.clear()
            if self.gated:
                self._waiting_for_keyframe = True
        self._paused = False
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _refill(self) -> float:
        """Tokens (bytes) available now under ``pace_bps``; unlimited without pacing."""
        rate = self.pace_bps
        if rate is None:
            return float("inf")
        now = time.monotonic()
        self._tokens = min(PACE_BUCKET_BYTES, self._tokens + (now - self._token_time) * rate / 8)
        self._token_time = now
        return self._tokens

    def _take_tokens(self, size: int) -> bool:
        if self._refill() < size:
            return False
        if self.pace_bps is not None:
            self._tokens -= size
        return True

    def _send_whole(self, packetized: PacketizedFrame) -> None:
        frame = packetized.frame
        self.sender.send_frame(packetized, (self.rtp_origin + frame.pts) & 0xFFFFFFFF, frame.ingest_time)
        self._note_lag(frame)

    def _note_lag(self, frame: EncodedFrame) -> None:
        lag = time.time() - frame.ingest_time
        stats = self.stats
        stats.lag_last = lag
        stats.lag_avg = lag if stats.lag_avg == 0 else 0.95 * stats.lag_avg + 0.05 * lag
        if lag > stats.lag_max:
            stats.lag_max = lag

    async def _run(self) -> None:
        await self.sender.ready.wait()
        sender = self.sender
        queue = self._queue
        budget = self.slice_packets  # packets left in this turn on the event loop
        while True:
            if self._paused or not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                budget = self.slice_packets
                continue
            if sender.write_buffer_size() > self.max_write_buffer:
                await asyncio.sleep(0.005)
                budget = self.slice_packets
                continue
            packetized = queue.popleft()
            frame = packetized.frame
            count = len(packetized.payloads)
            per_packet = packetized.size / count if count else 0.0
            rtp_timestamp = (self.rtp_origin + frame.pts) & 0xFFFFFFFF
            self._busy = True
            try:
                start = 0
                while True:
                    allowed = budget
                    if self.pace_bps is not None and per_packet:
                        tokens = self._refill()
                        if tokens < min(PACE_BUCKET_BYTES, (count - start) * per_packet):
                            # Wait for the bucket to hold the rest of the frame or a full GSO batch.
                            need = min(PACE_BUCKET_BYTES, (count - start) * per_packet) - tokens
                            await asyncio.sleep(max(0.001, need * 8 / self.pace_bps))
                            budget = self.slice_packets
                            continue
                        allowed = min(budget, max(1, int(tokens / per_packet)))
                    sent_to = sender.send_frame(
                        packetized, rtp_timestamp, frame.ingest_time, start=start, max_packets=max(1, allowed)
                    )
                    budget -= sent_to - start
                    if self.pace_bps is not None:
                        self._tokens -= (sent_to - start) * per_packet
                    start = sent_to
                    if start >= count:
                        break
                    # A big frame leaves in slices: other feeds and the receive path run between.
                    await asyncio.sleep(0)
                    budget = self.slice_packets
            finally:
                self._busy = False
            self._note_lag(frame)
            if budget <= 0:
                # Several small queued frames (the cached GOP at join) share one turn.
                await asyncio.sleep(0)
                budget = self.slice_packets
