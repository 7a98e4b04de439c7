"""Retention: how long a recording is kept for its purpose, and the daily pass that erases what is due.

Called by the retention task and the recording's creation (retention_until).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.utils import timezone

from ..models import Recording, RetentionPolicy, RetentionPurpose
from .common import RecordingError
from .erasure import ERASE_STALE_AFTER, recording_erase

log = logging.getLogger(__name__)


def retention_until(*, purpose: str, start: date) -> date:
    """The last day a recording kept for ``purpose`` and started on ``start`` is kept."""
    policy = RetentionPolicy.objects.filter(purpose=purpose).first()
    if policy is not None:
        days = policy.days
    else:
        days = {
            RetentionPurpose.CLINICAL: settings.RETENTION_DAYS,
            RetentionPurpose.TRAINING: settings.RETENTION_TRAINING_DAYS,
            RetentionPurpose.RESEARCH: settings.RETENTION_RESEARCH_DAYS,
        }[RetentionPurpose(purpose)]
    return start + timedelta(days=days)


@dataclass(frozen=True)
class RetentionResult:
    erased: list[str]
    held: list[str]
    resumed: list[str]


def retention_apply(*, today: date | None = None) -> RetentionResult:
    """Erase recordings past their retain_until date, except those under legal hold; resume
    erasures whose worker died (erasing and untouched for ERASE_STALE_AFTER). Run daily by beat.
    """
    today = today or timezone.localdate()
    due = Recording.objects.filter(retain_until__lt=today).exclude(
        status__in=[Recording.Status.RECORDING, Recording.Status.FINALIZING, Recording.Status.ERASING, Recording.Status.ERASED]
    )
    held = [str(r.public_id) for r in due.filter(legal_hold=True)]
    erased = []
    for recording in due.filter(legal_hold=False):
        try:
            recording_erase(recording=recording, reason=f"retention ended {recording.retain_until}")
        except RecordingError:
            # Held in the meantime: the next run looks again.
            log.warning("retention could not erase recording %s", recording.public_id, exc_info=True)
            continue
        erased.append(str(recording.public_id))
    resumed = []
    stale = Recording.objects.filter(
        status=Recording.Status.ERASING, legal_hold=False, erase_started_at__lt=timezone.now() - ERASE_STALE_AFTER
    )
    for recording in stale:
        recording_erase(recording=recording, reason="resuming an interrupted erasure")
        resumed.append(str(recording.public_id))
    return RetentionResult(erased=erased, held=held, resumed=resumed)
