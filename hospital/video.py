"""Recordings as DICOM video: the recording's video by stream copy into MP4 parts of at most one
fragment's size, and the Video Microscopic / Video Endoscopic instances that carry them.

Called by hospital.services only. Reads segments through recordings.services; writes working
files under a pseudonymous folder (the export's public id) that the caller removes. H.264 that
fits .102/.104 is stream-copied: what the PACS gets is exactly what was recorded. H.264 outside
them (a level above 4.1/4.2, a profile above High such as High 4:4:4, more than 8 bits or 4:2:0)
raises NeedsEncoding, and ``h264_conform`` re-encodes it to High 4:2:0 at the level the syntax
allows; 4K needs HEVC, which the caller takes from the archive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate_buffer
from pydicom.sequence import Sequence
from pydicom.uid import (
    HEVCMP51,
    MPEG4HP41,
    MPEG4HP422D,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
)

import orstream

VIDEO_MICROSCOPIC = UID("1.2.840.10008.5.1.4.1.1.77.1.2.1")
VIDEO_ENDOSCOPIC = UID("1.2.840.10008.5.1.4.1.1.77.1.1.1")
# H.264 High Profile Level 4.1 covers 1920x1080 up to 30 fps; Level 4.2 up to 60 fps.
H264_MAX_WIDTH, H264_MAX_HEIGHT = 1920, 1080
H264_PROFILES = {66, 77, 100}  # constrained baseline, main and high: all decodable as High
# .102 is High Profile Level 4.1 (up to 30 fps at 1080), .104 Level 4.2 (50/60 fps).
H264_LEVEL_102, H264_LEVEL_104, H264_MAX_FPS = 41, 42, 60
# .107 is HEVC Main Profile at Level 5.1 or below (general_level_idc is 30 x the level).
HEVC_MAIN, HEVC_MAX_LEVEL = 1, 153
PIX_FMTS_420 = {"yuv420p", "yuvj420p"}
MAX_ROOT_UID = 64


class VideoError(Exception):
    """A recording that cannot become DICOM video as it is; the message says why."""


class NeedsEncoding(VideoError):
    """H.264 of at most 1080p that no DICOM H.264 syntax carries as it is: re-encode it."""


@dataclass(frozen=True)
class VideoFacts:
    codec: str
    width: int
    height: int
    fps: float
    profile_idc: int
    level_idc: int
    pix_fmt: str = "yuv420p"


@dataclass
class Part:
    path: Path
    size: int
    sha256: str
    sha1: str
    frames: int
    duration: float
    start: float


def video_facts(path: str) -> VideoFacts:
    with av.open(path) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        extradata = bytes(context.extradata or b"")
        profile = level = 0
        if context.name == "h264" and len(extradata) >= 4 and extradata[0] == 1:  # avcC
            profile, level = extradata[1], extradata[3]
        elif context.name == "hevc" and len(extradata) >= 13 and extradata[0] == 1:  # hvcC
            profile, level = extradata[1] & 0x1F, extradata[12]
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        return VideoFacts(
            codec=context.name, width=context.width, height=context.height, fps=float(rate),
            profile_idc=profile, level_idc=level, pix_fmt=str(context.pix_fmt or "yuv420p"),
        )


def transfer_syntax_for(facts: VideoFacts) -> UID:
    """The DICOM transfer syntax the video fits as it is. NeedsEncoding for H.264 up to 1080p
    that fits none (h264_conform makes it fit), VideoError for what needs HEVC or cannot go."""
    if facts.codec == "hevc":
        if facts.profile_idc not in (0, HEVC_MAIN) or facts.level_idc > HEVC_MAX_LEVEL or facts.pix_fmt not in PIX_FMTS_420:
            raise VideoError(f"This HEVC is profile {facts.profile_idc}, level {facts.level_idc / 30:g}, {facts.pix_fmt}: "
                             "DICOM's .107 needs Main (8-bit 4:2:0) at level 5.1 or below.")
        return HEVCMP51
    if facts.codec != "h264":
        raise VideoError(f"DICOM video needs H.264 or HEVC; this recording is {facts.codec}.")
    if facts.width > H264_MAX_WIDTH or facts.height > H264_MAX_HEIGHT:
        raise VideoError(f"{facts.width}x{facts.height} is above what DICOM's H.264 syntaxes carry: it needs HEVC.")
    if facts.profile_idc and facts.profile_idc not in H264_PROFILES:
        raise NeedsEncoding(f"H.264 profile {facts.profile_idc} is above High: DICOM's H.264 syntaxes need High or below.")
    if facts.pix_fmt not in PIX_FMTS_420:
        raise NeedsEncoding(f"H.264 in {facts.pix_fmt}: DICOM's H.264 syntaxes carry 8-bit 4:2:0 only.")
    if round(facts.fps) > H264_MAX_FPS:
        raise NeedsEncoding(f"{facts.fps:g} fps is above the 60 that DICOM's H.264 syntaxes carry.")
    high_rate = round(facts.fps) > 30
    allowed = H264_LEVEL_104 if high_rate else H264_LEVEL_102
    if facts.level_idc > allowed:
        raise NeedsEncoding(f"H.264 level {facts.level_idc / 10:g} is above the {allowed / 10:g} that DICOM's "
                            f"{'.104' if high_rate else '.102'} allows at {facts.fps:g} fps.")
    return MPEG4HP422D if high_rate else MPEG4HP41


def h264_conform(sources: list[str], folder: Path, facts: VideoFacts) -> list[str]:
    """Re-encode each source to H.264 High, 8-bit 4:2:0, at Level 4.1 (up to 30 fps) or 4.2
    (up to 60): what .102/.104 carry. The bit rate is capped within the level (VBV), the frame
    rate at 60, a keyframe every second; timestamps are kept, so the sources stay one recording."""
    from recordings import encode

    folder.mkdir(parents=True, exist_ok=True)
    fps = min(float(facts.fps or 30.0), float(H264_MAX_FPS))
    level = "4.2" if round(fps) > 30 else "4.1"
    rate = ["-r", f"{H264_MAX_FPS}"] if round(facts.fps) > H264_MAX_FPS else ["-fps_mode", "passthrough"]
    conformed = []
    for number, source in enumerate(sources):
        target = folder / f"conformed-{number:04d}.mp4"
        try:
            encode.ffmpeg_run(
                ["-i", source, "-map", "0:v:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                 "-profile:v", "high", "-level:v", level, "-pix_fmt", "yuv420p", "-maxrate", "40M", "-bufsize", "40M",
                 "-g", str(max(1, round(fps))), *rate, "-an", "-f", "mp4", str(target)],
                what=f"re-encode part {number + 1} to H.264 High level {level}",
            )
        except encode.EncodeError as failure:
            raise VideoError(f"The video could not be made to fit DICOM's H.264: {failure}") from None
        conformed.append(str(target))
    return conformed


def parts_write(
    sources: list[str], folder: Path, *, max_bytes: int, start: float | None = None, end: float | None = None
) -> list[Part]:
    """Stream-copy the video of ``sources`` (in order) into MP4 files of at most ``max_bytes`` of
    video each, cut at keyframes; only [start, end] seconds when given (from the keyframe at or
    before start). Timestamps run on across sources, as one recording."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[Part] = []
    writer: _PartWriter | None = None
    offset = 0.0  # seconds of the sources before this one
    largest_gop = gop = 0
    began = False
    for source in sources:
        with av.open(source) as container:
            stream = container.streams.video[0]
            base = stream.time_base or Fraction(1, 90_000)
            last = 0.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                at = offset + float(packet.pts * base)
                last = max(last, float((packet.pts + (packet.duration or 0)) * base))
                if end is not None and at >= end:
                    break
                if packet.is_keyframe:
                    largest_gop, gop = max(largest_gop, gop), 0
                    if start is not None and at <= start:
                        # A later keyframe at or before the clip's start: begin there instead.
                        if writer is not None:
                            writer.discard()
                        writer, began = _PartWriter(folder / f"part-{len(parts):04d}.mp4", stream, at), True
                    elif began or start is None:
                        began = True
                        if writer is None or writer.size + max(largest_gop, packet.size) > max_bytes:
                            if writer is not None:
                                parts.append(writer.close())
                            writer = _PartWriter(folder / f"part-{len(parts):04d}.mp4", stream, at)
                    else:
                        raise VideoError("The clip's start is before the recording's first keyframe.")
                if not began or writer is None:
                    continue
                gop += packet.size
                # With B-frames (an HEVC copy) decode order differs from display order: keep both.
                decode_at = offset + float(packet.dts * base) if packet.dts is not None else at
                writer.write(packet, at, decode_at)
            offset += last
    if writer is not None:
        parts.append(writer.close())
    if not parts:
        raise VideoError("The chosen range holds no video.")
    return parts


class _PartWriter:
    def __init__(self, path: Path, template: Any, start: float) -> None:
        self.path = path
        self.start = start
        self.size = 0
        self.frames = 0
        self.last = start
        self.time_base = Fraction(1, 90_000)
        # Faststart: the index first, so a viewer plays the part as it reads it.
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
        self.stream = self.container.add_stream_from_template(template)
        self.stream.time_base = self.time_base

    def write(self, packet: Any, at: float, decode_at: float) -> None:
        duration = float((packet.duration or 0) * packet.time_base) if packet.time_base else 0.0
        packet.pts = round((at - self.start) * 90_000)
        packet.dts = round((decode_at - self.start) * 90_000)
        packet.duration = round(duration * 90_000) if duration else None
        packet.time_base = self.time_base
        packet.stream = self.stream
        self.container.mux(packet)
        self.size += packet.size
        self.frames += 1
        self.last = max(self.last, at + duration)

    def discard(self) -> None:
        self.container.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> Part:
        self.container.close()
        sha256, sha1 = hashlib.sha256(), hashlib.sha1()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha256.update(chunk)
                sha1.update(chunk)
        return Part(
            path=self.path, size=self.path.stat().st_size, sha256=sha256.hexdigest(), sha1=sha1.hexdigest(),
            frames=self.frames, duration=max(0.0, self.last - self.start), start=self.start,
        )


@dataclass(frozen=True)
class Study:
    """What the instances share, from the worklist and the session."""

    patient: dict[str, str]
    study_instance_uid: str
    study_id: str
    accession_number: str
    study_description: str
    study_at: datetime
    modality: str
    station_name: str
    institution: str
    series_instance_uid: str
    series_description: str
    series_number: int


def _da(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S")


def instance_write(
    part: Part, target: Path, *, study: Study, facts: VideoFacts, sop_class: str, transfer_syntax: str,
    sop_instance_uid: str, instance_number: int, acquired_at: datetime,
) -> Path:
    """One DICOM video instance: the part as a single fragment, with the IOD's modules."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "ORSTREAM"
    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, UID(sop_instance_uid)
    ds.InstanceCreationDate, ds.InstanceCreationTime = _da(acquired_at), _tm(acquired_at)
    # Patient (as the worklist gave it)
    ds.PatientName = study.patient.get("name", "")
    ds.PatientID = study.patient.get("id", "")
    if study.patient.get("issuer"):
        ds.IssuerOfPatientID = study.patient["issuer"]
    ds.PatientBirthDate = study.patient.get("birth_date", "")
    ds.PatientSex = study.patient.get("sex", "")
    # General Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate, ds.StudyTime = _da(study.study_at), _tm(study.study_at)
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id[:16]
    ds.AccessionNumber = study.accession_number[:16]
    ds.StudyDescription = study.study_description[:64]
    # General Series
    ds.Modality = study.modality
    ds.SeriesInstanceUID = study.series_instance_uid
    ds.SeriesNumber = study.series_number
    ds.SeriesDescription = study.series_description[:64]
    ds.SeriesDate, ds.SeriesTime = _da(acquired_at), _tm(acquired_at)
    # General Equipment
    ds.Manufacturer = "orstream"
    ds.ManufacturerModelName = "orstream recorder"
    ds.SoftwareVersions = _version()
    ds.InstitutionName = study.institution[:64]
    if study.station_name:
        ds.StationName = study.station_name[:16]
    # General Acquisition and General Image
    ds.AcquisitionDateTime = acquired_at.strftime("%Y%m%d%H%M%S")
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ContentDate, ds.ContentTime = _da(acquired_at), _tm(acquired_at)
    ds.BurnedInAnnotation = "NO"
    # VL Image
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_14496_10" if transfer_syntax != HEVCMP51 else "ISO_23008_2"
    region = Dataset()
    # We do not know the anatomic region from the worklist: "Entire body" until the RIS says.
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "38266002", "SCT", "Entire body"
    ds.AnatomicRegionSequence = Sequence([region])
    # Acquisition Context (type 2: present, empty)
    ds.AcquisitionContextSequence = Sequence([])
    # Cine and Multi-frame
    fps = facts.fps or 30.0
    ds.CineRate = round(fps)
    ds.RecommendedDisplayFrameRate = round(fps)
    ds.FrameTime = f"{1000.0 / fps:.6g}"[:16]
    ds.NumberOfFrames = part.frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.StartTrim = 1
    ds.StopTrim = part.frames
    ds.ActualFrameDuration = round(1000.0 / fps)
    ds.PreferredPlaybackSequencing = 0
    # Image Pixel: what the decoder produces; the stream itself says the same.
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = facts.height, facts.width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    with part.path.open("rb") as video:
        ds.PixelData = encapsulate_buffer([video], has_bot=False)
        ds["PixelData"].VR = "OB"
        ds.save_as(target, enforce_file_format=True)
    return target


def _version() -> str:
    return str(getattr(orstream, "__version__", "") or "0.1.0")

