"""What every recordings service module shares: the errors, the audit helper, storage and spool
paths, the progress channel and the task queue.

Called by the other modules of recordings.services only (the errors are re-exported for views,
the API and tasks).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.db import transaction

from consent.audit import audit_record

from ..models import Recording, Segment

if TYPE_CHECKING:
    from .archive import ArchivePart

log = logging.getLogger(__name__)


CHUNK = 1024 * 1024


# A segment path as the edge writes it: "<recording public id>/<file name>", nothing else.
SEGMENT_PATH = re.compile(r"^(?P<prefix>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/[A-Za-z0-9_.-]{1,80}$")


Progress = Callable[[str, int], None]


class RecordingError(Exception):
    """A recording request that cannot be honoured; the message says what to do about it."""


class RecordingNotReady(RecordingError):
    """Segments the edge announced are not registered yet: finalizing is retried later."""


class RecordingEdgeUnavailable(RecordingError):
    """The media server did not answer a live action; trying again may work (a 502 to callers)."""


class RecordingAccessDenied(RecordingError):
    """A view, download or export refused to this person (already audited)."""


def _actor(by: Any) -> str:
    if by is None:
        return "system"
    if getattr(by, "is_authenticated", False):
        return f"user:{by.pk}"
    return "anonymous"


def _audit(recording: Recording, action: str, by: Any, *, outcome: str = "allowed", **detail: Any) -> None:
    audit_record(
        action=action,
        actor=_actor(by),
        outcome=outcome,
        session_public_id=str(recording.session.public_id),
        target=f"recording:{recording.public_id}",
        detail=detail,
    )


def recording_group(recording: Recording) -> str:
    return f"recording.{recording.public_id}"


def recording_progress_send(*, recording: Recording, stage: str, percent: int) -> None:
    """Push progress to the recording's Channels group (the library page and the coordinator).

    Sent at once, not after a commit: progress is about work outside any transaction.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "recording.progress", "stage": stage, "percent": int(percent)}
    try:
        async_to_sync(layer.group_send)(recording_group(recording), message)
    except Exception:  # Progress is a courtesy: a busy channel layer must not fail the job.
        log.warning("progress for recording %s not sent", recording.public_id, exc_info=True)


def _progress_for(recording: Recording, stage: str) -> Progress:
    last = {"percent": -1}

    def report(stage_now: str, percent: int) -> None:
        if percent != last["percent"]:
            last["percent"] = percent
            recording_progress_send(recording=recording, stage=stage_now or stage, percent=percent)

    return report


def _sha256_file(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _storage_put(key: str, content: File[Any]) -> str:
    """Write ``content`` at exactly ``key`` in storage, replacing what is there: a job that died
    after a write and runs again overwrites its own file instead of leaving a renamed copy."""
    if default_storage.exists(key):
        default_storage.delete(key)
    saved = default_storage.save(key, content)
    if saved != key:
        # A backend that renamed it (a concurrent writer): keep one object, at the fixed key.
        default_storage.delete(saved)
        raise RecordingError(f"Storage kept {key} under another name; retry.")
    return key


def _storage_keys_under(prefix: str) -> list[str]:
    """Every key under ``prefix`` (a folder in storage), recursively."""
    try:
        folders, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    keys = [f"{prefix.rstrip('/')}/{name}" for name in files]
    for folder in folders:
        keys += _storage_keys_under(f"{prefix.rstrip('/')}/{folder}")
    return keys


def _spool_path(segment: Segment) -> Path:
    return Path(settings.RECORDINGS_SPOOL_DIR) / segment.path


def _parts(recording: Recording) -> list[Segment | ArchivePart]:
    """What plays, downloads and exports: the recording's segments or, once its originals were
    removed, the accepted archive copy that replaced them (recordings.services.archive)."""
    from .archive import archive_parts_for  # the archive module builds on this one

    replaced = archive_parts_for(recording=recording)
    return list(replaced) if replaced else list(recording.segments.order_by("index"))


def _spool_path_of(part: Segment | ArchivePart) -> Path:
    return Path(settings.RECORDINGS_SPOOL_DIR) / part.path


def _segment_open(segment: Segment | ArchivePart) -> IO[bytes]:
    """The segment's bytes: from storage once archived, from the spool before."""
    if segment.archived_key:
        return default_storage.open(segment.archived_key, "rb")
    return _spool_path_of(segment).open("rb")


def _segment_local_path(segment: Segment) -> str:
    """A path PyAV can open. For storage that is not on this disk (S3), a URL PyAV can stream."""
    if segment.archived_key:
        try:
            return default_storage.path(segment.archived_key)
        except NotImplementedError:
            return default_storage.url(segment.archived_key)
    return str(_spool_path(segment))


def _awaits_finalize(recording: Recording) -> bool:
    if recording.status == Recording.Status.FINALIZING:
        return True
    # Restricted by a withdrawal while live: still verified once the edge stopped it.
    return recording.status == Recording.Status.RESTRICTED and recording.verified_at is None and recording.ended_at is not None


def _user(pk: int | None) -> Any:
    return None if pk is None else get_user_model().objects.filter(pk=pk).first()


def _enqueue(name: str, pk: int) -> None:
    """Queue the task of the same name after the current transaction commits.

    Robust: a broker that is down at that instant is logged and does not undo the committed
    change; rows left finalizing or erasing are picked up again (retention resumes erasures).
    """

    def send() -> None:
        from celery.exceptions import Retry

        from .. import tasks

        try:
            getattr(tasks, name).delay(pk)
        except Retry as wait:
            # Eager (the embedded default, no worker): a job that has to wait (the edge has not
            # registered its last segment yet) raises Retry here instead of being retried later.
            # Not an error: the edge's next notice runs it again, and the beat sweep after that.
            log.info("%s of recording %s waits: %s", name, pk, wait.exc or wait)

    transaction.on_commit(send, robust=True)
