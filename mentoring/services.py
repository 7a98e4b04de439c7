"""Mentoring services: scheduling, participants, invitations, join tokens, admission.

Every write and every rule of the mentoring app lives here; views, the API, the consumer and
tasks call these functions and nothing else. Broadcasts and e-mails leave only after the
transaction commits. Never logs a join token or a patient reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from consent import services as consent_services
from consent.effects import ConsentNarrowed
from orstream import roles
from orstream.edge import protocol

from . import calendar, edge
from .models import (
    Annotation,
    Connection,
    JoinToken,
    OperatingRoom,
    Participant,
    PresenceEvent,
    Role,
    Session,
)

log = logging.getLogger(__name__)

TOKEN_SALT = "orstream.join"

# Which consent purpose each role's live viewing needs. Surgeons and coordinators are part of the
# care team in the room; everyone else watches a patient's procedure and needs the patient's word.
ROLE_PURPOSE = {
    Role.MENTOR: "live_internal",
    Role.SPECIALIST: "live_internal",
    Role.RESIDENT: "live_internal",
    Role.OBSERVER: "live_internal",
    Role.DISPLAY: "live_internal",
}


class SchedulingError(Exception):
    """A scheduling request that cannot be honoured. ``field`` names the form field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JoinRefused(Exception):
    """A join token that does not admit its holder. The message is shown to them as is."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# What a coordinator administers in /admin/ when made staff: operating rooms (the edge and feed
# of each room live only there), and a read-only view of sessions, people, recordings and consent
# to look into a problem. Every other change goes through the pages and their services, and
# nothing is ever deleted from the admin (the audit trail and PROTECT keys rely on it).
COORDINATOR_ADMIN_PERMISSIONS = (
    "mentoring.add_operatingroom", "mentoring.change_operatingroom", "mentoring.view_operatingroom",
    "mentoring.view_session", "mentoring.view_participant", "mentoring.view_jointoken",
    "mentoring.view_presenceevent", "mentoring.view_annotation",
    "recordings.view_recording", "recordings.view_segment", "recordings.view_exportjob",
    "consent.view_consentform", "consent.view_consentrecord", "consent.view_auditevent",
)


def coordinator_staff_grant(*, user: Any) -> list[str]:
    """Let a coordinator into /admin/ with the coordinator group's limited permissions (never
    superuser). Returns the permissions the group holds."""
    group, _ = Group.objects.get_or_create(name=roles.COORDINATOR)
    wanted: list[Permission] = []
    for name in COORDINATOR_ADMIN_PERMISSIONS:
        app_label, codename = name.split(".")
        wanted.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    group.permissions.add(*wanted)
    user.groups.add(group)
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return sorted(f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type"))


def _send_after_commit(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    transaction.on_commit(lambda: async_to_sync(layer.group_send)(group, message))


def session_group(session: Session) -> str:
    return f"session.{session.public_id}"


# ---------------------------------------------------------------- rooms and sessions


def room_create(*, name: str, location: str = "", edge_url: str = "", ingest_url: str = "") -> OperatingRoom:
    if OperatingRoom.objects.filter(name__iexact=name.strip()).exists():
        raise SchedulingError(f"An operating room called {name!r} already exists.", field="name")
    return OperatingRoom.objects.create(name=name.strip(), location=location, edge_url=edge_url, ingest_url=ingest_url)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SchedulingError(
            f"Unknown time zone {name!r}: use a name such as Europe/Paris or America/New_York.", field="time_zone"
        ) from None


def session_when(*, session: Session) -> str:
    """The session's planned times in its own time zone, as the pages and the e-mails print them:
    ``Tue 01 Dec 2026 09:00-12:00 (Europe/Paris)``; the .ics carries the same zone (VTIMEZONE)."""
    zone = _zone(session.time_zone)
    start, end = session.planned_start.astimezone(zone), session.planned_end.astimezone(zone)
    until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %d %b %Y %H:%M}"
    return f"{start:%a %d %b %Y %H:%M}-{until} ({session.time_zone})"


def session_moment(*, session: Session, moment: datetime) -> str:
    """A moment of the session (a recording's start, consent taken) in the session's time zone."""
    return f"{moment.astimezone(_zone(session.time_zone)):%d %b %Y %H:%M} ({session.time_zone})"


def session_clock(*, session: Session, moment: datetime) -> str:
    """The time of day of a moment of the session, in its zone: ``09:04 (Europe/Paris)``."""
    return f"{moment.astimezone(_zone(session.time_zone)):%H:%M} ({session.time_zone})"


def _check_times(
    *, room: OperatingRoom, start: datetime, end: datetime, time_zone: str, exclude: Session | None = None
) -> None:
    _zone(time_zone)
    if timezone.is_naive(start) or timezone.is_naive(end):
        raise SchedulingError("Start and end need a time zone.", field="planned_start")
    if end <= start:
        raise SchedulingError("The end must be after the start.", field="planned_end")
    if start < timezone.now() - timedelta(minutes=5):
        raise SchedulingError("The start is in the past: choose a time from now on.", field="planned_start")
    if end - start > timedelta(hours=24):
        raise SchedulingError("A session lasts at most 24 hours.", field="planned_end")
    if not room.is_active:
        raise SchedulingError(f"{room.name} is not in service.", field="room")
    overlapping = (
        Session.objects.select_for_update()
        .filter(room=room, status__in=[Session.Status.SCHEDULED, Session.Status.LIVE])
        .filter(planned_start__lt=end, planned_end__gt=start)
    )
    if exclude is not None:
        overlapping = overlapping.exclude(pk=exclude.pk)
    clash = overlapping.order_by("planned_start").first()
    if clash is not None:
        zone = _zone(clash.time_zone)
        raise SchedulingError(
            f"{room.name} is already booked for {clash.procedure} "
            f"from {clash.planned_start.astimezone(zone):%Y-%m-%d %H:%M} "
            f"to {clash.planned_end.astimezone(zone):%H:%M} ({clash.time_zone}).",
            field="room",
        )


def session_schedule(
    *,
    room: OperatingRoom,
    procedure: str,
    surgeon: Any,
    planned_start: datetime,
    planned_end: datetime,
    time_zone: str,
    created_by: Any,
    patient_ref: str = "",
    notes: str = "",
) -> Session:
    """Schedule a session in ``room``. The surgeon becomes its first participant."""
    if not procedure.strip():
        raise SchedulingError("Name the procedure.", field="procedure")
    with transaction.atomic():
        # Lock the room row so two coordinators cannot book the same slot at once.
        OperatingRoom.objects.select_for_update().get(pk=room.pk)
        _check_times(room=room, start=planned_start, end=planned_end, time_zone=time_zone)
        session = Session.objects.create(
            room=room,
            procedure=procedure.strip(),
            surgeon=surgeon,
            planned_start=planned_start,
            planned_end=planned_end,
            time_zone=time_zone,
            patient_ref=patient_ref.strip(),
            notes=notes,
            created_by=created_by,
        )
        Participant.objects.create(
            session=session,
            role=Role.SURGEON,
            display_name=surgeon.get_full_name() or surgeon.get_username(),
            email=surgeon.email,
            user=surgeon,
        )
    return session


def session_reschedule(
    *, session: Session, planned_start: datetime, planned_end: datetime, time_zone: str | None = None
) -> Session:
    """Move a scheduled session; invitees get an updated invitation."""
    if session.status != Session.Status.SCHEDULED:
        raise SchedulingError("Only a scheduled session can be moved.")
    with transaction.atomic():
        OperatingRoom.objects.select_for_update().get(pk=session.room_id)
        zone = time_zone or session.time_zone
        _check_times(room=session.room, start=planned_start, end=planned_end, time_zone=zone, exclude=session)
        session.planned_start, session.planned_end, session.time_zone = planned_start, planned_end, zone
        session.sequence += 1
        session.save(update_fields=["planned_start", "planned_end", "time_zone", "sequence"])
        for participant in session.participants.filter(removed_at__isnull=True, invited_at__isnull=False):
            _mail_after_commit(participant, method="REQUEST")
    return session


def session_cancel(*, session: Session, by: Any) -> Session:
    """Cancel a scheduled session: invitees get METHOD:CANCEL, every join link stops working."""
    if session.status not in (Session.Status.SCHEDULED,):
        raise SchedulingError(f"A {session.get_status_display().lower()} session cannot be cancelled.")
    with transaction.atomic():
        session.status = Session.Status.CANCELLED
        session.sequence += 1
        session.save(update_fields=["status", "sequence"])
        JoinToken.objects.filter(participant__session=session, revoked_at__isnull=True).update(revoked_at=timezone.now())
        for participant in session.participants.filter(invited_at__isnull=False):
            _mail_after_commit(participant, method="CANCEL")
        consent_services.audit_record(
            action="session.cancel", actor=f"user:{by.pk}", session_public_id=str(session.public_id)
        )
    return session


def session_start(*, session: Session, by: Any) -> Session:
    """Take a session live. When the room feeds the edge directly, the edge starts ingesting first:
    if it cannot, the session stays scheduled and the error says why."""
    if session.status == Session.Status.LIVE:
        return session
    if session.status != Session.Status.SCHEDULED:
        raise SchedulingError(f"A {session.get_status_display().lower()} session cannot go live.")
    if session.room.ingest_url:
        try:
            _edge_prepare(session)
        except edge.EdgeError as failure:
            raise SchedulingError(f"The room's video feed could not be started: {failure}") from None
    with transaction.atomic():
        session.status = Session.Status.LIVE
        session.started_at = timezone.now()
        session.save(update_fields=["status", "started_at"])
        consent_services.audit_record(
            action="session.start", actor=f"user:{by.pk}", session_public_id=str(session.public_id)
        )
        _send_after_commit(session_group(session), {"type": "session.status", "status": session.status})
    return session


def session_end(*, session: Session, by: Any) -> Session:
    if session.status == Session.Status.ENDED:
        return session
    if session.status != Session.Status.LIVE:
        raise SchedulingError("Only a live session can be ended.")
    with transaction.atomic():
        session.status = Session.Status.ENDED
        session.ended_at = timezone.now()
        session.save(update_fields=["status", "ended_at"])
        transaction.on_commit(lambda: _edge_session_close(session))
        consent_services.audit_record(
            action="session.end", actor=f"user:{by.pk}", session_public_id=str(session.public_id)
        )
        _send_after_commit(session_group(session), {"type": "session.status", "status": session.status})
    return session


# A room's feed that is a local file still being written (the demo clip made by `make run`) is
# written beside its final name with this suffix, then renamed.
FEED_PREPARING_SUFFIX = ".part"
FEED_PREPARING_MESSAGE = (
    "The room's picture is still being prepared (the demo clip takes about a minute the first "
    "time): the video starts by itself as soon as it is ready."
)


def room_feed_state(*, room: OperatingRoom) -> str:
    """How the room's own feed stands: "none" (the OR console publishes), "ready", "preparing"
    (a local file still being written), or "missing" (a local file that is not there; the edge
    says so when asked to open it). A network feed counts as ready: the edge judges it."""
    url = room.ingest_url
    if not url:
        return "none"
    if "://" in url:
        return "ready"
    path = Path(url)
    if path.exists():
        return "ready"
    if path.with_name(path.name + FEED_PREPARING_SUFFIX).exists():
        return "preparing"
    return "missing"


def room_feed_start(*, room: OperatingRoom) -> list[Session]:
    """The room's feed can be opened now (its file is written): start it in every live session of
    the room that has no picture yet. Called by the demo server once the demo clip is made; the
    edge's "publisher.up" then brings every waiting page its picture. Returns those sessions."""
    started: list[Session] = []
    url = room.ingest_url
    if not url:
        return started
    for session in Session.objects.filter(room=room, status=Session.Status.LIVE):
        sid, edge_url = str(session.public_id), room.edge_url or None
        try:
            edge.session_open(sid, edge_url=edge_url)
            stats = edge.stats(sid, edge_url=edge_url)
            if stats.get("source") is None and stats.get("publisher") is None:
                edge.source_attach(sid, protocol.SourceAttach(url=url, loop="://" not in url), edge_url=edge_url)
                started.append(session)
        except edge.EdgeError as failure:
            log.warning("room feed not started in session %s: %s", session.public_id, failure)
    return started


def _edge_prepare(session: Session) -> bool:
    """Make sure the session's hub exists on its edge, fed by the room's own video when it has one.

    Idempotent: a hub the edge had to create anew (first go-live, or an edge that restarted) gets
    the room's feed attached. Returns True when the edge created the hub.
    """
    sid, edge_url = str(session.public_id), session.room.edge_url or None
    reply = edge.session_open(sid, edge_url=edge_url)
    created = bool(reply and reply.get("created", True))
    url = session.room.ingest_url
    # A feed still being prepared is started by room_feed_start once it is ready.
    if created and url and room_feed_state(room=session.room) != "preparing":
        edge.source_attach(sid, protocol.SourceAttach(url=url, loop="://" not in url), edge_url=edge_url)
    return created


ReattachHook = Callable[[Session], dict[str, Any]]


class ReattachHooks:
    """What apps above mentoring do when a live session is re-created on a restarted edge
    (recordings resumes its recording). Registered in their ``AppConfig.ready()``, so mentoring
    imports none of them; each hook returns what it did, for the audit trail."""

    def __init__(self) -> None:
        self._hooks: dict[str, ReattachHook] = {}

    def register(self, name: str, hook: ReattachHook) -> None:
        self._hooks[name] = hook

    def items(self) -> list[tuple[str, ReattachHook]]:
        return list(self._hooks.items())


reattach_hooks = ReattachHooks()


def session_reattach(*, session: Session) -> bool:
    """Put a live session back on its edge after the edge restarted (it lost every hub, feed and
    recorder): re-create the hub, re-start the room's feed, run the registered reattach hooks
    (the recording resumes in a new segment), and tell the pages the media server restarted, so
    they reconnect at once.

    Idempotent: on an edge that still has the hub nothing happens and False is returned. Called by
    the edge's "edge.started" webhook and by every media offer (whichever comes first after a
    restart). Raises edge.EdgeError when the edge cannot be reached.
    """
    if not _edge_prepare(session) or session.status != Session.Status.LIVE:
        return False
    detail = {name: hook(session) for name, hook in reattach_hooks.items()}
    consent_services.audit_record(
        action="session.reattach", actor="system", session_public_id=str(session.public_id), detail=detail
    )
    log.warning("session %s re-created on its edge after an edge restart", session.public_id)
    _send_after_commit(session_group(session), {"type": "session.notice", "notice": {"event": "edge.restarted"}})
    return True


def edge_restart_handle(*, boot_id: str) -> list[Session]:
    """An edge reports it has just started (webhook "edge.started"): re-attach every live session.

    Sessions on other edges are left as they are (their edge still has their hub). One session
    the edge cannot take does not stop the others. Returns the sessions re-created.
    """
    reattached: list[Session] = []
    for session in Session.objects.filter(status=Session.Status.LIVE).select_related("room"):
        try:
            if session_reattach(session=session):
                reattached.append(session)
        except edge.EdgeError as failure:
            log.warning("session %s not re-attached after edge start %s: %s", session.public_id, boot_id[:12], failure)
    return reattached


def _edge_session_close(session: Session) -> None:
    try:
        edge.session_close(str(session.public_id), edge_url=session.room.edge_url or None)
    except edge.EdgeError as failure:
        # The edge drops an idle hub on its own; the session is over either way.
        log.warning("edge did not close session %s: %s", session.public_id, failure)


def session_list_for(*, user: Any, include_past: bool = False) -> Any:
    sessions = Session.objects.select_related("room", "surgeon")
    if not include_past:
        sessions = sessions.filter(planned_end__gte=timezone.now() - timedelta(hours=12))
    if roles.user_is_coordinator(user):
        return sessions
    return sessions.filter(Q(surgeon=user) | Q(participants__user=user)).distinct()


# ---------------------------------------------------------------- participants and join tokens


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def join_token_mint(
    *, participant: Participant, valid_for: timedelta | None = None, one_time: bool = False, by: Any = None
) -> str:
    """Mint a join token bound to one session, participant and role. Only its hash is stored.

    By default it is valid until the planned end of the session plus the configured margin.
    """
    session = participant.session
    if valid_for is None:
        expires_at = max(session.planned_end, timezone.now()) + timedelta(hours=settings.JOIN_TOKEN_MAX_AGE_HOURS)
    else:
        expires_at = timezone.now() + valid_for
    claims = {
        "s": str(session.public_id),
        "p": str(participant.public_id),
        "r": participant.role,
        "e": int(expires_at.timestamp()),
        "n": secrets.token_urlsafe(12),
    }
    token = signing.dumps(claims, salt=TOKEN_SALT, compress=False)
    JoinToken.objects.create(
        participant=participant,
        token_hash=_token_hash(token),
        expires_at=expires_at,
        one_time=one_time,
        created_by=by if by is not None and getattr(by, "is_authenticated", False) else None,
    )
    return token


def join_url(token: str) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/join/{token}/"


def participant_add(
    *,
    session: Session,
    role: str,
    display_name: str,
    email: str = "",
    user: Any = None,
    is_external: bool = False,
    by: Any = None,
) -> Participant:
    if role not in Role.values:
        raise SchedulingError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", field="role")
    if not session.is_open:
        raise SchedulingError(f"This session is {session.get_status_display().lower()}: no one can be added.")
    if not display_name.strip():
        raise SchedulingError("Give the participant's name as others will see it.", field="display_name")
    participant = Participant.objects.create(
        session=session,
        role=role,
        display_name=display_name.strip(),
        email=email.strip(),
        user=user,
        is_external=is_external,
    )
    if by is not None:
        consent_services.audit_record(
            action="participant.add",
            actor=f"user:{by.pk}",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"role": role, "external": is_external},
        )
    return participant


def invitation_send(*, participant: Participant, by: Any = None) -> str:
    """Mint a join link for ``participant`` and e-mail it with an iCalendar REQUEST after commit.

    Returns the join URL (shown once to the coordinator; only the token's hash is kept).
    """
    if not participant.email:
        raise SchedulingError("This participant has no e-mail address to invite.", field="email")
    with transaction.atomic():
        token = join_token_mint(participant=participant, by=by)
        participant.invited_at = timezone.now()
        participant.save(update_fields=["invited_at"])
        url = join_url(token)
        _mail_after_commit(participant, method="REQUEST", url=url)
    return url


def _link_box() -> Fernet:
    # A join link crosses the broker sealed: the queue (Redis) never holds a usable token.
    key = hashlib.sha256(b"orstream.mail-link:" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def link_seal(url: str) -> str:
    return _link_box().encrypt(url.encode()).decode() if url else ""


def link_unseal(sealed: str) -> str:
    return _link_box().decrypt(sealed.encode()).decode() if sealed else ""


def _mail_after_commit(participant: Participant, *, method: str, url: str = "") -> None:
    """Queue the invitation e-mail once the transaction commits: a slow or failing mail server
    never holds up, or fails, the coordinator's request (the task retries with backoff)."""
    from . import tasks  # tasks call back into these services

    sealed = link_seal(url)
    transaction.on_commit(lambda: tasks.invitation_mail.delay(participant.pk, method, sealed))


def invitation_mail(*, participant: Participant, method: str, url: str = "") -> None:
    """Send one invitation (METHOD:REQUEST, with the join link when given) or cancellation
    (METHOD:CANCEL) e-mail with its iCalendar attachment. Called by mentoring.tasks.invitation_mail."""
    session = Session.objects.select_related("room", "surgeon").get(pk=participant.session_id)
    zone = _zone(session.time_zone)
    start = session.planned_start.astimezone(zone)
    if method == "CANCEL":
        subject = f"Cancelled: {session.procedure} on {start:%d %b %Y %H:%M}"
        body = (
            f"The telementoring session for {session.procedure} in {session.room.name} on "
            f"{session_when(session=session)} is cancelled. Your join link no longer works."
        )
    else:
        subject = f"Invitation: {session.procedure} on {start:%d %b %Y %H:%M}"
        link = f"Join link (personal, do not forward):\n{url}\n\n" if url else ""
        body = (
            f"You are invited as {participant.get_role_display()} to the telementoring session for "
            f"{session.procedure} in {session.room.name} on {session_when(session=session)}.\n\n"
            f"{link}Open the link in Chrome, Edge or Firefox a few minutes before the start."
        )
    ics = calendar.session_ics(session=session, method=method, attendees=[participant])
    message = EmailMultiAlternatives(subject=subject, body=body, to=[participant.email])
    message.attach("invite.ics", ics, f"text/calendar; method={method}; charset=utf-8")
    message.send()


def join_token_revoke(*, participant: Participant, by: Any, reason: str = "revoked") -> int:
    """Revoke every active token of ``participant`` and drop their live connection and media peer."""
    with transaction.atomic():
        count = JoinToken.objects.filter(participant=participant, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        consent_services.audit_record(
            action="token.revoke" if reason == "revoked" else "participant.remove",
            actor=f"user:{by.pk}",
            session_public_id=str(participant.session.public_id),
            target=f"participant:{participant.public_id}",
        )
        transaction.on_commit(partial(_participant_drop, participant, reason=reason))
    return count


def _participant_drop(participant: Participant, *, reason: str) -> None:
    """Close the participant's WebSocket and their peer on the edge, whatever their browser does."""
    _participant_tell_removed(participant, reason=reason)
    _participant_edge_drop(participant)


def _participant_tell_removed(participant: Participant, *, reason: str) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(
            session_group(participant.session),
            {"type": "participant.removed", "participant": str(participant.public_id), "reason": reason},
        )


def _participant_edge_drop(participant: Participant) -> None:
    session = participant.session
    try:
        edge.participant_remove(str(session.public_id), str(participant.public_id), edge_url=session.room.edge_url or None)
    except edge.EdgeError as failure:
        # No hub or no peer (never connected) is the common case; an unreachable edge has no peer to keep.
        log.info("edge did not drop a participant of session %s: %s", session.public_id, failure)


def participant_remove(*, participant: Participant, by: Any) -> Participant:
    """Remove a participant: their links stop working and their connection drops at once."""
    with transaction.atomic():
        participant.removed_at = timezone.now()
        participant.save(update_fields=["removed_at"])
        join_token_revoke(participant=participant, by=by, reason="removed")
    return participant


def participant_reinvite(*, participant: Participant, by: Any) -> str:
    """Give a participant whose links were revoked (or expired, or never sent) a new link: by
    e-mail with an invitation when they have an address, else shown once to the coordinator.
    Their earlier links stay revoked. Returns the new join URL."""
    session = participant.session
    if participant.removed_at is not None:
        raise SchedulingError(f"{participant.display_name} was removed from this session: add them again instead.")
    if not session.is_open:
        raise SchedulingError(f"This session is {session.get_status_display().lower()}: no one can be invited.")
    if participant.role == Role.SPECIALIST:
        raise SchedulingError("A specialist's link is one-time: call them in again with a new one-time link.")
    with transaction.atomic():
        if participant.email:
            url = invitation_send(participant=participant, by=by)
        else:
            url = join_url(join_token_mint(participant=participant, by=by))
        consent_services.audit_record(
            action="participant.reinvite",
            actor=f"user:{by.pk}",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"mailed": bool(participant.email)},
        )
    return url


def participant_link_state(*, participant: Participant) -> str:
    """Where the participant's links stand: ``active`` (one works), ``revoked`` (the last one was
    revoked), ``expired``, ``used`` (a one-time link spent), ``removed`` or ``none`` (never minted)."""
    if participant.removed_at is not None:
        return "removed"
    tokens = list(participant.tokens.all())
    if any(t.is_active for t in tokens):
        return "active"
    if not tokens:
        return "none"
    last = max(tokens, key=lambda t: t.created_at)
    if last.revoked_at is not None:
        return "revoked"
    return "used" if last.one_time and last.used_at else "expired"


def session_live_join(*, session: Session, user: Any) -> tuple[Participant, str]:
    """The signed-in coordinator's way into the live view: their own coordinator participant in
    ``session`` and a fresh 12-hour join token for it.

    Opening the live view never adds a second coordinator: the participant linked to their
    account is reused, or an unlinked coordinator row with their e-mail address (an invitation
    sent before they signed in) is linked to them; only without either is one added.
    """
    if not session.is_open:
        raise SchedulingError(f"This session is {session.get_status_display().lower()}.")
    with transaction.atomic():
        mine = Participant.objects.select_for_update().filter(session=session, role=Role.COORDINATOR, removed_at__isnull=True)
        participant = mine.filter(user=user).order_by("created_at", "pk").first()
        if participant is None and user.email:
            participant = mine.filter(user__isnull=True, email__iexact=user.email).order_by("created_at", "pk").first()
            if participant is not None:
                participant.user = user
                participant.save(update_fields=["user"])
        if participant is None:
            participant = participant_add(
                session=session, role=Role.COORDINATOR, display_name=user.get_full_name() or user.get_username(),
                email=user.email, user=user, by=user,
            )
        token = join_token_mint(participant=participant, valid_for=timedelta(hours=12), by=user)
    return participant, token


def specialist_link_mint(
    *, session: Session, by: Any, minutes: int, display_name: str, email: str = "", is_external: bool = True
) -> tuple[Participant, str]:
    """A one-time link for an intraoperative consultation, valid for ``minutes``."""
    if session.status != Session.Status.LIVE:
        raise SchedulingError("A specialist can only be called in while the session is live.")
    if not roles.user_runs_session(by, session):
        raise SchedulingError("Only the coordinator or the operating surgeon can call in a specialist.")
    if not 1 <= minutes <= settings.SPECIALIST_LINK_MAX_MINUTES:
        raise SchedulingError(
            f"Choose between 1 and {settings.SPECIALIST_LINK_MAX_MINUTES} minutes.", field="minutes"
        )
    with transaction.atomic():
        participant = participant_add(
            session=session,
            role=Role.SPECIALIST,
            display_name=display_name,
            email=email,
            is_external=is_external,
            by=by,
        )
        token = join_token_mint(participant=participant, valid_for=timedelta(minutes=minutes), one_time=True, by=by)
    return participant, join_url(token)


@dataclass(frozen=True)
class Admission:
    participant: Participant
    session: Session
    token: JoinToken


def _audit_refusal(refusal: JoinRefused, *, session_id: str) -> None:
    # Whoever holds a bad link is anonymous: a flood of them is counted, not written row by row.
    consent_services.audit_refusal_aggregated(
        action="session.join", reason=refusal.reason, key=session_id, session_public_id=session_id
    )


def join_token_check(*, token: str, session_public_id: str | None = None, consume: bool = False) -> Admission:
    """Check a join token: signature, expiry, revocation, session, role, and the consent gate.

    Raises JoinRefused with a message for the person holding the link; every refusal is audited.
    ``consume`` marks a one-time token used (on the actual connection, not on page load).
    """
    try:
        claims = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        refusal = JoinRefused(
            "This link is not valid: it may have been cut or altered. Ask the coordinator for a new one.",
            reason="tampered",
        )
        _audit_refusal(refusal, session_id=session_public_id or "")
        raise refusal from None
    sid = str(claims.get("s", "")) if isinstance(claims, dict) else ""
    try:
        admission = _admit(token=token, claims=claims, session_public_id=session_public_id)
        if consume and admission.token.one_time:
            with transaction.atomic():
                row = JoinToken.objects.select_for_update().get(pk=admission.token.pk)
                _refuse_if_in_use(row, admission.participant)
                if row.used_at is None:
                    row.used_at = timezone.now()
                    row.save(update_fields=["used_at"])
    except JoinRefused as refusal:
        # Audited outside any transaction the refusal rolled back, so the record stays.
        if refusal.reason != "consent":  # the consent gate audits its own refusals
            _audit_refusal(refusal, session_id=session_public_id or sid)
        raise
    return admission


def _refuse_if_in_use(row: JoinToken, participant: Participant) -> None:
    """A one-time link admits one connection at a time: the same browser may reconnect after a
    network blip, a second browser may not join while the first is connected."""
    if row.one_time and row.used_at is not None and participant in presence_connected(session=participant.session):
        raise JoinRefused(
            "This one-time link is already open on another screen. Close it there, or ask for a new link.",
            reason="used",
        )


def _admit(*, token: str, claims: Any, session_public_id: str | None) -> Admission:
    sid = str(claims.get("s", ""))
    if session_public_id is not None and sid != str(session_public_id):
        raise JoinRefused(
            "This link belongs to another session. Open the link from the invitation for this session.",
            reason="other_session",
        )
    row = (
        JoinToken.objects.select_related("participant__session__room")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    if row is None:
        raise JoinRefused("This link is not known. Ask the coordinator for a new one.", reason="unknown")
    participant = row.participant
    session = participant.session
    if row.revoked_at is not None or participant.removed_at is not None:
        raise JoinRefused(
            "This link was withdrawn by the coordinator. Contact them if you should still join.", reason="revoked"
        )
    if row.expires_at <= timezone.now():
        raise JoinRefused("This link has expired. Ask the coordinator for a new one.", reason="expired")
    _refuse_if_in_use(row, participant)
    if claims.get("r") != participant.role or claims.get("p") != str(participant.public_id):
        raise JoinRefused("This link does not match its participant.", reason="mismatch")
    if session.status in (Session.Status.ENDED, Session.Status.CANCELLED):
        raise JoinRefused(f"This session is {session.get_status_display().lower()}.", reason=session.status)
    purpose = ROLE_PURPOSE.get(Role(participant.role))
    if purpose is not None:
        if participant.is_external:
            purpose = "live_external"
        try:
            consent_services.consent_require(
                session=session, purpose=purpose, actor=f"participant:{participant.public_id}", action="session.join"
            )
        except consent_services.ConsentError as error:
            raise JoinRefused(
                f"You cannot watch this procedure: the patient's consent does not cover it ({error.purpose}). "
                "Contact the coordinator if you think this is wrong.",
                reason="consent",
            ) from None
    return Admission(participant=participant, session=session, token=row)


def presence_record(
    *, participant: Participant, kind: str, channel_name: str = "", token: JoinToken | None = None
) -> Connection | None:
    """A participant's connection opened (``joined``: audited) or closed (``left``).

    ``channel_name`` names the WebSocket (the consumer's channel); without one, ``left`` closes
    every open connection of the participant.
    """
    now = timezone.now()
    if kind == "joined":
        connection = Connection.objects.create(
            participant=participant, token=token, channel_name=channel_name or f"direct.{uuid.uuid4().hex}",
            opened_at=now, seen_at=now,
        )
        PresenceEvent.objects.create(session=participant.session, participant=participant, kind=kind, at=now)
        consent_services.audit_record(
            action="session.join",
            actor=f"participant:{participant.public_id}",
            session_public_id=str(participant.session.public_id),
            detail={"role": participant.role},
        )
        return connection
    open_rows = Connection.objects.filter(participant=participant, closed_at__isnull=True)
    if channel_name:
        open_rows = open_rows.filter(channel_name=channel_name)
    if open_rows.update(closed_at=now) or not channel_name:
        PresenceEvent.objects.create(session=participant.session, participant=participant, kind=kind, at=now)
    return None


# A server process refreshes its connections every HEARTBEAT_SECONDS; one not refreshed for
# PRESENCE_STALE_SECONDS belongs to a process or consumer that died.
HEARTBEAT_SECONDS = 2.0
PRESENCE_STALE_SECONDS = 6.0


def connection_heartbeat(*, channel_names: list[str]) -> int:
    """Mark these open connections (this process's live consumers) as seen now."""
    if not channel_names:
        return 0
    return Connection.objects.filter(channel_name__in=channel_names, closed_at__isnull=True).update(seen_at=timezone.now())


def connection_sweep(*, session: Session | None = None) -> list[Participant]:
    """Close the connections nobody refreshed (their consumer or process died): each gets its "left"
    event and broadcast, once, whichever process sweeps it first. Returns who left."""
    stale = Connection.objects.filter(
        closed_at__isnull=True, seen_at__lt=timezone.now() - timedelta(seconds=PRESENCE_STALE_SECONDS)
    ).select_related("participant__session")
    if session is not None:
        stale = stale.filter(participant__session=session)
    gone: list[Participant] = []
    for connection in stale:
        with transaction.atomic():
            if not Connection.objects.filter(pk=connection.pk, closed_at__isnull=True).update(closed_at=timezone.now()):
                continue  # another process swept it
            participant = connection.participant
            PresenceEvent.objects.create(session=participant.session, participant=participant, kind="left")
            _send_after_commit(
                session_group(participant.session),
                {"type": "presence.event", "event": "left", "participant": participant_card(participant)},
            )
        gone.append(participant)
    return gone


def connection_links_ended(*, channel_names: list[str]) -> list[tuple[str, str]]:
    """(channel name, reason) for these open connections whose link no longer admits them:
    expired, revoked, or their participant removed. The consumer then closes with the reason."""
    if not channel_names:
        return []
    now = timezone.now()
    ended: list[tuple[str, str]] = []
    rows = Connection.objects.filter(channel_name__in=channel_names, closed_at__isnull=True).select_related(
        "token", "participant"
    )
    for connection in rows:
        reason = link_state(token=connection.token, participant=connection.participant, now=now)
        if reason:
            ended.append((connection.channel_name, reason))
    return ended


def connection_close(*, channel_name: str) -> bool:
    """Close one connection as its consumer leaves; False when it was already closed (swept or ended)."""
    connection = Connection.objects.filter(channel_name=channel_name).select_related("participant__session").first()
    if connection is None:
        return False
    now = timezone.now()
    if not Connection.objects.filter(pk=connection.pk, closed_at__isnull=True).update(closed_at=now):
        return False
    participant = connection.participant
    PresenceEvent.objects.create(session=participant.session, participant=participant, kind="left", at=now)
    return True


def connection_end(*, channel_name: str, reason: str) -> bool:
    """End a connection whose link no longer admits it (``reason``: expired, revoked, removed):
    closed with its "left" (broadcast), audited, and the participant's peer dropped at the edge.
    Idempotent: only the first call acts; False for the others."""
    with transaction.atomic():
        if not connection_close(channel_name=channel_name):
            return False
        connection = Connection.objects.select_related("participant__session__room").get(channel_name=channel_name)
        participant = connection.participant
        session = participant.session
        consent_services.audit_record(
            action="session.drop",
            actor="system",
            outcome="refused",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"reason": reason},
        )
        _send_after_commit(
            session_group(session), {"type": "presence.event", "event": "left", "participant": participant_card(participant)}
        )
    try:
        edge.participant_remove(str(session.public_id), str(participant.public_id), edge_url=session.room.edge_url or None)
    except edge.EdgeError as failure:
        log.info("edge did not drop a participant of session %s: %s", session.public_id, failure)
    return True


def link_state(*, token: JoinToken | None, participant: Participant, now: datetime | None = None) -> str:
    """Why a link that admitted a connection no longer does ("expired", "revoked", "removed"), or ""."""
    now = now or timezone.now()
    if participant.removed_at is not None:
        return "removed"
    if token is None:
        return ""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return ""


class AnnotationError(Exception):
    """A telestration stroke or chat line that cannot be stored as sent."""


STROKE_TOOLS = frozenset({"freehand", "arrow", "circle"})
STROKE_COLOURS = frozenset({"#ffeb3b", "#00e5ff", "#76ff03", "#ff1744", "#ffffff"})
MAX_STROKE_POINTS = 2000
MAX_CHAT_CHARS = 2000


def _clean_annotation(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    if kind == "clear":
        return {}
    if kind == "chat":
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            raise AnnotationError("A chat message needs some text.")
        if len(text) > MAX_CHAT_CHARS:
            raise AnnotationError(f"Chat messages are limited to {MAX_CHAT_CHARS} characters.")
        return {"text": text.strip()}
    tool = message.get("tool")
    if tool not in STROKE_TOOLS:
        raise AnnotationError(f"Strokes use one of the tools {', '.join(sorted(STROKE_TOOLS))}.")
    colour = str(message.get("color", "")).lower()
    if colour not in STROKE_COLOURS:
        raise AnnotationError(f"Strokes use one of the colours {', '.join(sorted(STROKE_COLOURS))}.")
    points = message.get("points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_STROKE_POINTS:
        raise AnnotationError(f"A stroke has between 1 and {MAX_STROKE_POINTS} points.")
    clean: list[list[float]] = []
    for point in points:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in point)
        ):
            raise AnnotationError("Stroke points are [x, y] pairs in video coordinates between 0 and 1.")
        clean.append([round(float(point[0]), 5), round(float(point[1]), 5)])
    return {"tool": tool, "color": colour, "points": clean, "stroke_id": str(message.get("stroke_id", ""))[:40]}


def annotation_add(*, participant: Participant, kind: str, message: dict[str, Any]) -> Annotation:
    """Store a stroke, clear or chat line with the media time it refers to."""
    if kind in ("stroke", "clear") and participant.role in (Role.RESIDENT, Role.OBSERVER, Role.DISPLAY):
        raise AnnotationError("Your role can watch but not draw.")
    if kind == "chat" and participant.role == Role.DISPLAY:
        raise AnnotationError("A conference-room display cannot chat.")
    payload = _clean_annotation(kind, message)
    media_time = message.get("media_time")
    if media_time is not None and not isinstance(media_time, (int, float)):
        raise AnnotationError("media_time is a number of seconds.")
    return Annotation.objects.create(
        session=participant.session,
        participant=participant,
        kind=kind,
        payload=payload,
        media_time=float(media_time) if media_time is not None else None,
    )


def annotation_card(annotation: Annotation) -> dict[str, Any]:
    return {
        "id": annotation.pk,
        "kind": annotation.kind,
        "from": str(annotation.participant.public_id),
        "from_name": annotation.participant.display_name,
        "media_time": annotation.media_time,
        "at": annotation.at.isoformat(),
        **annotation.payload,
    }


MAX_DRAWING_ON_JOIN = 500


def drawing_in_view(*, session: Session) -> list[dict[str, Any]]:
    """The strokes on screen now (drawn since the last clear), for a page that joins late."""
    last_clear = session.annotations.filter(kind=Annotation.Kind.CLEAR).order_by("-at", "-pk").first()
    strokes = session.annotations.filter(kind=Annotation.Kind.STROKE).select_related("participant")
    if last_clear is not None:
        strokes = strokes.filter(pk__gt=last_clear.pk)
    recent = list(strokes.order_by("-pk")[:MAX_DRAWING_ON_JOIN])
    return [annotation_card(a) for a in reversed(recent)]


def annotation_list_for(*, session: Session) -> list[dict[str, Any]]:
    return [annotation_card(a) for a in session.annotations.select_related("participant")]


# ---------------------------------------------------------------- live session state


def participant_card(participant: Participant) -> dict[str, Any]:
    return {
        "id": str(participant.public_id),
        "name": participant.display_name,
        "role": participant.role,
        "role_label": participant.get_role_display(),
        "external": participant.is_external,
    }


def session_card(session: Session) -> dict[str, Any]:
    return {
        "id": str(session.public_id),
        "procedure": session.procedure,
        "room": session.room.name,
        "status": session.status,
        "planned_start": session.planned_start.isoformat(),
        "planned_end": session.planned_end.isoformat(),
        "time_zone": session.time_zone,
        "when": session_when(session=session),
    }


def presence_connected(*, session: Session) -> list[Participant]:
    """Participants with an open, recently refreshed connection, in the order they joined.

    Connections whose process or consumer died are swept first, so a ghost never counts."""
    connection_sweep(session=session)
    seen: dict[int, Participant] = {}
    rows = Connection.objects.filter(participant__session=session, closed_at__isnull=True).select_related("participant")
    for connection in rows.order_by("opened_at", "pk"):
        seen.setdefault(connection.participant_id, connection.participant)
    return list(seen.values())


def presence_list(*, session: Session) -> list[dict[str, Any]]:
    return [participant_card(p) for p in presence_connected(session=session)]


def latency_report(*, participant: Participant, ms: float) -> None:
    Participant.objects.filter(pk=participant.pk).update(last_latency_ms=ms, latency_at=timezone.now())


def ice_servers_for(*, participant: Participant) -> list[dict[str, Any]]:
    """TURN credentials in coturn's REST form: short-lived, derived from the shared secret."""
    if not settings.TURN_URLS or not settings.TURN_SECRET:
        return []
    expires = int(timezone.now().timestamp()) + settings.TURN_TTL_SECONDS
    username = f"{expires}:{participant.public_id}"
    credential = base64.b64encode(hmac.new(settings.TURN_SECRET.encode(), username.encode(), "sha1").digest()).decode()
    return [{"urls": settings.TURN_URLS, "username": username, "credential": credential}]


class MediaRefused(Exception):
    """The edge could not take this participant's media (unreachable, bad SDP, unsupported codec)."""


def media_offer(*, participant: Participant, sdp: str, watch: bool = False) -> dict[str, str]:
    """Pass a participant's SDP offer to the session's edge and return its answer.

    The surgeon's console publishes its camera, or with ``watch`` shows the room's own feed as a
    viewer does (what the mentors see). Publishing takes the place of the room's feed; watching
    puts the feed back. Everyone else watches, and the edge makes roles without the right to
    talk receive-only.
    """
    session = Session.objects.select_related("room").get(pk=participant.session_id)  # its status now, not at join
    if session.status != Session.Status.LIVE:
        raise MediaRefused("The session is not live yet: the video starts when the coordinator starts it.")
    sid = str(session.public_id)
    edge_url = session.room.edge_url or None
    try:
        session_reattach(session=session)
        watching = participant.role != Role.SURGEON or watch
        if watching and room_feed_state(room=session.room) == "preparing":
            raise MediaRefused(FEED_PREPARING_MESSAGE)
        if not watching:
            _room_feed_detach(session, participant)
            return edge.publisher_offer(
                sid, protocol.PublisherOffer(participant_id=str(participant.public_id), sdp=sdp), edge_url=edge_url
            )
        if participant.role == Role.SURGEON:
            _room_feed_restore(session, participant)
        return edge.viewer_offer(
            sid,
            protocol.ViewerOffer(participant_id=str(participant.public_id), role=participant.role, sdp=sdp),
            edge_url=edge_url,
        )
    except edge.EdgeError as failure:
        raise MediaRefused(str(failure)) from None


def _room_feed_detach(session: Session, participant: Participant) -> None:
    """The console's camera replaces the room's feed (the edge takes one source at a time)."""
    if not session.room.ingest_url:
        return
    reply = edge.source_detach(str(session.public_id), edge_url=session.room.edge_url or None)
    if reply and reply.get("detached"):
        _audit_source(session, participant, source="console_camera")


def _room_feed_restore(session: Session, participant: Participant) -> None:
    """The console shows the room's feed again: its own camera stops, the feed comes back.

    Nothing changes while someone else publishes (an encoder over WHIP, say): the console then
    shows what they send, as the mentors do.
    """
    if not session.room.ingest_url:
        return
    sid, edge_url = str(session.public_id), session.room.edge_url or None
    hub = edge.stats(sid, edge_url=edge_url)
    if hub.get("source") is not None:
        return
    publisher = hub.get("publisher") or {}
    if publisher.get("participant_id") not in (None, str(participant.public_id)):
        return
    if publisher:
        edge.participant_remove(sid, str(participant.public_id), edge_url=edge_url)
    url = session.room.ingest_url
    edge.source_attach(sid, protocol.SourceAttach(url=url, loop="://" not in url), edge_url=edge_url)
    _audit_source(session, participant, source="room_feed")


def _audit_source(session: Session, participant: Participant, *, source: str) -> None:
    # What the mentors saw, and what was recorded, changed here: part of the record.
    consent_services.audit_record(
        action="session.source",
        actor=f"participant:{participant.public_id}",
        session_public_id=str(session.public_id),
        detail={"source": source},
    )


def media_clock(*, participant: Participant) -> dict[str, Any]:
    """The edge's RTP timestamp <-> ingest wall-clock mapping of the participant's session, with the
    edge's current time, so a page can estimate glass-to-glass latency against the edge's clock."""
    session = Session.objects.select_related("room").get(pk=participant.session_id)
    if session.status != Session.Status.LIVE:
        raise MediaRefused("The session is not live yet.")
    try:
        mapping = edge.clock(str(session.public_id), edge_url=session.room.edge_url or None)
    except edge.EdgeError as failure:
        raise MediaRefused(str(failure)) from None
    return dict(mapping) if isinstance(mapping, dict) else {}


def session_enforce_consent(*, session: Session) -> list[Participant]:
    """Drop every connected participant the consent in force no longer covers (after a withdrawal).

    Connected means on the session's WebSocket or holding a media peer on the edge: a page that
    closed its WebSocket but kept its peer is dropped all the same. Returns the participants
    dropped. Every page is told first (its WebSocket closes with the reason), then the edge drops
    their peers one by one: the last page does not wait for the first peers to close.
    """
    connected = {p.pk: p for p in presence_connected(session=session)}
    try:
        viewers = edge.stats(str(session.public_id), edge_url=session.room.edge_url or None).get("viewers", [])
        on_edge = {str(v.get("participant_id")) for v in viewers}
    except edge.EdgeError:
        on_edge = set()  # no hub, or an edge that is down: it holds no peer to keep
    for participant in session.participants.filter(public_id__in=[p for p in on_edge if is_uuid(p)]):
        connected.setdefault(participant.pk, participant)
    dropped: list[Participant] = []
    for participant in connected.values():
        purpose = ROLE_PURPOSE.get(Role(participant.role))
        if purpose is None:
            continue
        if participant.is_external:
            purpose = "live_external"
        if consent_services.consent_granted(session=session, purpose=purpose):
            continue
        dropped.append(participant)
        consent_services.audit_record(
            action="session.drop",
            actor="system",
            outcome="refused",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"missing_purpose": purpose},
        )
    for participant in dropped:
        _participant_tell_removed(participant, reason="consent")
    for participant in dropped:
        _participant_edge_drop(participant)
    return dropped


def session_drop_uncovered(*, change: ConsentNarrowed) -> None:
    """Consent effect (registered in MentoringConfig.ready): after a narrower consent commits, drop
    every connected participant it no longer covers. Idempotent: whoever is dropped is no longer
    connected, so a retry only drops whom the last attempt missed. Raises when it cannot tell a
    page to stop (the channel layer down), so the job retries it."""
    session_enforce_consent(session=Session.objects.select_related("room").get(pk=change.session_id))


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def session_ics(*, session: Session) -> bytes:
    return calendar.session_ics(session=session, method="PUBLISH", attendees=list(session.participants.all()))
