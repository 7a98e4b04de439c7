"""Export of a recording to a configured destination (a share, a removable drive) with a manifest.

Called by the library's export page and API (export_check, export_request) and the export task
(recording_export).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent import services as consent_services
from orstream import roles

from ..models import ExportJob, Recording, Segment

if TYPE_CHECKING:
    from .archive import ArchivePart
from .common import (
    CHUNK,
    Progress,
    RecordingAccessDenied,
    RecordingError,
    _actor,
    _audit,
    _enqueue,
    _parts,
    _progress_for,
    _segment_open,
    _sha256_file,
)


def export_destination_check(destination: Path) -> Path:
    """``destination`` resolved, when it is inside one of ORSTREAM_EXPORT_DESTINATIONS."""
    allowed = [Path(d).resolve() for d in settings.EXPORT_DESTINATIONS]
    target = Path(destination).resolve()
    if not any(target == root or target.is_relative_to(root) for root in allowed):
        choices = ", ".join(str(a) for a in allowed) or "none configured (ORSTREAM_EXPORT_DESTINATIONS)"
        raise RecordingError(f"Exports may only be written under: {choices}.")
    return target


def export_check(*, recording: Recording, destination: Path, by: Any) -> Path:
    """Who may export, and where to: the resolved destination, or a refusal (audited)."""
    if not roles.user_is_coordinator(by):
        _audit(recording, "recording.export", by, outcome="refused", reason="not coordinator")
        raise RecordingAccessDenied("Only the records office (coordinators) can export recordings.")
    try:
        return export_destination_check(destination)
    except RecordingError:
        _audit(recording, "recording.export", by, outcome="refused", reason="destination not allowed")
        raise


def export_request(*, recording: Recording, destination: Path, by: Any) -> ExportJob:
    """Queue a verified copy of ``recording`` to ``destination`` (checked against the allow-list)."""
    target = export_check(recording=recording, destination=destination, by=by)
    with transaction.atomic():
        job = ExportJob.objects.create(
            recording=recording, kind=ExportJob.Kind.COPY, destination=str(target), requested_by=by
        )
        _enqueue("recording_export", job.pk)
    return job


def recording_export(*, job: ExportJob, progress: Progress | None = None) -> ExportJob:
    """Copy the recording's segments and a SHA256SUMS manifest into ``<destination>/<recording id>/``.

    Each copy is read back and its SHA-256 compared with the registered one. Progress is in
    bytes. Refused (and audited) when the recording is not available: consent withdrawn, erased.
    Idempotent: a finished job is returned as it is; a re-run copies again over a partial copy.
    """
    job = ExportJob.objects.select_related("recording__session", "requested_by").get(pk=job.pk)
    if job.status == ExportJob.Status.DONE:
        return job
    recording, by = job.recording, job.requested_by
    if recording.status != Recording.Status.AVAILABLE:
        message = f"The recording is {recording.get_status_display().lower()}: it cannot be exported."
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=message, finished_at=timezone.now())
        _audit(recording, "recording.export", by, outcome="refused", reason=f"status {recording.status}")
        raise RecordingError(message)
    try:
        consent_services.consent_require(session=recording.session, purpose="record", actor=_actor(by), action="recording.export")
    except consent_services.ConsentError as refusal:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=str(refusal), finished_at=timezone.now())
        raise RecordingError(str(refusal)) from None
    target = export_destination_check(Path(job.destination)) / recording.prefix
    report = progress or _progress_for(recording, "export")
    segments = _parts(recording)
    total = sum(s.size for s in segments)
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.COPYING, bytes_total=total, bytes_copied=0, progress=0)
    _audit(recording, "recording.export", by, destination=str(target), export=str(job.public_id))
    target.mkdir(parents=True, exist_ok=True)
    copied = 0
    lines = []
    try:
        for segment in segments:
            name = Path(segment.path).name
            partial = target / f".{name}.part"
            digest = hashlib.sha256()
            with _segment_open(segment) as source, partial.open("wb") as sink:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    digest.update(chunk)
                    sink.write(chunk)
                    copied += len(chunk)
                    percent = min(99, round(100 * copied / total)) if total else 99
                    ExportJob.objects.filter(pk=job.pk).update(bytes_copied=copied, progress=percent)
                    report("export", percent)
                sink.flush()
            if digest.hexdigest() != segment.sha256:
                raise RecordingError(f"Segment {segment.index} read back with another SHA-256: the archive is damaged.")
            with partial.open("rb") as written:
                if _sha256_file(written) != segment.sha256:
                    raise RecordingError(f"The copy of segment {segment.index} at the destination is corrupt; retry the export.")
            partial.replace(target / name)
            lines.append(f"{segment.sha256}  {name}\n")
        (target / "SHA256SUMS").write_text("".join(lines))
        (target / "recording.json").write_text(json.dumps(_manifest(recording, segments), indent=2))
    except (OSError, RecordingError) as failure:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=str(failure), finished_at=timezone.now())
        _audit(recording, "recording.export", by, outcome="refused", reason="copy failed", error=str(failure))
        raise
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportJob.Status.DONE, progress=100, bytes_copied=copied, sha256_verified=True, finished_at=timezone.now(), error=""
    )
    report("export", 100)
    job.refresh_from_db()
    return job


def _manifest(recording: Recording, segments: list[Segment | ArchivePart]) -> dict[str, Any]:
    """What travels with an export: pseudonymous ids, technical facts, checksums; no patient data."""
    return {
        "recording": str(recording.public_id),
        "session": str(recording.session.public_id),
        "procedure": recording.session.procedure,
        "started_at": recording.started_at.isoformat(),
        "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
        "duration": recording.duration,
        "video": {"codec": recording.video_codec, "width": recording.width, "height": recording.height, "fps": recording.fps},
        "audio": {"codec": recording.audio_codec},
        "segments": [{"index": s.index, "file": Path(s.path).name, "size": s.size, "sha256": s.sha256, "duration": s.duration} for s in segments],
    }
