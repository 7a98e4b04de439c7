"""Invitations: the e-mail with its .ics (REQUEST or CANCEL) sent after the transaction commits,
through an idempotent Celery task.

Called by scheduling (moved, cancelled), participants (added, re-invited), the API and the
invitation task (invitation_mail).
"""

from __future__ import annotations

from typing import Any

from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.utils import timezone

from .. import calendar
from ..models import (
    Participant,
    Session,
)
from .common import SchedulingError
from .times import _zone, session_when
from .tokens import join_token_mint, join_url, link_seal


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


def _mail_after_commit(participant: Participant, *, method: str, url: str = "") -> None:
    """Queue the invitation e-mail once the transaction commits: a slow or failing mail server
    never holds up, or fails, the coordinator's request (the task retries with backoff)."""
    from .. import tasks  # tasks call back into these services

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


def session_ics(*, session: Session) -> bytes:
    return calendar.session_ics(session=session, method="PUBLISH", attendees=list(session.participants.all()))
