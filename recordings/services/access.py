"""Who may see, download, manage a recording, and the audited doors that open its media.

Called by the media views, the library pages and API, the progress consumer and the other
service modules (recording_access_check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent import services as consent_services
from consent.audit import audit_refusal_aggregated
from mentoring.models import Role
from orstream import roles

from ..models import Recording, Viewing
from .common import RecordingAccessDenied, RecordingError, _actor, _audit, _parts, _segment_open

RecordingScope = Callable[[Any], Q | None]


class RecordingScopes:
    """What faculty and residents may see beyond their own sessions, narrowed by the apps above
    (training registers its programmes' scope in ``TrainingConfig.ready()``), so recordings
    imports none of them. A scope returns a filter on Recording for a user, or None when it does
    not narrow that user; a user sees what every registered scope allows. Coordinators and a
    recording's own surgeon are never narrowed."""

    def __init__(self) -> None:
        self._scopes: dict[str, RecordingScope] = {}

    def register(self, name: str, scope: RecordingScope) -> None:
        self._scopes[name] = scope

    def filter_for(self, user: Any) -> Q | None:
        found = [q for scope in self._scopes.values() if (q := scope(user)) is not None]
        if not found:
            return None
        combined = found[0]
        for q in found[1:]:
            combined &= q
        return combined


recording_scopes = RecordingScopes()


def recording_in_scope(*, recording: Recording, user: Any) -> bool:
    """Is ``recording`` within what the registered scopes let ``user`` see (a faculty member's or
    resident's programme, the curated library)? Not a consent check: that comes on top."""
    scope = recording_scopes.filter_for(user)
    return scope is None or Recording.objects.filter(scope, pk=recording.pk).exists()


def recording_access_check(*, recording: Recording, user: Any, action: str) -> None:
    """Allow or refuse ``user`` to view/download ``recording``, auditing a refusal.

    Coordinators and the session's surgeon may view an available recording. Faculty and the
    session's residents (or users in the resident group) only within their scope (their
    programme's recordings and the curated library, as training registers it) and only if the
    patient consented to training use (archive_training). Nobody views a restricted, failed or
    erased one.
    """
    session = recording.session
    if not getattr(user, "is_authenticated", False):
        audit_refusal_aggregated(
            action=action, reason="not signed in", key=str(recording.public_id),
            session_public_id=str(recording.session.public_id), detail={"target": f"recording:{recording.public_id}"},
        )
        raise RecordingAccessDenied("Sign in to view recordings.")
    if recording.status != Recording.Status.AVAILABLE:
        _audit(recording, action, user, outcome="refused", reason=f"status {recording.status}")
        if recording.status == Recording.Status.RESTRICTED:
            raise RecordingAccessDenied("This recording is restricted: the patient withdrew consent.")
        raise RecordingAccessDenied(f"This recording is {recording.get_status_display().lower()} and cannot be viewed.")
    if roles.user_runs_session(user, session):
        return
    is_trainer_or_trainee = (
        roles.user_is_faculty(user)
        or session.participants.filter(user=user, role=Role.RESIDENT, removed_at__isnull=True).exists()
        or user.groups.filter(name=roles.RESIDENT).exists()
    )
    if not is_trainer_or_trainee:
        _audit(recording, action, user, outcome="refused", reason="no role in this recording")
        raise RecordingAccessDenied("You have no access to this recording. Ask the coordinator if you should.")
    if not recording_in_scope(recording=recording, user=user):
        _audit(recording, action, user, outcome="refused", reason="outside the user's programme and the library")
        raise RecordingAccessDenied(
            "This recording is not one of your training programme's, nor in the model-procedure library. "
            "Ask your programme director if you should see it."
        )
    try:
        consent_services.consent_require(session=session, purpose="archive_training", actor=_actor(user), action=action)
    except consent_services.ConsentError as refusal:
        raise RecordingAccessDenied(
            f"You cannot view this recording: the patient did not consent to its use for training ({refusal.purpose})."
        ) from None


@dataclass
class MediaFile:
    handle: IO[bytes]
    size: int
    name: str


def recording_media_open(*, recording: Recording, index: int, user: Any, browser: str) -> MediaFile:
    """Open segment ``index`` of ``recording`` for ``user`` (checked, and audited once per viewing).

    Call it for every request that serves bytes, whatever its Range header: the first request of
    a viewing writes its ``recording.view`` event before any byte is served (recording_viewing_touch).
    ``browser`` identifies the sign-in the request comes from (its session key).
    """
    recording_access_check(recording=recording, user=user, action="recording.view")
    segment = next((part for part in _parts(recording) if part.index == index), None)
    if segment is None:
        raise RecordingError(f"This recording has no part {index}.")
    recording_viewing_touch(recording=recording, user=user, browser=browser, index=index)
    return MediaFile(handle=_segment_open(segment), size=segment.size, name=f"{recording.prefix}-{index:05d}.mp4")


# A viewing seen this recently is not written again on every range request.
VIEWING_TOUCH_SECONDS = 60


def recording_viewing_touch(*, recording: Recording, user: Any, browser: str, index: int) -> Viewing:
    """The viewing this request belongs to: continued, or started and audited (``recording.view``).

    What a viewing is: every request of one signed-in user, from one sign-in (``browser``), for any
    part of one recording, with no pause longer than RECORDING_VIEWING_IDLE_MINUTES. A player's
    range requests and seeks, and the next part of the same recording, continue it; a pause that
    long, another browser or a new sign-in starts a new one. Concurrent first requests of one
    viewing (players fetch in parallel) write one event: viewings of a recording start one at a time.
    """
    digest = hashlib.sha256(f"orstream.viewing:{browser}".encode()).hexdigest()
    now = timezone.now()
    with transaction.atomic():
        list(Recording.objects.select_for_update().filter(pk=recording.pk).values_list("pk", flat=True))
        viewing = (
            Viewing.objects.filter(
                recording=recording,
                user=user,
                browser=digest,
                last_at__gte=now - timedelta(minutes=settings.RECORDING_VIEWING_IDLE_MINUTES),
            )
            .order_by("-last_at")
            .first()
        )
        if viewing is not None:
            if (now - viewing.last_at).total_seconds() >= VIEWING_TOUCH_SECONDS:
                viewing.last_at = now
                viewing.save(update_fields=["last_at"])
            return viewing
        viewing = Viewing.objects.create(recording=recording, user=user, browser=digest, started_at=now, last_at=now)
        _audit(recording, "recording.view", user, segment=index, viewing=viewing.pk)
    return viewing


def recording_may_manage(*, recording: Recording, user: Any) -> bool:
    """Export, legal hold and erasure are the records office's (coordinators')."""
    return roles.user_is_coordinator(user)


def recording_may_download(*, recording: Recording, user: Any) -> bool:
    """A download leaves the hospital's control: the records office and the operating surgeon."""
    return roles.user_runs_session(user, recording.session)


def recording_download_open(*, recording: Recording, index: int, user: Any) -> MediaFile:
    """Open part ``index`` as a download for ``user``: the records office or the surgeon; audited."""
    recording_access_check(recording=recording, user=user, action="recording.download")
    if not recording_may_download(recording=recording, user=user):
        _audit(recording, "recording.download", user, outcome="refused", reason="not coordinator or surgeon")
        raise RecordingAccessDenied("Only the records office and the operating surgeon can download recordings.")
    segment = next((part for part in _parts(recording) if part.index == index), None)
    if segment is None:
        raise RecordingError(f"This recording has no part {index}.")
    _audit(recording, "recording.download", user, segment=index)
    return MediaFile(handle=_segment_open(segment), size=segment.size, name=f"{recording.prefix}-{index:05d}.mp4")


def recording_stop_check(*, recording: Recording, user: Any) -> None:
    """May ``user`` stop ``recording``? The coordinator or the operating surgeon, as for a start;
    a refusal is audited."""
    if roles.user_runs_session(user, recording.session):
        return
    _audit(recording, "recording.stop", user, outcome="refused", reason="not coordinator or surgeon")
    raise RecordingAccessDenied("Only the coordinator or the operating surgeon can stop a recording.")


def recording_progress_check(*, recording: Recording, user: Any) -> None:
    """May ``user`` follow the progress of jobs on ``recording``? Coordinators always (they follow
    finalizing and erasure too); others when they may view it. Refusals are audited."""
    if roles.user_is_coordinator(user):
        return
    recording_access_check(recording=recording, user=user, action="recording.progress")
