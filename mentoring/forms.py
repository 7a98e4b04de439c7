"""Forms for the coordinator's pages. They parse input; mentoring.services decides the rules."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth.models import User

from .models import OperatingRoom, Role

COMMON_ZONES = sorted(zoneinfo.available_timezones())


class LocalDateTimeField(forms.DateTimeField):
    """A datetime-local input: a wall-clock time read in the form's chosen time zone."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")
    input_formats = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"]

    def to_python(self, value: Any) -> datetime | None:
        # Keep the value naive: clean() attaches the zone the coordinator picked.
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=None)
        for fmt in self.input_formats:
            try:
                return datetime.strptime(str(value).strip(), fmt)
            except ValueError:
                continue
        raise forms.ValidationError("Enter a date and time such as 2026-12-01 08:30.", code="invalid")


class SessionForm(forms.Form):
    procedure = forms.CharField(max_length=200, help_text="The procedure only: never the patient's name.")
    room = forms.ModelChoiceField(queryset=OperatingRoom.objects.filter(is_active=True))
    surgeon = forms.ModelChoiceField(queryset=User.objects.filter(is_active=True).order_by("last_name", "username"))
    planned_start = LocalDateTimeField(label="Start")
    planned_end = LocalDateTimeField(label="End")
    time_zone = forms.CharField(max_length=64, initial="UTC", widget=forms.TextInput(attrs={"list": "time-zones"}))
    patient_ref = forms.CharField(
        max_length=64, required=False, label="Case reference", help_text="A pseudonymous case number, never a name."
    )
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        name = data.get("time_zone", "")
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.add_error("time_zone", f"Unknown time zone {name!r}: use a name such as Europe/Paris.")
            return data
        for field in ("planned_start", "planned_end"):
            if data.get(field) is not None:
                data[field] = data[field].replace(tzinfo=zone)
        return data


class ParticipantForm(forms.Form):
    role = forms.ChoiceField(choices=[(r.value, r.label) for r in Role if r != Role.SURGEON])
    display_name = forms.CharField(max_length=120, label="Name")
    email = forms.EmailField(required=False)
    is_external = forms.BooleanField(required=False, label="From another centre")
    send_invitation = forms.BooleanField(required=False, initial=True, label="E-mail an invitation")


class SpecialistForm(forms.Form):
    display_name = forms.CharField(max_length=120, label="Specialist's name")
    email = forms.EmailField(required=False)
    minutes = forms.IntegerField(min_value=1, max_value=240, initial=20, label="Valid for (minutes)")
    is_external = forms.BooleanField(required=False, initial=True, label="From another centre")


class RoomForm(forms.Form):
    name = forms.CharField(max_length=100)
    location = forms.CharField(max_length=200, required=False)
