"""iCalendar invitations for sessions (RFC 5545/5546): REQUEST, CANCEL and PUBLISH."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.utils import timezone
from icalendar import Calendar, Event, vCalAddress, vText


def session_ics(*, session: Any, method: str, attendees: Iterable[Any]) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//orstream//telementoring//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", session.calendar_uid)
    event.add("sequence", session.sequence)
    event.add("dtstamp", timezone.now())
    zone = zoneinfo.ZoneInfo(session.time_zone)
    event.add("dtstart", session.planned_start.astimezone(zone))
    event.add("dtend", session.planned_end.astimezone(zone))
    event.add("summary", f"Telementoring: {session.procedure}")
    event.add("location", session.room.name)
    event.add("description", f"orstream session in {session.room.name}. Use your personal join link from the e-mail.")
    event.add("url", f"{settings.PUBLIC_URL.rstrip('/')}/sessions/{session.public_id}/")
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    organizer = vCalAddress(f"mailto:{settings.DEFAULT_FROM_EMAIL.split('<')[-1].rstrip('>')}")
    organizer.params["cn"] = vText("orstream")
    event["organizer"] = organizer
    for participant in attendees:
        if not participant.email:
            continue
        attendee = vCalAddress(f"mailto:{participant.email}")
        attendee.params["cn"] = vText(participant.display_name)
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["rsvp"] = vText("TRUE")
        event.add("attendee", attendee, encode=False)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical()
