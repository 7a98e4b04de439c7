"""JSON shapes the pages and the API send: the live recording panel, the live pages' state (who
is connected, the edge's stats, recording and consent), the player's bootstrap, a bookmark.

Called by the session, live and library views, the API and the consumers. Never writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consent import services as consent_services
from mentoring import services as mentoring_services
from mentoring.models import Session

from ..models import Bookmark, Recording
from .access import recording_access_check
from .common import _parts
from .selectors import bookmark_list_for, recording_problem_for, recording_running_for

# The consent purposes the live pages show.
LIVE_PURPOSES = ("record", "live_internal", "live_external")


def recording_live_for(*, session: Session, edge_stats: dict[str, Any] | None, edge_error: str = "") -> dict[str, Any]:
    """What the live pages say about recording, from the row and from the edge's own word.

    "off"; "recording" while the edge writes the running recording; "interrupted" when a
    recording runs here but the edge is not writing it (it restarted and has not resumed yet,
    or it cannot be reached): never "recording" while nothing records. ``edge_stats`` is the
    edge's stats of the session, None when it did not answer (``edge_error`` says why).
    """
    recording = recording_running_for(session=session)
    if recording is None:
        # The last recording's trouble (failed its check, stuck), said where the coordinator looks.
        last = Recording.objects.filter(session=session).order_by("-started_at").first()
        problem = recording_problem_for(recording=last) if last is not None else ""
        return {"state": "off", "problem": problem} if problem else {"state": "off"}
    card = {
        "id": str(recording.public_id),
        "started_at": recording.started_at.isoformat(),
        "since": mentoring_services.session_clock(session=session, moment=recording.started_at),
    }
    if edge_stats is not None and edge_stats.get("recording_id") == str(recording.public_id):
        return {**card, "state": "recording"}
    if edge_stats is None and edge_error:
        note = (
            "Recording interrupted: the media server cannot be reached, so nothing is being recorded. "
            "What was recorded is kept; recording resumes by itself when the media server is back."
        )
    else:
        note = (
            "Recording interrupted: the media server restarted. What was recorded is kept; "
            "recording resumes by itself in a new part within a few seconds."
        )
    return {**card, "state": "interrupted", "note": note}


def recording_live_card(*, session: Session, edge: mentoring_services.EdgeStats) -> dict[str, Any]:
    """recording_live_for from the edge's stats as mentoring read them (an unreachable edge says so)."""
    return recording_live_for(session=session, edge_stats=edge.stats, edge_error=(edge.error or "") if edge.unreachable else "")


def session_live_state(*, session: Session) -> dict[str, Any]:
    """What the live pages poll: connected participants with their reported latency, the edge's
    per-viewer stats (or why there are none), recording and consent state."""
    connected = [
        {
            **mentoring_services.participant_card(p),
            "latency_ms": p.last_latency_ms,
            "latency_at": p.latency_at.isoformat() if p.latency_at else None,
        }
        for p in mentoring_services.presence_connected(session=session)
    ]
    edge = mentoring_services.session_edge_stats(session=session)
    return {
        "session": mentoring_services.session_card(session),
        "participants": connected,
        "edge": edge.stats,
        "edge_error": edge.error,
        "recording": recording_live_card(session=session, edge=edge),
        "consent": {purpose: consent_services.consent_granted(session=session, purpose=purpose) for purpose in LIVE_PURPOSES},
    }


def _annotation_offset(card: dict[str, Any], started: float) -> float:
    # media_time is the edge's ingest wall clock (Unix seconds) of the frame the mentor saw; the
    # recording starts at started_at on the same clock (the control plane and the edge keep NTP
    # time). Strokes without a media time fall back to when the server stored them.
    when = card.get("media_time")
    if not isinstance(when, (int, float)):
        when = datetime.fromisoformat(card["at"]).timestamp()
    return float(when) - started


def recording_playback_for(*, recording: Recording, user: Any) -> dict[str, Any]:
    """What the library's player needs, for ``user`` (checked, refusals audited):

    ``parts``: each segment's URL and its start within the recording (the durations before it);
    ``annotations``: the session's strokes and clears that fall inside the recording, with
    ``t``, seconds from the recording's start (see _annotation_offset for the mapping);
    ``bookmarks``: bookmarks and chapters in time order, private marks only where ``user`` may see them.
    """
    recording_access_check(recording=recording, user=user, action="recording.view")
    parts = []
    offset = 0.0
    for segment in _parts(recording):
        parts.append({"index": segment.index, "url": f"/recordings/{recording.public_id}/parts/{segment.index}.mp4",
                      "start": round(offset, 3), "duration": segment.duration})
        offset += segment.duration
    duration = recording.duration or offset
    started = recording.started_at.timestamp()
    annotations = []
    for card in mentoring_services.annotation_list_for(session=recording.session):
        if card["kind"] not in ("stroke", "clear"):
            continue
        t = _annotation_offset(card, started)
        if t < 0 or t > duration:
            continue
        annotations.append({"t": round(t, 3), "kind": card["kind"], "tool": card.get("tool"), "color": card.get("color"),
                            "points": card.get("points", []), "from_name": card["from_name"]})
    annotations.sort(key=lambda a: a["t"])
    return {
        "recording": str(recording.public_id),
        "duration": duration,
        "parts": parts,
        "annotations": annotations,
        "bookmarks": [bookmark_card(b) for b in bookmark_list_for(recording=recording, user=user)],
    }


def bookmark_card(bookmark: Bookmark) -> dict[str, Any]:
    return {"id": bookmark.pk, "t": bookmark.media_time, "label": bookmark.label, "kind": bookmark.kind, "private": bookmark.private}
