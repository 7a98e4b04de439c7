"""Participants: adding one to a session (and inviting them), revoking their link, removing,
re-inviting, a specialist's short link, and a signed-in staff member joining a live session.

Called by the coordinator's pages, the API and the live page (session_live_join).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consent.audit import audit_record
from orstream import edgeclient, roles

from ..models import (
    JoinToken,
    Participant,
    Role,
    Session,
)
from .common import SchedulingError, session_group
from .invitations import invitation_send
from .tokens import join_token_mint, join_url

log = logging.getLogger(__name__)


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
        audit_record(
            action="participant.add",
            actor=f"user:{by.pk}",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"role": role, "external": is_external},
        )
    return participant


def participant_invite(
    *,
    session: Session,
    role: str,
    display_name: str,
    email: str = "",
    is_external: bool = False,
    send_invitation: bool = False,
    by: Any,
) -> tuple[Participant, str]:
    """Add a participant and give them a join link: e-mailed with the invitation when asked and
    they have an address, else returned only. Returns the participant and the link (shown once).
    The coordinator's page and the API both invite through here."""
    participant = participant_add(
        session=session, role=role, display_name=display_name, email=email, is_external=is_external, by=by
    )
    if send_invitation and email:
        return participant, invitation_send(participant=participant, by=by)
    return participant, join_url(join_token_mint(participant=participant, by=by))


def join_token_revoke(*, participant: Participant, by: Any, reason: str = "revoked") -> int:
    """Revoke every active token of ``participant`` and drop their live connection and media peer."""
    with transaction.atomic():
        count = JoinToken.objects.filter(participant=participant, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit_record(
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
        edgeclient.participant_remove(str(session.public_id), str(participant.public_id), edge_url=session.room.edge_url or None)
    except edgeclient.EdgeError as failure:
        # No hub or no peer (never connected) is the common case; an unreachable edge has no peer to keep.
        log.info("edge did not drop a participant of session %s: %s", session.public_id, failure)


def participant_remove(*, participant: Participant, by: Any) -> Participant:
    """Remove a participant: their links stop working and their connection drops at once."""
    with transaction.atomic():
        participant.removed_at = timezone.now()
        participant.save(update_fields=["removed_at"])
        join_token_revoke(participant=participant, by=by, reason="removed")
    return participant


def participant_role_change(*, participant: Participant, role: str, by: Any) -> Participant:
    """Give a participant another role. A link carries its role, so their links stop working and
    their live connection drops at once; the coordinator sends them a new link for the new role."""
    if role not in Role.values:
        raise SchedulingError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", field="role")
    if role == participant.role:
        return participant
    if Role.SURGEON in (role, participant.role):
        raise SchedulingError("The operating surgeon's place is set when the session is scheduled.", field="role")
    with transaction.atomic():
        before = participant.role
        participant.role = role
        participant.save(update_fields=["role"])
        audit_record(
            action="participant.role",
            actor=f"user:{by.pk}",
            session_public_id=str(participant.session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"from": before, "to": role},
        )
        join_token_revoke(participant=participant, by=by)
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
        audit_record(
            action="participant.reinvite",
            actor=f"user:{by.pk}",
            session_public_id=str(session.public_id),
            target=f"participant:{participant.public_id}",
            detail={"mailed": bool(participant.email)},
        )
    return url


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
