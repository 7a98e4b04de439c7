"""JSON shapes the pages and the API send: the live recording panel, the player's bootstrap, a bookmark.

Called by the session and library views, the API and the consumers. Never writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mentoring.models import Session

from ..models import Bookmark, Recording
from .access import recording_access_check
from .common import _parts
from .selectors import bookmark_list_for, recording_problem_for


def recording_live_for(*, session: Session, edge_stats: dict[str, Any] | None, edge_error: str = "") -> dict[str, Any]:
    """What the live pages say about recording, from the row and from the edge's own word.

    "off"; "recording" while the edge writes the running recording; "interrupted" when a
    recording runs here but the edge is not writing it (it restarted and has not resumed yet,
    or it cannot be reached): never "recording" while nothing records. ``edge_stats`` is the
    edge's stats of the session, None when it did not answer (``edge_error`` says why).
    """
    recording = Recording.objects.filter(session=session, status=Recording.Status.RECORDING).order_by("-started_at").first()
    if recording is None:
        # The last recording's trouble (failed its check, stuck), said where the coordinator looks.
        last = Recording.objects.filter(session=session).order_by("-started_at").first()
        problem = recording_problem_for(recording=last) if last is not None else ""
        return {"state": "off", "problem": problem} if problem else {"state": "off"}
    from mentoring.services import session_clock  # mentoring imports recordings

    card = {
        "id": str(recording.public_id),
        "started_at": recording.started_at.isoformat(),
        "since": session_clock(session=session, moment=recording.started_at),
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
    ``bookmarks``: bookmarks and chapters in time order.
    """
    from mentoring.services import annotation_list_for

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
    for card in annotation_list_for(session=recording.session):
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
        "bookmarks": [bookmark_card(b) for b in bookmark_list_for(recording=recording)],
    }


def bookmark_card(bookmark: Bookmark) -> dict[str, Any]:
    return {"id": bookmark.pk, "t": bookmark.media_time, "label": bookmark.label, "kind": bookmark.kind}
