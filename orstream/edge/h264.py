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


class _Bits:
    """Exp-Golomb reading of a NAL unit's payload (emulation prevention bytes removed)."""

    def __init__(self, payload: bytes) -> None:
        self.data = payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError past the end: a truncated SPS
        self.pos += 1
        return (byte >> (7 - ((self.pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def picture_size(units: list[bytes]) -> tuple[int, int] | None:
    """Width and height of the picture an access unit's SPS describes (H.264 7.3.2.1.1), None
    without a readable SPS. Reads the stream's header only: nothing is decoded."""
    sps = next((u for u in units if is_sps(u)), None)
    if sps is None:
        return None
    try:
        r = _Bits(sps[4:])
        r.ue()  # seq_parameter_set_id
        chroma_format = 1
        if sps[1] in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma_format = r.ue()
            if chroma_format == 3:
                r.bit()  # separate_colour_plane_flag
            r.ue()  # bit_depth_luma_minus8
            r.ue()  # bit_depth_chroma_minus8
            r.bit()  # qpprime_y_zero_transform_bypass_flag
            if r.bit():  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format != 3 else 12):
                    if r.bit():
                        last = following = 8
                        for _ in range(16 if i < 6 else 64):
                            if following:
                                following = (last + r.se()) % 256
                            last = following or last
        r.ue()  # log2_max_frame_num_minus4
        order_type = r.ue()
        if order_type == 0:
            r.ue()
        elif order_type == 1:
            r.bit()
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue()  # max_num_ref_frames
        r.bit()  # gaps_in_frame_num_value_allowed_flag
        width_mbs = r.ue() + 1
        height_units = r.ue() + 1
        frame_mbs_only = r.bit()
        if not frame_mbs_only:
            r.bit()  # mb_adaptive_frame_field_flag
        r.bit()  # direct_8x8_inference_flag
        crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.bit() else (0, 0, 0, 0)
    except (IndexError, ValueError):
        return None
    unit_x = 1 if chroma_format in (0, 3) else 2
    unit_y = (2 - frame_mbs_only) * (2 if chroma_format == 1 else 1)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    return width, height
