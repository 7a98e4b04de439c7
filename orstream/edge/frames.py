"""The unit that moves through the edge: one encoded access unit, never decoded.

Ingest produces these, the hub fans them out, senders packetize them, the recorder muxes them.
Nothing here touches a codec.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame.

    kind: "video" (H.264 Annex-B, SPS/PPS before every IDR) or "audio" (one Opus packet).
    pts: presentation time in the kind's RTP clock (90 kHz video, 48 kHz audio), continuous
        across source loops and reconnects.
    keyframe: an IDR access unit (video only).
    ingest_time: time.time() when the edge received or read the frame; used for lag figures
        and for the glass-to-glass badge.
    """

    kind: str
    data: bytes
    pts: int
    keyframe: bool = False
    ingest_time: float = 0.0

    @property
    def clock_rate(self) -> int:
        return VIDEO_CLOCK if self.kind == "video" else AUDIO_CLOCK
