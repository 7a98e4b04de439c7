"""The live pages' JSON: who may read it, what it says when the edge is down, and the coordinator's
live actions (remove, record), with the edge replaced at its HTTP boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mentoring import services
from orstream import edgeclient
from recordings.models import Recording


def get_state(client: Any, session: Any, token: str) -> Any:
    return client.get(f"/live/{session.public_id}/state/", HTTP_X_ORSTREAM_TOKEN=token)


@pytest.fixture
def coordinator(session: Any, alice: Any) -> Any:
    return services.participant_add(session=session, role="coordinator", display_name="Alice Coord", user=alice, by=alice)


@pytest.fixture
def edge_down(monkeypatch: Any) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise edgeclient.EdgeError("The media server cannot be reached. Try again in a moment.")

    monkeypatch.setattr(edgeclient, "call", unreachable)


def test_the_coordinators_link_reads_who_is_connected_with_their_delay(client, session, coordinator, carol, consenting_patient):
    services.presence_record(participant=carol, kind="joined")
    services.latency_report(participant=carol, ms=142.0)
    reply = get_state(client, session, services.join_token_mint(participant=coordinator))
    assert reply.status_code == 200
    body = reply.json()
    (person,) = body["participants"]
    assert person["name"] == "Dr Carol Mentor" and person["role"] == "mentor" and person["latency_ms"] == 142.0
    assert body["recording"] == {"state": "off"}
    assert body["consent"] == {"record": True, "live_internal": True, "live_external": True}


def test_a_mentors_link_cannot_read_the_coordinators_view(client, session, carol, consenting_patient):
    reply = get_state(client, session, services.join_token_mint(participant=carol))
    assert reply.status_code == 403 and "does not allow" in reply.json()["error"]


def test_no_token_and_no_coordinator_sign_in_is_refused(client, session, eve):
    client.force_login(eve)
    assert client.get(f"/live/{session.public_id}/state/").status_code == 403


def test_an_unreachable_edge_is_reported_in_words_not_as_a_failure(client, session, coordinator, alice, edge_down):
    services.session_start(session=session, by=alice)
    reply = get_state(client, session, services.join_token_mint(participant=coordinator))
    assert reply.status_code == 200
    assert reply.json()["edge"] is None and "cannot be reached" in reply.json()["edge_error"]


def test_the_edges_per_viewer_stats_are_relayed(client, session, coordinator, alice, monkeypatch):
    services.session_start(session=session, by=alice)
    calls = []

    def fake_call(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        calls.append((method, path))
        return {"viewers": [{"participant_id": "p1", "bitrate_bps": 8_000_000, "loss": 0.01}]}

    monkeypatch.setattr(edgeclient, "call", fake_call)
    body = get_state(client, session, services.join_token_mint(participant=coordinator)).json()
    assert body["edge"]["viewers"][0]["bitrate_bps"] == 8_000_000
    assert calls == [("GET", f"/sessions/{session.public_id}/stats")]


def test_the_coordinator_removes_a_mentor_whose_link_then_stops_working(client, session, coordinator, carol, consenting_patient):
    mentor_token = services.join_token_mint(participant=carol)
    reply = client.post(
        f"/live/{session.public_id}/participants/{carol.public_id}/remove/", HTTP_X_ORSTREAM_TOKEN=services.join_token_mint(participant=coordinator)
    )
    assert reply.status_code == 200
    carol.refresh_from_db()
    assert carol.removed_at is not None
    with pytest.raises(services.JoinRefused):
        services.join_token_check(token=mentor_token)


def test_a_surgeons_link_cannot_remove_anyone(client, session, surgeon, carol):
    reply = client.post(
        f"/live/{session.public_id}/participants/{carol.public_id}/remove/", HTTP_X_ORSTREAM_TOKEN=services.join_token_mint(participant=surgeon)
    )
    assert reply.status_code == 403
    carol.refresh_from_db()
    assert carol.removed_at is None


def test_recording_without_the_patients_consent_is_refused_in_words(client, session, coordinator, alice, refusing_patient):
    services.session_start(session=session, by=alice)
    reply = client.post(
        f"/live/{session.public_id}/recording/", json.dumps({"action": "start"}), content_type="application/json",
        HTTP_X_ORSTREAM_TOKEN=services.join_token_mint(participant=coordinator),
    )
    assert reply.status_code == 409 and "consent does not cover recording" in reply.json()["error"]
    assert not Recording.objects.filter(session=session).exists()


def test_the_coordinator_starts_and_stops_a_recording(client, session, coordinator, alice, consenting_patient, monkeypatch):
    services.session_start(session=session, by=alice)
    calls = []

    def fake_call(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        calls.append((method, path))
        if path.endswith("/stats"):  # the edge writes the recording it was asked to start
            running = Recording.objects.filter(session=session, status="recording").first()
            return {"viewers": [], "recording_id": str(running.public_id) if running else None}
        return {"segments": 1} if method == "DELETE" else {"ok": True}

    monkeypatch.setattr(edgeclient, "call", fake_call)
    token = services.join_token_mint(participant=coordinator)
    url = f"/live/{session.public_id}/recording/"
    started = client.post(url, json.dumps({"action": "start"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)
    assert started.status_code == 200 and started.json()["recording"]["state"] == "recording"
    assert get_state(client, session, token).json()["recording"]["state"] == "recording"
    stopped = client.post(url, json.dumps({"action": "stop"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)
    assert stopped.status_code == 200 and stopped.json()["recording"] == {"state": "off"}
    assert ("POST", f"/sessions/{session.public_id}/recording") in calls
    assert ("DELETE", f"/sessions/{session.public_id}/recording") in calls


def test_a_stop_the_edge_does_not_answer_says_so_and_the_recording_goes_on(
    client, session, coordinator, alice, consenting_patient, monkeypatch
):
    services.session_start(session=session, by=alice)
    monkeypatch.setattr(edgeclient, "call", lambda method, path, body=None, **kw: {"ok": True})
    token = services.join_token_mint(participant=coordinator)
    url = f"/live/{session.public_id}/recording/"
    client.post(url, json.dumps({"action": "start"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)
    monkeypatch.undo()
    # Nothing listens on the discard port of loopback: the edge cannot be reached.
    session.room.edge_url = "http://127.0.0.1:9"
    session.room.save(update_fields=["edge_url"])
    stopped = client.post(url, json.dumps({"action": "stop"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)
    assert stopped.status_code == 502
    assert stopped.json()["error"] == "The media server did not stop the recording, so it is still recording: try stopping it again in a moment."
    assert Recording.objects.get(session=session).status == "recording"


def test_a_recording_the_edge_is_not_writing_shows_as_interrupted_and_can_be_stopped(
    client, session, coordinator, alice, consenting_patient, monkeypatch, django_capture_on_commit_callbacks
):
    """After an edge restart the row still says recording while nothing records: the live view
    says so in words, and Stop ends it without waiting for an edge that has nothing to stop."""
    services.session_start(session=session, by=alice)
    monkeypatch.setattr(edgeclient, "call", lambda method, path, body=None, **kw: {"ok": True})
    token = services.join_token_mint(participant=coordinator)
    url = f"/live/{session.public_id}/recording/"
    client.post(url, json.dumps({"action": "start"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)

    def restarted_edge(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        raise edgeclient.EdgeError(f"unknown session {session.public_id}", status=404)

    monkeypatch.setattr(edgeclient, "call", restarted_edge)
    card = get_state(client, session, token).json()["recording"]
    assert card["state"] == "interrupted" and "media server restarted" in card["note"]
    with django_capture_on_commit_callbacks(execute=True):
        stopped = client.post(url, json.dumps({"action": "stop"}), content_type="application/json", HTTP_X_ORSTREAM_TOKEN=token)
    assert stopped.status_code == 200 and stopped.json()["recording"] == {"state": "off"}
    recording = Recording.objects.get(session=session)
    assert recording.status == "failed" and "nothing was recorded" in recording.error, "not left finalizing"


def test_a_signed_in_coordinator_opens_the_live_view_as_the_sessions_coordinator(client, session, alice):
    client.force_login(alice)
    reply = client.get(f"/sessions/{session.public_id}/live/")
    assert reply.status_code == 200
    assert 'id="orstream-bootstrap"' in reply.content.decode()
    participant = session.participants.get(role="coordinator")
    assert participant.user == alice
    # A second visit reuses the same participant.
    client.get(f"/sessions/{session.public_id}/live/")
    assert session.participants.filter(role="coordinator").count() == 1


def test_the_live_view_is_for_coordinators_only(client, session, bob):
    client.force_login(bob)
    assert client.get(f"/sessions/{session.public_id}/live/").status_code == 403


@pytest.mark.parametrize("role,page", [("mentor", "mentor.js"), ("display", "display.js"), ("surgeon", "console.js"), ("coordinator", "live.js")])
def test_each_role_gets_its_page(client, session, alice, consenting_patient, role, page):
    participant = (
        session.participants.get(role="surgeon")
        if role == "surgeon"
        else services.participant_add(session=session, role=role, display_name=f"A {role}", by=alice)
    )
    reply = client.get(f"/join/{services.join_token_mint(participant=participant)}/")
    assert reply.status_code == 200 and f"orstream/{page}" in reply.content.decode()
