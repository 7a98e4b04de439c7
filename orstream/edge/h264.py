"""Facts about an H.264 Annex-B access unit, read without decoding it.

Used by ingest (canonical form, parameter sets before IDRs), by the publisher receiver (keyframe
flag) and by the hub (the profile-level-id a viewer's SDP must carry). Never touches a codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"


def split_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer, without start codes or trailing zero bytes."""
    units: list[bytes] = []
    length = len(data)
    # Find the first start code (3 or 4 bytes); anything before it is not a NAL unit.
    i = data.find(b"\x00\x00\x01")
    if i < 0:
        return units
    start = i + 3
    while True:
        j = data.find(b"\x00\x00\x01", start)
        if j < 0:
            end = length
        else:
            end = j
        # The zero bytes before the next start code belong to the byte stream (a 4-byte start
        # code or trailing_zero_8bits), never to the NAL unit: a NAL unit cannot end in 0x00.
        unit_end = end
        while unit_end > start and data[unit_end - 1] == 0:
            unit_end -= 1
        if unit_end > start:
            units.append(data[start:unit_end])
        if j < 0:
            return units
        start = j + 3


def join_nal_units(units: list[bytes]) -> bytes:
    """The canonical Annex-B form the edge moves: every NAL unit behind a 4-byte start code.

    RTP depacketizers (aiortc's and browsers') rebuild access units this way, so a frame in this
    form survives packetize/depacketize byte for byte.
    """
    return b"".join(START_CODE + unit for unit in units)


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def has_idr(units: list[bytes]) -> bool:
    return any(nal_type(u) == NAL_IDR for u in units)


def is_sps(unit: bytes) -> bool:
    """An SPS long enough to carry profile_idc, the constraint flags and level_idc.

    Anything shorter is malformed (a sender's bug or junk): the edge ignores it rather than
    keep it as the stream's parameter set.
    """
    return len(unit) >= 4 and nal_type(unit) == NAL_SPS


def profile_level_id(sps: bytes) -> str:
    """The SDP profile-level-id (profile_idc, constraint flags, level_idc) of an SPS NAL unit."""
    if not is_sps(sps):
        raise ValueError("not an SPS NAL unit")
    return sps[1:4].hex()


@dataclass
class ParameterSetKeeper:
    """Remembers the latest SPS/PPS and puts them in front of any IDR that arrives without them.

    Browsers and some cameras send parameter sets out of band or only once; a viewer joining at
    an IDR without them cannot decode anything.
    """

    sps: bytes | None = None
    pps: bytes | None = None
    _seen_types: set[int] = field(default_factory=set)

    def fix(self, units: list[bytes]) -> list[bytes]:
        types = [nal_type(u) for u in units]
        for unit, kind in zip(units, types, strict=True):
            if kind == NAL_SPS:
                if is_sps(unit):  # a truncated SPS is no parameter set to repeat
                    self.sps = unit
            elif kind == NAL_PPS:
                self.pps = unit
        if NAL_IDR not in types:
            return units
        idr_at = types.index(NAL_IDR)
        before = set(types[:idr_at])
        prefix: list[bytes] = []
        if NAL_SPS not in before and self.sps is not None:
            prefix.append(self.sps)
        if NAL_PPS not in before and self.pps is not None:
            prefix.append(self.pps)
        if not prefix:
            return units
        # Parameter sets go right before the first slice, after any AUD/SEI, as encoders do.
        return units[:idr_at] + prefix + units[idr_at:]

    @property
    def profile_level_id(self) -> str | None:
        return profile_level_id(self.sps) if self.sps is not None and is_sps(self.sps) else None
