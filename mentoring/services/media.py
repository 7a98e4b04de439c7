"""Media: a participant's offer brokered to the edge, ICE servers, switching the room's feed, the
media clock.

Called by the consumer (media_offer, media_clock) and the pages' bootstrap (ice_servers_for).
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent.audit import audit_record
from orstream import edgeclient
from orstream.edge import protocol

from ..models import (
    Participant,
    Role,
    Session,
)
from .feed import FEED_PREPARING_MESSAGE, _room_source, room_feed_state, session_reattach


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
            return edgeclient.publisher_offer(
                sid, protocol.PublisherOffer(participant_id=str(participant.public_id), sdp=sdp), edge_url=edge_url
            )
        if participant.role == Role.SURGEON:
            _room_feed_restore(session, participant)
        return edgeclient.viewer_offer(
            sid,
            protocol.ViewerOffer(participant_id=str(participant.public_id), role=participant.role, sdp=sdp),
            edge_url=edge_url,
        )
    except edgeclient.EdgeError as failure:
        raise MediaRefused(str(failure)) from None


def _room_feed_detach(session: Session, participant: Participant) -> None:
    """The console's camera replaces the room's feed (the edge takes one source at a time)."""
    if not session.room.ingest_url:
        return
    reply = edgeclient.source_detach(str(session.public_id), edge_url=session.room.edge_url or None)
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
    hub = edgeclient.stats(sid, edge_url=edge_url)
    if hub.get("source") is not None:
        return
    publisher = hub.get("publisher") or {}
    if publisher.get("participant_id") not in (None, str(participant.public_id)):
        return
    if publisher:
        edgeclient.participant_remove(sid, str(participant.public_id), edge_url=edge_url)
    edgeclient.source_attach(sid, _room_source(session.room), edge_url=edge_url)
    _audit_source(session, participant, source="room_feed")


def _audit_source(session: Session, participant: Participant, *, source: str) -> None:
    # What the mentors saw, and what was recorded, changed here: part of the record.
    audit_record(
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
        mapping = edgeclient.clock(str(session.public_id), edge_url=session.room.edge_url or None)
    except edgeclient.EdgeError as failure:
        raise MediaRefused(str(failure)) from None
    return dict(mapping) if isinstance(mapping, dict) else {}
