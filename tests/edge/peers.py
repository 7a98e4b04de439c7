"""Real aiortc peers for the edge tests: stock viewers and publishers on loopback.

A viewer records the encoded frames its stock receiver reassembles (the decoder aiortc would
call is swapped for a recorder, per receiver thread), so tests compare bytes with the source.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver


@dataclass
class Received:
    data: bytes
    timestamp: int
    at: float


class RecordingDecoder(Decoder):
    """Stands in for aiortc's decoder in test viewers: keeps each reassembled frame's bytes."""

    registry: dict[int, RecordingDecoder] = {}
    lock = threading.Lock()

    def __init__(self) -> None:
        self.frames: list[Received] = []
        self.thread = threading.current_thread()
        with self.lock:
            self.registry[threading.get_ident()] = self

    def decode(self, encoded_frame: JitterFrame) -> list[Any]:
        self.frames.append(Received(bytes(encoded_frame.data), encoded_frame.timestamp, time.time()))
        return []


def recorder_of(receiver: RTCRtpReceiver) -> RecordingDecoder | None:
    thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
    if thread is None:
        return None
    with RecordingDecoder.lock:
        recorder = RecordingDecoder.registry.get(thread.ident or -1)
    # Thread ids are reused: a recorder left by an earlier thread is not this receiver's.
    return recorder if recorder is not None and recorder.thread is thread else None


# aiortc offers only Constrained Baseline; the test viewer stands for a browser that also
# decodes High profile, the way Chromium does.
AIORTC_PROFILE = "profile-level-id=42e01f"
HIGH_PROFILE = "profile-level-id=640c1f"


def as_high_profile_offer(sdp: str) -> str:
    return sdp.replace(AIORTC_PROFILE, HIGH_PROFILE)


def back_to_aiortc_profile(sdp: str) -> str:
    import re

    return re.sub(r"profile-level-id=[0-9a-fA-F]{6}", AIORTC_PROFILE, sdp)


@dataclass
class ViewerPeer:
    pc: RTCPeerConnection
    answer_sdp: str = ""
    receivers: dict[str, list[RTCRtpReceiver]] = field(default_factory=dict)

    def frames(self, kind: str, index: int = 0) -> list[Received]:
        receivers = self.receivers.get(kind, [])
        if index >= len(receivers):
            return []
        recorder = recorder_of(receivers[index])
        return list(recorder.frames) if recorder else []

    async def connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"viewer not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()


async def viewer_offer(*, audio_tracks: int = 1, talk_track: Any = None) -> ViewerPeer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.addTransceiver("video", direction="recvonly")
    for i in range(audio_tracks):
        if i == 0 and talk_track is not None:
            pc.addTransceiver(talk_track, direction="sendrecv")
        else:
            pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return ViewerPeer(pc=pc)


async def viewer_accept(viewer: ViewerPeer, answer_sdp: str) -> None:
    viewer.answer_sdp = answer_sdp
    await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=back_to_aiortc_profile(answer_sdp), type="answer"))
    for transceiver in viewer.pc.getTransceivers():
        viewer.receivers.setdefault(transceiver.kind, []).append(transceiver.receiver)


@dataclass
class PublisherPeer:
    """A stock aiortc publisher sending an H.264 file without re-encoding (MediaPlayer, decode=False)."""

    pc: RTCPeerConnection
    player: Any
    receivers: dict[str, RTCRtpReceiver] = field(default_factory=dict)

    def frames(self, kind: str) -> list[Received]:
        receiver = self.receivers.get(kind)
        recorder = recorder_of(receiver) if receiver else None
        return list(recorder.frames) if recorder else []

    async def close(self) -> None:
        await self.pc.close()
        if self.player is not None and getattr(self.player, "_MediaPlayer__thread", None):
            self.player._stop(self.player.video)  # stops the demux thread


async def publisher_offer(annexb_clip: str | None = None, *, video: MediaStreamTrack | None = None) -> PublisherPeer:
    """A publisher of ``annexb_clip`` (through MediaPlayer) or of a ``video`` track."""
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    player = MediaPlayer(annexb_clip, decode=False) if annexb_clip is not None else None
    pc.addTransceiver(player.video if player is not None else video, direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return PublisherPeer(pc=pc, player=player)


async def publisher_accept(publisher: PublisherPeer, answer_sdp: str) -> None:
    await publisher.pc.setRemoteDescription(
        RTCSessionDescription(sdp=back_to_aiortc_profile(answer_sdp), type="answer")
    )
    for transceiver in publisher.pc.getTransceivers():
        publisher.receivers[transceiver.kind] = transceiver.receiver


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def viewer_join(hub: Any, participant_id: str, role: str = "resident") -> ViewerPeer:
    """A stock viewer offered to ``hub`` (a SessionHub) as a High-profile decoder, connected."""
    from orstream.edge.protocol import ViewerOffer

    viewer = await viewer_offer()
    offer = ViewerOffer(participant_id=participant_id, role=role, sdp=as_high_profile_offer(viewer.pc.localDescription.sdp))
    await viewer_accept(viewer, await hub.add_viewer(offer))
    await viewer.connected()
    return viewer

