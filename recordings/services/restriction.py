"""What a narrower consent does to recordings: restrict them to the medico-legal record and stop a
running one.

Called by the consent effects registered in RecordingsConfig.ready and by the admin.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from consent.effects import ConsentNarrowed
from mentoring.models import Session
from orstream import edgeclient

from ..models import Recording
from .common import _audit, _user
from .lifecycle import recording_live_stop_for_session


def recording_restrict_for_session(*, session: Session, reason: str, by: Any = None) -> list[Recording]:
    """Consent was withdrawn: restrict every recording of the session at once (no one may view or
    export them). Runs in the caller's transaction; returns the recordings restricted now.
    """
    restricted = []
    with transaction.atomic():
        for recording in Recording.objects.select_for_update().select_related("session").filter(
            session=session,
            status__in=[Recording.Status.RECORDING, Recording.Status.FINALIZING, Recording.Status.AVAILABLE],
        ):
            recording_restrict(recording=recording, reason=reason, by=by)
            restricted.append(recording)
    return restricted


def recording_restrict(*, recording: Recording, reason: str, by: Any = None) -> Recording:
    """Make one recording unavailable to everyone at once. A live one keeps its state until the
    edge stops: its status becomes restricted and finalizing leaves it so.
    """
    with transaction.atomic():
        Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.RESTRICTED, restricted_at=timezone.now())
        _audit(recording, "recording.restrict", by, reason=reason)
    recording.refresh_from_db()
    return recording


def recording_restrict_uncovered(*, change: ConsentNarrowed) -> None:
    """Consent effect, inside the withdrawal's transaction (registered in RecordingsConfig.ready):
    without consent to record, every recording of the session is restricted at once."""
    if change.covers("record"):
        return
    session = Session.objects.get(pk=change.session_id)
    recording_restrict_for_session(session=session, reason=change.reason, by=_user(change.by_id))


def recording_stop_uncovered(*, change: ConsentNarrowed) -> None:
    """Consent effect, after the withdrawal commits (in consent's retried job): stop at the edge
    the recordings it restricted while live. Raises EdgeError while one is still live, so the
    job tries again; a stopped one is not stopped twice."""
    if change.covers("record"):
        return
    session = Session.objects.get(pk=change.session_id)
    recording_live_stop_for_session(session=session, by=_user(change.by_id))
    if Recording.objects.filter(session=session, status=Recording.Status.RESTRICTED, ended_at__isnull=True).exists():
        raise edgeclient.EdgeError("the edge has not stopped the recording yet")
