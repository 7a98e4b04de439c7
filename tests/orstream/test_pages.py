"""orstream.pages: the refusal, the coordinator gate and the 404 of a row a URL names, as every app shows them,
and the API's own refusals audited like the pages'."""

from __future__ import annotations

import contextvars
import uuid
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from django.test import Client, RequestFactory
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request

from consent import audit
from consent.models import AuditEvent
from mentoring import services
from orstream.pages import api_exception_handler


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


def anonymous_refusals() -> list[Any]:
    return list(AuditEvent.objects.filter(actor="anonymous", outcome="refused").order_by("id"))


def test_the_api_refuses_an_anonymous_request_and_audits_it_like_a_page(session: Any) -> None:
    reply = Client().post(f"/api/sessions/{session.public_id}/start/?token=secret")
    assert reply.status_code == 403
    [event] = anonymous_refusals()
    assert event.action == "page.refused"
    assert {k: event.detail[k] for k in ("page", "method", "status", "reason")} == {
        "page": "api-session-action", "method": "POST", "status": 403, "reason": reply.json()["detail"],
    }
    assert event.detail["public_id"] == str(session.public_id)
    assert "secret" not in str(event.detail) and "/api/" not in str(event.detail)


def test_an_anonymous_flood_of_api_refusals_is_counted_not_written_row_by_row(db: Any, monkeypatch: Any) -> None:
    # One minute of the aggregation's clock, whenever the test runs.
    monkeypatch.setattr(audit, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))
    client = Client()
    for _ in range(120):
        assert client.get("/api/sessions/").status_code == 403
    events = anonymous_refusals()
    assert len(events) == audit.REFUSALS_WRITTEN_EACH + 1
    assert {e.detail["page"] for e in events} == {"api-sessions"}
    assert events[-1].detail["refused_this_minute"] == 100


def test_the_api_refuses_a_user_without_the_role_and_audits_it_once(bob: Any, session: Any) -> None:
    reply = signed_in(bob).post(f"/api/sessions/{session.public_id}/start/")
    assert reply.status_code == 403
    assert reply.json()["detail"].startswith("This needs a coordinator")
    [event] = refusals_of(bob)
    assert (event.action, event.target) == ("page.refused", "page:api-session-action")
    assert (event.detail["method"], event.detail["status"]) == ("POST", 403)
    assert event.detail["reason"] == reply.json()["detail"]
    assert not anonymous_refusals()
    session.refresh_from_db()
    assert session.status == session.Status.SCHEDULED


def test_a_refusal_audited_before_drf_raised_it_is_not_audited_again(bob: Any) -> None:
    def one_request() -> int:
        audit.audit_request_begin()
        audit.audit_record(action="session.start", actor=f"user:{bob.pk}", outcome="refused")
        reply = api_exception_handler(PermissionDenied("No."), {"request": Request(RequestFactory().post("/api/sessions/"))})
        assert reply is not None
        return reply.status_code

    assert contextvars.copy_context().run(one_request) == 403
    assert [e.action for e in AuditEvent.objects.filter(outcome="refused")] == ["session.start"]


def test_the_public_api_root_and_schema_touch_no_database(db: Any, django_assert_num_queries: Any) -> None:
    client = Client()
    with django_assert_num_queries(0):
        assert client.get("/api/").status_code == 200
        assert client.get("/api/schema/").status_code == 200
    assert not anonymous_refusals()
