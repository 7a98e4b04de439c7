"""Forms of the hospital pages. They parse input; hospital.services decides the rules."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from django import forms

from mentoring.forms import SessionForm

# DICOM AE titles: up to 16 characters of the default repertoire, no backslash or control characters.
AE_TITLE = re.compile(r"^[ -\[\]-~]{0,16}$")


class WorklistQueryForm(forms.Form):
    """What the coordinator searches the worklist by: the day, the station (AE title), the modality."""

    day = forms.DateField(label="Scheduled on", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                          error_messages={"invalid": "Enter the day as 2026-12-01.", "required": "Enter the day to search."})
    station = forms.CharField(
        label="Station AE title", max_length=16, required=False,
        help_text="The room's AE title in the worklist; empty for the chosen room's, or for every station.",
        error_messages={"max_length": "An AE title has at most 16 characters."},
    )
    modality = forms.ChoiceField(
        label="Modality", required=False,
        choices=[("", "Any"), ("GM", "GM (microscope, exoscope)"), ("ES", "ES (endoscope)")],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "worklist")
        super().__init__(*args, **kwargs)
        self.fields["day"].initial = date.today()

    def clean_station(self) -> str:
        station = str(self.cleaned_data.get("station", "")).strip().upper()
        if not AE_TITLE.match(station):
            raise forms.ValidationError("An AE title has letters, digits and spaces only (no backslash), up to 16.")
        return station


class WorklistSessionForm(SessionForm):
    """The new-session form when the procedure comes from the worklist: its name is the
    worklist's requested procedure, so the coordinator does not type one."""

    procedure = None  # type: ignore[assignment]
