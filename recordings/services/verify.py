"""Verification with PyAV: decode every segment, check it against what the edge registered, make
the thumbnail and contact sheet, mark the recording verified or failed.

Called by the finalize task (recording_finalize) only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from ..models import Recording, Segment
from .common import (
    Progress,
    RecordingError,
    RecordingNotReady,
    _audit,
    _awaits_finalize,
    _enqueue,
    _progress_for,
    _segment_local_path,
    _segment_open,
    _sha256_file,
    _storage_put,
)
from .retention import retention_until

log = logging.getLogger(__name__)


CONTACT_SHEET_COLUMNS = 4


CONTACT_SHEET_ROWS = 3


CONTACT_SHEET_TILE_WIDTH = 320


THUMBNAIL_WIDTH = 640


# Decoded duration may differ from the edge's by at most this (one frame at 24 fps, plus rounding).
DURATION_TOLERANCE = 0.05


@dataclass
class _Decoded:
    video_frames: int
    audio_frames: int
    duration: float
    width: int
    height: int
    fps: float
    video_codec: str
    audio_codec: str


def _jpeg(frame: av.VideoFrame, width: int) -> bytes:
    """Encode one frame as a JPEG with FFmpeg's MJPEG encoder (no Pillow needed)."""
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    context = av.CodecContext.create("mjpeg", "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuvj420p"
    context.time_base = Fraction(1, 25)
    context.options = {"qscale": "3"}
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    image.pts = 0
    packets = list(context.encode(image)) + list(context.encode(None))
    return b"".join(bytes(p) for p in packets)


def _contact_sheet(frames: list[av.VideoFrame]) -> bytes:
    """Tile small frames into one JPEG with FFmpeg's tile filter (row by row, in time order)."""
    first = frames[0]
    graph = av.filter.Graph()
    source = graph.add_buffer(width=first.width, height=first.height, format=first.format, time_base=Fraction(1, 25))
    tile = graph.add("tile", f"{CONTACT_SHEET_COLUMNS}x{CONTACT_SHEET_ROWS}:padding=4:margin=4")
    sink = graph.add("buffersink")
    source.link_to(tile)
    tile.link_to(sink)
    graph.configure()
    for number, frame in enumerate(frames):
        frame.pts = number
        graph.push(frame)
    graph.push(None)
    sheet = graph.pull()
    assert isinstance(sheet, av.VideoFrame)
    return _jpeg(sheet, sheet.width)


def _decode(
    segment: Segment, *, grab_at: list[float], grabbed: list[av.VideoFrame], offset: float
) -> _Decoded:
    """Decode every packet of the segment. Grabs small frames at ``grab_at`` recording times."""
    video_frames = audio_frames = 0
    end = 0.0
    with av.open(_segment_local_path(segment)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if not isinstance(frame, (av.VideoFrame, av.AudioFrame)):
                    continue  # only video and audio streams are demuxed
                if frame.pts is not None and frame.time_base is not None:
                    end = max(end, float(frame.pts * frame.time_base) + (
                        float(packet.duration * packet.time_base) if packet.duration else 0.0
                    ))
                if isinstance(frame, av.VideoFrame):
                    video_frames += 1
                    at = offset + float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base is not None else offset
                    if grab_at and at >= grab_at[0]:
                        grab_at.pop(0)
                        height = max(2, round(frame.height * CONTACT_SHEET_TILE_WIDTH / frame.width / 2) * 2)
                        grabbed.append(frame.reformat(width=CONTACT_SHEET_TILE_WIDTH, height=height, format="yuv420p"))
                else:
                    audio_frames += 1
        start = float(video.start_time * video.time_base) if video.start_time is not None and video.time_base is not None else 0.0
        rate = video.average_rate or video.base_rate or video.guessed_rate
        return _Decoded(
            video_frames=video_frames,
            audio_frames=audio_frames,
            duration=max(0.0, end - start),
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=float(rate) if rate else 0.0,
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else "",
        )


def _first_frame(segment: Segment) -> av.VideoFrame:
    with av.open(_segment_local_path(segment)) as container:
        for frame in container.decode(video=0):
            return frame
    raise RecordingError(f"Segment {segment.index} has no picture.")


def _check(segment: Segment, decoded: _Decoded) -> list[str]:
    problems = []
    if decoded.video_frames != segment.video_frames:
        problems.append(f"{decoded.video_frames} video frames decoded, the edge wrote {segment.video_frames}")
    if decoded.audio_frames != segment.audio_frames:
        problems.append(f"{decoded.audio_frames} audio frames decoded, the edge wrote {segment.audio_frames}")
    frame_time = 1 / segment.fps if segment.fps else 0.0
    if abs(decoded.duration - segment.duration) > DURATION_TOLERANCE + frame_time:
        problems.append(f"lasts {decoded.duration:.3f} s, the edge reported {segment.duration:.3f} s")
    if (decoded.width, decoded.height) != (segment.width, segment.height):
        problems.append(f"is {decoded.width}x{decoded.height}, the edge reported {segment.width}x{segment.height}")
    return problems


def _fail(recording: Recording, message: str) -> RecordingError:
    with transaction.atomic():
        # A restricted recording stays restricted (nobody may view it); the error says what failed.
        Recording.objects.filter(pk=recording.pk, status=Recording.Status.FINALIZING).update(
            status=Recording.Status.FAILED, error=message
        )
        Recording.objects.filter(pk=recording.pk, status=Recording.Status.RESTRICTED).update(error=message)
        _audit(recording, "recording.finalize", None, outcome="refused", error=message)
    log.error("recording %s failed verification: %s", recording.public_id, message)
    return RecordingError(message)


def recording_finalize(*, recording: Recording, progress: Progress | None = None) -> Recording:
    """Verify every segment and make the thumbnail and contact sheet; then the recording is available.

    Each segment is decoded end to end with PyAV; frame counts, duration and size are checked
    against what the edge registered and the SHA-256 is recomputed. A mismatch marks the
    recording failed (nothing is deleted) and raises RecordingError naming the segment.
    Idempotent: an available, restricted or erased recording is returned as it is.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    # A recording restricted by a withdrawal is still verified once the edge stopped it: it may be
    # kept under legal hold, and erasing needs to know what exists.
    if not _awaits_finalize(recording):
        return recording
    report = progress or _progress_for(recording, "finalize")
    segments = list(recording.segments.order_by("index"))
    if recording.expected_segments is None:
        raise RecordingNotReady("Waiting for the edge to report how many segments it closed.")
    if len(segments) < recording.expected_segments:
        raise RecordingNotReady(
            f"{len(segments)} of {recording.expected_segments} segments are registered; waiting for the edge."
        )
    if not segments:
        raise _fail(recording, "The edge registered no segment: nothing was recorded.")
    if [s.index for s in segments] != list(range(len(segments))):
        raise _fail(recording, f"Segments are missing: registered {[s.index for s in segments]}.")
    total = sum(s.duration for s in segments) or 1.0
    grab_at = [total * (n + 0.5) / (CONTACT_SHEET_COLUMNS * CONTACT_SHEET_ROWS) for n in range(CONTACT_SHEET_COLUMNS * CONTACT_SHEET_ROWS)]
    grabbed: list[av.VideoFrame] = []
    offset = 0.0
    decoded_all: list[_Decoded] = []
    report("finalize", 0)
    for number, segment in enumerate(segments):
        try:
            with _segment_open(segment) as handle:
                digest = _sha256_file(handle)
            decoded = _decode(segment, grab_at=grab_at, grabbed=grabbed, offset=offset)
        except FileNotFoundError:
            raise _fail(recording, f"Segment {segment.index} ({segment.path}) is missing from the spool.") from None
        except av.FFmpegError as broken:
            raise _fail(recording, f"Segment {segment.index} ({segment.path}) does not decode: {broken}.") from None
        problems = _check(segment, decoded)
        if digest != segment.sha256:
            problems.insert(0, "its SHA-256 differs from the edge's: the file changed after it was written")
        if problems:
            raise _fail(
                recording,
                f"Segment {segment.index} ({segment.path}) {'; '.join(problems)}. The files are kept; "
                "compare with the edge's copy before erasing anything.",
            )
        Segment.objects.filter(pk=segment.pk).update(verified_at=timezone.now())
        decoded_all.append(decoded)
        offset += segment.duration
        report("finalize", round(90 * (number + 1) / len(segments)))
    thumbnail_key = _storage_put(f"recordings/{recording.prefix}/thumbnail.jpg", ContentFile(_jpeg(_first_frame(segments[0]), THUMBNAIL_WIDTH)))
    sheet_key = _storage_put(f"recordings/{recording.prefix}/contact-sheet.jpg", ContentFile(_contact_sheet(grabbed))) if grabbed else ""
    first = decoded_all[0]
    with transaction.atomic():
        recording = Recording.objects.select_for_update().get(pk=recording.pk)
        recording.duration = sum(d.duration for d in decoded_all)
        recording.video_codec, recording.audio_codec = first.video_codec, first.audio_codec
        recording.width, recording.height, recording.fps = first.width, first.height, first.fps
        recording.size = sum(s.size for s in segments)
        recording.thumbnail, recording.contact_sheet = thumbnail_key, sheet_key
        recording.verified_at = timezone.now()
        if recording.retain_until is None:
            recording.retain_until = retention_until(purpose=recording.retention_purpose, start=recording.started_at.date())
        # Consent may have been withdrawn while we verified: then it stays restricted.
        if recording.status == Recording.Status.FINALIZING:
            recording.status = Recording.Status.AVAILABLE
        recording.save()
        _audit(recording, "recording.finalize", None, segments=len(segments), duration=round(recording.duration, 3))
        _enqueue("recording_archive", recording.pk)
    report("finalize", 100)
    return recording
