"""The JSON API: same rules and permissions as the pages, and a schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from consent.models import AuditEvent
from mentoring import services
from mentoring.models import Session


@pytest.fixture
def api(client, alice):
    client.force_login(alice)
    return client


def body(start_days: float = 2, hours: float = 2, **extra):
    start = (timezone.now() + timedelta(days=start_days)).replace(microsecond=0)
    return {"procedure": "Clipping", "planned_start": start.isoformat(), "planned_end": (start + timedelta(hours=hours)).isoformat(),
            "time_zone": "Europe/Berlin", **extra}


def test_the_openapi_schema_is_served(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert "/api/sessions/" in schema["paths"] and "/api/sessions/{public_id}/participants/" in schema["paths"]


def test_anonymous_callers_are_refused(client, db):
    assert client.get("/api/sessions/").status_code == 403


def test_a_coordinator_schedules_and_invites_through_the_api(api, room, bob):
    response = api.post("/api/sessions/", body(room=room.pk, surgeon=bob.pk), content_type="application/json")
    assert response.status_code == 201, response.content
    sid = response.json()["id"]
    invite = api.post(f"/api/sessions/{sid}/participants/", {"role": "resident", "display_name": "Dave", "send_invitation": False},
                      content_type="application/json")
    assert invite.status_code == 201 and "/join/" in invite.json()["join_url"]
    assert [p["role"] for p in api.get(f"/api/sessions/{sid}/").json()["participants"]] == ["resident", "surgeon"]


def test_the_api_refuses_a_double_booking_naming_the_clash(api, session, room, bob):
    data = body(room=room.pk, surgeon=bob.pk)
    data["planned_start"], data["planned_end"] = session.planned_start.isoformat(), session.planned_end.isoformat()
    response = api.post("/api/sessions/", data, content_type="application/json")
    assert response.status_code == 400
    assert "Microvascular decompression" in response.json()["room"][0]


def test_the_api_refuses_bad_times_and_zones(api, room, bob):
    assert "time_zone" in api.post("/api/sessions/", body(room=room.pk, surgeon=bob.pk, time_zone="Nowhere/City"),
                                   content_type="application/json").json()
    assert "planned_start" in api.post("/api/sessions/", body(-3, room=room.pk, surgeon=bob.pk),
                                       content_type="application/json").json()
    assert "planned_end" in api.post("/api/sessions/", body(hours=-1, room=room.pk, surgeon=bob.pk),
                                     content_type="application/json").json()
    assert not Session.objects.filter(procedure="Clipping").exists()


def test_non_coordinators_cannot_schedule_or_invite(client, eve, session, room, bob):
    client.force_login(eve)
    assert client.post("/api/sessions/", body(room=room.pk, surgeon=bob.pk), content_type="application/json").status_code == 403
    assert client.post(f"/api/sessions/{session.public_id}/participants/", {"role": "mentor", "display_name": "x"},
                       content_type="application/json").status_code == 403
    assert client.get(f"/api/sessions/{session.public_id}/").status_code == 403


def test_the_surgeon_calls_in_a_specialist_while_live(client, api, bob, session, consenting_patient):
    assert api.post(f"/api/sessions/{session.public_id}/start/").status_code == 200
    client.force_login(bob)
    response = client.post(f"/api/sessions/{session.public_id}/specialist-link/", {"display_name": "Dr Neuro", "minutes": 10},
                           content_type="application/json")
    assert response.status_code == 201 and response.json()["participant"]["role"] == "specialist"


def test_revoke_and_remove_through_the_api(api, carol):
    assert api.post(f"/api/participants/{carol.public_id}/revoke/").json() == {"revoked": 0}
    assert api.delete(f"/api/participants/{carol.public_id}/").status_code == 204
    carol.refresh_from_db()
    assert carol.removed_at is not None


def test_a_revoked_participant_is_reinvited_through_the_api(api, carol, consenting_patient):
    services.join_token_mint(participant=carol)
    assert api.post(f"/api/participants/{carol.public_id}/revoke/").status_code == 200
    session = api.get(f"/api/sessions/{carol.session.public_id}/").json()
    (row,) = [p for p in session["participants"] if p["id"] == str(carol.public_id)]
    assert row["link_state"] == "revoked"
    response = api.post(f"/api/participants/{carol.public_id}/reinvite/")
    assert response.status_code == 201 and response.json()["participant"]["link_state"] == "active"
    token = response.json()["join_url"].split("/join/")[1].rstrip("/")
    assert services.join_token_check(token=token).participant == carol


def test_the_api_root_lists_every_endpoint_including_recordings(client, db):
    root = client.get("/api/", HTTP_ACCEPT="application/json")
    assert root.status_code == 200
    paths = {e["path"]: e["methods"] for e in root.json()["endpoints"]}
    assert paths["/api/sessions/"] == ["GET", "POST"]
    for path in ("/api/recordings/", "/api/sessions/{public_id}/recording/start/", "/api/recordings/{public_id}/stop/",
                 "/api/recordings/{public_id}/export/", "/api/recordings/{public_id}/parts/{index}.mp4"):
        assert path in paths
    assert root.json()["docs"].endswith("/api/docs/")


def test_the_schema_describes_the_recording_endpoints(client, db):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in ("/api/recordings/", "/api/recordings/{public_id}/stop/", "/api/recordings/{public_id}/parts/{index}.mp4",
                 "/api/participants/{participant_id}/reinvite/"):
        assert path in schema["paths"], path


def test_the_api_docs_load_their_viewer_from_the_site_not_a_cdn(client, db):
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "<script>" not in page


def test_a_resident_sees_in_the_api_only_what_the_session_list_shows(client, session, resident, dave):
    client.force_login(dave)
    listed = client.get("/api/sessions/").json()
    one = client.get(f"/api/sessions/{session.public_id}/").json()
    for data in (listed[0], one):
        assert data["procedure"] == session.procedure
        assert "patient_ref" not in data and "notes" not in data and "participants" not in data
        assert "CASE-0042" not in str(data) and "@" not in str(data)


def test_the_coordinator_and_the_surgeon_still_see_the_case_and_the_participants(client, session, resident, alice, bob):
    for user in (alice, bob):
        client.force_login(user)
        data = client.get(f"/api/sessions/{session.public_id}/").json()
        assert data["patient_ref"] == "CASE-0042" and {p["role"] for p in data["participants"]} == {"surgeon", "resident"}


def test_schema_and_docs_need_a_sign_in_in_production(client, settings, dave):
    settings.PRODUCTION = True
    assert client.get("/api/schema/").status_code == 403
    assert client.get("/api/docs/").status_code == 403
    refusals = AuditEvent.objects.filter(actor="anonymous", outcome="refused").order_by("id")
    assert [e.detail["page"] for e in refusals] == ["api-schema", "api-docs"]
    client.force_login(dave)
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def test_someone_outside_the_session_is_refused_and_audited_once(client, session, eve):
    client.force_login(eve)
    for path in (f"/api/sessions/{session.public_id}/", f"/api/sessions/{session.public_id}/calendar.ics"):
        reply = client.get(path)
        assert reply.status_code == 403 and reply.json()["detail"] == "You are not part of this session."
    refusals = AuditEvent.objects.filter(actor=f"user:{eve.pk}", outcome="refused").order_by("id")
    assert [(e.detail["page"], e.detail["reason"]) for e in refusals] == [
        ("api-session", "You are not part of this session."), ("api-session-calendar", "You are not part of this session."),
    ]
