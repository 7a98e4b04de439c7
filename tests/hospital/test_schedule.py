"""Scheduling a session from the worklist on the coordinator's new-session form, against
Orthanc's worklist plugin: search by day, station and modality, pick, schedule; bad input and a
worklist that does not answer keep what was typed."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.test import Client

from consent.models import AuditEvent
from hospital import services
from hospital.models import Procedure
from mentoring.models import Session
from tests.hospital.conftest import PATIENT, worklist_write

URL = "/hospital/sessions/new/"


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _typed(room: Any, surgeon: Any, day: date, **worklist: str) -> dict[str, str]:
    return {
        "room": str(room.pk), "surgeon": str(surgeon.pk), "planned_start": f"{day}T09:00", "planned_end": f"{day}T12:00",
        "time_zone": "Europe/Paris", "patient_ref": "CASE-2231", "notes": "Bring the 3D scope",
        "worklist-day": str(day), "worklist-station": "", "worklist-modality": "", **worklist,
    }


def test_a_coordinator_searches_the_worklist_and_schedules_the_picked_procedure(
    orthanc: Any, worklist_provider: Any, room_modality: Any, room: Any, alice: Any, bob: Any
) -> None:
    day = date.today() + timedelta(days=2)
    worklist_write(orthanc, accession="ACC2201", day=day, hour=9, description="Microvascular decompression",
                   study_uid="1.2.826.0.1.3680043.8.498.2201")
    worklist_write(orthanc, accession="ACC2202", day=day, hour=14, description="Acoustic neuroma resection")
    worklist_write(orthanc, accession="ACC2203", day=day, station="OTHERROOM")
    worklist_write(orthanc, accession="ACC2204", day=day, modality="ES")
    worklist_write(orthanc, accession="ACC2205", day=day + timedelta(days=1))
    client = _signed_in(alice)
    assert "Schedule from the hospital worklist" in client.get("/sessions/new/").content.decode()

    # The room's station and modality are the search's when none is typed.
    found = client.post(URL, {**_typed(room, bob, day), "action": "search"})
    assert found.status_code == 200
    assert [e.accession_number for e in found.context["entries"]] == ["ACC2201", "ACC2202"]
    html = found.content.decode()
    assert "CASE-2231" in html and "Bring the 3D scope" in html  # what was typed stays
    assert PATIENT["id"] not in html and "Dupont" not in html
    # Another station typed in: its entries only.
    other = client.post(URL, {**_typed(room, bob, day, **{"worklist-station": "otherroom"}), "action": "search"})
    assert [e.accession_number for e in other.context["entries"]] == ["ACC2203"]

    choice = found.context["entries"][1].choice
    scheduled = client.post(URL, {**_typed(room, bob, day), "action": "schedule", "choice": choice})

    assert scheduled.status_code == 302
    session = Session.objects.get()
    assert scheduled["Location"] == f"/sessions/{session.public_id}/"
    assert (session.procedure, session.patient_ref, session.notes) == ("Acoustic neuroma resection", "CASE-2231", "Bring the 3D scope")
    procedure = Procedure.objects.get(session=session)
    assert (procedure.accession_number, procedure.requested_procedure_id) == ("ACC2202", "RP2202")
    assert procedure.requested_procedure_description == "Acoustic neuroma resection"
    assert PATIENT["id"] not in procedure.patient_sealed
    assert services.patient_unseal(procedure.patient_sealed)["id"] == PATIENT["id"]
    assert "accession <strong>ACC2202</strong>" in client.get(scheduled["Location"]).content.decode()
    for event in AuditEvent.objects.filter(action__startswith="hospital."):
        assert PATIENT["id"] not in str(event.detail) + event.target


def test_bad_input_says_what_to_do_and_keeps_what_was_typed(
    orthanc: Any, worklist_provider: Any, room_modality: Any, room: Any, alice: Any, bob: Any
) -> None:
    day = date.today() + timedelta(days=2)
    worklist_write(orthanc, accession="ACC2211", day=day)
    client = _signed_in(alice)

    bad_day = client.post(URL, {**_typed(room, bob, day, **{"worklist-day": "31/12"}), "action": "search"})
    assert bad_day.status_code == 400
    assert "Enter the day as 2026-12-01." in bad_day.content.decode() and "CASE-2231" in bad_day.content.decode()

    bad_station = client.post(URL, {**_typed(room, bob, day, **{"worklist-station": "OR\\3"}), "action": "search"})
    assert bad_station.status_code == 400 and "no backslash" in bad_station.content.decode()

    unpicked = client.post(URL, {**_typed(room, bob, day), "action": "schedule"})
    assert unpicked.status_code == 400
    assert "Pick a procedure from the worklist" in unpicked.content.decode()
    assert [e.accession_number for e in unpicked.context["entries"]] == ["ACC2211"]  # shown again to pick

    choice = unpicked.context["entries"][0].choice
    backwards = client.post(URL, {**_typed(room, bob, day, planned_end=f"{day}T08:00"), "action": "schedule", "choice": choice})
    assert backwards.status_code == 400
    html = backwards.content.decode()
    assert "CASE-2231" in html and " checked>" in html  # the pick is kept, checked
    tampered = client.post(URL, {**_typed(room, bob, day), "action": "schedule", "choice": "not-sealed"})
    assert tampered.status_code == 400 and "search the worklist again" in tampered.content.decode()
    assert not Session.objects.exists()


def test_a_worklist_that_does_not_answer_says_so_and_keeps_the_form(
    worklist_provider: Any, room_modality: Any, room: Any, alice: Any, bob: Any
) -> None:
    worklist_provider.port = 1
    worklist_provider.save()
    day = date.today() + timedelta(days=2)

    page = _signed_in(alice).post(URL, {**_typed(room, bob, day), "action": "search"})

    assert page.status_code == 502
    html = page.content.decode()
    assert "The worklist could not be searched" in html and "could not be reached" in html
    assert "CASE-2231" in html and f'value="{day}"' in html
    assert AuditEvent.objects.filter(action="hospital.worklist_view", outcome="refused").exists()


def test_the_page_is_for_coordinators_and_needs_a_worklist(worklist_provider: Any, dave: Any, alice: Any) -> None:
    assert _signed_in(dave).get(URL).status_code == 403
    worklist_provider.is_active = False
    worklist_provider.save()
    assert _signed_in(alice).get(URL).status_code == 404
    assert "Schedule from the hospital worklist" not in _signed_in(alice).get("/sessions/new/").content.decode()

