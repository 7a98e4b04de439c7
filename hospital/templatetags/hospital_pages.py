"""{% hospital_summary session %}: for coordinators, on the session page, the hospital side of a
session: its worklist procedure (accession, step reported to the RIS, or why the RIS refused)
and, per available recording, a link to send it to the PACS with what the PACS last answered.
Nothing when no worklist or PACS is configured."""

from __future__ import annotations

from typing import Any

from django import template

from orstream import roles
from recordings.models import Recording

from .. import services

register = template.Library()


@register.inclusion_tag("hospital/_summary.html", takes_context=True)
def hospital_summary(context: template.Context, session: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    configured = services.worklist_provider_get() is not None or bool(services.pacs_destination_list())
    if user is None or not roles.user_is_coordinator(user) or not configured:
        return {"show": False}
    recordings = [
        {"recording": r, "problem": services.dicom_export_problem_for(recording=r),
         "last": r.dicom_exports.order_by("-created_at").first()}
        for r in session.recordings.filter(status=Recording.Status.AVAILABLE).order_by("started_at")
    ]
    return {
        "show": True, "session": session, "procedure": services.procedure_get(session=session),
        "has_worklist": services.worklist_provider_get() is not None, "recordings": recordings,
    }


@register.inclusion_tag("hospital/_schedule_link.html")
def hospital_schedule_link() -> dict[str, Any]:
    """On the new-session form: the way to schedule from the worklist, when one is configured."""
    return {"show": services.worklist_provider_get() is not None}
