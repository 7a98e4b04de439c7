"""{% watch_before session %}: the model procedures of the same procedure, as links, on a
scheduled session's page (frontend's templates load it; training never imports frontend)."""

from __future__ import annotations

from typing import Any

from django import template

from training import export, services

register = template.Library()


@register.inclusion_tag("training/_watch_before.html", takes_context=True)
def watch_before(context: Any, session: Any) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    return {"entries": services.watch_before_for(session=session, user=user) if user is not None else [], "session": session}


@register.filter
def clock(seconds: Any) -> str:
    return export.clock(float(seconds or 0))
