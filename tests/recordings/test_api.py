"""The recordings part of the JSON API: the pages' rules, the one consent gate, audited downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.test import Client

from consent.models import AuditEvent
from mentoring import services as mentoring_services
from recordings.models import ExportJob, Recording
from tests.recordings.fixtures import FakeEdge


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_api_starts_and_stops_a_recording_like_the_live_view(session: Any, consenting_patient: Any, bob: Any, alice: Any, fake_edge: FakeEdge) -> None:
    mentoring_services.session_start(session=session, by=alice)
    started = signed_in(bob).post(f"/api/sessions/{session.public_id}/recording/start/")
    assert started.status_code == 201, started.content
    recording = Recording.objects.get(public_id=started.json()["id"])
    assert recording.status == Recording.Status.RECORDING and started.json()["session"] == str(session.public_id)
    stopped = signed_in(alice).post(f"/api/recordings/{recording.public_id}/stop/")
    assert stopped.status_code == 200 and stopped.json()["status"] == "finalizing"
    assert [c[0] for c in fake_edge.calls] == ["POST", "DELETE"]


def test_the_api_asks_the_consent_gate_before_recording(session: Any, refusing_patient: Any, alice: Any, fake_edge: FakeEdge) -> None:
    mentoring_services.session_start(session=session, by=alice)
    response = signed_in(alice).post(f"/api/sessions/{session.public_id}/recording/start/")
    assert response.status_code == 409 and "consent does not cover recording" in response.json()["detail"]
    assert not Recording.objects.exists() and fake_edge.calls == []
    assert AuditEvent.objects.filter(action="recording.start", outcome="refused").exists()


def test_an_outsider_can_neither_start_nor_stop_a_recording(session: Any, consenting_patient: Any, alice: Any, eve: Any, fake_edge: FakeEdge) -> None:
    mentoring_services.session_start(session=session, by=alice)
    assert signed_in(eve).post(f"/api/sessions/{session.public_id}/recording/start/").status_code == 403
    recording = signed_in(alice).post(f"/api/sessions/{session.public_id}/recording/start/").json()
    refused = signed_in(eve).post(f"/api/recordings/{recording['id']}/stop/")
    assert refused.status_code == 403 and "coordinator or the operating surgeon" in refused.json()["detail"]
    assert Recording.objects.get(public_id=recording["id"]).status == Recording.Status.RECORDING
    assert AuditEvent.objects.filter(action="recording.stop", outcome="refused", actor=f"user:{eve.pk}").exists()


def test_the_list_follows_the_librarys_rules(available_recording: Recording, alice: Any, eve: Any) -> None:
    listed = signed_in(alice).get("/api/recordings/", {"session": str(available_recording.session.public_id)}).json()
    assert [r["id"] for r in listed] == [str(available_recording.public_id)]
    assert listed[0]["parts"] == 2 and listed[0]["status"] == "available"
    assert signed_in(eve).get("/api/recordings/").json() == []
    assert signed_in(alice).get("/api/recordings/", {"session": "not-a-uuid"}).status_code == 400
    assert Client().get("/api/recordings/").status_code == 403


def test_the_api_downloads_a_part_audited_and_refuses_a_resident(available_recording: Recording, bob: Any, dave: Any, resident: Any, clip: Path) -> None:
    response = signed_in(bob).get(f"/api/recordings/{available_recording.public_id}/parts/1.mp4")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content) == clip.read_bytes()
    assert AuditEvent.objects.filter(action="recording.download", outcome="allowed", actor=f"user:{bob.pk}").exists()
    assert signed_in(dave).get(f"/api/recordings/{available_recording.public_id}/parts/0.mp4").status_code == 403
    assert AuditEvent.objects.filter(action="recording.download", outcome="refused", actor=f"user:{dave.pk}").exists()
    assert signed_in(bob).get(f"/api/recordings/{available_recording.public_id}/parts/9.mp4").status_code == 404


def test_the_api_exports_only_to_an_allowed_destination(available_recording: Recording, alice: Any, bob: Any, tmp_path: Path, settings: Any) -> None:
    share = tmp_path / "share"
    share.mkdir()
    settings.EXPORT_DESTINATIONS = [str(share)]
    url = f"/api/recordings/{available_recording.public_id}/export/"
    assert signed_in(alice).post(url, {"destination": "/etc"}).status_code == 400
    assert signed_in(bob).post(url, {"destination": str(share)}).status_code == 403
    assert not ExportJob.objects.exists()
    accepted = signed_in(alice).post(url, {"destination": str(share)})
    assert accepted.status_code == 202, accepted.content
    job = ExportJob.objects.get()
    assert accepted.json()["job"] == str(job.public_id) and job.destination == str(share.resolve())


def test_a_stop_the_edge_does_not_answer_is_a_502_in_words_and_the_recording_goes_on(
    session: Any, consenting_patient: Any, alice: Any, fake_edge: FakeEdge
) -> None:
    mentoring_services.session_start(session=session, by=alice)
    recording = signed_in(alice).post(f"/api/sessions/{session.public_id}/recording/start/").json()
    fake_edge.fail_with = 503
    stopped = signed_in(alice).post(f"/api/recordings/{recording['id']}/stop/")
    assert stopped.status_code == 502
    assert stopped.json()["detail"] == "The media server did not stop the recording, so it is still recording: try stopping it again in a moment."
    assert Recording.objects.get(public_id=recording["id"]).status == Recording.Status.RECORDING


def test_each_api_refusal_is_audited_exactly_once(session: Any, consenting_patient: Any, alice: Any, eve: Any, fake_edge: FakeEdge) -> None:
    mentoring_services.session_start(session=session, by=alice)
    recording = signed_in(alice).post(f"/api/sessions/{session.public_id}/recording/start/").json()
    client = signed_in(eve)
    for path in (f"/api/sessions/{session.public_id}/recording/start/", f"/api/recordings/{recording['id']}/stop/"):
        before = AuditEvent.objects.filter(outcome="refused", actor=f"user:{eve.pk}").count()
        assert client.post(path).status_code == 403
        assert AuditEvent.objects.filter(outcome="refused", actor=f"user:{eve.pk}").count() == before + 1


def test_an_anonymous_api_request_is_refused_before_the_view_and_audited_once(session: Any, consenting_patient: Any, alice: Any, fake_edge: FakeEdge) -> None:
    mentoring_services.session_start(session=session, by=alice)
    recording = signed_in(alice).post(f"/api/sessions/{session.public_id}/recording/start/").json()
    for path, page in ((f"/api/sessions/{session.public_id}/recording/start/", "api-recording-start"),
                       (f"/api/recordings/{recording['id']}/stop/", "api-recording-stop")):
        before = AuditEvent.objects.filter(outcome="refused").count()
        assert Client().post(path).status_code == 403
        [event] = AuditEvent.objects.filter(outcome="refused").order_by("id")[before:]
        assert (event.action, event.actor, event.detail["page"]) == ("page.refused", "anonymous", page)
    assert Recording.objects.get(public_id=recording["id"]).status == Recording.Status.RECORDING
