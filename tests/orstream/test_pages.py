"""orstream.pages: the refusal, the coordinator gate and the 404 of a row a URL names, as every app shows them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.test import Client

from consent.models import AuditEvent
from mentoring import services


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_session_a_url_names_that_does_not_exist_is_a_404_on_every_app(alice: Any) -> None:
    nobody = uuid.uuid4()
    for url in (f"/sessions/{nobody}/", f"/consent/sessions/{nobody}/", f"/sessions/{nobody}/live/"):
        assert signed_in(alice).get(url).status_code == 404, url


def test_a_consent_record_of_another_session_is_a_404(session: Any, consenting_patient: Any, alice: Any, room: Any) -> None:
    other = services.session_schedule(
        room=room, procedure="Another procedure", surgeon=session.surgeon, planned_start=session.planned_end,
        planned_end=session.planned_end + timedelta(hours=1), time_zone="Europe/Paris", created_by=alice,
    )
    reply = signed_in(alice).post(f"/consent/sessions/{other.public_id}/records/{consenting_patient.pk}/withdraw/")
    assert reply.status_code == 404
    consenting_patient.refresh_from_db()
    assert consenting_patient.withdrawn_at is None


def test_someone_who_is_not_a_coordinator_gets_the_refusal_page_saying_whom_to_ask(bob: Any) -> None:
    reply = signed_in(bob).get("/rooms/new/")
    assert reply.status_code == 403
    assert "Ask your administrator to add you to the coordinator group." in reply.content.decode()
    assert [t.name for t in reply.templates][0] == "refused.html"


def refusals_of(user: Any) -> list[Any]:
    return list(AuditEvent.objects.filter(actor=f"user:{user.pk}", outcome="refused"))


def test_the_coordinator_gate_audits_its_refusal_once_naming_the_page_and_not_the_path(bob: Any, session: Any) -> None:
    reply = signed_in(bob).post(f"/sessions/{session.public_id}/start/")
    assert reply.status_code == 403
    [event] = refusals_of(bob)
    assert (event.action, event.target) == ("page.refused", "page:mentoring:session_action")
    assert event.detail["public_id"] == str(session.public_id)
    assert event.detail["reason"].startswith("This page is for coordinators.")
    assert f"/sessions/{session.public_id}/" not in str(event.detail)
    session.refresh_from_db()
    assert session.status == session.Status.SCHEDULED


def test_a_refusal_the_service_audited_is_not_audited_again_by_its_page(bob: Any, alice: Any, session: Any, carol: Any) -> None:
    token = services.join_token_mint(participant=carol)
    services.session_cancel(session=session, by=alice)
    reply = signed_in(bob).get(f"/join/{token}/")
    assert reply.status_code == 403
    [event] = refusals_of(bob) + list(AuditEvent.objects.filter(actor="anonymous", outcome="refused"))
    assert event.action != "page.refused"
    assert token not in str(event.detail) + event.target


def test_each_request_is_audited_on_its_own(bob: Any) -> None:
    client = signed_in(bob)
    for _ in range(3):
        assert client.get("/rooms/new/").status_code == 403
    assert len(refusals_of(bob)) == 3
