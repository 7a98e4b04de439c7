"""{% consent_summary session %}: the consent in force for a session, in one line, with links to
the consent page and the session's recordings. Used on the session page."""

from __future__ import annotations

from typing import Any

from django import template

from consent import services
from orstream import roles

register = template.Library()


@register.inclusion_tag("consent/_summary.html", takes_context=True)
def consent_summary(context: template.Context, session: Any) -> dict[str, Any]:
    record = services.consent_in_force(session=session)
    decisions = list(record.decisions.all()) if record else []
    return {
        "session": session,
        "record": record,
        "granted": [d for d in decisions if d.granted],
        "refused": [d for d in decisions if not d.granted],
        "may_record": roles.user_is_consent_staff(context["request"].user) if "request" in context else False,
    }
