"""orstream.pages: the refusal, the coordinator gate and the 404 of a row a URL names, as every app shows them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.test import Client

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
