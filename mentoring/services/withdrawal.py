"""What a narrower consent does to a live session: participants no longer covered are dropped.

Called by the consent effects registered in MentoringConfig.ready and by scheduling (start).
"""

from __future__ import annotations

from consent import services as consent_services
from consent.audit import audit_record
from consent.effects import ConsentNarrowed
from orstream import edgeclient

from ..models import (
    Participant,
    Role,
    Session,
)
from .common import ROLE_PURPOSE, is_uuid
from .participants import _participant_edge_drop, _participant_tell_removed
from .presence import presence_connected


def session_enforce_consent(*, session: Session) -> list[Participant]:
    """Drop every connected participant the consent in force no longer covers (after a withdrawal).

    Connected means on the session's WebSocket or holding a media peer on the edge: a page that
    closed its WebSocket but kept its peer is dropped all the same. Returns the participants
    dropped. Every page is told first (its WebSocket closes with the reason), then the edge drops
    their peers one by one: the last page does not wait for the first peers to close.
    """
    connected = {p.pk: p for p in presence_connected(session=session)}
    try:
        viewers = edgeclient.stats(str(session.public_id), edge_url=session.room.edge_url or None).get("viewers", [])
        on_edge = {str(v.get("participant_id")) for v in viewers}
    except edgeclient.EdgeError:
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
        audit_record(
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
