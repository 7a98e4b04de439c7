"""Training pages: the faculty's and residents' training home, a recording's training page (who
operated, raters, curation), the assessment page on the timeline, progress, cohort, reliability,
the model-procedure library and the CSV export.

Each view parses the request, calls training.services (which asks consent's gate, applies the
blinding rule and audits) and shapes the reply. URLs carry public ids only, never a patient's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from orstream import roles
from orstream.pages import refused
from recordings import services as recording_services
from recordings.models import Bookmark, Recording

from . import charts, export, reliability, services
from .models import Assessment, Instrument, Programme

User = get_user_model()


def _recording(public_id: UUID) -> Recording:
    recording = recording_services.recording_get(public_id=public_id)
    if recording is None:
        raise Http404("No such recording.")
    return recording


def _assessment(public_id: UUID) -> Assessment:
    assessment = services.assessment_get(public_id=public_id)
    if assessment is None:
        raise Http404("No such assessment.")
    return assessment


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _user(value: str | None) -> Any:
    return User.objects.filter(pk=value).first() if value and value.isdigit() else None


def refusals(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A refusal renders the shared refusal page with the service's words; a problem goes back
    where the person came from with a message."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except services.TrainingAccessDenied as refusal:
            return refused(request, str(refusal))
        except recording_services.RecordingAccessDenied as refusal:
            return refused(request, str(refusal))
        except services.TrainingError as problem:
            messages.error(request, str(problem))
            back = request.META.get("HTTP_REFERER", "")
            return redirect(back if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) else "training:home")

    return wrapper


@require_GET
@refusals
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(request, "training/home.html", {
        "is_faculty": roles.user_is_faculty(user),
        "directed": list(services.programmes_directed_by(user=user)),
        "todo": services.assessment_assignments_for(user=user),
        "recordings": services.training_recordings_for(user=user),
        "upcoming": services.sessions_upcoming_for(user=user),
        "received": [c for c in services.assessment_list_for(user=user) if c.assessment.resident_id == user.pk],
    })


@require_GET
@refusals
def recording_page(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """A recording seen for training: who operated (parts), its assessments (blinded), and the
    director's and faculty's forms."""
    recording = _recording(public_id)
    services.training_consent_require(recording=recording, user=request.user, action="training.recording.view")
    performances = services.performances_for(recording=recording)
    taught = set(services.programmes_taught_by(user=request.user))
    if not roles.user_is_faculty(request.user) or not taught:
        raise services.TrainingAccessDenied("This page is for the faculty of a training programme.")
    directed = set(services.programmes_directed_by(user=request.user))
    return render(request, "training/recording.html", {
        "recording": recording,
        "performances": performances,
        "cards": services.assessment_list_for_recording(recording=recording, user=request.user),
        "is_director": bool(directed),
        "programmes": sorted(taught, key=lambda p: p.name),
        "residents": sorted({r for p in taught for r in services.residents_of(programme=p)}, key=lambda u: u.username),
        "faculty": sorted({f for p in directed for f in services.faculty_of(programme=p)}, key=lambda u: u.username),
        "instruments": services.instrument_list_active(),
        "collections": services.collection_list(),
        "chapters": recording.bookmarks.filter(kind=Bookmark.Kind.CHAPTER).order_by("media_time"),
    })


@require_POST
@refusals
def performance_create(request: HttpRequest, public_id: UUID) -> HttpResponse:
    recording = _recording(public_id)
    programme = Programme.objects.filter(pk=request.POST.get("programme") or 0).first()
    resident = _user(request.POST.get("resident"))
    start, end = _float(request.POST.get("start")), _float(request.POST.get("end"))
    if programme is None or resident is None:
        raise services.TrainingError("Choose the programme and the resident who operated.")
    parts = [(recording, start, end, request.POST.get("label", ""))] if start is not None and end is not None else []
    services.performance_record(session=recording.session, programme=programme, resident=resident, by=request.user, parts=parts)
    messages.success(request, "Recorded who operated.")
    return redirect("training:recording", recording.public_id)


@require_POST
@refusals
def assessment_assign(request: HttpRequest, public_id: UUID) -> HttpResponse:
    recording = _recording(public_id)
    instrument = Instrument.objects.filter(pk=request.POST.get("instrument") or 0).first()
    resident, rater = _user(request.POST.get("resident")), _user(request.POST.get("rater"))
    if instrument is None or resident is None or rater is None:
        raise services.TrainingError("Choose the resident, the rater and the instrument.")
    services.assessment_assign(
        recording=recording, resident=resident, rater=rater, instrument=instrument, by=request.user,
        part_start=_float(request.POST.get("part_start")), part_end=_float(request.POST.get("part_end")),
    )
    messages.success(request, f"{rater.get_full_name() or rater.username} is assigned to rate with {instrument.short_name}.")
    return redirect("training:recording", recording.public_id)


@require_GET
@refusals
def assessment_page(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Score on the timeline (the rater, until submitted), or read a visible assessment."""
    assessment = services.assessment_open(assessment=_assessment(public_id), user=request.user)
    playback = recording_services.recording_playback_for(recording=assessment.recording, user=request.user)
    card = services.assessment_card(assessment=assessment, user=request.user)
    editing = assessment.rater_id == request.user.pk and not assessment.is_submitted
    others = [c for c in services.assessment_list_for_recording(recording=assessment.recording, user=request.user)
              if c.assessment.pk != assessment.pk and c.assessment.instrument_id == assessment.instrument_id]
    return render(request, "training/assess.html", {
        "assessment": assessment, "card": card, "editing": editing, "others": others,
        "items": [(item, card.scores.get(item.key), item.anchor_list) for item in assessment.instrument.items.all()],
        "playback": {**playback, "start": assessment.part_start or 0,
                     "comments": [{"t": c.media_time, "text": c.text, "item": c.item.name if c.item else ""} for c in card.comments]},
    })


@require_POST
@refusals
def assessment_save(request: HttpRequest, public_id: UUID) -> HttpResponse:
    """Save the scores (and submit, with submit=1)."""
    assessment = _assessment(public_id)
    scores = {}
    for key in request.POST:
        if key.startswith("score-") and (value := request.POST.get(key, "").strip()):
            try:
                scores[key[6:]] = int(value)
            except ValueError:
                raise services.TrainingError(f"A score is a whole number; “{value[:20]}” is not one.") from None
    services.assessment_score(assessment=assessment, user=request.user, scores=scores, summary=request.POST.get("summary"))
    if request.POST.get("submit") == "1":
        services.assessment_submit(assessment=assessment, user=request.user)
        messages.success(request, "Assessment submitted. You now see the other raters' submitted scores.")
    else:
        messages.success(request, "Scores saved. Submit when every item is scored.")
    return redirect("training:assessment", assessment.public_id)


@require_POST
@refusals
def comment_create(request: HttpRequest, public_id: UUID) -> HttpResponse:
    assessment = _assessment(public_id)
    media_time = _float(request.POST.get("media_time"))
    if media_time is None:
        raise services.TrainingError("The moment of the comment is missing; play the video to it first.")
    services.assessment_comment_add(
        assessment=assessment, user=request.user, media_time=media_time, text=request.POST.get("text", ""),
        item_key=request.POST.get("item", ""),
    )
    messages.success(request, "Comment added at that moment.")
    return redirect("training:assessment", assessment.public_id)


@require_GET
@refusals
def progress(request: HttpRequest, user_id: int | None = None) -> HttpResponse:
    resident = request.user if user_id is None else User.objects.filter(pk=user_id).first()
    if resident is None:
        raise Http404("No such resident.")
    series = services.progress_for(resident=resident, user=request.user)
    return render(request, "training/progress.html", {
        "resident": resident, "own": resident.pk == request.user.pk,
        "series": [(s, charts.progress_chart(s)) for s in series],
    })


@require_GET
@refusals
def cohort(request: HttpRequest) -> HttpResponse:
    if not services.programmes_directed_by(user=request.user).exists():
        raise services.TrainingAccessDenied("The cohort is for programme directors.")
    return render(request, "training/cohort.html", {"rows": services.cohort_for(user=request.user)})


@require_GET
@refusals
def reliability_page(request: HttpRequest) -> HttpResponse:
    if not roles.user_is_faculty(request.user):
        raise services.TrainingAccessDenied("Reliability figures are for the programme's faculty.")
    return render(request, "training/reliability.html", {"tables": reliability.reliability_for(user=request.user)})


@refusals
def library(request: HttpRequest) -> HttpResponse:
    """The model-procedure library; faculty create collections here (POST)."""
    if request.method == "POST":
        collection = services.collection_create(
            title=request.POST.get("title", ""), specialty=request.POST.get("specialty", ""),
            procedure=request.POST.get("procedure", ""), description=request.POST.get("description", ""), by=request.user,
        )
        messages.success(request, f"Collection “{collection.title}” created. Add recordings from their training page.")
        return redirect("training:collection", collection.pk)
    return render(request, "training/library.html", {
        "collections": services.collection_list(), "is_faculty": roles.user_is_faculty(request.user),
    })


@require_GET
@refusals
def collection_page(request: HttpRequest, pk: int) -> HttpResponse:
    collection = services.collection_get(pk=pk)
    if collection is None:
        raise Http404("No such collection.")
    return render(request, "training/collection.html", {
        "collection": collection, "entries": services.collection_entries_for(collection=collection, user=request.user),
    })


@require_POST
@refusals
def entry_create(request: HttpRequest, public_id: UUID) -> HttpResponse:
    recording = _recording(public_id)
    collection = services.collection_get(pk=request.POST.get("collection") or 0)
    if collection is None:
        raise services.TrainingError("Choose a collection, or create one in the model-procedure library first.")
    chapter = recording.bookmarks.filter(pk=request.POST.get("chapter") or 0, kind=Bookmark.Kind.CHAPTER).first()
    services.collection_entry_add(
        collection=collection, recording=recording, by=request.user, note=request.POST.get("note", ""), chapter=chapter,
        start=_float(request.POST.get("start")) or 0.0, end=_float(request.POST.get("end")),
    )
    messages.success(request, f"Added to “{collection.title}”.")
    return redirect("training:collection", collection.pk)


@require_GET
@refusals
def export_csv(request: HttpRequest) -> HttpResponse:
    """The submitted assessments of the programmes the signed-in director directs, as CSV."""
    assessments = services.assessments_for_export(user=request.user)
    response = HttpResponse(export.assessments_csv(assessments), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="assessments.csv"'
    return response
