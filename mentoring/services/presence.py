"""Presence: who is connected, heartbeats, the sweep of stale connections, closing and ending a
connection, latency reports.

Called by the consumer, the keeper (heartbeat, sweep) and the pages (who is here).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from consent.audit import audit_record
from orstream import edgeclient

from ..models import (
    Connection,
    JoinToken,
    Participant,
    PresenceEvent,
    Session,
)
from .common import _send_after_commit, session_group
from .presenters import participant_card
from .tokens import link_state

log = logging.getLogger(__name__)


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
        audit_record(
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
        audit_record(
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
        edgeclient.participant_remove(str(session.public_id), str(participant.public_id), edge_url=session.room.edge_url or None)
    except edgeclient.EdgeError as failure:
        log.info("edge did not drop a participant of session %s: %s", session.public_id, failure)
    return True


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
