"""Celery tasks of the recordings pipeline: finalize, archive, export, erase, retention.

Enqueued only by recordings.services after the transaction commits. Each task takes ids, loads
the row, calls the service of the same name and owns retries (transient failures: the database,
the disk, the edge, segments not registered yet). Tasks are idempotent, acknowledged late and
re-queued when their worker dies, so a killed worker's job runs again from where it left off.
They never decide anything the service does not.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

# Configures the Celery app from Django settings (broker, eager mode). orstream/__init__.py stays
# empty so that edge processes never load Celery; the Django side loads it here, with its tasks.
import orstream.celery  # noqa: F401
from orstream.edgeclient import EdgeError

from . import services
from .models import ArchiveChunk, ArchiveCopy, ExportJob, Recording
from .services import archive

RETRY_ON = (DatabaseError, OSError, EdgeError, services.RecordingNotReady)
OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": RETRY_ON,
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(name="recordings.tasks.recording_finalize", **OPTIONS)
def recording_finalize(self: Any, recording_id: int) -> str:
    recording = services.recording_finalize(recording=Recording.objects.get(pk=recording_id))
    return recording.status


@shared_task(name="recordings.tasks.recording_archive", **OPTIONS)
def recording_archive(self: Any, recording_id: int) -> str:
    recording = services.recording_archive(recording=Recording.objects.get(pk=recording_id))
    return recording.storage_key


@shared_task(name="recordings.tasks.recording_export", **OPTIONS)
def recording_export(self: Any, job_id: int) -> str:
    job = services.recording_export(job=ExportJob.objects.get(pk=job_id))
    return job.status


@shared_task(name="recordings.tasks.recording_erase", **OPTIONS)
def recording_erase(self: Any, recording_id: int) -> str:
    recording = services.recording_erase(recording=Recording.objects.get(pk=recording_id))
    return recording.status


@shared_task(name="recordings.tasks.retention_apply", **OPTIONS)
def retention_apply(self: Any) -> dict[str, list[str]]:
    result = services.retention_apply()
    return {"erased": result.erased, "held": result.held, "resumed": result.resumed}


@shared_task(name="recordings.tasks.recording_sweep", **OPTIONS)
def recording_sweep(self: Any) -> dict[str, list[str]]:
    result = services.recording_sweep()
    return {"finalized": result.finalized, "failed": result.failed, "waiting": result.waiting}


# The long-term archive (recordings.services.archive): one task per step and one per chunk, so chunks are
# encoded by as many workers as there are. A worker killed mid-chunk is not acknowledged (acks_late)
# and its message goes back to the queue (reject_on_worker_lost): another run encodes the chunk again.


@shared_task(name="recordings.tasks.archive_request", **OPTIONS)
def archive_request(self: Any, recording_id: int) -> str:
    return archive.archive_request(recording=Recording.objects.get(pk=recording_id)).status


@shared_task(name="recordings.tasks.archive_prepare", **OPTIONS)
def archive_prepare(self: Any, archive_id: int) -> str:
    return archive.archive_prepare(archive=ArchiveCopy.objects.get(pk=archive_id)).status


@shared_task(name="recordings.tasks.archive_chunk_encode", **OPTIONS)
def archive_chunk_encode(self: Any, chunk_id: int) -> str:
    return archive.archive_chunk_encode(chunk=ArchiveChunk.objects.get(pk=chunk_id)).status


@shared_task(name="recordings.tasks.archive_join", **OPTIONS)
def archive_join(self: Any, archive_id: int) -> str:
    return archive.archive_join(archive=ArchiveCopy.objects.get(pk=archive_id)).status


@shared_task(name="recordings.tasks.archive_originals_apply", **OPTIONS)
def archive_originals_apply(self: Any) -> list[str]:
    return archive.archive_originals_apply()
