"""The hospital pages, driven as a coordinator would: pick from the worklist, send to the PACS."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.test import Client

from consent.models import AuditEvent
from hospital.models import DicomExport, Procedure
from tests.hospital.conftest import PATIENT, worklist_write


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_coordinator_picks_the_procedure_on_the_worklist_page(
    orthanc: Any, worklist_provider: Any, room_modality: Any, session: Any, alice: Any
) -> None:
    worklist_write(orthanc, accession="ACC0321", day=session.planned_start.date(), description="Clipping of an aneurysm")
    client = _signed_in(alice)

    page = client.get(f"/hospital/sessions/{session.public_id}/worklist/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "ACC0321" in html and "Clipping of an aneurysm" in html
    assert PATIENT["id"] not in html and "Dupont" not in html
    choice = page.context["entries"][0].choice

    picked = client.post(f"/hospital/sessions/{session.public_id}/worklist/", {"choice": choice})
    assert picked.status_code == 302
    assert Procedure.objects.get(session=session).accession_number == "ACC0321"


def test_the_worklist_page_is_for_coordinators(worklist_provider: Any, session: Any, dave: Any) -> None:
    page = _signed_in(dave).get(f"/hospital/sessions/{session.public_id}/worklist/")
    assert page.status_code == 403


def test_the_pacs_page_says_why_the_pacs_refused(
    orthanc: Any, worklist_provider: Any, cstore_pacs: Any, room_modality: Any, available_recording: Any, alice: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    worklist_write(orthanc, accession="ACC0322", day=date.today())
    client = _signed_in(alice)
    session = available_recording.session
    choice = client.get(f"/hospital/sessions/{session.public_id}/worklist/?day={date.today()}").context["entries"][0].choice
    client.post(f"/hospital/sessions/{session.public_id}/worklist/", {"choice": choice})
    cstore_pacs.ae_title = "NOTTHEPACS"
    cstore_pacs.save()

    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(f"/hospital/recordings/{available_recording.public_id}/pacs/", {"destination": cstore_pacs.pk})
    assert sent.status_code == 302
    page = client.get(f"/hospital/recordings/{available_recording.public_id}/pacs/")
    html = page.content.decode()
    assert "could not be stored" in html and "rejected the association" in html
    assert DicomExport.objects.get().status == "failed"
    assert AuditEvent.objects.filter(action="hospital.pacs_view", target=f"recording:{available_recording.public_id}").exists()


def test_the_session_page_shows_the_procedure_and_what_the_pacs_said(
    orthanc: Any, worklist_provider: Any, cstore_pacs: Any, mpps_scp: Any, mpps_receiver: Any, room_modality: Any,
    available_recording: Any, alice: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    session = available_recording.session
    client = _signed_in(alice)
    page = client.get(f"/sessions/{session.public_id}/").content.decode()
    assert "not tied to the hospital worklist" in page and f"/hospital/sessions/{session.public_id}/worklist/" in page

    worklist_write(orthanc, accession="ACC0323", day=date.today())
    choice = client.get(f"/hospital/sessions/{session.public_id}/worklist/?day={date.today()}").context["entries"][0].choice
    client.post(f"/hospital/sessions/{session.public_id}/worklist/", {"choice": choice})
    mpps_scp.refuse = True
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/sessions/{session.public_id}/start/")
    cstore_pacs.ae_title = "NOTTHEPACS"
    cstore_pacs.save()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/hospital/recordings/{available_recording.public_id}/pacs/", {"destination": cstore_pacs.pk})

    page = client.get(f"/sessions/{session.public_id}/").content.decode()
    assert "accession <strong>ACC0323</strong>" in page
    assert "The RIS did not take the procedure step" in page and "0x0110" in page
    assert "could not be stored: Orthanc (C-STORE) (NOTTHEPACS" in page
    assert PATIENT["id"] not in page


def test_without_hospital_servers_the_session_page_has_no_hospital_card(session: Any, alice: Any) -> None:
    assert 'id="hospital"' not in _signed_in(alice).get(f"/sessions/{session.public_id}/").content.decode()


def test_the_recording_page_shows_coordinators_the_pacs_export_and_its_refusal(
    orthanc: Any, worklist_provider: Any, cstore_pacs: Any, room_modality: Any, available_recording: Any, alice: Any,
    bob: Any, django_capture_on_commit_callbacks: Any,
) -> None:
    worklist_write(orthanc, accession="ACC0324", day=date.today())
    client = _signed_in(alice)
    session = available_recording.session
    page = f"/recordings/{available_recording.public_id}/"
    pacs_page = f"/hospital/recordings/{available_recording.public_id}/pacs/"
    html = client.get(page).content.decode()
    assert f'href="{pacs_page}"' in html and "Pick the session's procedure from the worklist first" in html

    choice = client.get(f"/hospital/sessions/{session.public_id}/worklist/?day={date.today()}").context["entries"][0].choice
    client.post(f"/hospital/sessions/{session.public_id}/worklist/", {"choice": choice})
    cstore_pacs.ae_title = "NOTTHEPACS"
    cstore_pacs.save()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(pacs_page, {"destination": cstore_pacs.pk})
    html = client.get(page).content.decode()
    assert "Failed (" in html and "could not be stored" in html and "rejected the association" in html

    cstore_pacs.ae_title = orthanc.ae_title
    cstore_pacs.save()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(pacs_page, {"destination": cstore_pacs.pk})
    html = client.get(page).content.decode()
    assert "Stored in the PACS (100%)" in html and 'value="100"' in html and "read back and verified" in html

    # The surgeon may watch the recording, but sending it to the PACS is the coordinators'.
    surgeon_page = _signed_in(bob).get(page)
    assert surgeon_page.status_code == 200 and pacs_page not in surgeon_page.content.decode()
