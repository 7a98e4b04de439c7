"""Consent pages for the staff who take the patient's consent: record it per purpose, see what is
in force and its history, withdraw it in one action, export it (FHIR R5 Consent) and the
session's audit trail (FHIR R5 AuditEvent bundle).

Each view parses, authorizes (consent staff: coordinators or the consent_staff group), calls one
service of consent.services and shapes the reply. URLs carry the session's public id and a
record's number, never a patient reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from orstream import roles
from orstream.pages import found, refused

from . import fhir, services
from .audit import audit_list_for
from .models import ConsentRecord, Purpose


def consent_staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not roles.user_is_consent_staff(request.user):
            return refused(
                request,
                "Consent is recorded by the coordinators and the ward's consent staff. "
                "Ask your administrator to add you to the consent_staff group if this is your job.",
            )
        return view(request, *args, **kwargs)

    return wrapper


def _session(public_id: Any) -> Any:
    return found(services.consent_session_get(public_id=public_id), "session")


def _record(session: Any, record_id: int) -> ConsentRecord:
    return found(services.consent_record_get(session=session, pk=record_id), "consent record for this session")


def _page(request: HttpRequest, session: Any, *, error: str = "", entered: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    forms = services.consent_form_list_active()
    return render(
        request,
        "consent/session.html",
        {
            "session": session,
            "in_force": services.consent_in_force(session=session),
            "history": services.consent_history_for(session=session),
            "forms": forms,
            "forms_purposes": {str(f.pk): f.purposes for f in forms},
            "purposes": Purpose.choices,
            "error": error,
            "entered": entered or {"patient_ref": session.patient_ref, "form": str(forms[0].pk) if forms else ""},
        },
        status=status,
    )


@consent_staff_required
def consent_session(request: HttpRequest, public_id: Any) -> HttpResponse:
    """GET: the session's consent page. POST: record a new consent from the form on it."""
    session = _session(public_id)
    if request.method != "POST":
        return _page(request, session)
    entered = {key: request.POST.get(key, "") for key in ("form", "patient_ref", "attestation")}
    entered.update({f"decision_{p}": request.POST.get(f"decision_{p}", "") for p in Purpose.values})
    form = services.consent_form_get_active(pk=entered["form"])
    if form is None:
        return _page(request, session, error="Choose the consent form the patient signed.", entered=entered, status=400)
    # Only explicit answers count: a purpose left unanswered is missing, and the service says which.
    decisions = {
        p: request.POST[f"decision_{p}"] == "granted"
        for p in form.purposes
        if request.POST.get(f"decision_{p}") in ("granted", "refused")
    }
    try:
        services.consent_record(
            session=session, form=form, decisions=decisions, obtained_by=request.user,
            attestation=entered["attestation"], patient_ref=entered["patient_ref"].strip(),
        )
    except services.ConsentError as problem:
        return _page(request, session, error=str(problem), entered=entered, status=400)
    messages.success(request, "Consent recorded. It is in force now.")
    return redirect("consent:session", session.public_id)


@require_POST
@consent_staff_required
def consent_withdraw(request: HttpRequest, public_id: Any, record_id: int) -> HttpResponse:
    """Withdraw the consent in force: one action. Recordings are restricted at once."""
    session = _session(public_id)
    record = _record(session, record_id)
    services.consent_withdraw(record=record, by=request.user, reason=request.POST.get("reason", "").strip())
    messages.success(
        request,
        "Consent withdrawn. The recordings of this procedure are locked now and live viewers are being disconnected.",
    )
    return redirect("consent:session", session.public_id)


def _json_download(payload: dict[str, Any], name: str, content_type: str = "application/fhir+json") -> HttpResponse:
    response = HttpResponse(json.dumps(payload, indent=2), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@consent_staff_required
def consent_fhir(request: HttpRequest, public_id: Any, record_id: int) -> HttpResponse:
    """One consent record as a FHIR R5 Consent resource (JSON)."""
    record = _record(_session(public_id), record_id)
    return _json_download(fhir.consent_to_fhir(record), f"consent-{record.pk}.fhir.json")


@require_GET
@consent_staff_required
def audit_fhir(request: HttpRequest, public_id: Any) -> HttpResponse:
    """The session's audit trail as a FHIR R5 Bundle of AuditEvent resources (JSON)."""
    session = _session(public_id)
    return _json_download(fhir.audit_bundle(audit_list_for(session=session)), f"audit-{session.public_id}.fhir.json")
