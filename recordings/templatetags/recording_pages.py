"""{% recording_problems session %}: the recordings of a session (or, without one, of every session)
that failed their check or are stuck, with what to do and a "Check again" button, for
coordinators. Used on the session page and in the library."""

from __future__ import annotations

from typing import Any

from django import template

from recordings import services

register = template.Library()


@register.inclusion_tag("recordings/_problems.html", takes_context=True)
def recording_problems(context: template.Context, session: Any = None) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "problems": services.recording_problems_for(user=user, session=session) if user is not None else [],
        "back": request.get_full_path() if request is not None else "",
        "csrf_token": context.get("csrf_token"),
    }
