"""{% archive_card recording %}: the recording's archive copies for the records office, with the
settings, sizes and scores, progress while one is being made, and a button to ask for one.
{% archive_flags %}: archive copies that need a person, at the top of the library."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

from orstream import roles
from recordings.services import archive

register = template.Library()


@register.inclusion_tag("recordings/_archive.html", takes_context=True)
def archive_card(context: template.Context, recording: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if not roles.user_is_coordinator(user):
        return {"shown": False}
    copies = archive.archive_list_for(recording=recording)
    return {
        "shown": True,
        "recording": recording,
        "copies": [(copy, archive.archive_progress_for(archive=copy)) for copy in copies],
        "may_request": recording.status == "available"
        and not any(c.codec == settings.ARCHIVE_CODEC and c.status != "flagged" for c in copies),
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("recordings/_archive_flags.html", takes_context=True)
def archive_flags(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {"flagged": archive.archive_flagged_for(user=user) if user is not None else []}
