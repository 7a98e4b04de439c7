"""The sweep: recordings left finalizing (a lost webhook, an edge that died, a worker that was
killed) are rebuilt from the spool and finalized, or reported failed with what to do.

Called by the sweep task (Celery beat, every minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..models import Recording
from .common import RecordingError, RecordingNotReady
from .lifecycle import recording_rebuild_from_spool
from .spool import recording_spool_read
from .verify import _fail, recording_finalize


@dataclass(frozen=True)
class SweepResult:
    finalized: list[str]
    failed: list[str]
    waiting: list[str]


def recording_sweep(*, now: datetime | None = None) -> SweepResult:
    """Recordings left finalizing (a lost webhook, an edge that died, a worker that was killed):
    rebuild their segments from the spool's manifests, take the count from there when the edge
    never said it, and finalize them; report as failed, with what to do, those still stuck after
    RECORDINGS_STUCK_MINUTES. Run every minute by Celery beat; idempotent."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.RECORDINGS_SWEEP_GRACE_SECONDS)
    stuck_after = timedelta(minutes=settings.RECORDINGS_STUCK_MINUTES)
    candidates = Recording.objects.select_related("session").filter(ended_at__lt=now - grace).filter(
        Q(status=Recording.Status.FINALIZING) | Q(status=Recording.Status.RESTRICTED, verified_at__isnull=True)
    )
    finalized, failed, waiting = [], [], []
    for recording in candidates:
        recording_rebuild_from_spool(recording=recording)
        spool = recording_spool_read(recording=recording)
        if recording.expected_segments is None and not spool.unmanifested:
            # The edge never said how many it closed: its manifests say it.
            Recording.objects.filter(pk=recording.pk, expected_segments__isnull=True).update(
                expected_segments=len(spool.manifests)
            )
        recording.refresh_from_db()
        try:
            recording = recording_finalize(recording=recording)
        except RecordingNotReady as wait:
            if recording.ended_at is not None and recording.ended_at < now - stuck_after:
                _fail(recording, f"{wait} Nothing more came from the media server for {settings.RECORDINGS_STUCK_MINUTES} minutes.")
                failed.append(str(recording.public_id))
            else:
                waiting.append(str(recording.public_id))
            continue
        except RecordingError:
            failed.append(str(recording.public_id))
            continue
        if recording.verified_at is not None:
            finalized.append(str(recording.public_id))
    return SweepResult(finalized=finalized, failed=failed, waiting=waiting)
