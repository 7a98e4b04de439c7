"""Legal hold and erasure of a recording's files (the row and its audit trail stay).

Called by the library's hold and erasure pages, the admin, the erase task and retention.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from orstream import roles

from ..models import Recording, Segment
from .common import RecordingAccessDenied, RecordingError, _audit, _enqueue, _spool_path, _storage_keys_under
from .spool import _spool_folder

# An erasure that has not progressed for this long is taken to be dead and is resumed by retention.
ERASE_STALE_AFTER = timedelta(minutes=15)


def recording_legal_hold(*, recording: Recording, hold: bool, reason: str, by: Any) -> Recording:
    """Put a recording under legal hold (never erased, even past retention) or release it."""
    if not roles.user_is_coordinator(by):
        raise RecordingAccessDenied("Only the records office (coordinators) can change a legal hold.")
    if hold and not reason.strip():
        raise RecordingError("Say why the recording is held (case or request reference).")
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(legal_hold=hold, legal_hold_reason=reason if hold else "")
        _audit(recording, "recording.legal_hold", by, hold=hold, reason=reason)
    recording.refresh_from_db()
    return recording


def erase_request(*, recording: Recording, by: Any, reason: str) -> Recording:
    """A person asks for erasure: checked here, carried out by the recording_erase task after commit."""
    if not roles.user_is_coordinator(by):
        _audit(recording, "recording.erase", by, outcome="refused", reason="not coordinator")
        raise RecordingAccessDenied("Only the records office (coordinators) can erase recordings.")
    if recording.legal_hold:
        _audit(recording, "recording.erase", by, outcome="refused", reason="legal hold")
        raise RecordingError("This recording is under legal hold: release the hold before erasing it.")
    with transaction.atomic():
        _mark_erasing(recording, by=by, reason=reason)
        _enqueue("recording_erase", recording.pk)
    recording.refresh_from_db()
    return recording


def _mark_erasing(recording: Recording, *, by: Any, reason: str) -> bool:
    updated = Recording.objects.filter(pk=recording.pk).exclude(status__in=[Recording.Status.ERASING, Recording.Status.ERASED]).update(
        status=Recording.Status.ERASING, erase_started_at=timezone.now()
    )
    if updated:
        _audit(recording, "recording.erase", by, step="started", reason=reason)
    return bool(updated)


def _recording_files(recording: Recording) -> Iterator[tuple[str, Callable[[], None]]]:
    """(description, delete) for every file of the recording; each delete tolerates a missing file."""
    for segment in recording.segments.order_by("index"):
        spool = _spool_path(segment)
        yield f"spool segment {segment.index}", partial(spool.unlink, missing_ok=True)
        if segment.archived_key:
            yield f"archived segment {segment.index}", partial(default_storage.delete, segment.archived_key)
    for key in (recording.thumbnail, recording.contact_sheet):
        if key:
            yield "picture", partial(default_storage.delete, key)


def recording_erase(*, recording: Recording, by: Any = None, reason: str = "") -> Recording:
    """Erase a recording's media. Safe to run twice and after a worker died half-way.

    Marks the recording erasing (and audits it) before touching a file, deletes every file
    (a missing file counts as deleted), then marks it erased and audits that. A legal hold stops
    it before anything is deleted. Rows stay, with checksums and sizes, as the record of what was
    erased; the files themselves are gone.
    """
    recording = Recording.objects.select_related("session").get(pk=recording.pk)
    if recording.status == Recording.Status.ERASED:
        return recording
    if recording.legal_hold:
        _audit(recording, "recording.erase", by, outcome="refused", reason="legal hold")
        raise RecordingError("This recording is under legal hold: release the hold before erasing it.")
    if recording.status == Recording.Status.RECORDING:
        raise RecordingError("Stop the recording before erasing it.")
    with transaction.atomic():
        if not _mark_erasing(recording, by=by, reason=reason):
            _audit(recording, "recording.erase", by, step="resumed")
    pause = settings.RECORDINGS_ERASE_PAUSE_SECONDS
    deleted = 0
    for _, delete in _recording_files(recording):
        delete()
        deleted += 1
        # Keeps "erase_started_at" fresh so retention does not resume an erasure that is alive.
        if deleted % 50 == 0:
            Recording.objects.filter(pk=recording.pk).update(erase_started_at=timezone.now())
        if pause:
            time.sleep(pause)
    # Whatever else lies under the recording's prefix (a copy a killed job left, pictures, the
    # edge's manifests and set-aside files): removed too, then checked.
    for key in _storage_keys_under(f"recordings/{recording.prefix}"):
        default_storage.delete(key)
        deleted += 1
    folder = _spool_folder(recording)
    shutil.rmtree(folder, ignore_errors=True)
    left = _storage_keys_under(f"recordings/{recording.prefix}") + ([str(folder)] if folder.exists() else [])
    if left:
        # Retried by the task; the recording stays "erasing", so retention resumes it too.
        raise OSError(f"{len(left)} file(s) of recording {recording.public_id} are still there after erasing; retrying.")
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(
            status=Recording.Status.ERASED, erased_at=timezone.now(), thumbnail="", contact_sheet="", storage_key=""
        )
        Segment.objects.filter(recording=recording).update(archived_key="")
        _audit(recording, "recording.erase", by, step="completed", files=deleted)
    recording.refresh_from_db()
    return recording
