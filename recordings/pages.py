"""The recordings library's pages: search, a recording's player page, bookmarks, and the records
office's actions (export with progress, download, legal hold, erasure).

Each view parses the request, calls one service of recordings.services (which authorizes and
audits) and shapes the reply. Refusals render the shared refusal page with the service's words.
URLs carry the recording's public id only; nothing here logs or shows a patient reference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from orstream.pages import refusal_audit, refused

from . import services, views
from .models import Bookmark, Recording

# The newest recordings shown at once; a search narrows the rest.
LIBRARY_PAGE = 200

RecordingCard = Callable[[HttpRequest, Recording], str]


class RecordingCards:
    """Cards the apps above add to a recording's page (hospital: what the PACS has of it),
    registered in their ``AppConfig.ready()`` so recordings imports none of them. A card renders
    its own template for the request's user, or returns "" when it has nothing for them; it
    decides who may see it."""

    def __init__(self) -> None:
        self._cards: dict[str, RecordingCard] = {}

    def register(self, name: str, card: RecordingCard) -> None:
        self._cards[name] = card

    def render(self, request: HttpRequest, recording: Recording) -> list[str]:
        return [html for card in self._cards.values() if (html := card(request, recording))]


recording_cards = RecordingCards()


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _uuid(value: str | None) -> str:
    try:
        return str(UUID(value)) if value else ""
    except ValueError:
        return ""


def _recording(public_id: UUID) -> Recording:
    recording = services.recording_get(public_id=public_id)
    if recording is None:
        raise Http404("No such recording.")
    return recording


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _reply(request: HttpRequest, recording: Recording, *, ok: bool, message: str, status: int = 200, **extra: Any) -> HttpResponse:
    """JSON for the page's script, or back to the recording page with a message without it."""
    if _wants_json(request):
        if status == 403:
            refusal_audit(request=request, message=message, title="Refused", status=status)
        return JsonResponse({"ok": ok, "message": message, **extra}, status=status)
    if status == 403:
        return refused(request, message)
    (messages.success if ok else messages.error)(request, message)
    return redirect("recordings:detail", recording.public_id)


@require_GET
@login_required
def library(request: HttpRequest) -> HttpResponse:
    """Search the recordings the signed-in person may play."""
    get = request.GET
    filters = services.LibraryFilter(
        text=get.get("q", "").strip(), procedure=get.get("procedure", "").strip(), room=get.get("room", ""),
        surgeon=get.get("surgeon", ""), since=_date(get.get("since")), until=_date(get.get("until")), tag=get.get("tag", ""),
        session=_uuid(get.get("session")),
    )
    recordings = services.recording_list_for(user=request.user, filters=filters)
    return render(
        request,
        "recordings/library.html",
        {
            "recordings": recordings[:LIBRARY_PAGE],
            "total": recordings.count(),
            "choices": services.library_choices_for(user=request.user),
            "filters": filters,
            "filtered": any(get.get(k) for k in ("q", "procedure", "room", "surgeon", "since", "until", "tag", "session")),
        },
    )


@require_GET
@login_required
def recording_detail(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """The player page: the video, the session's telestration in sync, bookmarks and chapters."""
    recording = _recording(public_id)
    try:
        playback = services.recording_playback_for(recording=recording, user=request.user)
    except services.RecordingAccessDenied as refusal:
        return refused(request, str(refusal), title="You cannot watch this recording")
    return render(
        request,
        "recordings/recording.html",
        {
            "recording": recording,
            "playback": playback,
            "may_manage": services.recording_may_manage(recording=recording, user=request.user),
            "may_download": services.recording_may_download(recording=recording, user=request.user),
            "destinations": settings.EXPORT_DESTINATIONS,
            "kinds": Bookmark.Kind.choices,
            "progress_path": f"/ws/recordings/{recording.public_id}/",
            "cards": recording_cards.render(request, recording),
        },
    )


@require_POST
@login_required
def bookmark_create(request: HttpRequest, public_id: UUID) -> HttpResponse:
    recording = _recording(public_id)
    try:
        media_time = float(request.POST.get("media_time", ""))
    except ValueError:
        return _reply(request, recording, ok=False, message="The time of the bookmark is missing; play the video to the moment first.", status=400)
    try:
        bookmark = services.bookmark_add(
            recording=recording, user=request.user, media_time=media_time,
            label=request.POST.get("label", ""), kind=request.POST.get("kind", Bookmark.Kind.BOOKMARK),
        )
    except services.RecordingAccessDenied as refusal:
        return _reply(request, recording, ok=False, message=str(refusal), status=403)
    except services.RecordingError as problem:
        return _reply(request, recording, ok=False, message=str(problem), status=400)
    return _reply(request, recording, ok=True, message=f"{bookmark.get_kind_display()} added.", bookmark=services.bookmark_card(bookmark))


@require_POST
@login_required
def recording_hold(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Put under legal hold (hold=1, with a reason) or release it (hold=0)."""
    recording = _recording(public_id)
    hold = request.POST.get("hold") == "1"
    try:
        services.recording_legal_hold(recording=recording, hold=hold, reason=request.POST.get("reason", ""), by=request.user)
    except services.RecordingAccessDenied as refusal:
        return refused(request, str(refusal))
    except services.RecordingError as problem:
        return _reply(request, recording, ok=False, message=str(problem), status=400)
    return _reply(request, recording, ok=True, message="Legal hold set: this recording will not be erased." if hold else "Legal hold released.")


@require_POST
@login_required
def recording_erase(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Ask for erasure; the job runs in the background and the library drops the recording."""
    recording = _recording(public_id)
    try:
        services.erase_request(recording=recording, by=request.user, reason=request.POST.get("reason", "").strip())
    except services.RecordingAccessDenied as refusal:
        return refused(request, str(refusal))
    except services.RecordingError as problem:
        return _reply(request, recording, ok=False, message=str(problem), status=400)
    messages.success(request, "Erasure requested. The recording is no longer available and its files are being deleted.")
    return redirect("recordings:library")


@require_POST
@login_required
def recording_export(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Queue a verified copy to one of the configured destinations; progress comes over the WebSocket."""
    recording = _recording(public_id)
    destination = request.POST.get("destination", "")
    if destination not in settings.EXPORT_DESTINATIONS:
        return _reply(request, recording, ok=False, message="Choose one of the listed destinations.", status=400)
    try:
        job = services.export_request(recording=recording, destination=Path(destination), by=request.user)
    except services.RecordingAccessDenied as refusal:
        return _reply(request, recording, ok=False, message=str(refusal), status=403)
    except services.RecordingError as problem:
        return _reply(request, recording, ok=False, message=str(problem), status=400)
    job.refresh_from_db()
    return _reply(
        request, recording, ok=job.status != job.Status.FAILED,
        message=job.error or "Export started. Keep this page open to follow it, or come back later.",
        job=str(job.public_id), status_text=job.status, progress=job.progress,
    )


@require_GET
@login_required
def recording_download(request: HttpRequest, public_id: UUID, index: int) -> HttpResponseBase:
    """One part of the recording as a file to save (records office and surgeon; audited)."""
    recording = _recording(public_id)
    try:
        media = services.recording_download_open(recording=recording, index=index, user=request.user)
    except services.RecordingAccessDenied as refusal:
        return refused(request, str(refusal), title="You cannot download this recording")
    except services.RecordingError:
        raise Http404("This recording has no such part.") from None
    # Ranges let a large download resume after a network cut.
    return views.ranged_response(media, request.headers.get("Range"), disposition="attachment")


@require_POST
@login_required
def recording_retry(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """A coordinator asks to check a failed recording again; back to the page they came from."""
    recording = _recording(public_id)
    try:
        services.recording_retry(recording=recording, by=request.user)
    except services.RecordingAccessDenied as refusal:
        return refused(request, str(refusal))
    except services.RecordingError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Checking the recording again. It appears in the library once it passes.")
    back = request.POST.get("next", "")
    return redirect(back if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) else "recordings:library")
