"""Reads: one recording, the library's list and its filter choices, bookmarks, problems to show.

Called by the library pages and API, the session pages and the other service modules. Never writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from mentoring.models import Role, Session
from orstream import roles

from ..models import Bookmark, Recording
from .access import recording_scopes
from .common import RecordingNotReady, _parts, _segment_local_path


def recording_problem_for(*, recording: Recording) -> str:
    """Why ``recording`` is not available and what to do next, in a coordinator's words; empty
    when there is nothing to do (available, erased, or still finalizing in time)."""
    if recording.status == Recording.Status.FAILED:
        if "no segment" in recording.error or "nothing was recorded" in recording.error:
            happened = "The media server saved nothing for this recording."
        elif "missing" in recording.error or "waiting for the edge" in recording.error or "Nothing more came" in recording.error:
            happened = "Part of this recording never reached the server."
        else:
            happened = "This recording did not pass its integrity check."
        return (
            f"{happened} Nothing has been deleted. Press \"Check again\" to retry; if it fails again, "
            "ask IT to compare the media server's copy before anyone erases anything."
        )
    if recording.status == Recording.Status.FINALIZING and recording.ended_at is not None:
        late = timezone.now() - recording.ended_at > timedelta(seconds=settings.RECORDINGS_SWEEP_GRACE_SECONDS)
        if late:
            return "This recording is taking longer than usual to be checked. It is retried every minute; nothing is lost."
    return ""


@dataclass(frozen=True)
class RecordingProblem:
    recording: Recording
    problem: str


def recording_problems_for(*, user: Any, session: Session | None = None) -> list[RecordingProblem]:
    """Recordings that need a coordinator (failed their check, or finalizing for too long), newest
    first, each with what to do; nothing for anyone else (they may not act on them)."""
    if not roles.user_is_coordinator(user):
        return []
    query = Recording.objects.select_related("session", "session__room").filter(
        status__in=[Recording.Status.FAILED, Recording.Status.FINALIZING]
    )
    if session is not None:
        query = query.filter(session=session)
    found = []
    for recording in query.order_by("-started_at")[:50]:
        problem = recording_problem_for(recording=recording)
        if problem:
            found.append(RecordingProblem(recording, problem))
    return found


def recording_get(*, public_id: Any) -> Recording | None:
    return Recording.objects.select_related("session", "session__room").filter(public_id=public_id).first()


def recording_running_for(*, session: Session) -> Recording | None:
    """The session's running recording, if one runs (the newest, should there ever be two)."""
    return Recording.objects.filter(session=session, status=Recording.Status.RECORDING).order_by("-started_at").first()


@dataclass(frozen=True)
class LibraryFilter:
    """What the library is searched by; empty fields do not filter."""

    text: str = ""
    procedure: str = ""
    room: str = ""
    surgeon: str = ""
    since: date | None = None
    until: date | None = None
    tag: str = ""
    session: str = ""


def recording_list_for(*, user: Any, filters: LibraryFilter | None = None) -> QuerySet[Recording]:
    """The recordings ``user`` may play, newest first, narrowed by ``filters``.

    The same rules as recording_access_check, as one query and without auditing (a list is not a
    view): only available recordings (restricted, failed and erased ones are never listed);
    coordinators see all, a surgeon their own; faculty and residents (a resident only those of the
    sessions they were in, unless in the resident group) those whose patient consent in force
    grants archive_training, within the scope registered for them (recording_scopes: their
    programme's and the curated library). Everyone else sees nothing but their own.
    """
    if not getattr(user, "is_authenticated", False):
        return Recording.objects.none()
    query = Recording.objects.select_related("session", "session__room", "session__surgeon").filter(
        status=Recording.Status.AVAILABLE
    )
    if not roles.user_is_coordinator(user):
        everyone_trained = roles.user_is_faculty(user) or user.groups.filter(name=roles.RESIDENT).exists()
        resident_of = Q() if everyone_trained else Q(
            session__participants__user=user,
            session__participants__role=Role.RESIDENT,
            session__participants__removed_at__isnull=True,
        )
        trained = Recording.objects.filter(
            resident_of,
            session__consents__withdrawn_at__isnull=True,
            session__consents__decisions__purpose="archive_training",
            session__consents__decisions__granted=True,
        )
        scope = recording_scopes.filter_for(user)
        if scope is not None:
            trained = trained.filter(scope)
        query = query.filter(Q(session__surgeon=user) | Q(pk__in=trained.values("pk")))
    f = filters or LibraryFilter()
    if f.text:
        query = query.filter(
            Q(session__procedure__icontains=f.text) | Q(session__room__name__icontains=f.text) | Q(tags__icontains=f.text)
        )
    if f.procedure:
        query = query.filter(session__procedure__icontains=f.procedure)
    if f.room:
        query = query.filter(session__room__name=f.room)
    if f.surgeon:
        query = query.filter(session__surgeon__username=f.surgeon)
    if f.since:
        query = query.filter(started_at__date__gte=f.since)
    if f.until:
        query = query.filter(started_at__date__lte=f.until)
    if f.tag:
        query = query.filter(tags__contains=[f.tag])
    if f.session:
        query = query.filter(session__public_id=f.session)
    return query.distinct().order_by("-started_at")


@dataclass(frozen=True)
class LibraryChoices:
    rooms: list[str]
    surgeons: list[tuple[str, str]]
    tags: list[str]


def library_choices_for(*, user: Any) -> LibraryChoices:
    """The rooms, surgeons (username, name) and tags of what ``user`` may see, for the filters."""
    rooms: set[str] = set()
    surgeons: dict[str, str] = {}
    tags: set[str] = set()
    for recording in recording_list_for(user=user):
        session = recording.session
        rooms.add(session.room.name)
        surgeons[session.surgeon.username] = session.surgeon.get_full_name() or session.surgeon.username
        tags.update(str(t) for t in recording.tags or [])
    return LibraryChoices(sorted(rooms), sorted(surgeons.items(), key=lambda s: s[1]), sorted(tags))


BookmarkReveal = Callable[[Any, Recording], "Q | None"]


class BookmarkReveals:
    """Who else may see a private mark, decided by the app that made it (training reveals a
    rater's comments to whom its blinding rule lets read the assessment), registered in its
    ``AppConfig.ready()``. A rule returns a filter on the recording's Bookmark rows, or None."""

    def __init__(self) -> None:
        self._rules: dict[str, BookmarkReveal] = {}

    def register(self, name: str, rule: BookmarkReveal) -> None:
        self._rules[name] = rule

    def filter_for(self, user: Any, recording: Recording) -> Q:
        shown = Q(private=False)
        if getattr(user, "is_authenticated", False):
            shown |= Q(created_by=user)
            for rule in self._rules.values():
                if (revealed := rule(user, recording)) is not None:
                    shown |= Q(private=True) & revealed
        return shown


bookmark_reveals = BookmarkReveals()


def bookmark_list_for(*, recording: Recording, user: Any) -> list[Bookmark]:
    """The marks of ``recording`` that ``user`` may see, in time order: every public one, their
    own private ones, and those a registered rule reveals to them."""
    return list(recording.bookmarks.filter(bookmark_reveals.filter_for(user, recording)).order_by("media_time", "pk"))


def recording_segment_paths(*, recording: Recording) -> list[str]:
    """Where each part of an available recording can be read, in order (a local path, or a URL
    PyAV streams from object storage): its segments, or the archive copy that replaced them. For
    system jobs that turn a recording into another form (the hospital's DICOM export); they
    check consent themselves and audit what they send."""
    if recording.status != Recording.Status.AVAILABLE:
        raise RecordingNotReady(f"This recording is {recording.get_status_display().lower()}, not available.")
    return [_segment_local_path(part) for part in _parts(recording)]  # type: ignore[arg-type]
