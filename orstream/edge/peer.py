"""WebRTC peers as the edge needs them: aiortc for ICE, DTLS and SDP; the edge's own RTP paths.

The hub calls ``EdgePeerConnection`` for publishers and viewers. Its transceivers carry the
edge's pass-through receiver (receive.py, never decodes) and its packetize-once sender (send.py,
never encodes) instead of aiortc's decoding receiver and encoding sender. The swap happens per
peer connection, so any other aiortc user in the same process keeps stock behaviour.

SDP helpers here choose the H.264 payload type that matches what the source really sends (its
profile-level-id, read from the SPS) rather than aiortc's fixed Constrained Baseline 3.1, and
accept a publisher's simulcast (``a=simulcast``/``a=rid``, which aiortc ignores): the answer
says which encodings the edge takes and keeps the rtp-stream-id header extensions that name them
in each packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters

from .guard import InputDrops, guard_dtls_transport, guard_stun_protocol
from .receive import PassthroughReceiver
from .send import RtpStreamSender
from .tasks import cancel_and_wait
from .twcc import TWCC_URI, ArrivalLog, split_feedback

logger = logging.getLogger(__name__)

# Large enough for a 4K keyframe burst (~1,100 packets, up to 1.5 MB): the kernel default and
# aioice's 256 KiB lose a tenth of the packets of a 26 Mbit/s stream.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

# What aiortc's own H.264 codec entries say; a payload type rewritten to this matches them.
AIORTC_H264_PROFILE = "42e01f"
# Level 5.2: the most a publisher may send us (4K60), announced in the publisher's answer.
MAX_RECEIVE_LEVEL = "34"
# The header extensions that name a simulcast packet's encoding, and its retransmission's.
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
# Simulcast encodings taken from a publisher: its full picture and one lower layer.
SIMULCAST_LAYERS = 2


class SdpError(ValueError):
    """An offer the edge cannot answer; the message says why, for the caller's 4xx."""


# --- SDP munging --------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _payload_type(text: str, where: str) -> int:
    """An RTP payload type (0-127) from an SDP attribute, or SdpError naming the line."""
    if not _is_number(text) or int(text) > 127:
        raise SdpError(f"{where} has payload type {text[:12]!r}: payload types are numbers from 0 to 127")
    return int(text)


@dataclass
class _Section:
    lines: list[str]

    @property
    def kind(self) -> str:
        return self.lines[0][2:].split(" ", 1)[0]

    def payload_types(self) -> list[int]:
        parts = self.lines[0].split(" ")
        return [int(p) for p in parts[3:] if _is_number(p)]

    def rtpmap(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in self.lines:
            if line.startswith("a=rtpmap:"):
                pt, _, rest = line[len("a=rtpmap:") :].partition(" ")
                out[_payload_type(pt, "a=rtpmap")] = rest.split("/")[0].lower()
        return out

    def fmtp(self) -> dict[int, dict[str, str]]:
        out: dict[int, dict[str, str]] = {}
        for line in self.lines:
            if line.startswith("a=fmtp:"):
                pt, _, rest = line[len("a=fmtp:") :].partition(" ")
                params: dict[str, str] = {}
                for item in rest.split(";"):
                    key, _, value = item.strip().partition("=")
                    if key:
                        params[key.lower()] = value
                out[_payload_type(pt, "a=fmtp")] = params
        return out

    def keep_only(self, keep: set[int]) -> None:
        head = self.lines[0].split(" ")
        self.lines[0] = " ".join(head[:3] + [p for p in head[3:] if not _is_number(p) or int(p) in keep])
        kept = [self.lines[0]]
        for line in self.lines[1:]:
            for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
                if line.startswith(prefix):
                    pt = line[len(prefix) :].split(" ", 1)[0]
                    if _is_number(pt) and int(pt) not in keep:
                        break
            else:
                kept.append(line)
        self.lines = kept

    def set_fmtp(self, pt: int, params: dict[str, str]) -> None:
        text = f"a=fmtp:{pt} " + ";".join(f"{k}={v}" for k, v in params.items())
        for i, line in enumerate(self.lines):
            if line.startswith(f"a=fmtp:{pt} "):
                self.lines[i] = text
                return
        self.lines.append(text)


def _split(sdp: str) -> tuple[list[str], list[_Section]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session: list[str] = []
    sections: list[_Section] = []
    for line in lines:
        if line.startswith("m="):
            sections.append(_Section([line]))
        elif sections:
            sections[-1].lines.append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[_Section]) -> str:
    lines = session + [line for s in sections for line in s.lines]
    return "\r\n".join(lines) + "\r\n"


def _profile_rank(profile_level_id: str) -> int:
    """Higher is a superset for decoding: High 4:4:4 Predictive (244) > High 4:2:2 (122) >
    High 10 (110) > High (100) > Main (77) > Baseline/Constrained (66).

    Chromium's WebRTC offers no plain High profile, only High 4:4:4 Predictive (f4001f), whose
    decoders must also decode High (H.264 A.2.11): that is how a 4K High-profile feed reaches it.
    """
    try:
        profile_idc = int(profile_level_id[:2], 16)
    except ValueError:
        return -1
    return {66: 1, 77: 2, 100: 3, 110: 4, 122: 5, 244: 6}.get(profile_idc, 0)


def _h264_candidates(section: _Section) -> list[tuple[int, str]]:
    names = section.rtpmap()
    params = section.fmtp()
    out = []
    for pt in section.payload_types():
        if names.get(pt) != "h264":
            continue
        p = params.get(pt, {})
        if p.get("packetization-mode", "0") != "1":
            continue  # FU-A is needed for any frame larger than one packet
        out.append((pt, p.get("profile-level-id", "42e01f").lower()))
    return out


def _rtx_for(section: _Section, pt: int) -> set[int]:
    names = section.rtpmap()
    return {rtx for rtx, p in section.fmtp().items() if names.get(rtx) == "rtx" and p.get("apt") == str(pt)}


@dataclass(frozen=True)
class VideoChoice:
    """The H.264 payload type chosen in an offer and the profile-level-id the answer must carry."""

    payload_type: int
    answer_profile_level_id: str


def _choose_video(
    offer_sdp: str, who: str, pick: Callable[[list[tuple[int, str]]], tuple[int, str]]
) -> tuple[str, VideoChoice | None]:
    """Keep, in the one video section of an offer, the H.264 payload type ``pick`` chooses from
    the candidates (payload type, profile-level-id); ``pick`` also says what the answer states.

    Returns the offer rewritten for aiortc (that payload type labelled with aiortc's profile so
    its negotiation accepts it) and the choice, or no choice when the offer has no video.
    """
    session, sections = _split(offer_sdp)
    choice: VideoChoice | None = None
    for section in sections:
        if section.kind != "video":
            continue
        if choice is not None:
            raise SdpError("only one video section is supported")
        candidates = _h264_candidates(section)
        if not candidates:
            raise SdpError(f"the {who}'s offer has no H.264 with packetization-mode=1")
        pt, answer = pick(candidates)
        section.keep_only({pt} | _rtx_for(section, pt))
        fmtp = section.fmtp().get(pt, {})
        fmtp["profile-level-id"] = AIORTC_H264_PROFILE
        section.set_fmtp(pt, fmtp)
        choice = VideoChoice(payload_type=pt, answer_profile_level_id=answer)
    return _join(session, sections), choice


def choose_viewer_video(offer_sdp: str, source_profile_level_id: str) -> tuple[str, VideoChoice | None]:
    """Keep, in a viewer's offer, the one H.264 payload type able to decode the source."""
    source_rank = _profile_rank(source_profile_level_id)

    def pick(candidates: list[tuple[int, str]]) -> tuple[int, str]:
        exact = [c for c in candidates if c[1][:4] == source_profile_level_id[:4]]
        able = sorted(
            (c for c in candidates if _profile_rank(c[1]) >= source_rank), key=lambda c: _profile_rank(c[1])
        )
        if not (exact or able):
            raise SdpError(f"the viewer cannot decode H.264 profile-level-id {source_profile_level_id}")
        pt, offered = (exact or able)[0]
        # Same profile: the answer states the source exactly. A superset profile (Chromium's
        # High 4:4:4 for a High source): the answer keeps the payload type's profile, as RFC 6184
        # requires, with the source's true level; the stream is the source's, which it decodes.
        same = offered[:2] == source_profile_level_id[:2]
        return pt, source_profile_level_id if same else offered[:4] + source_profile_level_id[4:]

    return _choose_video(offer_sdp, "viewer", pick)


def choose_publisher_video(offer_sdp: str) -> tuple[str, VideoChoice | None]:
    """Pick the richest H.264 profile a publisher offers; the answer lets it send up to level 5.2."""

    def pick(candidates: list[tuple[int, str]]) -> tuple[int, str]:
        pt, profile = max(candidates, key=lambda c: _profile_rank(c[1]))
        return pt, profile[:4] + MAX_RECEIVE_LEVEL

    return _choose_video(offer_sdp, "publisher", pick)


def restore_answer_profile(answer_sdp: str, choice: VideoChoice | None) -> str:
    """Put the true profile-level-id back on the chosen payload type in the edge's answer."""
    if choice is None:
        return answer_sdp
    session, sections = _split(answer_sdp)
    for section in sections:
        if section.kind == "video" and choice.payload_type in section.payload_types():
            fmtp = section.fmtp().get(choice.payload_type, {})
            fmtp["level-asymmetry-allowed"] = "1"
            fmtp["packetization-mode"] = "1"
            fmtp["profile-level-id"] = choice.answer_profile_level_id
            section.set_fmtp(choice.payload_type, fmtp)
    return _join(session, sections)


def offered_simulcast(offer_sdp: str) -> list[str]:
    """The rids of the encodings a publisher's video offers to send as simulcast, the full
    picture first as the offer lists it (the OR console: "f", then "h"), at most
    SIMULCAST_LAYERS of them; empty when it offers one stream (or a single encoding)."""
    for section in _split(offer_sdp)[1]:
        if section.kind != "video":
            continue
        offered = {line[len("a=rid:") :].split(" ")[0]: line.split(" ")[1:2] for line in section.lines
                   if line.startswith("a=rid:")}
        sending = {rid for rid, direction in offered.items() if direction == ["send"]}
        header = next((line for line in section.lines if line.startswith("a=simulcast:")), "")
        parts = header[len("a=simulcast:") :].split()
        if len(parts) < 2 or parts[0] != "send":
            return []
        if not any(line.startswith("a=extmap:") and RID_URI in line for line in section.lines):
            return []  # no way to tell the encodings' packets apart
        rids = []
        for stream in parts[1].split(";"):
            rid = stream.split(",")[0]
            if rid and not rid.startswith("~") and rid in sending:
                rids.append(rid)
        return rids[:SIMULCAST_LAYERS] if len(rids) >= 2 else []
    return []


def accept_simulcast(answer_sdp: str, rids: list[str]) -> str:
    """The edge's answer, taking the publisher's simulcast encodings ``rids``."""
    if not rids:
        return answer_sdp
    session, sections = _split(answer_sdp)
    for section in sections:
        if section.kind != "video":
            continue
        section.lines = [line for line in section.lines if not line.startswith(("a=rid:", "a=simulcast:"))]
        section.lines += [f"a=rid:{rid} recv" for rid in rids] + [f"a=simulcast:recv {';'.join(rids)}"]
        break
    return _join(session, sections)


def offer_media_kinds(offer_sdp: str) -> list[str]:
    return [s.kind for s in _split(offer_sdp)[1]]


# --- peer connection -----------------------------------------------------------------------


class EdgePeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose transceivers use the edge's own RTP sender and receiver.

    It also tells when the remote has gone quiet (``watch_presence``): aiortc 1.16 has no
    "disconnected" ICE state (aioice only gives up, "failed", after ~30 s of unanswered consent
    checks), yet a viewer whose Wi-Fi dropped should not be sent 4K for 30 s into the void.
    """

    def __init__(
        self,
        *,
        ice_loopback: bool = True,
        configuration: RTCConfiguration | None = None,
        drops: InputDrops | None = None,
    ) -> None:
        # No STUN by default: aiortc would otherwise contact a public server the edge may not reach.
        # max-bundle: with "balanced", aiortc leaves a second audio m-line (talkback) on a transport
        # it then closes; one transport for everything is what browsers do anyway.
        super().__init__(
            configuration or RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.ice_loopback = ice_loopback
        # Malformed datagrams and packets from this peer's sockets are dropped and counted here
        # (guard.py); the hub shares one for the whole edge.
        self.drops = drops or InputDrops()
        # "connected" / "disconnected" as far as hearing from the remote goes (see watch_presence)
        self.presence = "new"
        self._last_heard = 0.0
        self._presence_task: asyncio.Task[None] | None = None
        self._watched: list[Any] = []  # aioice connections whose incoming traffic we note

    # aiortc creates every transceiver in this (name-mangled) method; overriding it here swaps
    # in the edge's sender and receiver for this connection only.
    def _RTCPeerConnection__createTransceiver(  # noqa: N802
        self, direction: str, kind: str, sender_track: MediaStreamTrack | None = None
    ) -> RTCRtpTransceiver:
        create = super()._RTCPeerConnection__createTransceiver  # type: ignore[misc]
        transceiver: RTCRtpTransceiver = create(direction=direction, kind=kind, sender_track=sender_track)
        stock_sender = transceiver.sender
        dtls = transceiver.receiver.transport
        guard_dtls_transport(dtls, self.drops)
        sender = RtpStreamSender(kind=kind, transport=dtls)
        sender._stream_id = stock_sender._stream_id
        receiver = PassthroughReceiver(kind=kind, transport=dtls)
        receiver._set_rtcp_ssrc(sender._ssrc)
        transceiver._RTCRtpTransceiver__sender = sender  # type: ignore[attr-defined]
        transceiver._RTCRtpTransceiver__receiver = receiver  # type: ignore[attr-defined]
        return transceiver

    async def answer(
        self, offer_sdp: str, *, directions: list[str], transport_cc: bool = False, transport_feedback: bool = False,
        simulcast: list[str] | None = None,
    ) -> str:
        """Apply an offer, set each transceiver's direction (in m-line order), return the answer.

        ``transport_cc``: where the offer allows it, number the video this peer is sent with
        transport-wide sequence numbers and take the peer's transport-cc feedback (a viewer).
        ``transport_feedback``: where the offer allows it, let the peer number the video it
        sends and send it transport-cc feedback (a publisher: its congestion control ramps up
        on it).
        ``simulcast``: the rids of the publisher's encodings to take (``offered_simulcast``):
        the answer accepts them and the receiver is told which encoding each packet is.
        """
        from aiortc import RTCSessionDescription

        try:
            await self.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except SdpError:
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError... on bad SDP
            raise SdpError(f"cannot apply the offer: {exc}") from None
        try:
            self._keep_offered_payload_types()
            if transport_cc or transport_feedback:
                self._accept_transport_cc(sending=transport_cc)
            if simulcast:
                self._accept_rids()
            transceivers = self.getTransceivers()
            for transceiver, direction in zip(transceivers, directions, strict=False):
                transceiver.direction = direction
            answer = await self.createAnswer()
        except Exception as exc:  # an offer aiortc applied but cannot answer (a direction it lacks...)
            raise SdpError(f"cannot answer the offer: {exc}") from None
        await self._prepare_ice()
        try:
            await self.setLocalDescription(answer)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # the answer mirrors a malformed offer
            raise SdpError(f"cannot answer the offer: {exc}") from None
        if simulcast:
            for transceiver in self.getTransceivers():
                if transceiver.kind == "video" and isinstance(transceiver.receiver, PassthroughReceiver):
                    transceiver.receiver.simulcast(simulcast)
                    break
            return accept_simulcast(self.localDescription.sdp, simulcast)
        return self.localDescription.sdp

    def _accept_rids(self) -> None:
        """Answer the offer's rtp-stream-id extensions on video, so each packet says its encoding."""
        remote = self._RTCPeerConnection__remoteDescription()  # type: ignore[attr-defined]
        for transceiver in self.getTransceivers():
            if transceiver.kind != "video":
                continue
            media = remote.media[transceiver._get_mline_index()]
            for uri in (RID_URI, REPAIRED_RID_URI):
                offered = next((x for x in media.rtp.headerExtensions if x.uri == uri), None)
                if offered is not None and not any(x.uri == uri for x in transceiver._headerExtensions):
                    transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=offered.id, uri=uri))

    def _keep_offered_payload_types(self) -> None:
        """Answer with the payload types the peer offered.

        aiortc keeps an offered payload type only when it lies in 96-127 and otherwise answers
        with its own number, which the peer never offered: Chromium offers H.264 High 4:4:4 at 41,
        so its packets would match no codec and no picture would ever decode.
        """
        remote = self._RTCPeerConnection__remoteDescription()  # type: ignore[attr-defined]
        for transceiver in self.getTransceivers():
            offered = remote.media[transceiver._get_mline_index()].rtp.codecs
            kept: list[RTCRtpCodecParameters] = []
            for codec in transceiver._codecs:
                if is_rtx(codec):
                    continue  # re-added below, pointing at the payload types kept
                if not any(o.payloadType == codec.payloadType and o.mimeType.lower() == codec.mimeType.lower() for o in offered):
                    match = next((o for o in offered if not is_rtx(o) and is_codec_compatible(codec, o)), None)
                    if match is not None:
                        codec = dataclasses.replace(codec, payloadType=match.payloadType)
                kept.append(codec)
            types = {c.payloadType for c in kept}
            kept += [copy.deepcopy(o) for o in offered if is_rtx(o) and o.parameters.get("apt") in types]
            transceiver._codecs = kept

    def _accept_transport_cc(self, *, sending: bool) -> None:
        """Answer the offer's transport-wide-cc extension and feedback on video. ``sending``:
        route the peer's transport-cc feedback (which aiortc cannot parse) to the edge's video
        sender; otherwise log the arrivals of the peer's packets for the feedback the edge's
        receivers send."""
        remote = self._RTCPeerConnection__remoteDescription()  # type: ignore[attr-defined]
        for transceiver in self.getTransceivers():
            if transceiver.kind != "video":
                continue
            media = remote.media[transceiver._get_mline_index()]
            offered = next((x for x in media.rtp.headerExtensions if x.uri == TWCC_URI), None)
            if offered is None:
                continue
            if not any(x.uri == TWCC_URI for x in transceiver._headerExtensions):
                transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=offered.id, uri=TWCC_URI))
            for codec in transceiver._codecs:
                match = next((o for o in media.rtp.codecs if o.payloadType == codec.payloadType), None)
                feedback = RTCRtcpFeedback(type="transport-cc")
                if match is not None and feedback in match.rtcpFeedback and feedback not in codec.rtcpFeedback:
                    codec.rtcpFeedback.append(feedback)
            if sending:
                self._route_transport_feedback(transceiver)
            else:
                self._log_arrivals(transceiver)

    def _log_arrivals(self, transceiver: RTCRtpTransceiver) -> None:
        """One arrival log per transport (transport-wide numbers span its m-lines), shared by
        every edge receiver on it."""
        dtls: Any = transceiver.receiver.transport
        log = getattr(dtls, "_orstream_arrivals", None)
        if log is None:
            log = dtls._orstream_arrivals = ArrivalLog()
        for other in self.getTransceivers():
            receiver = other.receiver
            if isinstance(receiver, PassthroughReceiver) and receiver.transport is dtls:
                receiver.arrivals = log

    def _route_transport_feedback(self, transceiver: RTCRtpTransceiver) -> None:
        dtls: Any = transceiver.receiver.transport
        sender = transceiver.sender
        if not isinstance(sender, RtpStreamSender):
            return
        if getattr(dtls, "_orstream_twcc", None) is not None:
            return
        inner = dtls._handle_rtcp_data
        dtls._orstream_twcc = sender

        async def handle_rtcp_data(data: bytes) -> None:
            feedback, rest = split_feedback(data)
            for fci in feedback:
                sender.handle_transport_feedback(fci)
            if rest:
                await inner(rest)

        dtls._handle_rtcp_data = handle_rtcp_data

    def watch_presence(self, *, silence: float, on_change: Callable[[str], None]) -> None:
        """Call ``on_change("disconnected")`` when the remote has not been heard for ``silence``
        seconds after ICE completed, and ``on_change("connected")`` when it is heard again.

        Heard: any datagram but a STUN response (RTCP reports, media, DTLS), the remote's own
        consent checks, and answers to probes: once the remote has been quiet for a third of
        ``silence`` the edge sends it a STUN binding request of its own (as browsers do on a
        quiet pair), so a peer that sends no RTCP at all is still known to be there. Call after
        ``answer``.
        """
        for transceiver in self.getTransceivers():
            connection: Any = transceiver.receiver.transport.transport._connection
            if connection in self._watched:
                continue  # one transport under max-bundle: hook it once
            self._watched.append(connection)
            data_received = connection.data_received
            request_received = connection.request_received

            def on_data(data: bytes, component: int, _inner: Any = data_received) -> None:
                self._last_heard = time.monotonic()
                _inner(data, component)

            def on_request(*args: Any, _inner: Any = request_received) -> None:
                self._last_heard = time.monotonic()
                _inner(*args)

            connection.data_received = on_data
            connection.request_received = on_request
        if self._presence_task is None:
            self._presence_task = asyncio.ensure_future(self._run_presence(silence, on_change))

    async def _run_presence(self, silence: float, on_change: Callable[[str], None]) -> None:
        tick = min(0.25, silence / 4)
        probe: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(tick)
                if self.iceConnectionState != "completed":
                    continue  # not up yet, or failed/closed: aiortc's own states take over
                now = time.monotonic()
                if self.presence == "new":
                    self.presence = "connected"
                    self._last_heard = max(self._last_heard, now)
                quiet_for = now - self._last_heard
                if quiet_for > silence / 3 and (probe is None or probe.done()):
                    probe = asyncio.ensure_future(self._probe(timeout=silence / 3))
                quiet = quiet_for > silence
                if quiet == (self.presence == "disconnected"):
                    continue
                self.presence = "disconnected" if quiet else "connected"
                try:
                    on_change(self.presence)
                except Exception:  # the watch must outlive a failing listener
                    logger.exception("presence listener failed")
        finally:
            if probe is not None:
                probe.cancel()

    async def _probe(self, timeout: float) -> None:
        """One STUN binding request on each nominated pair; an answer counts as hearing the remote."""
        for connection in self._watched:
            pair = connection._nominated.get(1)
            if pair is None or connection.remote_password is None:
                continue
            request = connection.build_request(pair, nominate=False)
            try:
                await asyncio.wait_for(
                    pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=connection.remote_password.encode("utf8"),
                        retransmissions=0,
                    ),
                    timeout=timeout,
                )
            except (TimeoutError, Exception):  # no answer: the silence goes on
                continue
            self._last_heard = time.monotonic()

    async def close(self) -> None:
        task, self._presence_task = self._presence_task, None
        await cancel_and_wait(task)
        try:
            await super().close()
        except Exception as exc:
            # aiortc's close assumes every transceiver got a transport; after an offer it could
            # not answer (a BUNDLE naming a missing mid...) some have none. Close what exists.
            logger.debug("closing a half-negotiated peer: %s", exc)
            for transceiver in self.getTransceivers():
                dtls: Any = transceiver.receiver.transport
                for part in (transceiver.sender, transceiver.receiver, dtls, getattr(dtls, "transport", None)):
                    if part is not None:
                        with contextlib.suppress(Exception):
                            await part.stop()

    async def _RTCPeerConnection__connect(self) -> None:  # noqa: N802 (aiortc's mangled name)
        """aiortc's own connect task, which nothing awaits: a peer closed while it starts (replaced
        by the next offer a moment after its answer) must end it quietly, not as a traceback."""
        try:
            await super()._RTCPeerConnection__connect()  # type: ignore[misc]
        except Exception as exc:
            if self.connectionState != "closed":
                raise
            logger.debug("peer closed while connecting: %s", exc)

    async def _prepare_ice(self) -> None:
        """Gather host candidates ourselves: loopback included when asked, big socket buffers.

        aioice leaves 127.0.0.1 out and sizes receive buffers at 256 KiB. Gathering here, before
        aiortc does, marks the gathering as done so aiortc's own call is a no-op.
        """
        for transceiver in self.getTransceivers():
            gatherer = transceiver.receiver.transport.transport.iceGatherer
            connection: Any = gatherer._connection
            if connection._local_candidates_start:
                continue
            addresses = aioice.ice.get_host_addresses(use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6)
            if self.ice_loopback and "127.0.0.1" not in addresses:
                addresses.append("127.0.0.1")
            connection._local_candidates_start = True
            for component in connection._components:
                connection._local_candidates += await connection.get_component_candidates(
                    component=component, addresses=addresses
                )
            connection._local_candidates_end = True
            for protocol in connection._protocols:
                guard_stun_protocol(protocol, connection, self.drops)
                sock = protocol.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
