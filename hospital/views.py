"""Pages of the hospital app: pick a session's procedure from the worklist, and send a recording
to the PACS (with what the PACS answered). Thin: parse, authorize, call one service, render.
Every refusal gets mentoring's refusal page (403, audited)."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from consent.audit import audit_record
from mentoring.models import Session
from orstream.pages import coordinator_required, refused
from recordings.models import Recording

from . import services


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
        "problem": services.dicom_export_problem_for(recording=recording), "bookmarks": recording.bookmarks.all(),
        "procedure": services.procedure_get(session=recording.session),
    })
