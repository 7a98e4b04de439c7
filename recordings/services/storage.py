"""Archiving: copy a verified recording's segments to storage (MEDIA_ROOT or S3) and check them.

Called by the archive task (recording_archive) only.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ..models import Recording, Segment
from .common import Progress, RecordingError, _enqueue, _progress_for, _sha256_file, _spool_path, _storage_put


def recording_archive(*, recording: Recording, progress: Progress | None = None) -> Recording:
    """Copy verified segments from the spool into Django storage, check each copy's SHA-256,
    then free the spool. Idempotent: segments already archived are skipped.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if recording.status in (Recording.Status.ERASING, Recording.Status.ERASED, Recording.Status.FAILED):
        return recording
    if recording.verified_at is None:
        raise RecordingError("Finalize (verify) the recording before archiving it.")
    report = progress or _progress_for(recording, "archive")
    segments = list(recording.segments.order_by("index"))
    for number, segment in enumerate(segments):
        if segment.archived_key:
            continue
        name = Path(segment.path).name
        with _spool_path(segment).open("rb") as source:
            key = _storage_put(f"recordings/{recording.prefix}/{name}", File(source, name=name))
        with default_storage.open(key, "rb") as copy:
            if _sha256_file(copy) != segment.sha256:
                default_storage.delete(key)
                raise RecordingError(f"The archived copy of segment {segment.index} differs from the original; retry.")
        Segment.objects.filter(pk=segment.pk).update(archived_key=key)
        _spool_path(segment).unlink(missing_ok=True)
        _spool_path(segment).with_suffix(".json").unlink(missing_ok=True)
        report("archive", round(100 * (number + 1) / len(segments)))
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(storage_key=f"recordings/{recording.prefix}/", archived_at=timezone.now())
        # Stored: with workers, its long-term archive copy is made next (recordings.services.archive).
        if settings.ARCHIVE_AUTO and recording.status == Recording.Status.AVAILABLE:
            _enqueue("archive_request", recording.pk)
    recording.refresh_from_db()
    return recording
