"""The admin's "Test connection" against the real servers, with a clear result either way."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from consent.models import AuditEvent


def _admin() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@hospital.example", "root-pass-Xy9!"))
    return client


def _test(client: Client, model: str, pk: int) -> list[str]:
    reply = client.post(f"/admin/hospital/{model}/", {"action": "test_connection", "_selected_action": [pk]}, follow=True)
    assert reply.status_code == 200
    return [str(m) for m in reply.context["messages"]]


def test_c_echo_to_the_pacs_and_the_worklist(cstore_pacs: Any, worklist_provider: Any) -> None:
    client = _admin()
    assert _test(client, "pacsdestination", cstore_pacs.pk) == [
        f"Connected: Orthanc (C-STORE) answered C-ECHO (ORTHANC at 127.0.0.1:{cstore_pacs.port})."
    ]
    worklist_provider.ae_title = "WRONG"
    worklist_provider.save()
    [message] = _test(client, "worklistprovider", worklist_provider.pk)
    assert message.startswith("Failed: RIS worklist (WRONG at 127.0.0.1") and "rejected the association" in message
    assert [e.outcome for e in AuditEvent.objects.filter(action="hospital.connection_test")] == ["allowed", "refused"]


def test_dicomweb_and_fhir_metadata_with_a_token(stow_pacs: Any, fhir_server: Any) -> None:
    client = _admin()
    assert _test(client, "pacsdestination", stow_pacs.pk) == [f"Connected: DICOMweb at {stow_pacs.dicomweb_url} answered (HTTP 200)."]
    assert _test(client, "fhirserver", fhir_server.pk) == [
        "Connected: EHR: FHIR 5.0.0 capability statement read, and the token endpoint issued a token."
    ]


def test_an_mpps_receiver_that_is_down_says_so(mpps_receiver: Any, mpps_scp: Any) -> None:
    mpps_scp.stop()
    [message] = _test(_admin(), "mppsreceiver", mpps_receiver.pk)
    assert message == f"Failed: RIS MPPS (127.0.0.1:{mpps_receiver.port}) could not be reached or did not answer."
