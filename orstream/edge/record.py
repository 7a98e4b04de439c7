"""Crash-safe recording of one session's encoded frames into rotating fragmented-MP4 segments.

The hub calls `Recorder.write` with every `EncodedFrame` it receives from the publisher (video
H.264 Annex-B and Opus audio) and `Recorder.close` when the session ends; the callback
`on_segment_closed` reports each finished file (path, SHA-256, size, duration, counts) so the
control plane can register it for consented archiving.

What it never does: decode or encode media (stream copy only; the H.264 parser reads the
picture size, nothing is decoded), import Django, hold more than about one fragment of media in
memory, or put anything but a counter in a file name (no patient data).

Numbering and manifests: segments are numbered 0, 1, 2... in their folder (a restarted recorder in
the same folder continues after the highest number there), the convention the control plane's
finalize checks. Beside each closed segment the recorder writes ``seg-NNNNN.json``, its manifest
(index, SHA-256, size, frames, duration, picture size, codecs and the recording's identifiers),
atomically (a temporary file fsynced, then renamed), before reporting it: the spool itself, not
only a webhook, says what was recorded, and the control plane can rebuild a recording's segments
from these files. ``recover_directory`` gives a segment left open by a crash the same manifest.

Crash safety: each segment is a fragmented MP4 (`empty_moov`, a fragment at every keyframe and at
least every `fragment_seconds`) written through an unbuffered file: each finished fragment is
handed to the kernel at once, so after `kill -9` (or a crash of the process) the file plays up to
the last fragment, i.e. at most about `fragment_seconds` plus the muxer's interleaving window
(`INTERLEAVE_SECONDS`) is lost. (Surviving a power cut as well would take an fsync per fragment;
segments are fsynced when they close.) The SHA-256 is computed while the bytes are written: the
output is written strictly sequentially (the writer offers no seek), so the digest of the stream
is the digest of the file and closing a 10-minute 4K segment does not stall on rereading ~2 GB.

Timing assumption (A/V sync): the edge stamps each kind with its own RTP clock (`pts`, 90 kHz
video, 48 kHz audio, unrelated origins, unwrapped and continuous) and with `ingest_time`, the
wall clock at arrival. The first frame of each kind maps its clock to wall-clock time
(`ingest_time - pts / clock`); after that, timing follows pts only, so arrival jitter of later
frames does not move them. Recording time 0 is the first recorded video keyframe. The residual
A/V error is the difference between the network/ingest delays of those two first frames (RTCP
sender reports would remove it; the edge does not hand them over yet). If `ingest_time` is 0
(not set), both clocks are taken to share their origin, as in a file demuxed by ingest.

Opus is muxed with a pre-skip of 0: decoded audio is then placed exactly at its packet's pts, as
a WebRTC receiver plays it (the sender's codec delay is not known on the receiving side).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from orstream.edge.frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = Fraction(1, AUDIO_CLOCK)
SEGMENT_NAME = "seg-{index:05d}.mp4"
MANIFEST_NAME = "seg-{index:05d}.json"
# The recording's identifiers, written once in its folder, for recovering segments after a crash.
RECORDING_INFO_NAME = "recording.json"
# A segment that was open at a crash and held nothing playable is set aside under this suffix.
UNPLAYABLE_SUFFIX = ".unplayable"
MANIFEST_VERSION = 1
# What a "segment.closed" webhook carries (recordings.services.segment_register's arguments,
# with "path" relative to the spool and "recording_public_id").
SEGMENT_FIELDS = (
    "index", "sha256", "size", "duration", "video_frames", "audio_frames", "width", "height", "fps",
    "video_codec", "audio_codec",
)
_SEGMENT_PATTERN = re.compile(r"^seg-(\d{5,})\.mp4$")
# How long the muxer may hold packets to interleave the two tracks (default is 10 s, which would
# defeat crash safety when audio stops). Arrival order is already nearly interleaved.
INTERLEAVE_SECONDS = 0.5
# Audio that arrives before the first video keyframe is kept this long so the recording has
# sound from its first picture on; bounded like every queue on the edge.
PREROLL_AUDIO_PACKETS = 100
# The Opus track is declared stereo (what WebRTC negotiates); mono packets decode fine in it.
OPUS_CHANNELS = 2
# H.264 NAL unit types: parameter sets, and the slices that end the header part of an IDR.
_H264_NAL_SPS = 7
_H264_NAL_PPS = 8
_H264_VCL_NALS = (1, 5)
_HASH_CHUNK = 1 << 20


class RecordError(Exception):
    """Writing a segment failed (disk full, muxer refused a packet); the segment is abandoned
    (what reached the disk stays playable) and the next keyframe opens a new one."""


@dataclass
class _HashingWriter:
    """A write-only, non-seekable file for the muxer: unbuffered writes, SHA-256 on the fly.

    Having no `seek` makes libavformat write strictly sequentially, which is also what keeps the
    running digest equal to the file's digest.
    """

    raw: io.FileIO
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        total = len(view)
        written = 0
        # FileIO.write may write less than asked; the muxer must never see a short write.
        while written < total:
            written += self.raw.write(view[written:]) or 0
        self.digest.update(view)
        self.size += total
        return total


@dataclass
class _Segment:
    index: int
    path: pathlib.Path
    writer: _HashingWriter
    container: Any  # av.container.OutputContainer
    video: Any  # av.stream.Stream
    audio: Any  # av.audio.stream.AudioStream
    width: int
    height: int
    parameter_sets: bytes
    video_origin: int  # recording time of this segment's first keyframe, 90 kHz ticks
    audio_origin: int  # the same instant in 48 kHz ticks
    video_frames: int = 0
    audio_frames: int = 0
    last_video_dts: int = -1
    last_frame_interval: int = 0
    last_audio_end: int = 0


class Recorder:
    """Records one session into `directory`/seg-00000.mp4, seg-00001.mp4, ... each with its
    manifest seg-NNNNN.json (see the module docstring).

    Not thread-safe: call `write` and `close` from one thread (the edge's event loop).
    `write` costs a packet copy and a mux call per frame; segment rotation costs one SPS parse
    and, at close, an fsync and the callback.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        segment_seconds: float = 600.0,
        fragment_seconds: float = 2.0,
        on_segment_closed: Callable[[dict[str, Any]], None] | None = None,
        identity: dict[str, str] | None = None,
    ) -> None:
        """``identity`` (e.g. recording and session ids) goes into every manifest and, once, into
        the folder's recording.json so segments recovered after a crash can be attributed."""
        if segment_seconds <= 0 or fragment_seconds <= 0:
            raise ValueError("segment_seconds and fragment_seconds must be positive")
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_seconds = segment_seconds
        self.fragment_seconds = fragment_seconds
        self.on_segment_closed = on_segment_closed
        self.identity = dict(identity or {})
        if self.identity:
            info = self.directory / RECORDING_INFO_NAME
            if not info.exists():
                write_json_atomic(info, self.identity)
        self._segment_ticks = round(segment_seconds * VIDEO_CLOCK)
        # A restarted recorder in the same directory continues the numbering: never overwrite.
        self._next_index = _highest_segment_index(self.directory) + 1
        self._segment: _Segment | None = None
        self._closed = False
        # Clock mapping: wall-clock time of pts 0 of each kind, from the first frame of the kind.
        self._video_epoch: float | None = None
        self._audio_epoch: float | None = None
        # pts of recording time 0 in each clock (the first recorded keyframe).
        self._video_zero: int | None = None
        self._audio_zero: int | None = None
        self._preroll: collections.deque[EncodedFrame] = collections.deque(maxlen=PREROLL_AUDIO_PACKETS)
        self._segments_closed = 0
        self._video_frames_written = 0
        self._audio_frames_written = 0
        self._frames_dropped = 0
        self._timestamps_repaired = 0
        self._bytes_closed = 0

    # -- stats ---------------------------------------------------------------------------------

    @property
    def segments_closed(self) -> int:
        return self._segments_closed

    @property
    def frames_written(self) -> int:
        """Video and audio frames handed to the muxer, all segments."""
        return self._video_frames_written + self._audio_frames_written

    @property
    def video_frames_written(self) -> int:
        return self._video_frames_written

    @property
    def audio_frames_written(self) -> int:
        return self._audio_frames_written

    @property
    def frames_dropped(self) -> int:
        """Frames not recorded: before the first keyframe, audio before recording time 0 or
        overlapping already recorded audio, frames of an abandoned segment's GOP, and frames
        written after `close`."""
        return self._frames_dropped

    @property
    def timestamps_repaired(self) -> int:
        """Video frames whose pts did not increase and were moved one tick after the previous."""
        return self._timestamps_repaired

    @property
    def bytes_written(self) -> int:
        current = self._segment.writer.size if self._segment else 0
        return self._bytes_closed + current

    @property
    def segment_count(self) -> int:
        """How many segments this folder holds, numbered 0 to segment_count - 1 (this recorder's
        and those of recorders before it in the same folder)."""
        return self._next_index

    @property
    def current_path(self) -> pathlib.Path | None:
        return self._segment.path if self._segment else None

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters above, for the edge's status API."""
        return {
            "segments_closed": self._segments_closed,
            "video_frames_written": self._video_frames_written,
            "audio_frames_written": self._audio_frames_written,
            "frames_dropped": self._frames_dropped,
            "timestamps_repaired": self._timestamps_repaired,
            "bytes_written": self.bytes_written,
            "current_segment": self._segment.path.name if self._segment else None,
        }

    # -- writing -------------------------------------------------------------------------------

    def write(self, frame: EncodedFrame) -> None:
        """Record one frame. Raises RecordError if the segment could not be written."""
        if self._closed:
            self._frames_dropped += 1
            return
        if frame.kind == "video":
            self._write_video(frame)
        elif frame.kind == "audio":
            self._write_audio(frame)
        else:
            self._frames_dropped += 1

    def close(self) -> None:
        """Finish the current segment (trailer, fsync, callback). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._close_segment()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_video(self, frame: EncodedFrame) -> None:
        if self._video_epoch is None:
            self._video_epoch = _epoch(frame)
        segment = self._segment
        if segment is None:
            if not frame.keyframe:
                # Only an IDR can start a file that decodes on its own.
                self._frames_dropped += 1
                return
            if self._video_zero is None:
                self._video_zero = frame.pts
            segment = self._open_segment(frame)
            if segment is None:
                self._frames_dropped += 1
                return
            self._mux_video(segment, frame)
            self._flush_preroll()
            return
        if frame.keyframe and self._should_rotate(segment, frame):
            self._close_segment()
            segment = self._open_segment(frame)
            if segment is None:
                self._frames_dropped += 1
                return
        self._mux_video(segment, frame)

    def _write_audio(self, frame: EncodedFrame) -> None:
        if self._audio_epoch is None:
            self._audio_epoch = _epoch(frame)
        if self._segment is None:
            # Until a keyframe arrives there is no recording time yet: keep a short pre-roll.
            if self._video_zero is None:
                self._preroll.append(frame)
            self._frames_dropped += 1
            return
        self._mux_audio(self._segment, frame)

    def _flush_preroll(self) -> None:
        preroll, self._preroll = self._preroll, collections.deque(maxlen=PREROLL_AUDIO_PACKETS)
        for frame in preroll:
            if self._segment is None:
                return
            # Counted as dropped when buffered; undo that for those that make it in.
            self._frames_dropped -= 1
            self._mux_audio(self._segment, frame)

    def _should_rotate(self, segment: _Segment, frame: EncodedFrame) -> bool:
        assert self._video_zero is not None
        elapsed = frame.pts - self._video_zero - segment.video_origin
        if elapsed >= self._segment_ticks:
            return True
        # New SPS/PPS (the source changed resolution or encoder): a file keeps one set.
        parameter_sets = _parameter_sets(frame.data)
        return bool(parameter_sets) and parameter_sets != segment.parameter_sets

    def _mux_video(self, segment: _Segment, frame: EncodedFrame) -> None:
        assert self._video_zero is not None
        dts = frame.pts - self._video_zero - segment.video_origin
        if dts <= segment.last_video_dts:
            # No B-frames are expected, so pts == dts; a repeated or late pts must still give the
            # muxer strictly increasing dts.
            dts = segment.last_video_dts + 1
            self._timestamps_repaired += 1
        if segment.last_video_dts >= 0:
            segment.last_frame_interval = dts - segment.last_video_dts
        packet = av.Packet(frame.data)  # a fresh packet each time: muxing rewrites it in place
        packet.stream = segment.video
        packet.time_base = VIDEO_TIME_BASE
        packet.pts = dts
        packet.dts = dts
        packet.duration = segment.last_frame_interval or VIDEO_CLOCK // 30
        packet.is_keyframe = frame.keyframe
        self._mux(segment, packet)
        segment.last_video_dts = dts
        segment.video_frames += 1
        self._video_frames_written += 1

    def _mux_audio(self, segment: _Segment, frame: EncodedFrame) -> None:
        if self._audio_zero is None:
            self._audio_zero = self._audio_pts_at_recording_start()
        dts = frame.pts - self._audio_zero - segment.audio_origin
        samples = opus_packet_samples(frame.data)
        if dts < segment.last_audio_end or samples == 0:
            # Before this segment's first picture, a duplicate, or not a valid Opus packet.
            self._frames_dropped += 1
            return
        packet = av.Packet(frame.data)
        packet.stream = segment.audio
        packet.time_base = AUDIO_TIME_BASE
        packet.pts = dts
        packet.dts = dts
        packet.duration = samples
        self._mux(segment, packet)
        segment.last_audio_end = dts + samples
        segment.audio_frames += 1
        self._audio_frames_written += 1

    def _audio_pts_at_recording_start(self) -> int:
        """The audio pts that plays at the same wall-clock instant as the first keyframe."""
        assert self._video_zero is not None and self._video_epoch is not None
        assert self._audio_epoch is not None
        start_wall = self._video_epoch + self._video_zero / VIDEO_CLOCK
        return round((start_wall - self._audio_epoch) * AUDIO_CLOCK)

    def _mux(self, segment: _Segment, packet: av.Packet[Any]) -> None:
        try:
            segment.container.mux(packet)
        except (av.FFmpegError, OSError, ValueError) as error:
            self._abandon_segment(segment)
            raise RecordError(f"could not write {segment.path.name}: {error}") from error

    # -- segments ------------------------------------------------------------------------------

    def _open_segment(self, keyframe: EncodedFrame) -> _Segment | None:
        assert self._video_zero is not None
        width, height = _picture_size(keyframe.data)
        if not width or not height:
            log.warning("keyframe without a readable SPS; waiting for the next one")
            return None
        index = self._next_index
        self._next_index += 1
        path = self.directory / SEGMENT_NAME.format(index=index)
        raw = io.FileIO(path, "w")
        writer = _HashingWriter(raw)
        try:
            container = av.open(
                writer,
                "w",
                format="mp4",
                options={
                    # empty_moov: the header is complete before any sample, so each fragment
                    # (moof + mdat) appended after it is playable on its own. delay_moov: the
                    # moov waits for the first fragment, so it can carry an edit list when the
                    # audio track starts after the first picture (else its start would be lost).
                    "movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
                    # GOPs longer than a fragment are cut by time as well.
                    "frag_duration": str(round(self.fragment_seconds * 1_000_000)),
                    "flush_packets": "1",
                    "max_interleave_delta": str(round(INTERLEAVE_SECONDS * 1_000_000)),
                    # Edit lists in audio samples, so the audio start offset is exact.
                    "movie_timescale": str(AUDIO_CLOCK),
                },
            )
            # A mux-only stream: PyAV takes SPS/PPS for the avcC box from the first packet (the
            # IDR) with the extract_extradata filter; nothing is decoded.
            video = container.add_mux_stream("h264", width=width, height=height, time_base=VIDEO_TIME_BASE)
            audio = container.add_stream("libopus", rate=AUDIO_CLOCK)
            audio.codec_context.layout = "stereo"
            audio.time_base = AUDIO_TIME_BASE
            # The encoder is opened only so the stream has Opus parameters; it never encodes.
            # Its OpusHead carries libopus' own pre-skip: replace it with ours (pre-skip 0).
            audio.codec_context.open()
            audio.codec_context.extradata = _opus_head(OPUS_CHANNELS)
        except (av.FFmpegError, OSError, ValueError) as error:
            raw.close()
            raise RecordError(f"could not start {path.name}: {error}") from error
        segment = _Segment(
            index=index,
            path=path,
            writer=writer,
            container=container,
            video=video,
            audio=audio,
            width=width,
            height=height,
            parameter_sets=_parameter_sets(keyframe.data),
            video_origin=keyframe.pts - self._video_zero,
            audio_origin=round((keyframe.pts - self._video_zero) * AUDIO_CLOCK / VIDEO_CLOCK),
        )
        self._segment = segment
        log.info("recording to %s (%dx%d)", path, width, height)
        return segment

    def _close_segment(self) -> None:
        segment = self._segment
        if segment is None:
            return
        self._segment = None
        try:
            segment.container.close()  # writes the last fragment and the mfra index
            os.fsync(segment.writer.raw.fileno())
        finally:
            segment.writer.raw.close()
        self._segments_closed += 1
        self._bytes_closed += segment.writer.size
        report = self._report(segment)
        try:
            write_manifest(segment.path, {**report, **self.identity})
        except OSError:
            # The webhook still reports it; the control plane can rebuild from the file later.
            log.exception("could not write the manifest of %s", segment.path.name)
        if self.on_segment_closed is not None:
            try:
                self.on_segment_closed(report)
            except Exception:
                # The recording goes on; the callback's owner logs its own failure too.
                log.exception("on_segment_closed failed for %s", segment.path.name)

    def _abandon_segment(self, segment: _Segment) -> None:
        if self._segment is segment:
            self._segment = None
        try:
            segment.container.close()
        except Exception:
            log.exception("closing abandoned segment %s", segment.path.name)
        finally:
            segment.writer.raw.close()
        self._bytes_closed += segment.writer.size

    def _report(self, segment: _Segment) -> dict[str, Any]:
        video_end = segment.last_video_dts + segment.last_frame_interval if segment.video_frames else 0
        duration = max(video_end / VIDEO_CLOCK, segment.last_audio_end / AUDIO_CLOCK)
        fps = (
            round((segment.video_frames - 1) * VIDEO_CLOCK / segment.last_video_dts, 3)
            if segment.video_frames > 1 and segment.last_video_dts > 0
            else 0.0
        )
        return {
            "path": str(segment.path),
            "index": segment.index,
            "sha256": segment.writer.digest.hexdigest(),
            "size": segment.writer.size,
            "duration": round(duration, 6),
            "video_frames": segment.video_frames,
            "audio_frames": segment.audio_frames,
            "width": segment.width,
            "height": segment.height,
            "fps": fps,
            "video_codec": "h264",
            "audio_codec": "opus",
        }


def file_sha256(path: pathlib.Path) -> str:
    """SHA-256 of a file read in 1 MiB chunks (bounded memory); for checking segments."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recover_segment(path: pathlib.Path) -> dict[str, Any] | None:
    """Make a segment left behind by a crash end cleanly, and describe it.

    A killed recorder leaves at most a partial last fragment after the complete ones; players
    show everything before it, but Chromium reports a decode error when it reaches the torn part.
    This truncates the file after its last complete top-level box that is not a dangling `moof`
    (ftyp, moov, then moof+mdat pairs), so the file plays to its end, and returns
    {"path", "index", "sha256", "size", "truncated_bytes"}; or None when not even the header and
    one fragment made it to disk (nothing playable). Call it only on a file no recorder is
    writing, e.g. when an edge restarts and finds segments it never reported.
    """
    path = pathlib.Path(path)
    match = _SEGMENT_PATTERN.match(path.name)
    total = path.stat().st_size
    good_end = 0
    pending_moof = False
    fragments = 0
    with open(path, "r+b") as handle:
        for end, kind in _complete_boxes(handle, total):
            if kind == b"moof":
                pending_moof = True
                continue
            if kind == b"mdat":
                if not pending_moof:
                    break
                fragments += 1
            pending_moof = False
            good_end = end
        if fragments == 0:
            return None
        truncated = total - good_end
        if truncated:
            handle.truncate(good_end)
            handle.flush()
            os.fsync(handle.fileno())
    return {
        "path": str(path),
        "index": int(match.group(1)) if match else 0,
        "sha256": file_sha256(path),
        "size": good_end,
        "truncated_bytes": truncated,
    }


def manifest_path(segment: pathlib.Path) -> pathlib.Path:
    """seg-NNNNN.json beside seg-NNNNN.mp4."""
    return segment.with_suffix(".json")


def write_json_atomic(path: pathlib.Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that readers see the old file or the whole new one, never a part:
    a temporary file in the same folder, fsynced, renamed over ``path``, then the folder fsynced."""
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_manifest(segment: pathlib.Path, report: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a closed segment: the report's facts, its file name instead of a path."""
    manifest = {key: value for key, value in report.items() if key != "path"}
    manifest.update({"version": MANIFEST_VERSION, "file": segment.name})
    write_json_atomic(manifest_path(segment), manifest)
    return manifest


def read_manifest(path: pathlib.Path) -> dict[str, Any] | None:
    """A manifest's content, or None when it is unreadable (never written whole: see write_json_atomic)."""
    try:
        data = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def segment_describe(path: pathlib.Path) -> dict[str, Any]:
    """What a segment's report says, read back from the file by demuxing (nothing is decoded):
    packet counts per track, duration, picture size, codecs. For segments recovered after a
    crash, whose recorder never reported them. One packet is one frame here (no B-frames, one
    Opus packet per audio frame)."""
    video_frames = audio_frames = 0
    video_end = audio_end = 0.0
    first_video: float | None = None
    last_video = 0.0
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(*streams):
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + (float(packet.duration * packet.time_base) if packet.duration else 0.0)
            if packet.stream.type == "video":
                video_frames += 1
                first_video = start if first_video is None else min(first_video, start)
                last_video = max(last_video, start)
                video_end = max(video_end, end)
            else:
                audio_frames += 1
                audio_end = max(audio_end, end)
        width, height = video.codec_context.width, video.codec_context.height
        audio_codec = audio.codec_context.name if audio is not None else ""
    fps = (
        round((video_frames - 1) / (last_video - first_video), 3)
        if video_frames > 1 and first_video is not None and last_video > first_video
        else 0.0
    )
    return {
        "duration": round(max(video_end, audio_end), 6),
        "video_frames": video_frames,
        "audio_frames": audio_frames,
        "width": width,
        "height": height,
        "fps": fps,
        "video_codec": "h264",
        "audio_codec": audio_codec,
    }


def segment_event(manifest: dict[str, Any], recording_id: str) -> dict[str, Any]:
    """The "segment.closed" webhook's data for a manifest of recording ``recording_id``."""
    data = {key: manifest[key] for key in SEGMENT_FIELDS if key in manifest}
    data.update({"recording_public_id": recording_id, "path": f"{recording_id}/{manifest['file']}"})
    return data


def unmanifested_segments(directory: pathlib.Path) -> list[pathlib.Path]:
    """Segments in ``directory`` without a manifest: left open by a crash (or a failed write)."""
    return sorted(
        entry
        for entry in pathlib.Path(directory).iterdir()
        if _SEGMENT_PATTERN.match(entry.name) and not manifest_path(entry).exists()
    )


def set_aside_unplayable(directory: pathlib.Path) -> list[pathlib.Path]:
    """Rename the segments without a manifest that hold nothing playable (killed before their
    first fragment), so a recorder started next in this folder reuses their number and the
    numbering stays without gaps. Cheap (reads box headers only): run it before recording again.
    Returns the files set aside."""
    set_aside = []
    for segment in unmanifested_segments(directory):
        if _first_fragment_end(segment) == 0:
            target = segment.with_name(segment.name + UNPLAYABLE_SUFFIX)
            os.replace(segment, target)
            log.warning("segment %s held nothing playable; set aside as %s", segment.name, target.name)
            set_aside.append(target)
    return set_aside


def recover_directory(directory: pathlib.Path, segments: list[pathlib.Path] | None = None) -> list[dict[str, Any]]:
    """Recover every segment of ``directory`` left without a manifest by a crash: trim its torn
    tail (`recover_segment`), read its facts back (`segment_describe`) and write its manifest, so
    it is registered like any other. Returns the manifests written (with "recovered": true and
    the folder's recording.json identity). Only ``segments`` when given (listed before any
    recorder started again in this folder); else every segment without a manifest, so call it
    without ``segments`` only when no recorder writes in this folder."""
    directory = pathlib.Path(directory)
    identity = read_manifest(directory / RECORDING_INFO_NAME) or {}
    if segments is None:
        set_aside_unplayable(directory)
        segments = unmanifested_segments(directory)
    written = []
    for segment in segments:
        if not segment.exists() or manifest_path(segment).exists():
            continue
        try:
            recovered = recover_segment(segment)
            if recovered is None:
                continue
            facts = segment_describe(segment)
        except (OSError, av.FFmpegError, IndexError, struct.error) as error:
            log.error("segment %s could not be recovered: %s", segment, error)
            continue
        report = {
            **facts,
            "index": recovered["index"],
            "sha256": recovered["sha256"],
            "size": recovered["size"],
            "recovered": True,
            "truncated_bytes": recovered["truncated_bytes"],
            **{k: str(v) for k, v in identity.items()},
        }
        written.append(write_manifest(segment, report))
        log.info("recovered %s: %d video frames, %d bytes cut", segment.name, facts["video_frames"], recovered["truncated_bytes"])
    return written


def _first_fragment_end(path: pathlib.Path) -> int:
    """Where the first complete moof+mdat pair ends in ``path``; 0 if there is none."""
    pending_moof = False
    with open(path, "rb") as handle:
        for end, kind in _complete_boxes(handle, path.stat().st_size):
            if kind == b"moof":
                pending_moof = True
            elif kind == b"mdat" and pending_moof:
                return end
            else:
                pending_moof = False
    return 0


def _complete_boxes(handle: Any, total: int) -> Iterator[tuple[int, bytes]]:
    """(end offset, type) of each complete top-level MP4 box of a file of ``total`` bytes, in
    order, stopping at a torn tail (a box that runs past the end)."""
    position = 0
    while position + 8 <= total:
        handle.seek(position)
        header = handle.read(16)
        size, kind = struct.unpack(">I4s", header[:8])
        if size == 1 and len(header) == 16:
            size = struct.unpack(">Q", header[8:16])[0]
        elif size == 0:
            size = total - position
        if size < 8 or position + size > total:
            return
        position += size
        yield position, kind


def opus_packet_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716, 3.1); 0 if
    the packet is malformed."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            return 0
        count = packet[1] & 0x3F
    samples = frame * count
    return samples if samples <= 5760 else 0  # at most 120 ms per packet


def _epoch(frame: EncodedFrame) -> float:
    """Wall-clock time at which this frame's clock read 0."""
    if frame.ingest_time <= 0:
        return 0.0
    return frame.ingest_time - frame.pts / frame.clock_rate


def _opus_head(channels: int) -> bytes:
    # RFC 7845 5.1: magic, version 1, channels, pre-skip, input rate, gain 0, mapping family 0.
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, AUDIO_CLOCK, 0, 0)


def _nal_units(access_unit: bytes):  # type: ignore[no-untyped-def]
    """Yield (nal_type, payload) for each Annex-B NAL unit, stopping at the first slice."""
    position = access_unit.find(b"\x00\x00\x01")
    while position != -1:
        start = position + 3
        if start >= len(access_unit):
            return
        nal_type = access_unit[start] & 0x1F
        following = access_unit.find(b"\x00\x00\x01", start)
        end = len(access_unit) if following == -1 else following
        yield nal_type, access_unit[start:end]
        if nal_type in _H264_VCL_NALS:
            return
        position = following


def _parameter_sets(access_unit: bytes) -> bytes:
    """The SPS and PPS NAL units that precede the first slice, concatenated."""
    return b"".join(
        # A 4-byte start code leaves its leading zero at the end of the previous unit.
        payload.rstrip(b"\x00")
        for nal_type, payload in _nal_units(access_unit)
        if nal_type in (_H264_NAL_SPS, _H264_NAL_PPS)
    )


def _picture_size(access_unit: bytes) -> tuple[int, int]:
    """Width and height from the SPS, via FFmpeg's H.264 parser (bitstream only, no decode)."""
    context = av.CodecContext.create("h264", "r")
    try:
        context.parse(access_unit)
        context.parse(None)  # the parser reports a frame only once it knows the frame ended
    except av.FFmpegError:
        return 0, 0
    return context.width, context.height


def _highest_segment_index(directory: pathlib.Path) -> int:
    """The highest segment number in ``directory``, -1 when it holds none (the first is 0)."""
    highest = -1
    for entry in directory.iterdir():
        match = _SEGMENT_PATTERN.match(entry.name)
        if match:
            highest = max(highest, int(match.group(1)))
    return highest
