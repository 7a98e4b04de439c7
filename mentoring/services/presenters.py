"""JSON shapes the pages, the API and the consumer send: annotations, participants, sessions,
presence, the drawing in view, and the bootstrap data a live page starts from.

Called by the consumer, the views and the API. Never writes.
"""

from __future__ import annotations

from typing import Any

from orstream import roles

from ..models import (
    Annotation,
    Participant,
    Session,
)
from .annotations import STROKE_COLOUR_NAMES, STROKE_TOOL_NAMES
from .times import session_when


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


def drawing_choices() -> dict[str, list[dict[str, str]]]:
    """The tools and colours the pages' pickers offer, first one selected: exactly what
    annotation_add accepts."""
    return {
        "tools": [{"value": value, "name": name} for value, name in STROKE_TOOL_NAMES.items()],
        "colours": [{"value": value, "name": name} for value, name in STROKE_COLOUR_NAMES.items()],
    }


def page_bootstrap(*, session: Session, participant: Participant, token: str) -> dict[str, Any]:
    """The bootstrap data a live page's script reads (json_script): who it is, where to connect,
    and what its role may do (``may``, decided by orstream.roles), so no page re-decides a rule."""
    return {
        "session": session_card(session),
        "participant": participant_card(participant),
        "ws_path": f"/ws/sessions/{session.public_id}/",
        "token": token,
        "may": roles.role_abilities(participant.role),
        "drawing": drawing_choices(),
        # The OR console shows the room's own video feed when there is one.
        "room_feed": bool(session.room.ingest_url),
    }
