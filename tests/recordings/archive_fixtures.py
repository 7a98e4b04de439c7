"""Archive test material: textured clips (real texture and motion, the way an operative field
resists compression) recorded as the edge records them, in segments, and registered, verified and
stored through the recordings services like any recording."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.utils import timezone

from recordings import encode, services
from recordings.models import Recording

SEGMENT_OPTIONS = "movflags=frag_keyframe+empty_moov+default_base_moof"


def textured_segments(
    folder: Path, *, width: int, height: int, seconds: float, segment_seconds: float, gop_seconds: float = 1.0,
    bitrate: int | None = None,
) -> list[Path]:
    """A textured clip cut into edge-like fragmented MP4 segments (stream copy, at its keyframes)."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = encode.textured_clip_write(
        folder / "clip.mp4", width=width, height=height, seconds=seconds, gop_seconds=gop_seconds, bitrate=bitrate
    )
    encode.ffmpeg_run(
        ["-i", str(clip), "-map", "0", "-c", "copy", "-f", "segment", "-segment_time", f"{segment_seconds:.3f}",
         "-reset_timestamps", "1", "-segment_format", "mp4", "-segment_format_options", SEGMENT_OPTIONS,
         str(folder / "seg-%05d.mp4")],
        what="cut the test clip into segments",
    )
    return sorted(folder.glob("seg-*.mp4"))


def stored_recording(session: Any, by: Any, segments: list[Path], spool: Path, *, width: int, height: int) -> Recording:
    """A recording whose segments are ``segments``: registered, finalized and stored (available)."""
    recording = Recording.objects.create(
        session=session, started_by=by, status=Recording.Status.FINALIZING, ended_at=timezone.now(),
        expected_segments=len(segments),
    )
    folder = spool / recording.prefix
    folder.mkdir(parents=True, exist_ok=True)
    for index, source in enumerate(segments):
        name = f"seg-{index:05d}.mp4"
        data = source.read_bytes()
        (folder / name).write_bytes(data)
        probe = encode.media_probe([source])
        services.segment_register(
            recording_public_id=str(recording.public_id), index=index, path=f"{recording.prefix}/{name}",
            sha256=hashlib.sha256(data).hexdigest(), size=len(data), duration=probe.duration,
            video_frames=probe.video_frames, audio_frames=probe.audio_packets, width=width, height=height,
            fps=round(probe.fps), video_codec="h264", audio_codec="opus",
        )
    recording = services.recording_finalize(recording=recording)
    assert recording.status == Recording.Status.AVAILABLE, recording.error
    return services.recording_archive(recording=recording)
