"""Scheduling: rooms, sessions booked, moved, cancelled, started and ended, and how their times read
in the room's time zone (pages, e-mails, the .ics).

Called by the coordinator's pages and forms, the API, the OR console (start, end) and the seed
command.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent.audit import audit_record
from orstream import edgeclient

from ..hooks import session_hooks
from ..models import (
    JoinToken,
    OperatingRoom,
    Participant,
    Role,
    Session,
    room_feed_problems,
)
from .common import SchedulingError, _send_after_commit, session_group
from .feed import _edge_prepare, _edge_session_close
from .invitations import _mail_after_commit
from .times import _zone


def room_create(
    *, name: str, location: str = "", edge_url: str = "", ingest_url: str = "", lower_ingest_url: str = ""
) -> OperatingRoom:
    """A new operating room; ``lower_ingest_url`` is its encoder's second, lower stream, if any."""
    if OperatingRoom.objects.filter(name__iexact=name.strip()).exists():
        raise SchedulingError(f"An operating room called {name!r} already exists.", field="name")
    problems = room_feed_problems(ingest_url=ingest_url, lower_ingest_url=lower_ingest_url)
    if problems:
        field, problem = next(iter(problems.items()))
        raise SchedulingError(problem, field=field)
    return OperatingRoom.objects.create(
        name=name.strip(), location=location, edge_url=edge_url, ingest_url=ingest_url,
        lower_ingest_url=lower_ingest_url,
    )


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
        audit_record(
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
        except edgeclient.EdgeError as failure:
            raise SchedulingError(f"The room's video feed could not be started: {failure}") from None
    with transaction.atomic():
        session.status = Session.Status.LIVE
        session.started_at = timezone.now()
        session.save(update_fields=["status", "started_at"])
        audit_record(
            action="session.start", actor=f"user:{by.pk}", session_public_id=str(session.public_id)
        )
        _send_after_commit(session_group(session), {"type": "session.status", "status": session.status})
        session_hooks.announce(session=session, change="live")
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
        audit_record(
            action="session.end", actor=f"user:{by.pk}", session_public_id=str(session.public_id)
        )
        _send_after_commit(session_group(session), {"type": "session.status", "status": session.status})
        session_hooks.announce(session=session, change="ended")
    return session
