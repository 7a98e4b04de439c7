"""The consent pages: staff record consent per purpose, withdraw it in one action, and export it
and the session's audit trail as FHIR R5."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from fhir.resources.bundle import Bundle
from fhir.resources.consent import Consent as FhirConsent

from consent import services
from consent.audit import audit_record
from consent.models import AuditEvent, ConsentRecord
from tests.conftest import ALL_PURPOSES, make_user

from .conftest import Probe


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(session: Any) -> str:
    return f"/consent/sessions/{session.public_id}/"


def answers(consent_form: Any, **overrides: str) -> dict[str, str]:
    form = {f"decision_{p}": "granted" for p in ALL_PURPOSES}
    form.update({f"decision_{k}": v for k, v in overrides.items()})
    return {"form": str(consent_form.pk), "patient_ref": "", "attestation": "Signed form, witnessed by the ward nurse", **form}


def test_the_coordinator_records_each_purpose_through_the_page(session: Any, consent_form: Any, alice: Any) -> None:
    client = signed_in(alice)
    assert "No consent in force" in client.get(page(session)).content.decode()
    response = client.post(page(session), answers(consent_form, research="refused", live_external="refused"))
    assert response.status_code == 302
    record = services.consent_in_force(session=session)
    assert record is not None and record.obtained_by == alice and record.patient_ref == "CASE-0042"
    assert {d.purpose: d.granted for d in record.decisions.all()} == {
        "record": True, "live_internal": True, "live_external": False, "archive_training": True, "research": False
    }
    event = AuditEvent.objects.get(action="consent.record")
    assert event.actor == f"user:{alice.pk}" and event.session_public_id == str(session.public_id)
    shown = client.get(page(session)).content.decode()
    assert "Consent in force" in shown and "✘ Refused" in shown and "Withdraw consent" in shown


def test_ward_consent_staff_may_record_with_their_own_patient_reference(session: Any, consent_form: Any) -> None:
    nurse = make_user("nina")
    nurse.groups.add(Group.objects.get_or_create(name="consent_staff")[0])
    response = signed_in(nurse).post(page(session), {**answers(consent_form), "patient_ref": "WARD7-0193"})
    assert response.status_code == 302
    assert ConsentRecord.objects.get().patient_ref == "WARD7-0193"


def test_the_page_warns_never_to_type_a_name(session: Any, alice: Any, consent_form: Any) -> None:
    assert "Never type the patient's name here" in signed_in(alice).get(page(session)).content.decode()


def error_shown(response: Any) -> str:
    found = re.search(r'<p class="error" role="alert" id="consent-error">(.*?)</p>', response.content.decode(), re.S)
    assert found, "the page shows no error"
    return html.unescape(found[1])


def test_a_purpose_left_unanswered_is_named_in_the_forms_words_and_nothing_is_saved(
    session: Any, consent_form: Any, alice: Any
) -> None:
    form = answers(consent_form)
    del form["decision_research"], form["decision_live_external"]
    response = signed_in(alice).post(page(session), form)
    assert response.status_code == 400
    error = error_shown(response)
    assert "“Live telementoring with other centres”" in error and "“Use the recording for research”" in error
    assert "live_external" not in error and "research," not in error
    assert "Nothing was saved" in error
    assert not ConsentRecord.objects.exists()
    # What was typed is kept for the correction.
    assert "Signed form, witnessed by the ward nurse" in response.content.decode()


def test_keeping_the_recording_for_training_needs_the_recording_agreed(session: Any, consent_form: Any, alice: Any) -> None:
    response = signed_in(alice).post(
        page(session), answers(consent_form, record="refused", archive_training="granted", research="refused")
    )
    assert response.status_code == 400
    error = error_shown(response)
    assert error.startswith("“Keep the recording for training” needs “Record the procedure” agreed")
    assert "archive_training" not in error and "Nothing was saved" in error
    assert not ConsentRecord.objects.exists()
    # Refusing both is a consent like any other.
    response = signed_in(alice).post(
        page(session), answers(consent_form, record="refused", archive_training="refused", research="refused")
    )
    assert response.status_code == 302


def test_the_history_names_what_was_agreed_in_the_forms_words(session: Any, consenting_patient: Any, alice: Any) -> None:
    history = signed_in(alice).get(page(session)).content.decode().split('id="consent-history"')[1]
    assert '<span class="tag ok">Keep the recording for training</span>' in history
    assert '<span class="tag ok">archive_training</span>' not in history


def test_an_attestation_is_required(session: Any, consent_form: Any, alice: Any) -> None:
    response = signed_in(alice).post(page(session), {**answers(consent_form), "attestation": " "})
    assert response.status_code == 400
    assert not ConsentRecord.objects.exists()


def test_people_who_do_not_take_consent_are_refused(session: Any, consent_form: Any, bob: Any, eve: Any) -> None:
    for person in (bob, eve):
        client = signed_in(person)
        assert client.get(page(session)).status_code == 403
        assert client.post(page(session), answers(consent_form)).status_code == 403
    assert not ConsentRecord.objects.exists()
    anonymous = Client().get(page(session))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_withdrawal_is_one_action_that_acts_on_what_is_live_and_is_audited(
    session: Any, consenting_patient: Any, alice: Any, probe: Probe, django_capture_on_commit_callbacks: Any
) -> None:
    url = f"/consent/sessions/{session.public_id}/records/{consenting_patient.pk}/withdraw/"
    assert f'action="{url}"' in signed_in(alice).get(page(session)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in(alice).post(url, {"reason": "patient asked on the ward round"})
    assert response.status_code == 302
    consenting_patient.refresh_from_db()
    assert consenting_patient.withdrawn_at is not None and consenting_patient.withdrawn_by == alice
    assert consenting_patient.withdrawal_reason == "patient asked on the ward round"
    # Through this door too, every effect ran: within the withdrawal, then delivered after it.
    assert [c.session_id for c in probe.within] == [session.pk]
    assert probe.delivered == probe.within
    event = AuditEvent.objects.get(action="consent.withdraw")
    assert event.actor == f"user:{alice.pk}" and event.target == f"consent:{consenting_patient.pk}"
    assert services.consent_in_force(session=session) is None
    assert "No consent in force" in signed_in(alice).get(page(session)).content.decode()


def test_withdrawal_needs_a_post(session: Any, consenting_patient: Any, alice: Any) -> None:
    response = signed_in(alice).get(f"/consent/sessions/{session.public_id}/records/{consenting_patient.pk}/withdraw/")
    assert response.status_code == 405
    consenting_patient.refresh_from_db()
    assert consenting_patient.withdrawn_at is None


def test_the_consent_downloads_as_a_valid_fhir_r5_consent(session: Any, consenting_patient: Any, alice: Any) -> None:
    response = signed_in(alice).get(f"/consent/sessions/{session.public_id}/records/{consenting_patient.pk}/fhir.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    assert response["Content-Disposition"] == f'attachment; filename="consent-{consenting_patient.pk}.fhir.json"'
    resource = json.loads(response.content)
    FhirConsent.model_validate(resource)
    assert resource["resourceType"] == "Consent" and resource["status"] == "active"
    assert resource["subject"]["identifier"]["value"] == "CASE-0042"
    assert sorted(p["purpose"][0]["code"] for p in resource["provision"]) == sorted(ALL_PURPOSES)


def test_the_audit_trail_downloads_as_a_fhir_bundle_of_the_session_events(
    session: Any, consenting_patient: Any, alice: Any, eve: Any
) -> None:
    services.consent_withdraw(record=consenting_patient, by=alice)
    audit_record(action="unrelated", actor="system", session_public_id="00000000-0000-0000-0000-000000000000")
    response = signed_in(alice).get(f"/consent/sessions/{session.public_id}/audit.fhir.json")
    assert response.status_code == 200
    bundle = json.loads(response.content)
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    codes = [entry["resource"]["code"]["text"] for entry in bundle["entry"]]
    assert codes == ["consent.record", "consent.withdraw"]
    assert signed_in(eve).get(f"/consent/sessions/{session.public_id}/audit.fhir.json").status_code == 403


def test_the_session_page_shows_the_consent_in_force_and_links_to_it(session: Any, consenting_patient: Any, alice: Any) -> None:
    shown = signed_in(alice).get(f"/sessions/{session.public_id}/").content.decode()
    assert "Consent in force since" in shown
    assert f'href="/consent/sessions/{session.public_id}/"' in shown
    assert f'href="/recordings/?session={session.public_id}"' in shown
