"""Pages of the hospital app: schedule a session from the worklist, pick a session's procedure from it, and send a recording
to the PACS (with what the PACS answered). Thin: parse, authorize, call one service, render.
Every refusal gets mentoring's refusal page (403, audited)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string

from consent.audit import audit_record
from mentoring import services as mentoring_services
from mentoring.forms import COMMON_ZONES
from mentoring.models import OperatingRoom, Session
from orstream import roles
from orstream.pages import coordinator_required, refused
from recordings import services as recording_services
from recordings.models import Recording

from . import services
from .forms import WorklistQueryForm, WorklistSessionForm


@coordinator_required
def worklist_pick(request: HttpRequest, public_id: Any) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("room"), public_id=public_id)
    provider = services.worklist_provider_get()
    if provider is None:
        return refused(request, "No worklist is configured: an administrator adds the RIS's worklist in the admin.",
                       title="No worklist", status=404)
    if request.method == "POST":
        try:
            services.procedure_pick(session=session, choice=request.POST.get("choice", ""), by=request.user)
        except services.HospitalError as refusal:
            messages.error(request, str(refusal))
        else:
            messages.success(request, "The session now performs the worklist's procedure.")
            return redirect("mentoring:session_detail", public_id=session.public_id)
    try:
        day = date.fromisoformat(request.GET.get("day", "")) if request.GET.get("day") else session.planned_start.date()
    except ValueError:
        day = session.planned_start.date()
    modality = services.room_modality_get(room=session.room)
    entries: list[services.WorklistEntry] = []
    error = ""
    try:
        entries = services.worklist_query(
            provider=provider, day=day, station_ae_title=modality.station_ae_title if modality else "",
            modality=modality.modality if modality else "",
        )
    except services.HospitalError as failure:
        error = str(failure)
    audit_record(action="hospital.worklist_view", actor=f"user:{request.user.pk}",
                                  session_public_id=str(session.public_id), detail={"entries": len(entries)})
    return render(request, "hospital/worklist.html", {
        "session": session, "entries": entries, "day": day, "error": error, "modality": modality,
        "procedure": services.procedure_get(session=session),
    })


@coordinator_required
def recording_pacs(request: HttpRequest, public_id: Any) -> HttpResponse:
    recording = get_object_or_404(Recording.objects.select_related("session__room"), public_id=public_id)
    destinations = services.pacs_destination_list()
    if request.method == "POST":
        destination = next((d for d in destinations if str(d.pk) == request.POST.get("destination")), None)
        if destination is None:
            messages.error(request, "Choose a PACS to send it to.")
        else:
            try:
                start, end = request.POST.get("clip_start") or None, request.POST.get("clip_end") or None
                services.dicom_export_request(recording=recording, destination=destination, by=request.user,
                                              clip_start=float(start) if start else None, clip_end=float(end) if end else None)
            except (services.HospitalError, ValueError) as refusal:
                messages.error(request, str(refusal))
            else:
                messages.success(request, f"Sending to {destination.name}: this page shows how it goes.")
            return redirect("hospital:recording_pacs", public_id=recording.public_id)
    audit_record(action="hospital.pacs_view", actor=f"user:{request.user.pk}",
                                  session_public_id=str(recording.session.public_id), target=f"recording:{recording.public_id}")
    return render(request, "hospital/recording_pacs.html", {
        "recording": recording, "destinations": destinations, "exports": services.dicom_export_list_for(recording=recording),
        "problem": services.dicom_export_problem_for(recording=recording), "bookmarks": recording_services.bookmark_list_for(recording=recording, user=request.user),
        "procedure": services.procedure_get(session=recording.session),
    })


def _worklist_search(
    query: WorklistQueryForm, room: OperatingRoom | None
) -> tuple[list[services.WorklistEntry], str, str]:
    """The entries for a valid query, the station searched and what went wrong (or "")."""
    provider = services.worklist_provider_get()
    if provider is None:
        return [], "", "No worklist is configured: an administrator adds the RIS's worklist in the admin."
    station, modality = query.cleaned_data["station"], query.cleaned_data["modality"]
    room_modality = services.room_modality_get(room=room) if room is not None else None
    if room_modality is not None and not station:
        station, modality = room_modality.station_ae_title, modality or room_modality.modality
    try:
        entries = services.worklist_query(provider=provider, day=query.cleaned_data["day"], station_ae_title=station,
                                          modality=modality)
    except services.HospitalError as failure:
        return [], station, f"The worklist could not be searched: {failure} Check the worklist in the admin, or try again."
    return entries, station, ""


@coordinator_required
def session_new_from_worklist(request: HttpRequest) -> HttpResponse:
    """The new-session form with the hospital worklist in it: search by day, station and modality,
    pick an entry, then schedule. One POST form with two buttons, so whatever was typed stays
    when the search fails or an input is wrong (and no script is needed under the strict CSP)."""
    if services.worklist_provider_get() is None:
        return refused(request, "No worklist is configured: an administrator adds the RIS's worklist in the admin.",
                       title="No worklist", status=404)
    posted = request.method == "POST"
    action = request.POST.get("action", "search") if posted else "open"
    query = WorklistQueryForm(request.POST if posted else None)
    # A search does not validate the session's fields: they come back as typed, without errors.
    typed = {k: v for k, v in request.POST.items() if k in WorklistSessionForm.base_fields}
    form = WorklistSessionForm(request.POST) if action == "schedule" else WorklistSessionForm(initial=typed or None)
    chosen = request.POST.get("choice", "")
    error, status = "", 200
    if action == "schedule":
        if not chosen:
            error, status = "Pick a procedure from the worklist (search it first), then schedule.", 400
        elif form.is_valid():
            data = form.cleaned_data
            try:
                session = services.session_schedule_from_worklist(
                    room=data["room"], choice=chosen, surgeon=data["surgeon"], planned_start=data["planned_start"],
                    planned_end=data["planned_end"], time_zone=data["time_zone"], created_by=request.user,
                    patient_ref=data["patient_ref"], notes=data["notes"],
                )
            except services.HospitalError as refusal:
                error, status = str(refusal), 400
            except mentoring_services.SchedulingError as refusal:
                form.add_error(refusal.field if refusal.field in form.fields else None, str(refusal))
                status = 400
            else:
                messages.success(request, "Session scheduled for the worklist's procedure. Add participants and send invitations below.")
                return redirect("mentoring:session_detail", session.public_id)
        else:
            status = 400
    entries: list[services.WorklistEntry] = []
    station = ""
    if posted and query.is_valid():
        room_id = request.POST.get("room", "")
        room = OperatingRoom.objects.filter(pk=int(room_id), is_active=True).first() if room_id.isdigit() else None
        entries, station, failure = _worklist_search(query, room)
        if failure:
            error, status = failure, 502 if status == 200 else status
    elif posted:
        status = 400
    audit_record(action="hospital.worklist_view", actor=f"user:{request.user.pk}", outcome="refused" if status >= 400 else "allowed",
                 detail={"entries": len(entries), "action": action, "station": station})
    return render(request, "hospital/session_new.html", {
        "query": query, "form": form, "entries": entries, "chosen_accession": services.worklist_choice_accession(chosen),
        "error": error, "zones": COMMON_ZONES,
        "searched": posted and query.is_valid(),
    }, status=status)


def recording_pacs_card(request: HttpRequest, recording: Recording) -> str:
    """The card on a recording's page (registered with recordings' cards): for coordinators, who
    send recordings to the PACS, each export's state and progress, the PACS's refusal if the last
    one failed, and the link to the export page. Nothing for anyone else, or with no PACS."""
    if not roles.user_is_coordinator(request.user):
        return ""
    exports = services.dicom_export_list_for(recording=recording)
    if not exports and not services.pacs_destination_list():
        return ""
    return render_to_string("hospital/_recording_card.html", {
        "recording": recording, "exports": exports[:5], "problem": services.dicom_export_problem_for(recording=recording),
        "procedure": services.procedure_get(session=recording.session),
    }, request=request)
