"""Bookmarks on a recording's timeline (writes).

Called by the player page and API.
"""

from __future__ import annotations

from typing import Any

from orstream import roles

from ..models import Bookmark, Recording
from .access import recording_access_check
from .common import RecordingAccessDenied, RecordingError
from .verify import DURATION_TOLERANCE

BOOKMARK_LABEL_MAX = 120


def bookmark_add(
    *, recording: Recording, user: Any, media_time: float, label: str, kind: str = Bookmark.Kind.BOOKMARK, private: bool = False
) -> Bookmark:
    """Mark a moment of ``recording``; anyone who may view it may mark it. Chapters are faculty's,
    the surgeon's and the records office's (they structure the recording for everyone). A
    ``private`` bookmark is listed for its author and for whom a registered rule reveals it
    (bookmark_reveals); a chapter is never private."""
    recording_access_check(recording=recording, user=user, action="recording.bookmark")
    label = label.strip()
    if not label:
        raise RecordingError("Give the bookmark a short label, e.g. \"dissection starts\".")
    if len(label) > BOOKMARK_LABEL_MAX:
        raise RecordingError(f"Keep the label under {BOOKMARK_LABEL_MAX} characters.")
    if kind not in Bookmark.Kind.values:
        raise RecordingError("A mark is a bookmark or a chapter.")
    if private and kind == Bookmark.Kind.CHAPTER:
        raise RecordingError("A chapter structures the recording for everyone: it cannot be private.")
    if kind == Bookmark.Kind.CHAPTER and not (
        roles.user_runs_session(user, recording.session) or roles.user_is_faculty(user)
    ):
        raise RecordingAccessDenied("Only faculty, the surgeon and the records office add chapters; add a bookmark instead.")
    duration = recording.duration or sum(s.duration for s in recording.segments.all())
    if not 0 <= media_time <= duration + DURATION_TOLERANCE:
        raise RecordingError(f"The time must be within the recording (0 to {duration:.0f} s).")
    return Bookmark.objects.create(
        recording=recording, media_time=float(media_time), label=label, kind=kind, created_by=user, private=private
    )
